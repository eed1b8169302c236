# The study's outputs: the summary table, its sanity checks, Figs. 1-4 and the tables, each in
# the HTML report (snakemake --report) with a caption under workflow/report/.


# Bootstrap draws of every test metric of one stage, over its replicates (a CPU job of minutes for
# the largest test sets: every corruption and severity is evaluated under each draw).
rule bootstrap:
    input:
        unpack(lambda wildcards: named_evaluations([(wildcards.dataset, wildcards.stage)], probs=True)),
    output:
        BOOTSTRAP,
    params:
        code=code("bootstrap"),
        inputs=named,
        draws=config["evaluation"]["bootstrap"]["draws"],
        seed=config["seed"],
    log:
        "logs/{dataset}/bootstrap/{stage}.log",
    benchmark:
        "benchmarks/{dataset}/bootstrap/{stage}.tsv"
    resources:
        mem_mb=mem_mb,
        runtime=runtime("cpu"),
    retries: retries("cpu")
    conda:
        ENV
    shell:
        "medrobust bootstrap --inputs {params.inputs} --draws {params.draws} --seed {params.seed}"
        " --out {output} 2> {log}"


rule summarize:
    input:
        unpack(summary_inputs),
    output:
        report("results/summary/metrics.csv", caption="../report/summary.rst", category="3. Tables"),
    params:
        code=code("summarize"),
        inputs=named,
        n_classes=n_classes_all(),
        level=config["evaluation"]["bootstrap"]["level"],
    log:
        "logs/outputs/summarize.log",
    conda:
        ENV
    shell:
        "medrobust summarize --inputs {params.inputs} --n-classes {params.n_classes} --level {params.level}"
        " --out {output} 2> {log}"


rule sensitivity:
    input:
        unpack(sensitivity_inputs),
    output:
        csv=report("results/summary/sensitivity.csv", caption="../report/sensitivity.rst", category="1. Verdicts"),
        verdicts="results/summary/sensitivity_verdicts.csv",
        md="results/summary/sensitivity.md",
    params:
        code=code("sensitivity"),
        inputs=named,
        n_classes=n_classes_all(),
        main_eps=config["evaluation"]["main_eps"],
        eps=" ".join(str(e) for e in config["eps"]),
        level=config["evaluation"]["bootstrap"]["level"],
        judged=verdict_settings(),
    log:
        "logs/outputs/sensitivity.log",
    conda:
        ENV
    shell:
        "medrobust sensitivity --inputs {params.inputs} --n-classes {params.n_classes} --main-eps {params.main_eps}"
        " --eps {params.eps} --level {params.level} {params.judged} --out {output.csv}"
        " --out-verdicts {output.verdicts} --out-md {output.md} 2> {log}"


rule figure_sensitivity:
    input:
        table="results/summary/sensitivity.csv",
    output:
        png=report(
            "results/figures/sensitivity_{variant}.png",
            caption="../report/sensitivity_figure.rst",
            category="1. Verdicts",
        ),
        pdf="results/figures/sensitivity_{variant}.pdf",
    params:
        code=code("figure-sensitivity"),
        main_eps=config["evaluation"]["main_eps"],
    log:
        "logs/outputs/sensitivity_{variant}.log",
    conda:
        ENV
    shell:
        "medrobust figure-sensitivity --table {input.table} --variant {wildcards.variant} --main-eps {params.main_eps}"
        " --out-png {output.png} --out-pdf {output.pdf} 2> {log}"


rule checks:
    input:
        [f for d, s in every_stage() for f in grid_paths(d, s, "metrics.json")],
        unpack(check_inputs),
        summary="results/summary/metrics.csv",
    output:
        report("results/summary/checks.csv", caption="../report/checks.rst", category="4. Checks"),
    params:
        code=code("checks"),
        inputs=named,
        n_classes=n_classes_all(),
    log:
        "logs/outputs/checks.log",
    conda:
        ENV
    shell:
        "medrobust checks --inputs {params.inputs} --n-classes {params.n_classes} --summary {input.summary} --out {output} 2> {log}"


rule figure_saliency:
    input:
        standard=saliency_model("base"),
        robust=saliency_model(f"robust_eps{config['evaluation']['main_eps']}"),
        data=paths.prepared(saliency_dataset(config)),
    output:
        png=report("results/figures/fig1_saliency.png", caption="../report/fig1.rst", category="2. Figures"),
        pdf="results/figures/fig1_saliency.pdf",
        json="results/figures/fig1_saliency.json",
    params:
        device=DEVICE,
        code=code("saliency"),
        weights=f"--standard-weights {hparams.kept_epoch(config, 'base')} --robust-weights {hparams.kept_epoch(config, 'robust_eps4')}",
        eps=config["evaluation"]["main_eps"],
        steps=config["evaluation"]["saliency"]["steps"],
        index=(
            ""
            if config["evaluation"]["saliency"]["index"] is None
            else f"--index {config['evaluation']['saliency']['index']}"
        ),
        seed=config["seed"],
    log:
        "logs/outputs/figure_saliency.log",
    threads: config["threads"]["evaluate"]
    resources:
        gpu=GPUS,
        mem_mb=saliency_mem_mb,
        runtime=runtime("saliency"),
    retries: retries("saliency")
    conda:
        ENV
    shell:
        "medrobust saliency --standard {input.standard} --robust {input.robust} {params.weights} --data {input.data}"
        " --eps {params.eps} --steps {params.steps} {params.index} --seed {params.seed} --threads {threads} {params.device}"
        " --out-png {output.png} --out-pdf {output.pdf} --out-json {output.json} 2> {log}"


rule figure_bars:
    input:
        summary="results/summary/metrics.csv",
    output:
        png=report("results/figures/fig{n}_{metric}.png", caption="../report/fig_bars.rst", category="2. Figures"),
        pdf="results/figures/fig{n}_{metric}.pdf",
    wildcard_constraints:
        n="2|3",
        metric="balanced_accuracy|auc",
    params:
        code=code("figure"),
        eps=config["evaluation"]["main_eps"],
        protocol="applied",
    log:
        "logs/outputs/figure{n}_{metric}.log",
    conda:
        ENV
    shell:
        "medrobust figure --kind bars --summary {input.summary} --metric {wildcards.metric} --eps {params.eps}"
        " --protocol {params.protocol} --out-png {output.png} --out-pdf {output.pdf} 2> {log}"


# Figs. 2-3 again on MedMNIST-C as published (the datasets with a 224 px test split)
use rule figure_bars as figure_bars_published with:
    output:
        png=report(
            "results/figures/fig{n}_{metric}_published.png", caption="../report/fig_bars.rst", category="2. Figures"
        ),
        pdf="results/figures/fig{n}_{metric}_published.pdf",
    params:
        protocol="published",
    log:
        "logs/outputs/figure{n}_{metric}_published.log",


rule figure_eps:
    input:
        summary="results/summary/metrics.csv",
    output:
        png=report("results/figures/fig4_eps.png", caption="../report/fig4.rst", category="2. Figures"),
        pdf="results/figures/fig4_eps.pdf",
    params:
        code=code("figure"),
        eps=eps_compared(),
    log:
        "logs/outputs/figure4_eps.log",
    conda:
        ENV
    shell:
        "medrobust figure --kind eps --summary {input.summary} --metric balanced_accuracy --eps {params.eps}"
        " --out-png {output.png} --out-pdf {output.pdf} 2> {log}"


rule table_results:
    input:
        summary="results/summary/metrics.csv",
    output:
        csv=report("results/tables/table1_robustness.csv", caption="../report/tables.rst", category="3. Tables"),
        md="results/tables/table1_robustness.md",
        tex="results/tables/table1_robustness.tex",
    params:
        code=code("table"),
    log:
        "logs/outputs/table1_robustness.log",
    conda:
        ENV
    shell:
        "medrobust table --kind robustness --summary {input.summary}"
        " --out-csv {output.csv} --out-md {output.md} --out-tex {output.tex} 2> {log}"


# The paper's claims (src/medrobust/claims.yaml) and stated numbers (paper_values.yaml), judged on
# the bootstrap draws of every stage: the first thing the report shows. The two files are package
# data, in code("verdicts") (medrobust.jobs.codedeps), not inputs: an input would hold the checkout's
# absolute path, and a moved checkout would re-run the job.
rule verdicts:
    input:
        **bootstraps(every_stage()),
    output:
        overview=report(
            "results/summary/verdicts_overview.csv", caption="../report/verdicts.rst", category="1. Verdicts"
        ),
        stated=report(
            "results/tables/table_paper_comparison.csv", caption="../report/stated.rst", category="1. Verdicts"
        ),
        csv=report("results/summary/verdicts.csv", caption="../report/verdicts_all.rst", category="1. Verdicts"),
        md="results/summary/verdicts.md",
        stated_md="results/tables/table_paper_comparison.md",
        stated_tex="results/tables/table_paper_comparison.tex",
        landing="results/summary/landing.rst",
    params:
        code=code("verdicts"),
        inputs=named,
        n_classes=n_classes_all(),
        main_eps=config["evaluation"]["main_eps"],
        eps=" ".join(str(e) for e in config["eps"]),
        level=config["evaluation"]["bootstrap"]["level"],
        judged=verdict_settings(),
    log:
        "logs/outputs/verdicts.log",
    conda:
        ENV
    shell:
        "medrobust verdicts --inputs {params.inputs} --n-classes {params.n_classes} --main-eps {params.main_eps} --eps {params.eps}"
        " --level {params.level} {params.judged} --out-csv {output.csv} --out-md {output.md}"
        " --out-overview {output.overview} --out-stated-csv {output.stated} --out-stated-md {output.stated_md}"
        " --out-stated-tex {output.stated_tex} --out-landing {output.landing} 2> {log}"


rule table_hyperparameters:
    input:
        **selections(every_stage()),
    output:
        csv=report(
            "results/tables/table2_hyperparameters.csv",
            caption="../report/table2_hyperparameters.rst",
            category="3. Tables",
        ),
        md="results/tables/table2_hyperparameters.md",
        tex="results/tables/table2_hyperparameters.tex",
    params:
        code=code("table"),
        inputs=named,
    log:
        "logs/outputs/table2_hyperparameters.log",
    conda:
        ENV
    shell:
        "medrobust table --kind hyperparameters --inputs {params.inputs}"
        " --out-csv {output.csv} --out-md {output.md} --out-tex {output.tex} 2> {log}"


rule provenance:
    input:
        unpack(summary_inputs),
        **selections(every_stage()),
    output:
        csv=report("results/report/provenance.csv", caption="../report/provenance.rst", category="6. Provenance"),
        config=report("results/report/config.yaml", caption="../report/config.rst", category="6. Provenance"),
    params:
        code=code("provenance"),
        files=lambda wildcards, input: [f for f in input if f.endswith(".json")],
        config=shlex.quote(json.dumps(config, sort_keys=True)),
    log:
        "logs/outputs/provenance.log",
    conda:
        ENV
    shell:
        "medrobust provenance --files {params.files} --config {params.config}"
        " --out-csv {output.csv} --out-config {output.config} 2> {log}"
