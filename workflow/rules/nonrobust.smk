# Nonrobust-feature training sets (paper Section 3.1): targeted PGD from the selected base
# model. The nonrobust-only models are trained by the rules of train.smk (stage nonrobust_eps<e>).


rule construct_nonrobust:
    input:
        model="results/{dataset}/base/selected/model.pt",
        data=prepared_npz,
    output:
        npz="results/{dataset}/data/nonrobust_eps{eps}.npz",
        stats="results/{dataset}/data/nonrobust_eps{eps}.json",
    params:
        device=DEVICE,
        code=code("construct"),
        settings=construction_settings,
        # the PGD start of each image is seeded per batch, and bf16 rounding depends on the batch
        batch_size=config["nonrobust"]["batch_size"],
    log:
        "logs/{dataset}/data/nonrobust_eps{eps}.log",
    benchmark:
        "benchmarks/{dataset}/data/nonrobust_eps{eps}.tsv"
    threads: config["threads"]["construct"]
    resources:
        gpu=GPUS,
        mem_mb=mem_mb,
        runtime=runtime("construct"),
    retries: retries("construct")
    conda:
        ENV
    shell:
        "medrobust construct --model {input.model} --data {input.data} --settings {params.settings}"
        " --batch-size {params.batch_size} --threads {threads} {params.device}"
        " --out {output.npz} --stats {output.stats} 2> {log}"


# Seed replicates r >= 1: each builds its own sets from its own base model, with its own seed
# (the targets and PGD starts; construction_settings).
use rule construct_nonrobust as construct_nonrobust_replicate with:
    input:
        model="results/{dataset}/rep{rep}/base/model.pt",
        data=prepared_npz,
    output:
        npz="results/{dataset}/rep{rep}/data/nonrobust_eps{eps}.npz",
        stats="results/{dataset}/rep{rep}/data/nonrobust_eps{eps}.json",
    log:
        "logs/{dataset}/rep{rep}/data/nonrobust_eps{eps}.log",
    benchmark:
        "benchmarks/{dataset}/rep{rep}/data/nonrobust_eps{eps}.tsv"
