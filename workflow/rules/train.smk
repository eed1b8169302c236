# Training (medrobust.core.paths): one rule for every run, a grid point (run grid/<point>) or a
# seed replicate r >= 1 (run rep<r>), then selection on validation, whose winner is replicate 0.
# A replicate trains again at the selected point, read from selected.json when the job runs (so
# the DAG needs no checkpoint; its wall-time request is the grid's longest point), with the seed
# derive_seed(seed, r), on its own training set (a nonrobust-only stage: built from its own base model).


rule train:
    input:
        unpack(train_inputs),
    output:
        model=f"{TRAINED}/model.pt",
        metrics=f"{TRAINED}/metrics.json",
        history=f"{TRAINED}/history.csv",
    wildcard_constraints:
        run=paths.RUN_PATTERN,
    params:
        device=DEVICE,
        speed=Untracked(
            f"--checkpoint-every {config['training']['checkpoint_every']}"
            f" --eval-batch-size {config['training']['eval_batch_size']}"
        ),
        code=lambda wildcards: code(hparams.train_command(wildcards.stage)),
        command=lambda wildcards: hparams.train_command(wildcards.stage),
        settings=train_settings,
        n_classes=n_classes,
        # resumable state: beside the outputs, not one of them, so a failed job keeps it
        state=f"{TRAINED}/state",
    log:
        "logs/{dataset}/{run}/{stage}/train.log",
    benchmark:
        "benchmarks/{dataset}/{run}/{stage}/train.tsv"
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
        " {params.settings} --state {params.state}"
        " {params.speed} --threads {threads} {params.device}"
        " --out-model {output.model} --out-metrics {output.metrics}"
        " --out-history {output.history} 2> {log}"


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
        epoch=kept_epoch(),
    log:
        "logs/{dataset}/grid/{stage}/select.log",
    conda:
        ENV
    shell:
        "medrobust select --metrics {input.metrics} --criterion {params.criterion} --epoch {params.epoch}"
        " --out {output.choice} --model-out {output.model} 2> {log}"
