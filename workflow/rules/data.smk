# Data stage: get each dataset's MedMNIST-format file, then resize it once to image_size; for
# MedMNIST-C as published, the 224 px release's test split, extracted once.


rule synthesize:
    output:
        paths.source_pattern(config, "synthetic"),
    params:
        code=code("synthesize"),
        spec=dataset_setting("synthetic"),
        size=config["source_size"],
    wildcard_constraints:
        dataset=one_of(with_source("synthetic")),
    log:
        "logs/{dataset}/data/synthesize.log",
    resources:
        runtime=runtime("cpu"),
    retries: retries("cpu")
    conda:
        ENV
    shell:
        "medrobust synthesize --spec {params.spec} --size {params.size} --out {output} 2> {log}"


rule download_medmnist:
    output:
        paths.source_pattern(config, "medmnist"),
    params:
        size=config["source_size"],
        mirror=f"--mirror {shlex.quote(config['mirror'])}" if config["mirror"] else "",
    wildcard_constraints:
        dataset=one_of(with_source("medmnist")),
    log:
        "logs/{dataset}/data/download.log",
    retries: 2
    conda:
        ENV
    shell:
        "medrobust download --medmnist {wildcards.dataset} --size {params.size} {params.mirror}"
        " --out {output} 2> {log}"


rule download_npz:
    output:
        paths.source_pattern(config, "npz"),
    params:
        url=dataset_setting("url"),
        md5=dataset_setting("md5", quote=False),
    wildcard_constraints:
        dataset=one_of(n for n in with_source("npz") if "url" in DATASETS[n]),
    log:
        "logs/{dataset}/data/download.log",
    retries: 2
    conda:
        ENV
    shell:
        "medrobust download --url {params.url} --md5 {params.md5} --out {output} 2> {log}"


rule prepare:
    input:
        raw=raw_npz,
    output:
        npz=f"{DATA}/prepared.npz",
        stats=f"{DATA}/prepared.json",
    params:
        code=code("prepare"),
        medmnist=medmnist_flag,
        n_classes=n_classes,
        n_channels=n_channels,
        source_size=source_size_of,
        size=config["image_size"],
    log:
        "logs/{dataset}/data/prepare.log",
    resources:
        mem_mb=mem_mb,
        runtime=runtime("cpu"),
    retries: retries("cpu")
    conda:
        ENV
    shell:
        "medrobust prepare --source {input.raw} {params.medmnist} --n-classes {params.n_classes}"
        " --n-channels {params.n_channels} --source-size {params.source_size} --size {params.size}"
        " --out {output.npz} --stats {output.stats} 2> {log}"


# MedMNIST-C as published (evaluation.corruptions.published): the 224 px release, md5-checked
# like every download. Only its test split is kept (PathMNIST's file is about 16 GB, its test
# split about 1 GB), so the file is temporary: deleted once published_test has read it.
# (With source_size 224 the main download is that file, and this rule matches no dataset.)
use rule download_medmnist as download_medmnist_224 with:
    output:
        temp(paths.source_pattern(config, "medmnist", PUBLISHED_SIZE)),
    params:
        size=PUBLISHED_SIZE,
        mirror=f"--mirror {shlex.quote(config['mirror'])}" if config["mirror"] else "",
    wildcard_constraints:
        dataset=one_of(
            n for n in with_source("medmnist") if n in PUBLISHED_DATASETS and config["source_size"] != PUBLISHED_SIZE
        ),
    log:
        "logs/{dataset}/data/download_224.log",


rule published_test:
    input:
        raw=published_source_of,
        prepared=prepared_npz,
    output:
        test=paths.PUBLISHED["test"],
        clean=paths.PUBLISHED["clean"],
        stats=paths.PUBLISHED["test"].replace(".npz", ".json"),
    params:
        code=code("published-test"),
        medmnist=medmnist_flag,
        n_classes=n_classes,
        n_channels=n_channels,
        size=config["image_size"],
    wildcard_constraints:
        dataset=one_of(PUBLISHED_DATASETS),
    log:
        "logs/{dataset}/data/published_test.log",
    resources:
        mem_mb=published_mem_mb,
        runtime=runtime("cpu"),
    retries: retries("cpu")
    conda:
        ENV
    shell:
        "medrobust published-test --source {input.raw} {params.medmnist} --n-classes {params.n_classes}"
        " --n-channels {params.n_channels} --prepared {input.prepared} --size {params.size}"
        " --out {output.test} --clean {output.clean} --stats {output.stats} 2> {log}"
