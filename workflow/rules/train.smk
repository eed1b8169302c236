# Training on a stage's training set, one job per grid point, and selection on validation.


rule train:
    input:
        train=training_set,
        val=prepared_npz,
    output:
        model="results/{dataset}/{stage}/{variant}/model.pt",
        metrics="results/{dataset}/{stage}/{variant}/metrics.json",
        history="results/{dataset}/{stage}/{variant}/history.csv",
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
        state="results/{dataset}/{stage}/{variant}/state.pt",
    log:
        "logs/{dataset}/{stage}/{variant}/train.log",
    benchmark:
        "benchmarks/{dataset}/{stage}/{variant}/train.tsv"
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


# Seed replicates r >= 1 (config replicates): each stage again at the hyperparameters selected
# in replicate 0, read from its selected.json when the job runs (so the DAG needs no checkpoint;
# the wall-time request is the grid's longest point), with the seed derive_seed(seed, r), on the
# replicate's own training set (a nonrobust-only stage: built from the replicate's base model).
use rule train as train_replicate with:
    input:
        train=replicate_training_set,
        val=prepared_npz,
        selected="results/{dataset}/{stage}/selected.json",
    output:
        model="results/{dataset}/rep{rep}/{stage}/model.pt",
        metrics="results/{dataset}/rep{rep}/{stage}/metrics.json",
        history="results/{dataset}/rep{rep}/{stage}/history.csv",
    params:
        hparams=replicate_hparams,
        state="results/{dataset}/rep{rep}/{stage}/state.pt",
    log:
        "logs/{dataset}/rep{rep}/{stage}/train.log",
    benchmark:
        "benchmarks/{dataset}/rep{rep}/{stage}/train.tsv"


rule select:
    input:
        metrics=grid_files("metrics.json"),
        models=grid_files("model.pt"),
    output:
        choice="results/{dataset}/{stage}/selected.json",
        model="results/{dataset}/{stage}/selected/model.pt",
    params:
        code=code("select"),
        criterion=selection_criterion,
    log:
        "logs/{dataset}/{stage}/select.log",
    conda:
        ENV
    shell:
        "medrobust select --metrics {input.metrics} --criterion {params.criterion}"
        " --out {output.choice} --model-out {output.model} 2> {log}"
