# What a reviewer looks at per dataset: learning curves of every grid point, the nonrobust-feature
# set itself, and results per corruption; each in the report's section of its dataset.


rule figure_curves:
    input:
        histories=grid_files("history.csv"),
        selection=SELECTION,
    output:
        png=report(
            "results/figures/curves_{dataset}_{stage}.png",
            caption="../report/curves.rst",
            category="5. Dataset: {dataset}",
            subcategory="1. Learning curves",
        ),
        pdf="results/figures/curves_{dataset}_{stage}.pdf",
    log:
        "logs/outputs/curves_{dataset}_{stage}.log",
    conda:
        ENV
    params:
        code=code("curves"),
        n_classes=n_classes,
    shell:
        "medrobust curves --histories {input.histories} --selection {input.selection}"
        " --dataset {wildcards.dataset} --stage {wildcards.stage} --n-classes {params.n_classes}"
        " --out-png {output.png} --out-pdf {output.pdf} 2> {log}"


rule figure_examples:
    input:
        data=prepared_npz,
        nonrobust=lambda wildcards: paths.nonrobust_set(wildcards.dataset, int(wildcards.eps), 0),
    output:
        png=report(
            "results/figures/examples_{dataset}_eps{eps}.png",
            caption="../report/examples.rst",
            category="5. Dataset: {dataset}",
            subcategory="2. Nonrobust-feature set",
        ),
        pdf="results/figures/examples_{dataset}_eps{eps}.pdf",
    log:
        "logs/outputs/examples_{dataset}_eps{eps}.log",
    conda:
        ENV
    params:
        code=code("examples"),
        seed=config["seed"],
    shell:
        "medrobust examples --data {input.data} --nonrobust {input.nonrobust} --dataset {wildcards.dataset}"
        " --eps {wildcards.eps} --seed {params.seed} --out-png {output.png} --out-pdf {output.pdf} 2> {log}"


rule corruption_table:
    input:
        unpack(corruption_inputs),
    output:
        report(
            "results/summary/corruptions.csv",
            caption="../report/corruptions_table.rst",
            category="3. Tables",
        ),
    log:
        "logs/outputs/corruption_table.log",
    conda:
        ENV
    params:
        code=code("corruption-table"),
        inputs=named,
    shell:
        "medrobust corruption-table --inputs {params.inputs} --out {output} 2> {log}"


rule figure_corruptions:
    input:
        table="results/summary/corruptions.csv",
    output:
        png=report(
            "results/figures/corruptions_{dataset}.png",
            caption="../report/corruptions.rst",
            category="5. Dataset: {dataset}",
            subcategory="3. Corruptions",
        ),
        pdf="results/figures/corruptions_{dataset}.pdf",
    log:
        "logs/outputs/corruptions_{dataset}.log",
    conda:
        ENV
    params:
        code=code("figure-corruptions"),
        eps=config["evaluation"]["main_eps"],
        n_classes=n_classes,
        protocol="applied",
    shell:
        "medrobust figure-corruptions --table {input.table} --dataset {wildcards.dataset} --eps {params.eps}"
        " --n-classes {params.n_classes} --protocol {params.protocol} --out-png {output.png} --out-pdf {output.pdf}"
        " 2> {log}"


use rule figure_corruptions as figure_corruptions_published with:
    output:
        png=report(
            "results/figures/corruptions_{dataset}_published.png",
            caption="../report/corruptions.rst",
            category="5. Dataset: {dataset}",
            subcategory="3. Corruptions",
        ),
        pdf="results/figures/corruptions_{dataset}_published.pdf",
    wildcard_constraints:
        dataset=one_of(PUBLISHED_DATASETS),
    log:
        "logs/outputs/corruptions_{dataset}_published.log",
    params:
        protocol="published",


rule dataset_tables:
    input:
        unpack(lambda wildcards: selections([(wildcards.dataset, s) for s in stages(config)])),
        checks="results/summary/checks.csv",
    output:
        selection=report(
            "results/tables/selection_{dataset}.csv",
            caption="../report/selection.rst",
            category="5. Dataset: {dataset}",
            subcategory="4. Selection",
        ),
        checks=report(
            "results/tables/checks_{dataset}.csv",
            caption="../report/checks.rst",
            category="5. Dataset: {dataset}",
            subcategory="5. Checks",
        ),
    log:
        "logs/outputs/dataset_tables_{dataset}.log",
    conda:
        ENV
    params:
        code=code("dataset-tables"),
        inputs=named,
    shell:
        "medrobust dataset-tables --dataset {wildcards.dataset} --inputs {params.inputs}"
        " --checks {input.checks} --out-selection {output.selection} --out-checks {output.checks} 2> {log}"
