"""The bootstrap job and the summary on constructed probability files: the draws of every
condition of every replicate, the means equal to the evaluations' own numbers, paired
differences, and a probability file that belongs to another evaluation is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medrobust.errors import DataError
from medrobust.evaluate.metrics import classification_metrics
from medrobust.io import write_npz
from medrobust.report.intervals import difference, estimate, stage_draws
from medrobust.report.summary import stage_rows

N, C = 120, 3


def _probs(rng: np.random.Generator, labels: np.ndarray, skill: float) -> np.ndarray:
    logits = rng.normal(0, 1, (len(labels), C))
    logits[np.arange(len(labels)), labels] += skill
    e = np.exp(logits)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def _replicate(root: Path, rng: np.random.Generator, labels: np.ndarray, skill: float) -> tuple[dict, dict]:
    """Probability files of one model (clean, corrupted, autoattack) and its evaluation JSONs."""
    root.mkdir(parents=True)
    clean = _probs(rng, labels, skill)
    corrupted = np.stack([np.stack([_probs(rng, labels, skill / s) for s in (1, 2, 4)]) for _ in range(2)])
    idx = np.arange(0, N, 3)
    adv = _probs(rng, labels[idx], -2.0)
    write_npz(root / "clean.npz", {"labels": labels, "probs": clean})
    write_npz(root / "corrupted.npz", {"labels": labels, "probs": corrupted, "corruptions": np.array(["a", "b"])})
    write_npz(root / "aa.npz", {"labels": labels[idx], "index": idx, "clean_probs": clean[idx], "probs": adv})
    per = [[classification_metrics(labels, p) for p in stack] for stack in corrupted]
    mean = {k: float(np.mean([np.mean([m[k] for m in sev]) for sev in per])) for k in ("balanced_accuracy", "auc")}
    evaluations = {"clean": {"metrics": {**classification_metrics(labels, clean), "n": N}},
                   "corrupted": {"mean": mean, "n": N},
                   "autoattack": {"metrics": {**classification_metrics(labels[idx], adv), "n": len(idx)},
                                  "clean_metrics": classification_metrics(labels[idx], clean[idx])}}
    files = {"clean": str(root / "clean.npz"), "corrupted": str(root / "corrupted.npz"),
             "autoattack": str(root / "aa.npz")}
    return files, evaluations


def test_draws_means_and_paired_differences(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(C), N // C)
    made = {stage: [_replicate(tmp_path / stage / str(r), rng, labels, skill) for r in range(2)]
            for stage, skill in (("base", 3.0), ("robust_eps4", 1.5))}
    draws = {stage: stage_draws([f for f, _ in reps], 300, seed=1) for stage, reps in made.items()}
    assert draws["base"]["clean/auc"].shape == (2, 300)
    assert set(draws["base"]) >= {"corrupted/balanced_accuracy", "autoattack/auc", "autoattack_clean/auc"}
    rows = stage_rows("d", "base", C, [e for _, e in made["base"]], draws["base"], seed=1, level=0.95)
    clean = next(r for r in rows if (r.condition, r.metric) == ("clean", "balanced_accuracy"))
    exact = [e["clean"]["metrics"]["balanced_accuracy"] for _, e in made["base"]]
    assert clean.value == pytest.approx(np.mean(exact)) and clean.n_replicates == 2 and clean.n == N
    assert clean.ci_low < clean.value < clean.ci_high and clean.sd == pytest.approx(np.std(exact, ddof=1))
    # the same image draws for both stages: the paired difference is tighter than either interval's width suggests
    d = difference(draws["base"], draws["robust_eps4"], "clean/balanced_accuracy", "clean/balanced_accuracy", 1, 0.95)
    a, b = (estimate(draws[s], "clean/balanced_accuracy", 1, 0.95) for s in ("base", "robust_eps4"))
    assert d.mean == pytest.approx(a.mean - b.mean) and d.low > 0
    assert d.high - d.low < (a.high - a.low) + (b.high - b.low)
    # the bootstrap is seeded: the same seed, the same draws
    again = stage_draws([f for f, _ in made["base"]], 300, seed=1)
    assert np.array_equal(again["clean/auc"], draws["base"]["clean/auc"])


def test_probabilities_of_another_evaluation_are_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(C), N // C)
    files, evaluations = _replicate(tmp_path / "a", rng, labels, 2.0)
    draws = stage_draws([files], 200, seed=0)
    evaluations["clean"]["metrics"]["balanced_accuracy"] += 0.01  # an evaluation its probabilities did not give
    with pytest.raises(DataError, match="replicate 0 clean/balanced_accuracy: the evaluation says"):
        stage_rows("d", "base", C, [evaluations], draws, seed=0, level=0.95)
    with pytest.raises(DataError, match="different evaluations"):
        stage_draws([files, {"clean": files["clean"]}], 200, seed=0)
