# Named variants (docs/variants.md): the main rules again, for the steps a variant moves
# (medrobust.core.paths: a step lives under results/variants/<name>/ only where its settings,
# or anything upstream of it, differ from the main run's; every other input is the main run's
# file). A variant trains no grid: its replicates 1..k-1 train the main run's selected point
# again with its changes (paths.overlay), or the point its own selection picks from the main
# run's grid; replicate 0, the main run's grid winner, has no twin. The variant's config gives
# every setting; the evaluation settings are the main run's (a variant cannot change them).


use rule train as train_variant with:
    output:
        model=f"{paths.in_variant(TRAINED)}/model.pt",
        metrics=f"{paths.in_variant(TRAINED)}/metrics.json",
        history=f"{paths.in_variant(TRAINED)}/history.csv",
    wildcard_constraints:
        run=r"rep[1-9]\d*",
    params:
        state=f"{paths.in_variant(TRAINED)}/state",
    log:
        "logs/variants/{variant}/{dataset}/{run}/{stage}/train.log",
    benchmark:
        "benchmarks/variants/{variant}/{dataset}/{run}/{stage}/train.tsv"


use rule select as select_variant with:
    output:
        choice=paths.in_variant(SELECTION),
        model=f"{paths.in_variant(SELECTED)}/model.pt",
    log:
        "logs/variants/{variant}/{dataset}/grid/{stage}/select.log",


use rule construct_nonrobust as construct_nonrobust_variant with:
    output:
        npz=f"{paths.in_variant(NONROBUST)}.npz",
        stats=f"{paths.in_variant(NONROBUST)}.json",
    params:
        state=f"{paths.in_variant(NONROBUST)}_state",
    log:
        "logs/variants/{variant}/{dataset}/rep{rep}/data/nonrobust_eps{eps}.log",
    benchmark:
        "benchmarks/variants/{variant}/{dataset}/rep{rep}/data/nonrobust_eps{eps}.tsv"


use rule evaluate_clean as evaluate_clean_variant with:
    output:
        json=paths.in_variant(evaluation_out("clean")),
        probs=paths.in_variant(probabilities_out("clean")),
    log:
        "logs/variants/{variant}/{dataset}/rep{rep}/{stage}/evaluate_clean.log",


use rule evaluate_clean_last as evaluate_clean_last_variant with:
    output:
        json=paths.in_variant(evaluation_out("clean_last")),
        probs=paths.in_variant(probabilities_out("clean_last")),
    log:
        "logs/variants/{variant}/{dataset}/rep{rep}/{stage}/evaluate_clean_last.log",


use rule evaluate_corrupted as evaluate_corrupted_variant with:
    output:
        json=paths.in_variant(evaluation_out("corrupted")),
        probs=paths.in_variant(probabilities_out("corrupted")),
    log:
        "logs/variants/{variant}/{dataset}/rep{rep}/{stage}/evaluate_corrupted.log",
    benchmark:
        "benchmarks/variants/{variant}/{dataset}/rep{rep}/{stage}/evaluate_corrupted.tsv"


use rule evaluate_clean_published as evaluate_clean_published_variant with:
    output:
        json=paths.in_variant(evaluation_out("clean_published")),
        probs=paths.in_variant(probabilities_out("clean_published")),
    log:
        "logs/variants/{variant}/{dataset}/rep{rep}/{stage}/evaluate_clean_published.log",


use rule evaluate_corrupted_published as evaluate_corrupted_published_variant with:
    output:
        json=paths.in_variant(evaluation_out("corrupted_published")),
        probs=paths.in_variant(probabilities_out("corrupted_published")),
    log:
        "logs/variants/{variant}/{dataset}/rep{rep}/{stage}/evaluate_corrupted_published.log",
    benchmark:
        "benchmarks/variants/{variant}/{dataset}/rep{rep}/{stage}/evaluate_corrupted_published.tsv"


use rule autoattack as autoattack_variant with:
    output:
        json=paths.in_variant(evaluation_out("autoattack")),
        probs=paths.in_variant(probabilities_out("autoattack")),
    params:
        state=f"{paths.in_variant(RUN)}/eval/autoattack_state",
    log:
        "logs/variants/{variant}/{dataset}/rep{rep}/{stage}/autoattack.log",
    benchmark:
        "benchmarks/variants/{variant}/{dataset}/rep{rep}/{stage}/autoattack.tsv"


use rule bootstrap as bootstrap_variant with:
    input:
        unpack(lambda wildcards: variant_evaluations(variant_of(wildcards), [(wildcards.dataset, wildcards.stage)])),
    output:
        paths.in_variant(BOOTSTRAP),
    log:
        "logs/variants/{variant}/{dataset}/bootstrap/{stage}.log",
    benchmark:
        "benchmarks/variants/{variant}/{dataset}/bootstrap/{stage}.tsv"
