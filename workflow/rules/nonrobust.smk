# Nonrobust-feature training sets (paper Section 3.1): targeted PGD from each replicate's base
# model, with the replicate's seed (targets and PGD starts). The nonrobust-only models are
# trained by the rules of train.smk (stage nonrobust_eps<e>).


rule construct_nonrobust:
    input:
        model=model_file("base"),
        data=prepared_npz,
    output:
        npz=f"{NONROBUST}.npz",
        stats=f"{NONROBUST}.json",
    params:
        device=DEVICE,
        code=code("construct"),
        settings=construction_settings,
        weights=kept_epoch("base"),
        # the PGD start of each image is seeded per batch, and bf16 rounding depends on the batch
        batch_size=config["nonrobust"]["batch_size"],
        # resumable state (finished batches): beside the outputs, not one of them
        state=f"{NONROBUST}_state",
    log:
        "logs/{dataset}/rep{rep}/data/nonrobust_eps{eps}.log",
    benchmark:
        "benchmarks/{dataset}/rep{rep}/data/nonrobust_eps{eps}.tsv"
    threads: config["threads"]["construct"]
    resources:
        gpu=GPUS,
        mem_mb=mem_mb,
        runtime=runtime("construct"),
    retries: retries("construct")
    conda:
        ENV
    shell:
        "medrobust construct --model {input.model} --weights {params.weights} --data {input.data}"
        " --settings {params.settings}"
        " --batch-size {params.batch_size} --threads {threads} {params.device}"
        " --state {params.state} --out {output.npz} --stats {output.stats} 2> {log}"
