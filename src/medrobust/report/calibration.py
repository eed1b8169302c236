"""A whole study simulated on the paper's five test sets and judged by the verdicts' own code
(medrobust.report.verdicts.judge): with the paper's stated numbers as the truth (a perfect
reproduction, which should almost never read "does not hold") or with a defect planted (which
should, where the test set can resolve it). tests/test_calibration.py asserts the rates and
bench/verdict_rules.py --study prints them per claim and dataset.

The truth, balanced accuracy in percent at eps 4: the stated numbers of paper_values.yaml where
the paper gives one; elsewhere an assumed value consistent with every claim (marked "assumed"),
since Figs. 2-3 give bar heights only. Seed spreads: 1 point for base and robust models, 5 for
nonrobust-only ones; under AutoAttack the base and nonrobust-only models keep no image (App.
A.2: BreastMNIST's base model keeps one).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medrobust.core.numerics import derive_seed
from medrobust.report import bootstrap
from medrobust.report.simulate import TEST_SETS, Evaluator, Stage, correctness, labels_of, stage_for
from medrobust.report.tables import load_paper_values
from medrobust.report.verdicts import FAILS, RunResults, Settings, Verdict, judge, load_claims

# Balanced accuracy (%) per model, one entry per CONDITIONS (clean, corrupted, autoattack; robust
# models: all three, base and nonrobust-only: the first two): None where paper_values.yaml states the
# value, an assumed number exactly where it does not (truths() checks this).
ASSUMED: dict[str, dict[str, Any]] = {
    "pathmnist": {"base": (None, None), "robust": (None, None, None), "nonrobust": (None, 20.0)},
    "pneumoniamnist": {"base": (87.0, 70.0), "robust": (None, 75.0, None), "nonrobust": (None, 78.0)},
    "octmnist": {"base": (None, None), "robust": (None, None, None), "nonrobust": (50.0, 30.0)},
    "organsmnist": {"base": (80.0, 50.0), "robust": (None, 60.0, None), "nonrobust": (40.0, 20.0)},
    "breastmnist": {"base": (80.0, 60.0), "robust": (None, 70.0, None), "nonrobust": (65.0, 57.0)},
}
SEED_SPREAD = {"base": 0.01, "robust": 0.01, "nonrobust": 0.05}
SURVIVORS = {"breastmnist": {"base": 1}}  # images kept under AutoAttack (App. A.2's footnote)
CONDITIONS = ("clean", "corrupted", "autoattack")
DEFECTS = {
    "nonrobust at chance": ("C1", "nonrobust eps4 clean"),
    "robust 10 points below base under corruptions": ("C3", "robust eps4 - base corrupted"),
    "base keeps 5% under AutoAttack": ("C5", "base autoattack"),
}


def truths(dataset: str) -> dict[tuple[str, str], float]:
    """(model, condition) -> the true balanced accuracy (a fraction) of `dataset`."""
    stated = load_paper_values()["values"].get(dataset, {})
    out = {}
    for model, values in ASSUMED[dataset].items():
        for condition, value in zip(CONDITIONS, values):
            given = stated.get(model, {}).get(condition, {}).get("value")
            if (value is None) == (given is None):
                raise ValueError(f"{dataset} {model} {condition}: give a value exactly where the paper gives none")
            out[model, condition] = (given if value is None else value) / 100
    return out


def _ratio(target: float, counts: tuple[int, ...], spread: float) -> float:
    """The seed-to-image ratio that gives a replicate's value a seed spread of `spread`."""
    a = min(max(target, 0.02), 0.98)
    se_images = math.sqrt(sum(a * (1 - a) / n for n in counts)) / len(counts)
    return spread / se_images


def _stages(dataset: str, defect: str | None) -> dict[tuple[str, str], Stage]:
    counts = TEST_SETS[dataset]
    t = truths(dataset)
    spread = dict(SEED_SPREAD)
    if defect == "nonrobust at chance":
        t["nonrobust", "clean"], spread["nonrobust"] = 1 / len(counts), 0.005
    if defect == "robust 10 points below base under corruptions":
        t["robust", "corrupted"] = t["base", "corrupted"] - 0.10
    return {(m, c): stage_for(v, counts, _ratio(v, counts, spread[m])) for (m, c), v in t.items()}


def _survivors(rng: np.random.Generator, labels: np.ndarray, k: int, n: int, rate: float) -> np.ndarray:
    """(k, C) images kept per class: `n` in replicate 0 (a stated count), or each image with
    probability `rate`."""
    n_classes = labels.max() + 1
    if n:
        kept = np.zeros((k, n_classes), dtype=int)
        kept[0, labels[rng.choice(len(labels), n, replace=False)]] += 1
        return kept
    return np.stack([np.bincount(labels[rng.random(len(labels)) < rate], minlength=n_classes) for _ in range(k)])


def simulate_run(dataset: str, k: int, rng: np.random.Generator, evaluate: Evaluator, settings: Settings,
                 defect: str | None = None, stages: dict[tuple[str, str], Stage] | None = None) -> RunResults:
    """One simulated run of `dataset`: every stage's bootstrap arrays, as the bootstrap job writes them."""
    labels = labels_of(TEST_SETS[dataset])
    stages = stages or _stages(dataset, defect)
    keys = list(stages)
    d, p = evaluate(correctness(rng, labels, [stages[key] for key in keys], k))
    draws: dict[str, dict[str, np.ndarray]] = {}
    for i, (model, condition) in enumerate(keys):
        arrays = draws.setdefault("base" if model == "base" else f"{model}_eps4", {})
        arrays[f"{condition}/balanced_accuracy"], arrays[f"{condition}/balanced_accuracy/point"] = d[i], p[i]
        arrays[f"{condition}/n"] = np.full(k, len(labels))
    for model in ("base", "nonrobust"):
        st = "base" if model == "base" else "nonrobust_eps4"
        rate = 0.05 if defect == "base keeps 5% under AutoAttack" and model == "base" else 0.0
        kept = _survivors(rng, labels, k, SURVIVORS.get(dataset, {}).get(model, 0), rate)
        draws[st]["autoattack/correct"] = kept
        draws[st]["autoattack/images"] = np.tile(np.bincount(labels), (k, 1))
        draws[st]["autoattack/balanced_accuracy/point"] = (kept / np.bincount(labels)).mean(1)
    return RunResults(dataset, len(TEST_SETS[dataset]), True, draws, 4, (4,), settings)


def fail_shares(dataset: str, k: int, sims: int, seed: int, settings: Settings, defect: str | None = None,
                draws: int = 1000) -> dict[tuple[str, str], float]:
    """(claim, subject) -> the share of `sims` simulated runs in which it reads "does not hold"."""
    labels = labels_of(TEST_SETS[dataset])
    evaluate = Evaluator(labels, bootstrap.stratified_weights(labels, draws, derive_seed(seed, 1)))
    rng = np.random.default_rng(derive_seed(seed, 3))
    claims, paper, stages = load_claims(), load_paper_values(), _stages(dataset, defect)
    fails: dict[tuple[str, str], int] = {}
    for _ in range(sims):
        run = simulate_run(dataset, k, rng, evaluate, settings, defect, stages)
        verdicts: list[Verdict] = judge(run, claims, paper)
        for v in verdicts:
            key = (v.claim, v.subject)
            fails[key] = fails.get(key, 0) + (v.verdict == FAILS)
    return {key: n / sims for key, n in fails.items()}
