# Data stage: get each dataset's MedMNIST-format file, then resize it once to image_size.


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
