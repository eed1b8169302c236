"""A variant's dry run plans exactly the jobs whose settings, or upstream settings, differ from
the main run's (docs/variants.md), on the full study (config.yaml) with the real snakemake.

Expected by hand from each reading, per dataset (5) and paired replicate (1 and 2): a variant
that changes every model re-trains all 5 stages, re-builds the 2 nonrobust sets and re-runs every
evaluation (clean 5, corrupted 5, the last epoch of 2, AutoAttack on base, nonrobust_eps4 and
robust_eps4; and on MedMNIST-C as published, clean 5 and corrupted 5); `targets_other` the nonrobust sets and their models; `last_epoch` evaluations of
the nonrobust-only models only (their last-epoch evaluation is the main run's); `select_clean`
and `trades_reference` the robust models, `select_clean` with a selection of its own."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import yaml

from medrobust.core.hparams import replicate_seed

from conftest import REPO
from test_deployment import SMALL, job_counts, run

EVERY_MODEL = {"train": 5, "construct_nonrobust": 2, "evaluate_clean": 5, "evaluate_corrupted": 5,
               "evaluate_clean_last": 2, "autoattack": 3, "bootstrap": 5}
NONROBUST = {"train": 2, "construct_nonrobust": 2, "evaluate_clean": 2, "evaluate_corrupted": 2,
             "evaluate_clean_last": 2, "autoattack": 1, "bootstrap": 2}
ROBUST = {"train": 2, "evaluate_clean": 2, "evaluate_corrupted": 2, "autoattack": 1, "bootstrap": 2}
def with_published(per: dict[str, int]) -> dict[str, int]:
    """A moved model is also evaluated on MedMNIST-C as published (clean and corrupted, 224 px)."""
    return {**per, "evaluate_clean_published": per["evaluate_clean"],
            "evaluate_corrupted_published": per["evaluate_corrupted"]}


EVERY_MODEL, NONROBUST, ROBUST = with_published(EVERY_MODEL), with_published(NONROBUST), with_published(ROBUST)
PER_DATASET_AND_PAIR = {
    "augment_on": EVERY_MODEL, "ema_0995": EVERY_MODEL, "weight_decay_2e4": EVERY_MODEL,
    "no_label_smoothing": EVERY_MODEL, "targets_other": NONROBUST,
    "last_epoch": with_published({"evaluate_clean": 2, "evaluate_corrupted": 2, "autoattack": 1, "bootstrap": 2}),
    "select_clean": {**ROBUST, "select": 2}, "trades_reference": ROBUST,
}
PAIRS = 2  # replicates 1 and 2 of 3


def test_each_variant_plans_exactly_what_it_changes(tmp_path: Path) -> None:
    names = list(PER_DATASET_AND_PAIR)
    out = run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n",
               "--config", f"run_variants={names}"], cwd=tmp_path)
    planned = Counter((m[1], m[2]) for m in re.finditer(r"^rule (\w+)_variant:\n(?:    .*\n)*?    wildcards: variant=(\w+)",
                                                       out, re.M))
    for name, per in PER_DATASET_AND_PAIR.items():
        # a selection and the bootstrap draws are per stage and dataset, not per replicate
        expected = {rule: n * 5 * (1 if rule in ("select", "bootstrap") else PAIRS) for rule, n in per.items()}
        assert {rule: n for (rule, v), n in planned.items() if v == name} == expected, name
    counts = job_counts(out)
    assert counts["train"] == 738 and counts["sensitivity"] == 1  # the main run's jobs are unchanged


def test_augment_on_trains_the_main_selection_again_with_augmentation(tmp_path: Path) -> None:
    """A re-training variant run for real on a slice: replicate 1's base model of `augment_on`
    is the main run's selected point with augmentation and replicate 1's seed, nothing else."""
    config = {**SMALL, "seed": 0, "replicates": 2, "compute": {"device": "cpu"}, "model": {"depth": 10, "width": 1},
              "training": {"precision": "fp32"}, "run_variants": ["augment_on"], "variants": {"augment_on": {
        "tests": "augmentation for base models", "anchor": "parser.py --augment",
        "settings": {"grids": {"base": {"tiny": {"augment": [True]}}}}}}}
    config["grids"] = {**SMALL["grids"], "base": {"tiny": {"lr": [0.1, 0.05], "batch_size": [64], "epochs": [1]}}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    target = "results/variants/augment_on/synthetic/rep1/base/eval/clean.json"
    out = run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile",
               str(tmp_path / "cfg.yaml"), "--cores", "2", target], cwd=tmp_path)
    assert "train_variant" in out and "select_variant" not in out
    selected = json.loads((tmp_path / "results/synthetic/grid/base/selected.json").read_text())
    main = selected["candidates"][0]["hparams"]
    variant = json.loads((tmp_path / "results/variants/augment_on/synthetic/rep1/base/metrics.json").read_text())
    assert variant["hparams"] == {**main, "augment": True, "seed": replicate_seed(config, 1)}
    assert not (tmp_path / "results/synthetic/rep1").exists()  # no main replicate was needed
    assert json.loads((tmp_path / target).read_text())["weights"] == "last"  # a base model keeps its last epoch


def test_estimate_counts_the_jobs_each_variant_plans() -> None:
    """`medrobust estimate`'s variant rows count the GPU jobs of the dry run above."""
    from medrobust.core.config import load
    from medrobust.core.estimate import variant_cost

    full = load(REPO / "config.yaml")
    for name, per in PER_DATASET_AND_PAIR.items():
        gpu = sum(n for rule, n in per.items() if rule not in ("select", "bootstrap"))  # CPU jobs
        cost = variant_cost(full, name)
        assert cost["gpu_jobs"] == gpu * 5 * PAIRS, name
        assert (cost["gpu_hours"] > 0) and (cost["disk_gb"] > 0), name
