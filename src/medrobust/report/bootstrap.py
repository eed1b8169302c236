"""95% intervals for the study's two test metrics by a seeded, stratified bootstrap over test images.

Method. A bootstrap draw resamples the test images within each true class, with replacement,
keeping every class count: for a class with n_c images, the number of times each of them is
drawn is one multinomial draw of n_c trials over its n_c images, equal probabilities. The
multiplicities of all images form a weight vector (one row of `stratified_weights`) that sums to
N. Stratifying keeps the class balance of the test set fixed, so every draw has every class the
test set has (AUC and balanced accuracy stay defined) and the spread reflects only which images
of each class were drawn, not how many.

The metrics are evaluated on weighted data, not on resampled copies: an image drawn m times
counts m times. Balanced accuracy is the mean over classes of the weighted recall; the AUC of
one class is the weighted Mann-Whitney statistic, each (positive, negative) pair counting
w_i * w_j (ties 1/2), over the product of the classes' total weights. These equal the exact
metrics of `medrobust.evaluate.metrics` on the explicitly resampled data (the tests check
this), and weights of all ones give the metrics of the test set itself.

Why weights instead of resampled indices: the weights name images, not rows of one model's
output. The same weight matrix, applied to every model evaluated on the same test images, and
to every corruption and severity of one image set (the corrupted copies are the same images in
the same order), gives paired draws: draw b is the same resample for all of them, so
differences between models or between clean and corrupted accuracy get intervals from the
per-draw differences, with the image sampling noise they share cancelled.

Replicates (a model trained with k seeds) are resampled hierarchically: draw b picks k
replicates uniformly with replacement (`replicate_index`) and evaluates each picked replicate
under the same image weights b (`combine`), averaging. The interval then holds both the
seed-to-seed and the test-image variation. `percentile_interval` takes the 2.5th and 97.5th
percentiles of the draws.

Everything is vectorised over draws: the AUC sorts each class's scores once, groups equal
scores, sums the weight matrix per group (`np.add.reduceat` along the image axis) and counts,
for each group of positives, the negative weight below it by a cumulative sum, for chunks of
draws at a time to bound memory.
"""

from __future__ import annotations

import numpy as np

CHUNK = 256  # bootstrap draws processed at once by `auc_draws`


def stratified_weights(labels: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """(draws, N) int32 multiplicities: per draw, each true class resampled with replacement.

    For each class present in `labels` (ascending), one multinomial draw of n_c trials over that
    class's n_c images per bootstrap draw, all from one `np.random.default_rng(seed)`. Each row
    sums to N and keeps every class count."""
    labels = np.asarray(labels).ravel()
    rng = np.random.default_rng(seed)
    weights = np.zeros((draws, len(labels)), dtype=np.int32)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_c = len(members)
        weights[:, members] = rng.multinomial(n_c, np.full(n_c, 1.0 / n_c), size=draws)
    return weights


def _as_inputs(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    labels = np.asarray(labels).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    weights = np.atleast_2d(np.asarray(weights))
    if probs.ndim != 2 or len(probs) != len(labels) or weights.shape[1] != len(labels):
        raise ValueError(f"shapes do not match: labels {labels.shape}, probs {probs.shape}, weights {weights.shape}")
    return labels, probs, weights


def balanced_accuracy_draws(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(draws,) balanced accuracy under each weight row: weighted recall per class, averaged.

    Classes are those present in `labels` with positive total weight in the row (as
    metrics.balanced_accuracy on the resampled data: classes only predicted are ignored)."""
    labels, probs, weights = _as_inputs(labels, probs, weights)
    classes = np.unique(labels)
    members = (labels[:, None] == classes[None, :]).astype(np.float64)  # (N, C present)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    w = weights.astype(np.float64)
    totals = w @ members
    hits = w @ (members * correct[:, None])
    present = totals > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, hits / np.where(present, totals, 1.0), 0.0)
        return recall.sum(1) / present.sum(1)


def _sorted_groups(score: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Sort order of `score`, the start of each group of equal scores in it (None when all scores
    differ: every image its own group), and the positive mask in that order."""
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    return order, (None if len(starts) == len(score) else starts), positive[order].astype(np.float64)


def _group_sums(x: np.ndarray, starts: np.ndarray | None) -> np.ndarray:
    """Sums of the columns of x over each group of equal scores."""
    return x if starts is None else np.add.reduceat(x, starts, axis=1)


def _weighted_auc(w: np.ndarray, order: np.ndarray, starts: np.ndarray | None, pos_sorted: np.ndarray) -> np.ndarray:
    """(draws,) weighted Mann-Whitney AUC for one class, w a float (draws, N) chunk of weights."""
    ws = w[:, order]
    pos = _group_sums(ws * pos_sorted, starts)  # positive weight of each group of equal scores
    neg = _group_sums(ws, starts) - pos
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each group
    u = np.einsum("dg,dg->d", pos, below + 0.5 * neg)  # pairs above: w_i w_j, tied: w_i w_j / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return u / (pos.sum(1) * neg.sum(1))


def auc_draws(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """(draws,) macro one-vs-rest AUC under each weight row, as metrics.macro_auc.

    Pairs count w_i * w_j, ties 1/2; two classes: the AUC of probs[:, 1] alone. NaN when a class
    of probs.shape[1] is absent from `labels` (metrics.classification_metrics reports NaN then),
    and in a row where a class has zero total weight."""
    labels, probs, weights = _as_inputs(labels, probs, weights)
    n_classes = probs.shape[1]
    out = np.full(len(weights), np.nan)
    if any(not np.any(labels == c) for c in range(n_classes)):
        return out
    targets = [1] if n_classes == 2 else list(range(n_classes))
    groups = [_sorted_groups(probs[:, c], labels == c) for c in targets]
    for start in range(0, len(weights), chunk):
        w = weights[start:start + chunk].astype(np.float64)
        out[start:start + chunk] = np.mean([_weighted_auc(w, *g) for g in groups], axis=0)
    return out


def metric_draws(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Both metrics under each weight row: {"balanced_accuracy": (draws,), "auc": (draws,)}."""
    return {"balanced_accuracy": balanced_accuracy_draws(labels, probs, weights),
            "auc": auc_draws(labels, probs, weights)}


def replicate_index(k: int, draws: int, seed: int) -> np.ndarray:
    """(draws, k) int: for each bootstrap draw, k replicates picked uniformly with replacement."""
    if k < 1:
        raise ValueError(f"need at least one replicate, got k={k}")
    return np.random.default_rng(seed).integers(0, k, size=(draws, k))


def combine(per_replicate: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(draws,) hierarchical draws: value[b] = mean_j per_replicate[index[b, j], b].

    per_replicate[r, b] is replicate r's metric under image-weight draw b (the same weights for
    every replicate), index is `replicate_index`'s (draws, k)."""
    per_replicate = np.asarray(per_replicate, dtype=np.float64)
    index = np.asarray(index)
    if per_replicate.ndim != 2 or index.ndim != 2 or index.shape[0] != per_replicate.shape[1]:
        raise ValueError(f"shapes do not match: per_replicate {per_replicate.shape}, index {index.shape}")
    return per_replicate[index, np.arange(index.shape[0])[:, None]].mean(1)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval at `level`; (nan, nan) if values is empty or has a NaN."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or np.isnan(values).any():
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)
