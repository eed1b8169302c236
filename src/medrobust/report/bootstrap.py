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
metrics of `medrobust.core.metrics` on the explicitly resampled data (the tests check
this), and weights of all ones give the metrics of the test set itself.

Why weights instead of resampled indices: the weights name images, not rows of one model's
output. The same weight matrix, applied to every model evaluated on the same test images, and
to every corruption and severity of one image set (the corrupted copies are the same images in
the same order), gives paired draws: draw b is the same resample for all of them, so
differences between models or between clean and corrupted accuracy get intervals from the
per-draw differences, with the image sampling noise they share cancelled.

These draws measure the test-image level of uncertainty only: how a number would move on
another test set of the same class balance, the models fixed. The seed level (k replicates) is
added on top by medrobust.report.intervals.

Everything is vectorised over draws and over stacks of probability sets (every corruption and
severity of one model at once): balanced accuracy is one matrix product per class of the
weights with the stack's correctness, the AUC sorts each class's scores once, groups equal
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


def correct_of(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(M, N) float32: whether each of a stack of M prediction sets is right on each image."""
    return (probs.argmax(-1) == labels).reshape(-1, len(labels)).astype(np.float32)


Blocks = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def class_blocks(labels: np.ndarray, weights: np.ndarray) -> Blocks:
    """Per class present in `labels` (ascending): its images, their weight columns as float32
    (draws, n_c) and each draw's total weight of the class. Exact: the weights are integer
    counts well below 2**24, and float32 sums of them are exact."""
    labels = np.asarray(labels).ravel()
    weights = np.atleast_2d(np.asarray(weights))
    out = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        w = weights[:, members].astype(np.float32)
        out.append((members, w, w.sum(1, dtype=np.float64)))
    return out


def balanced_accuracy_of(blocks: Blocks, correct: np.ndarray) -> np.ndarray:
    """(M, draws) balanced accuracy of M prediction sets (`correct` (M, N)) under the weights of
    `blocks`: per class, the weighted share of its images classified correctly, averaged over
    the classes with positive weight in the draw."""
    correct = np.atleast_2d(correct)
    draws = len(blocks[0][2])
    recall = np.zeros((correct.shape[0], draws))
    present = np.zeros(draws)
    for members, w, totals in blocks:
        here = totals > 0
        hits = (correct[:, members] @ w.T).astype(np.float64)  # (M, draws)
        recall += np.where(here, hits / np.where(here, totals, 1.0), 0.0)
        present += here
    with np.errstate(invalid="ignore", divide="ignore"):
        return recall / present


def balanced_accuracy_draws(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(draws,) balanced accuracy under each weight row; for a stack of probabilities
    (..., N, C), one row of draws per member: (..., draws).

    Classes are those present in `labels` with positive total weight in the row (as
    metrics.balanced_accuracy on the resampled data: classes only predicted are ignored); one
    matrix product per class of its images' weights with the stack's correctness."""
    labels = np.asarray(labels).ravel()
    probs = np.asarray(probs)
    _as_inputs(labels, probs.reshape(-1, *probs.shape[-2:])[0], weights)
    weights = np.atleast_2d(np.asarray(weights))
    out = balanced_accuracy_of(class_blocks(labels, weights), correct_of(labels, probs))
    return out.reshape(*probs.shape[:-2], len(weights))


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
    """(draws,) macro one-vs-rest AUC under each weight row, as metrics.macro_auc; for a stack of
    probabilities (..., N, C), (..., draws).

    Pairs count w_i * w_j, ties 1/2; two classes: the AUC of probs[:, 1] alone. NaN when a class
    of probs.shape[1] is absent from `labels` (metrics.classification_metrics reports NaN then),
    and in a row where a class has zero total weight."""
    labels = np.asarray(labels).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    lead, stack = probs.shape[:-2], probs.reshape(-1, *probs.shape[-2:])
    labels, _, weights = _as_inputs(labels, stack[0], weights)
    n_classes = stack.shape[-1]
    out = np.full((len(stack), len(weights)), np.nan)
    if all(np.any(labels == c) for c in range(n_classes)):
        targets = [1] if n_classes == 2 else list(range(n_classes))
        groups = [[_sorted_groups(p[:, c], labels == c) for c in targets] for p in stack]
        for start in range(0, len(weights), chunk):
            w = weights[start:start + chunk].astype(np.float64)
            for m, of_member in enumerate(groups):
                out[m, start:start + chunk] = np.mean([_weighted_auc(w, *g) for g in of_member], axis=0)
    return out.reshape(*lead, len(weights))


def metric_draws(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Both metrics under each weight row: {"balanced_accuracy": (..., draws), "auc": (..., draws)}
    for probabilities (..., N, C)."""
    return {"balanced_accuracy": balanced_accuracy_draws(labels, probs, weights),
            "auc": auc_draws(labels, probs, weights)}
