# Test-time evaluation of every replicate's model of each stage: clean, MedMNIST-C corruptions
# (Section 3.3) and AutoAttack (Section 3.4). Model selection never reads these files.


rule corrupt_test:
    input:
        raw=raw_npz,
    output:
        npz=f"{DATA}/corrupted_test.npz",
        stats=f"{DATA}/corrupted_test.json",
    params:
        code=code("corrupt"),
        medmnist=medmnist_flag,
        n_classes=n_classes,
        n_channels=n_channels,
        source_size=source_size_of,
        size=config["image_size"],
        registry=lambda wildcards: corruption_registry(config, wildcards.dataset),
        apply_size=config["evaluation"]["corruptions"]["apply_size"],
        seed=config["seed"],
        # resumable state (finished corruptions and blocks): beside the outputs, not one of them
        state=f"{DATA}/corrupted_test_state",
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
        model=model_file(),
        data=prepared_npz,
    output:
        json=evaluation_out("clean"),
        probs=probabilities_out("clean"),
    params:
        device=DEVICE,
        code=code("evaluate"),
        weights=kept_epoch(),
    log:
        "logs/{dataset}/rep{rep}/{stage}/evaluate_clean.log",
    threads: config["threads"]["evaluate"]
    resources:
        gpu=GPUS,
        mem_mb=mem_mb,
        runtime=runtime("clean"),
    retries: retries("clean")
    conda:
        ENV
    shell:
        "medrobust evaluate --model {input.model} --data {input.data} --split test --weights {params.weights}"
        " --threads {threads} {params.device} --out {output.json} --out-probs {output.probs} 2> {log}"


# A nonrobust-only model keeps its best validation epoch (nonrobust.keep_epoch); its last epoch,
# saved in the same checkpoint, is evaluated beside it.
use rule evaluate_clean as evaluate_clean_last with:
    output:
        json=evaluation_out("clean_last"),
        probs=probabilities_out("clean_last"),
    params:
        weights="last",
    wildcard_constraints:
        stage=r"nonrobust_eps\d+",
    log:
        "logs/{dataset}/rep{rep}/{stage}/evaluate_clean_last.log",


rule evaluate_corrupted:
    input:
        model=model_file(),
        data=f"{DATA}/corrupted_test.npz",
    output:
        json=evaluation_out("corrupted"),
        probs=probabilities_out("corrupted"),
    params:
        device=DEVICE,
        code=code("evaluate-corrupted"),
        weights=kept_epoch(),
    log:
        "logs/{dataset}/rep{rep}/{stage}/evaluate_corrupted.log",
    benchmark:
        "benchmarks/{dataset}/rep{rep}/{stage}/evaluate_corrupted.tsv"
    threads: config["threads"]["evaluate"]
    resources:
        gpu=GPUS,
        mem_mb=mem_mb,
        runtime=runtime("corrupted"),
    retries: retries("corrupted")
    conda:
        ENV
    shell:
        "medrobust evaluate-corrupted --model {input.model} --weights {params.weights} --data {input.data}"
        " --threads {threads} {params.device} --out {output.json} --out-probs {output.probs} 2> {log}"


rule autoattack:
    input:
        model=model_file(),
        data=prepared_npz,
    output:
        json=evaluation_out("autoattack"),
        probs=probabilities_out("autoattack"),
    params:
        device=DEVICE,
        code=code("autoattack"),
        weights=kept_epoch(),
        eps=config["evaluation"]["autoattack"]["eps"],
        n_images=config["evaluation"]["autoattack"]["n_images"],
        seed=config["seed"],
        # pyautoattack reseeds every batch, so the batch layout changes results: a param
        batch_size=config["evaluation"]["autoattack"]["batch_size"],
        # resumable state (batch by batch, inside each attack): beside the output, not one of them
        state=f"{RUN}/eval/autoattack_state",
    log:
        "logs/{dataset}/rep{rep}/{stage}/autoattack.log",
    benchmark:
        "benchmarks/{dataset}/rep{rep}/{stage}/autoattack.tsv"
    threads: config["threads"]["evaluate"]
    resources:
        gpu=GPUS,
        mem_mb=mem_mb,
        runtime=runtime("autoattack"),
    retries: retries("autoattack")
    conda:
        ENV
    shell:
        "medrobust autoattack --model {input.model} --weights {params.weights} --data {input.data} --split test"
        " --eps {params.eps}"
        " --n-images {params.n_images} --seed {params.seed} --batch-size {params.batch_size}"
        " --state {params.state} --threads {threads} {params.device} --out {output.json}"
        " --out-probs {output.probs} 2> {log}"


# ---- MedMNIST-C as published (evaluation.corruptions.published; docs/method.md): the same
# corruptions applied by medmnistc at 224 px to the release's test split, then shrunk like every
# image; and the clean 224 px test images shrunk the same way, that protocol's own baseline.
use rule corrupt_test as corrupt_published with:
    input:
        raw=paths.PUBLISHED["test"],
    output:
        npz=paths.PUBLISHED["corrupted"],
        stats=paths.PUBLISHED["corrupted"].replace(".npz", ".json"),
    params:
        medmnist="",
        source_size=PUBLISHED_SIZE,
        apply_size=PUBLISHED_SIZE,
        state=f"{DATA}/corrupted_published_state",
    wildcard_constraints:
        dataset=one_of(PUBLISHED_DATASETS),
    log:
        "logs/{dataset}/data/corrupt_published.log",
    benchmark:
        "benchmarks/{dataset}/data/corrupt_published.tsv"
    resources:
        mem_mb=published_mem_mb,
        runtime=runtime("cpu"),


use rule evaluate_clean as evaluate_clean_published with:
    input:
        model=model_file(),
        data=paths.PUBLISHED["clean"],
    output:
        json=evaluation_out("clean_published"),
        probs=probabilities_out("clean_published"),
    wildcard_constraints:
        dataset=one_of(PUBLISHED_DATASETS),
    log:
        "logs/{dataset}/rep{rep}/{stage}/evaluate_clean_published.log",


use rule evaluate_corrupted as evaluate_corrupted_published with:
    input:
        model=model_file(),
        data=paths.PUBLISHED["corrupted"],
    output:
        json=evaluation_out("corrupted_published"),
        probs=probabilities_out("corrupted_published"),
    wildcard_constraints:
        dataset=one_of(PUBLISHED_DATASETS),
    log:
        "logs/{dataset}/rep{rep}/{stage}/evaluate_corrupted_published.log",
    benchmark:
        "benchmarks/{dataset}/rep{rep}/{stage}/evaluate_corrupted_published.tsv"
