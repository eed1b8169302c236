# Training (medrobust.core.paths): one job per grid point, selection on validation (whose winner
# is replicate 0), and each further replicate at the selected point.


rule train:
    input:
        train=training_set,
        val=prepared_npz,
    output:
        model=f"{POINT}/model.pt",
        metrics=f"{POINT}/metrics.json",
        history=f"{POINT}/history.csv",
    params:
        device=DEVICE,
        speed=Untracked(
            f"--checkpoint-every {config['training']['checkpoint_every']}"
            f" --eval-batch-size {config['training']['eval_batch_size']}"
        ),
        code=train_code,
        command=train_command,
        hparams=train_hparams,
        n_classes=n_classes,
        # resumable state: beside the outputs, not one of them, so a failed job keeps it
        state=f"{POINT}/state",
    log:
        "logs/{dataset}/grid/{stage}/{point}/train.log",
    benchmark:
        "benchmarks/{dataset}/grid/{stage}/{point}/train.tsv"
    threads: config["threads"]["train"]
    resources:
        gpu=GPUS,
        mem_mb=mem_mb,
        runtime=runtime("train"),
    retries: retries("train")
    conda:
        ENV
    shell:
        "medrobust {params.command} --train-data {input.train} --val-data {input.val} --n-classes {params.n_classes}"
        " {params.hparams} --state {params.state}"
        " {params.speed} --threads {threads} {params.device}"
        " --out-model {output.model} --out-metrics {output.metrics}"
        " --out-history {output.history} 2> {log}"


# Replicate 0 is the grid's winner; replicate r >= 1 (config replicates) trains again at the
# selected point, read from selected.json when the job runs (so the DAG needs no checkpoint; the
# wall-time request is the grid's longest point), with the seed derive_seed(seed, r), on its own
# training set (a nonrobust-only stage: built from the replicate's own base model).
use rule train as train_replicate with:
    input:
        train=training_set,
        val=prepared_npz,
        selected=SELECTION,
    output:
        model=f"{RUN}/model.pt",
        metrics=f"{RUN}/metrics.json",
        history=f"{RUN}/history.csv",
    params:
        hparams=replicate_hparams,
        state=f"{RUN}/state",
    wildcard_constraints:
        rep=r"[1-9]\d*",
    log:
        "logs/{dataset}/rep{rep}/{stage}/train.log",
    benchmark:
        "benchmarks/{dataset}/rep{rep}/{stage}/train.tsv"


rule select:
    input:
        metrics=grid_files("metrics.json"),
        models=grid_files("model.pt"),
    output:
        choice=SELECTION,
        model=f"{SELECTED}/model.pt",
    params:
        code=code("select"),
        criterion=selection_criterion,
        epoch=kept_epoch,
    log:
        "logs/{dataset}/grid/{stage}/select.log",
    conda:
        ENV
    shell:
        "medrobust select --metrics {input.metrics} --criterion {params.criterion} --epoch {params.epoch}"
        " --out {output.choice} --model-out {output.model} 2> {log}"
