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
        json="results/{dataset}/{stage}/eval/clean_test.json",
        probs="results/{dataset}/{stage}/eval/clean_test_probs.npz",
    params:
        device=DEVICE,
        code=code("evaluate"),
        weights="kept",
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
        "medrobust evaluate --model {input.model} --data {input.data} --split test --weights {params.weights}"
        " --threads {threads} {params.device} --out {output.json} --out-probs {output.probs} 2> {log}"


# A nonrobust-only model keeps its best validation epoch (nonrobust.keep_epoch); its last epoch,
# saved in the same checkpoint, is evaluated beside it.
use rule evaluate_clean as evaluate_clean_last with:
    input:
        model="results/{dataset}/nonrobust_eps{eps}/selected/model.pt",
        data=prepared_npz,
    output:
        json="results/{dataset}/nonrobust_eps{eps}/eval/clean_test_last.json",
        probs="results/{dataset}/nonrobust_eps{eps}/eval/clean_test_last_probs.npz",
    params:
        weights="last",
    log:
        "logs/{dataset}/nonrobust_eps{eps}/evaluate_clean_last.log",


rule evaluate_corrupted:
    input:
        model="results/{dataset}/{stage}/selected/model.pt",
        data="results/{dataset}/data/corrupted_test.npz",
    output:
        json="results/{dataset}/{stage}/eval/corrupted_test.json",
        probs="results/{dataset}/{stage}/eval/corrupted_test_probs.npz",
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
        " --threads {threads} {params.device} --out {output.json} --out-probs {output.probs} 2> {log}"


rule autoattack:
    input:
        model="results/{dataset}/{stage}/selected/model.pt",
        data=prepared_npz,
    output:
        json="results/{dataset}/{stage}/eval/autoattack_test.json",
        probs="results/{dataset}/{stage}/eval/autoattack_test_probs.npz",
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
        " --state {params.state} --threads {threads} {params.device} --out {output.json}"
        " --out-probs {output.probs} 2> {log}"


# Seed replicates r >= 1 (config replicates): the same evaluations of each replicate's models.
use rule evaluate_clean as evaluate_clean_replicate with:
    input:
        model="results/{dataset}/rep{rep}/{stage}/model.pt",
        data=prepared_npz,
    output:
        json="results/{dataset}/rep{rep}/{stage}/eval/clean_test.json",
        probs="results/{dataset}/rep{rep}/{stage}/eval/clean_test_probs.npz",
    log:
        "logs/{dataset}/rep{rep}/{stage}/evaluate_clean.log",


use rule evaluate_clean_last as evaluate_clean_last_replicate with:
    input:
        model="results/{dataset}/rep{rep}/nonrobust_eps{eps}/model.pt",
        data=prepared_npz,
    output:
        json="results/{dataset}/rep{rep}/nonrobust_eps{eps}/eval/clean_test_last.json",
        probs="results/{dataset}/rep{rep}/nonrobust_eps{eps}/eval/clean_test_last_probs.npz",
    log:
        "logs/{dataset}/rep{rep}/nonrobust_eps{eps}/evaluate_clean_last.log",


use rule evaluate_corrupted as evaluate_corrupted_replicate with:
    input:
        model="results/{dataset}/rep{rep}/{stage}/model.pt",
        data="results/{dataset}/data/corrupted_test.npz",
    output:
        json="results/{dataset}/rep{rep}/{stage}/eval/corrupted_test.json",
        probs="results/{dataset}/rep{rep}/{stage}/eval/corrupted_test_probs.npz",
    log:
        "logs/{dataset}/rep{rep}/{stage}/evaluate_corrupted.log",
    benchmark:
        "benchmarks/{dataset}/rep{rep}/{stage}/evaluate_corrupted.tsv"


use rule autoattack as autoattack_replicate with:
    input:
        model="results/{dataset}/rep{rep}/{stage}/model.pt",
        data=prepared_npz,
    output:
        json="results/{dataset}/rep{rep}/{stage}/eval/autoattack_test.json",
        probs="results/{dataset}/rep{rep}/{stage}/eval/autoattack_test_probs.npz",
    params:
        state="results/{dataset}/rep{rep}/{stage}/eval/autoattack_state.pt",
    log:
        "logs/{dataset}/rep{rep}/{stage}/autoattack.log",
    benchmark:
        "benchmarks/{dataset}/rep{rep}/{stage}/autoattack.tsv"
