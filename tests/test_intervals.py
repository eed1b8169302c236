"""The bootstrap job and the summary on constructed probability files: the draws of every
condition of every replicate, the means equal to the evaluations' own numbers, paired
differences, and a probability file that belongs to another evaluation is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chi2, t

from medrobust.core.errors import DataError
from medrobust.core.io import write_npz
from medrobust.core.metrics import classification_metrics
from medrobust.core.numerics import derive_seed
from medrobust.report.bootstrap import metric_draws, stratified_weights
from medrobust.report.intervals import WEIGHTS, combine, difference, estimate, stage_draws, value_scale
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
    rows = stage_rows("d", "base", C, [e for _, e in made["base"]], draws["base"], level=0.95)
    clean = next(r for r in rows if (r.condition, r.metric) == ("clean", "balanced_accuracy"))
    exact = [e["clean"]["metrics"]["balanced_accuracy"] for _, e in made["base"]]
    assert clean.value == pytest.approx(np.mean(exact)) and clean.n_replicates == 2 and clean.n == N
    assert clean.ci_low < clean.value < clean.ci_high and clean.sd == pytest.approx(np.std(exact, ddof=1))
    d = difference(draws["base"], draws["robust_eps4"], "clean/balanced_accuracy", "clean/balanced_accuracy", 0.95)
    a = estimate(draws["base"], "clean/balanced_accuracy", 0.95)
    assert d.mean == pytest.approx(a.mean - estimate(draws["robust_eps4"], "clean/balanced_accuracy", 0.95).mean)
    assert d.mean > 0 and a.k == 2 and 1 <= d.df < 10 and d.quantile > 2.2  # two seeds: few degrees of freedom
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
        stage_rows("d", "base", C, [evaluations], draws, level=0.95)
    with pytest.raises(DataError, match="different evaluations"):
        stage_draws([files, {"clean": files["clean"]}], 200, seed=0)


def _correlated(rng: np.random.Generator, labels: np.ndarray, hard: np.ndarray, skill: float) -> np.ndarray:
    """A model that errs on the shared hard images and on a few of its own."""
    wrong = hard | (rng.random(len(labels)) < 0.05)
    logits = rng.normal(0, 0.1, (len(labels), C))
    logits[np.arange(len(labels)), np.where(wrong, (labels + 1) % C, labels)] += skill
    return logits


def test_paired_difference_of_correlated_models_is_far_tighter_than_independent() -> None:
    """Two models that err on the same hard images: under shared weights their difference
    varies little; under independent weights (as if evaluated on other images) it varies as
    much as both together."""
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(C), 200)
    hard = rng.random(len(labels)) < 0.3
    a, b = (_correlated(rng, labels, hard, 5.0) for _ in range(2))
    w1, w2 = stratified_weights(labels, 800, seed=1), stratified_weights(labels, 800, seed=2)
    da, db = (metric_draws(labels, p, w1)["balanced_accuracy"] for p in (a, b))
    paired = combine(np.array([da.mean() - db.mean()]), (da - db)[None], 0.95)
    independent = combine(np.array([0.0]), (da - metric_draws(labels, b, w2)["balanced_accuracy"])[None], 0.95)
    assert paired.half_width < 0.5 * independent.half_width
    assert independent.half_width > 0.04  # about sqrt(2) x one model's image spread


def test_a_model_minus_itself_is_exactly_zero(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(C), N // C)
    files = [_replicate(tmp_path / str(r), rng, labels, 2.0)[0] for r in range(3)]
    draws = stage_draws(files, 200, seed=0)
    for key in ("clean/balanced_accuracy", "corrupted/auc", "autoattack/balanced_accuracy"):
        d = difference(draws, draws, key, key, 0.95)
        assert d.mean == 0 and d.se == 0 and d.low == d.high == 0 and d.k == 3


def test_replicate_r_is_paired_with_replicate_r() -> None:
    """B is A minus 0.1 replicate by replicate (draws too): paired, the difference is exactly
    0.1 with no spread; paired with the replicates shuffled, it would spread over A's seeds."""
    rng = np.random.default_rng(6)
    points = np.array([0.5, 0.7, 0.9])
    draws_a = points[:, None] + rng.normal(0, 0.01, (3, 300))
    a = {"clean/m": draws_a, "clean/m/point": points}
    b = {"clean/m": draws_a - 0.1, "clean/m/point": points - 0.1}
    d = difference(a, b, "clean/m", "clean/m", 0.95)
    assert d.mean == pytest.approx(0.1) and d.sd == pytest.approx(0.0, abs=1e-12)
    assert d.high - d.low < 1e-9
    shuffled = {"clean/m": b["clean/m"][[1, 2, 0]], "clean/m/point": b["clean/m/point"][[1, 2, 0]]}
    assert difference(a, shuffled, "clean/m", "clean/m", 0.95).sd > 0.1


def test_corrupted_mean_resamples_images_jointly(tmp_path: Path) -> None:
    """The corrupted draws are, draw by draw, the mean over severities then corruptions of each
    corrupted set's metric under the same weights (one resample of the images for all of them)."""
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(C), N // C)
    files, _ = _replicate(tmp_path / "r", rng, labels, 2.0)
    draws = stage_draws([files], 150, seed=3)
    stack = np.load(files["corrupted"])["probs"]
    weights = stratified_weights(labels, 150, derive_seed(3, WEIGHTS))
    for m in ("balanced_accuracy", "auc"):
        want = np.mean([np.mean([metric_draws(labels, p, weights)[m] for p in sev], axis=0) for sev in stack], axis=0)
        np.testing.assert_allclose(draws[f"corrupted/{m}"][0], want, rtol=0, atol=1e-12)


def test_interval_adds_seed_and_image_variance() -> None:
    """se^2 = s^2/k + var of the replicate-averaged draws; Satterthwaite's degrees of freedom with
    s^2 at its 75% upper bound; with one replicate, the images alone and the normal quantile."""
    rng = np.random.default_rng(8)
    points = np.array([0.60, 0.64, 0.70])
    draws = points[:, None] + rng.normal(0, 0.02, (1, 500))  # the images, shared by the replicates
    e = combine(points, draws, 0.95)
    v = np.var(draws.mean(0), ddof=1)
    assert e.se == pytest.approx(np.sqrt(np.var(points, ddof=1) / 3 + v))
    u = np.var(points, ddof=1) * 2 / chi2.ppf(0.25, 2) / 3
    assert e.df == pytest.approx((u + v) ** 2 / (u ** 2 / 2)) and 2 < e.df < 3
    assert e.high - e.mean == pytest.approx(t.ppf(0.975, e.df) * e.se, rel=1e-9)
    one = combine(points[:1], draws[:1], 0.95)
    assert one.se == pytest.approx(np.sqrt(np.var(draws[0], ddof=1))) and one.high - one.mean == pytest.approx(
        1.959964 * one.se, rel=1e-6)
    # the Monte-Carlo error of the ends: a variance from 500 normal draws has sd v sqrt(2/500)
    assert e.mc_error == pytest.approx(t.ppf(0.975, e.df) * v * np.sqrt(2 / 500) / (2 * e.se), rel=0.25)


def test_a_value_interval_is_made_on_the_logit_scale_and_stays_in_0_1() -> None:
    rng = np.random.default_rng(0)
    points = np.array([0.97, 0.90, 0.99])
    draws = np.clip(points[:, None] + rng.normal(0, 0.01, (3, 500)), 0, 1)
    e = combine(points, draws, 0.95, value_scale(156))
    plain = combine(points, draws, 0.95)
    assert e.mean == pytest.approx(points.mean()) and e.sd == pytest.approx(points.std(ddof=1))
    assert 0 < e.low < e.mean < e.high < 1 and plain.high > 1  # the plain interval leaves [0, 1]
    assert e.high - e.mean < e.mean - e.low  # skewed away from 1
    # a p-value at most alpha exactly when the interval's end passes the threshold
    for x in (e.low - 1e-6, e.low + 1e-6, e.high - 1e-6, e.high + 1e-6):
        assert (e.p_at_least(x) <= 0.025) == (e.low >= x)
        assert (e.p_at_most(x) <= 0.025) == (e.high <= x)
    # every replicate and every draw at 0 (a broken model): exactly [0, 0]
    zero = combine(np.zeros(3), np.zeros((3, 100)), 0.95, value_scale(156))
    assert (zero.mean, zero.low, zero.high) == (0.0, 0.0, 0.0)
