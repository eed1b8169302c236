# Test-time evaluation of each stage's selected model: clean, MedMNIST-C corruptions
# (Section 3.3) and AutoAttack (Section 3.4). Model selection never reads these files.


rule corrupt_test:
    input:
        raw=raw_npz,
    output:
        npz="results/{dataset}/data/corrupted_test.npz",
        stats="results/{dataset}/data/corrupted_test.json",
    params:
        code=code("corrupt"),
        medmnist=medmnist_flag,
        n_classes=n_classes,
        n_channels=n_channels,
        source_size=source_size,
        size=config["image_size"],
        registry=registry_of,
        apply_size=config["evaluation"]["corruptions"]["apply_size"],
        seed=config["seed"],
        # resumable state (finished corruptions and blocks): beside the outputs, not one of them
        state="results/{dataset}/data/corrupted_test_state",
    log:
        "logs/{dataset}/data/corrupt_test.log",
    benchmark:
        "benchmarks/{dataset}/data/corrupt_test.tsv"
    resources:
        mem_mb=mem_mb,
        runtime=runtime("cpu"),
    retries: retries("cpu")
    conda:
        ENV
    shell:
        "medrobust corrupt --source {input.raw} {params.medmnist} --n-classes {params.n_classes}"
        " --n-channels {params.n_channels} --source-size {params.source_size} --size {params.size}"
        " --registry {params.registry} --apply-size {params.apply_size} --seed {params.seed}"
        " --state {params.state} --out {output.npz} --stats {output.stats} 2> {log}"


rule evaluate_clean:
    input:
        model="results/{dataset}/{stage}/selected/model.pt",
        data=prepared_npz,
    output:
        "results/{dataset}/{stage}/eval/clean_test.json",
    params:
        device=DEVICE,
        code=code("evaluate"),
    log:
        "logs/{dataset}/{stage}/evaluate_clean.log",
    threads: config["threads"]["evaluate"]
    resources:
        gpu=GPUS,
        mem_mb=mem_mb,
        runtime=runtime("clean"),
    retries: retries("clean")
    conda:
        ENV
    shell:
        "medrobust evaluate --model {input.model} --data {input.data} --split test"
        " --threads {threads} {params.device} --out {output} 2> {log}"


rule evaluate_corrupted:
    input:
        model="results/{dataset}/{stage}/selected/model.pt",
        data="results/{dataset}/data/corrupted_test.npz",
    output:
        "results/{dataset}/{stage}/eval/corrupted_test.json",
    params:
        device=DEVICE,
        code=code("evaluate-corrupted"),
    log:
        "logs/{dataset}/{stage}/evaluate_corrupted.log",
    benchmark:
        "benchmarks/{dataset}/{stage}/evaluate_corrupted.tsv"
    threads: config["threads"]["evaluate"]
    resources:
        gpu=GPUS,
        mem_mb=mem_mb,
        runtime=runtime("corrupted"),
    retries: retries("corrupted")
    conda:
        ENV
    shell:
        "medrobust evaluate-corrupted --model {input.model} --data {input.data}"
        " --threads {threads} {params.device} --out {output} 2> {log}"


rule autoattack:
    input:
        model="results/{dataset}/{stage}/selected/model.pt",
        data=prepared_npz,
    output:
        "results/{dataset}/{stage}/eval/autoattack_test.json",
    params:
        device=DEVICE,
        code=code("autoattack"),
        eps=config["evaluation"]["autoattack"]["eps"],
        n_images=config["evaluation"]["autoattack"]["n_images"],
        seed=config["seed"],
        # pyautoattack reseeds every batch, so the batch layout changes results: a param
        batch_size=config["evaluation"]["autoattack"]["batch_size"],
        # resumable state (batch by batch, inside each attack): beside the output, not one of them
        state="results/{dataset}/{stage}/eval/autoattack_state.pt",
    log:
        "logs/{dataset}/{stage}/autoattack.log",
    benchmark:
        "benchmarks/{dataset}/{stage}/autoattack.tsv"
    threads: config["threads"]["evaluate"]
    resources:
        gpu=GPUS,
        mem_mb=mem_mb,
        runtime=runtime("autoattack"),
    retries: retries("autoattack")
    conda:
        ENV
    shell:
        "medrobust autoattack --model {input.model} --data {input.data} --split test --eps {params.eps}"
        " --n-images {params.n_images} --seed {params.seed} --batch-size {params.batch_size}"
        " --state {params.state} --threads {threads} {params.device} --out {output} 2> {log}"
