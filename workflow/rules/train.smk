# Training on a stage's training set, one job per grid point, and selection on validation.


rule train:
    input:
        train=training_set,
        val=prepared_npz,
        code=train_code,
    output:
        model="results/{dataset}/{stage}/{variant}/model.pt",
        metrics="results/{dataset}/{stage}/{variant}/metrics.json",
        history="results/{dataset}/{stage}/{variant}/history.csv",
    params:
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
        # settings that do not change results: as resources, so changing them re-runs nothing
        checkpoint_every=config["training"]["checkpoint_every"],
        eval_batch_size=config["training"]["eval_batch_size"],
    conda:
        ENV
    shell:
        "medrobust {params.command} --train-data {input.train} --val-data {input.val} --n-classes {params.n_classes}"
        " --hparams {params.hparams} --state {params.state}"
        " --checkpoint-every {resources.checkpoint_every}"
        " --eval-batch-size {resources.eval_batch_size} --threads {threads}"
        " --out-model {output.model} --out-metrics {output.metrics}"
        " --out-history {output.history} 2> {log}"


rule select:
    input:
        metrics=grid_files("metrics.json"),
        models=grid_files("model.pt"),
        code=code("select"),
    output:
        choice="results/{dataset}/{stage}/selected.json",
        model="results/{dataset}/{stage}/selected/model.pt",
    params:
        criterion=selection_criterion,
    log:
        "logs/{dataset}/{stage}/select.log",
    conda:
        ENV
    shell:
        "medrobust select --metrics {input.metrics} --criterion {params.criterion}"
        " --out {output.choice} --model-out {output.model} 2> {log}"
