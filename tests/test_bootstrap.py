"""The stratified bootstrap: weighted metrics equal the exact metrics (unit weights and explicit
resampling), the weights keep class counts and are seeded, stacks of probability sets give each
member's draws."""

from __future__ import annotations

import numpy as np
import pytest

from medrobust.core import metrics
from medrobust.report.bootstrap import auc_draws, balanced_accuracy_draws, metric_draws, stratified_weights


def _data(n: int, n_classes: int, seed: int, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels covering every class and softmax probabilities that favour the true class."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.arange(n_classes), rng.integers(0, n_classes, n - n_classes)]
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), labels] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, (probs if decimals is None else np.round(probs, decimals))


CASES = {"multiclass": (400, 6, None), "tied": (400, 5, 2), "binary": (300, 2, None), "binary_tied": (300, 2, 1)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_unit_weights_give_the_exact_metrics(case: str) -> None:
    n, n_classes, decimals = CASES[case]
    labels, probs = _data(n, n_classes, seed=len(case), decimals=decimals)
    if decimals is not None:
        assert len(np.unique(probs[:, -1])) < n / 3  # many tied scores
    ones = np.ones((1, n), dtype=np.int32)
    ba, auc = balanced_accuracy_draws(labels, probs, ones), auc_draws(labels, probs, ones)
    assert ba.shape == auc.shape == (1,)
    assert abs(ba[0] - metrics.balanced_accuracy(labels, probs.argmax(1))) < 1e-12
    assert abs(auc[0] - metrics.macro_auc(labels, probs)) < 1e-12


@pytest.mark.parametrize("n_classes, decimals", [(3, None), (3, 1), (2, None), (2, 1)])
def test_weights_equal_explicit_resampling(n_classes: int, decimals: int | None) -> None:
    labels, probs = _data(30, n_classes, seed=7, decimals=decimals)
    rng = np.random.default_rng(3)
    unstratified = rng.multinomial(30, np.full(30, 1 / 30), size=4)  # classes may vanish: NaN AUC
    weights = np.vstack([stratified_weights(labels, 6, seed=11), unstratified])
    got = metric_draws(labels, probs, weights)
    assert set(got) == {"balanced_accuracy", "auc"}
    for b, row in enumerate(weights):
        index = np.repeat(np.arange(30), row)
        want = metrics.classification_metrics(labels[index], probs[index])
        assert got["balanced_accuracy"][b] == pytest.approx(want["balanced_accuracy"], abs=1e-12)
        assert got["auc"][b] == pytest.approx(want["auc"], abs=1e-12, nan_ok=True)
    assert not np.isnan(got["auc"][:6]).any()


def test_binary_auc_uses_the_positive_score_only() -> None:
    """Scores that are not complementary: class 0's column must not enter a binary AUC."""
    rng = np.random.default_rng(9)
    labels = np.r_[0, 1, rng.integers(0, 2, 98)]
    probs = np.round(rng.random((100, 2)) + 0.3 * labels[:, None] * [0, 1], 2)
    weights = np.vstack([np.ones(100, dtype=np.int32), stratified_weights(labels, 3, seed=1)])
    got = auc_draws(labels, probs, weights)
    assert abs(got[0] - metrics.macro_auc(labels, probs)) < 1e-12
    for b, row in enumerate(weights):
        index = np.repeat(np.arange(100), row)
        assert abs(got[b] - metrics.macro_auc(labels[index], probs[index])) < 1e-12
    assert abs(metrics.macro_auc(labels, probs) - metrics.macro_auc(1 - labels, probs[:, ::-1])) > 0.01


def test_chunks_do_not_change_the_draws() -> None:
    labels, probs = _data(200, 4, seed=5, decimals=2)
    weights = stratified_weights(labels, 20, seed=2)
    np.testing.assert_array_equal(auc_draws(labels, probs, weights, chunk=7), auc_draws(labels, probs, weights))


def test_stratified_weights_keep_class_counts_and_are_seeded() -> None:
    labels = np.random.default_rng(0).choice([0, 2, 5], size=(120, 1), p=[0.6, 0.3, 0.1])  # MedMNIST's (N, 1)
    weights = stratified_weights(labels, 50, seed=4)
    assert weights.shape == (50, 120) and weights.dtype == np.int32
    flat = labels.ravel()
    for c in (0, 2, 5):
        np.testing.assert_array_equal(weights[:, flat == c].sum(1), np.full(50, (flat == c).sum()))
        assert (weights[:, flat == c] != 1).any(axis=1).mean() > 0.9  # every class resampled
    np.testing.assert_array_equal(weights.sum(1), np.full(50, 120))
    assert (weights >= 0).all() and len({row.tobytes() for row in weights}) == 50
    np.testing.assert_array_equal(weights, stratified_weights(labels, 50, seed=4))
    assert not np.array_equal(weights, stratified_weights(labels, 50, seed=5))


def test_absent_class_gives_nan_auc() -> None:
    labels, probs = _data(60, 4, seed=1)
    missing = np.where(labels == 3, 0, labels)  # class 3 of 4 never true
    weights = stratified_weights(missing, 5, seed=0)
    assert np.isnan(auc_draws(missing, probs, weights)).all()
    assert np.isnan(metrics.classification_metrics(missing, probs)["auc"])
    assert not np.isnan(balanced_accuracy_draws(missing, probs, weights)).any()
    _, binary_probs = _data(40, 2, seed=1)
    assert np.isnan(auc_draws(np.zeros(40, dtype=int), binary_probs, np.ones((1, 40)))).all()


def test_balanced_accuracy_interval_has_the_textbook_width() -> None:
    """156 binary test images, 62 of 78 right per class (79.5% recall): the normal approximation
    gives a half-width of 1.96 * sqrt(0.795 * 0.205 / 78) / sqrt(2) = 6.3 points."""
    labels = np.repeat([0, 1], 78)
    right = np.r_[np.arange(78) < 62, np.arange(78) < 62]
    predicted = np.where(right, labels, 1 - labels)
    probs = np.stack([predicted == 0, predicted == 1], axis=1).astype(np.float64)
    draws = balanced_accuracy_draws(labels, probs, stratified_weights(labels, 2000, seed=0))
    low, high = np.percentile(draws, [2.5, 97.5])
    assert 0.04 < (high - low) / 2 < 0.09
    assert low < 62 / 78 < high


def test_stacks_give_each_members_draws() -> None:
    """A stack of probability sets (corruptions x severities) gives the same draws as one at a time."""
    labels, probs = _data(200, 4, seed=5)
    rng = np.random.default_rng(2)
    stack = np.stack([np.stack([np.roll(probs, s, axis=1) * rng.random((200, 4)) for s in range(3)]) for _ in range(2)])
    weights = stratified_weights(labels, 50, seed=1)
    got = metric_draws(labels, stack, weights)
    assert got["balanced_accuracy"].shape == got["auc"].shape == (2, 3, 50)
    for i in range(2):
        for j in range(3):
            one = metric_draws(labels, stack[i, j], weights)
            np.testing.assert_array_equal(got["balanced_accuracy"][i, j], one["balanced_accuracy"])
            np.testing.assert_array_equal(got["auc"][i, j], one["auc"])
