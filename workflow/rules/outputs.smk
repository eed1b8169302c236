# The study's outputs: the summary table, its sanity checks, Figs. 1-4 and the tables, each in
# the HTML report (snakemake --report) with a caption under workflow/report/.


rule summarize:
    input:
        summary_inputs,
    output:
        report("results/summary/metrics.csv", caption="../report/summary.rst", category="2. Tables"),
    params:
        code=code("summarize"),
        layout=summary_layout(),
    log:
        "logs/outputs/summarize.log",
    conda:
        ENV
    shell:
        "medrobust summarize --layout {params.layout} --out {output} 2> {log}"


rule checks:
    input:
        check_inputs,
        summary="results/summary/metrics.csv",
    output:
        report("results/summary/checks.csv", caption="../report/checks.rst", category="3. Checks"),
    params:
        code=code("checks"),
        layout=check_layout(),
    log:
        "logs/outputs/checks.log",
    conda:
        ENV
    shell:
        "medrobust checks --layout {params.layout} --summary {input.summary} --out {output} 2> {log}"


rule figure_saliency:
    input:
        standard=saliency_model("base"),
        robust=saliency_model(f"robust_eps{config['evaluation']['main_eps']}"),
        data=prepared(saliency_dataset(config)),
    output:
        png=report("results/figures/fig1_saliency.png", caption="../report/fig1.rst", category="1. Figures"),
        pdf="results/figures/fig1_saliency.pdf",
        json="results/figures/fig1_saliency.json",
    params:
        device=DEVICE,
        code=code("saliency"),
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
        "medrobust saliency --standard {input.standard} --robust {input.robust} --data {input.data}"
        " --eps {params.eps} --steps {params.steps} {params.index} --seed {params.seed} --threads {threads} {params.device}"
        " --out-png {output.png} --out-pdf {output.pdf} --out-json {output.json} 2> {log}"


rule figure_bars:
    input:
        summary="results/summary/metrics.csv",
    output:
        png=report("results/figures/fig{n}_{metric}.png", caption="../report/fig_bars.rst", category="1. Figures"),
        pdf="results/figures/fig{n}_{metric}.pdf",
    wildcard_constraints:
        n="2|3",
        metric="balanced_accuracy|auc",
    params:
        code=code("figure"),
        eps=config["evaluation"]["main_eps"],
    log:
        "logs/outputs/figure{n}_{metric}.log",
    conda:
        ENV
    shell:
        "medrobust figure --kind bars --summary {input.summary} --metric {wildcards.metric} --eps {params.eps}"
        " --out-png {output.png} --out-pdf {output.pdf} 2> {log}"


rule figure_eps:
    input:
        summary="results/summary/metrics.csv",
    output:
        png=report("results/figures/fig4_eps.png", caption="../report/fig4.rst", category="1. Figures"),
        pdf="results/figures/fig4_eps.pdf",
    params:
        code=code("figure"),
        eps=eps_compared(),
    log:
        "logs/outputs/figure4_eps.log",
    conda:
        ENV
    shell:
        "medrobust figure --kind eps --summary {input.summary} --eps {params.eps}"
        " --out-png {output.png} --out-pdf {output.pdf} 2> {log}"


rule table_results:
    input:
        summary="results/summary/metrics.csv",
        paper=str(PACKAGE / "paper_values.yaml"),
    output:
        csv=report("results/tables/{table}.csv", caption="../report/tables.rst", category="2. Tables"),
        md="results/tables/{table}.md",
        tex="results/tables/{table}.tex",
    wildcard_constraints:
        table="table1_robustness|table_paper_comparison",
    params:
        code=code("table"),
        kind=lambda wildcards: "robustness" if wildcards.table == "table1_robustness" else "paper",
    log:
        "logs/outputs/{table}.log",
    conda:
        ENV
    shell:
        "medrobust table --kind {params.kind} --summary {input.summary}"
        " --out-csv {output.csv} --out-md {output.md} --out-tex {output.tex} 2> {log}"


rule table_hyperparameters:
    input:
        [s["path"] for s in selections()],
    output:
        csv=report(
            "results/tables/table2_hyperparameters.csv",
            caption="../report/table2_hyperparameters.rst",
            category="2. Tables",
        ),
        md="results/tables/table2_hyperparameters.md",
        tex="results/tables/table2_hyperparameters.tex",
    params:
        code=code("table"),
        selections=selection_layout(),
    log:
        "logs/outputs/table2_hyperparameters.log",
    conda:
        ENV
    shell:
        "medrobust table --kind hyperparameters --selections {params.selections}"
        " --out-csv {output.csv} --out-md {output.md} --out-tex {output.tex} 2> {log}"


rule provenance:
    input:
        summary_inputs,
        [s["path"] for s in selections()],
    output:
        csv=report("results/report/provenance.csv", caption="../report/provenance.rst", category="5. Provenance"),
        config=report("results/report/config.yaml", caption="../report/config.rst", category="5. Provenance"),
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
