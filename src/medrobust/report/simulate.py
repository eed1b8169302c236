"""Simulated per-replicate results, to measure the verdict rules with the pipeline's own code
(bench/verdict_rules.py, tests/test_calibration.py): k replicates of a stage evaluated on a test
set of a given class balance, whose true value (over seeds and test images) is known.

The model. Image i of class c is classified correctly by replicate r when

    rho * z_i + sqrt(1 - rho^2) * e_ri < Phi^-1(a_rc),    a_rc = sigmoid(logit(a_c) + tau * d_r)

z_i the image's difficulty, shared by every replicate and every stage (the same test images are
hard for all of them: their errors are correlated), e_ri the replicate's own noise, d_r its
seed effect (standard normal; replicate r of the stages of one chain share a part of it:
`rho_seed`). So a replicate's accuracy on class c is a_rc, and the true balanced accuracy is
the mean over classes of E[a_rc] over seeds. `ratio` sets tau so that the spread of a
replicate's value over seeds is about `ratio` times its spread over test images. A collapsed
replicate (probability `collapse`) predicts one class for every image (the demo's nonrobust-only
failure): balanced accuracy exactly 1/C.

`previous_interval` is the scheme the verdicts used before (replicates resampled with
replacement per draw, percentiles), kept here only as the reference the bench compares against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medrobust.core.numerics import derive_seed
from medrobust.report import bootstrap, rules
from medrobust.report.intervals import Estimate, combine, t_quantile, value_scale

# Test splits of the paper's five datasets: images per class (the official MedMNIST v2 splits).
# OrganSMNIST's per-class counts are not known offline: 11 classes with a 1:4 spread of sizes,
# summing to its 8,827 test images (an assumption; its size and class count are exact).
TEST_SETS = {
    "breastmnist": (42, 114),
    "pneumoniamnist": (234, 390),
    "octmnist": (250, 250, 250, 250),
    "pathmnist": (1338, 847, 339, 634, 1035, 592, 741, 421, 1233),
    "organsmnist": (401, 460, 527, 604, 692, 793, 908, 1040, 1192, 1365, 845),
}
_NODES = (lambda x, w: (x, w / w.sum()))(*np.polynomial.hermite_e.hermegauss(60))  # E over a standard normal
RHO = 0.8  # share of an image's difficulty common to all models
RHO_SEED = 0.5  # share of the seed effect common to the stages of one chain


def labels_of(counts: tuple[int, ...]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def class_logits(target: float, n_classes: int, spread: float = 0.5) -> np.ndarray:
    """Per-class logits of accuracy around a common level, shifted so that their mean accuracy
    (at tau = 0) equals `target`; a little heterogeneity between classes, as in real models."""
    offsets = np.linspace(-spread, spread, n_classes) if n_classes > 1 else np.zeros(1)
    lo, hi = -20.0, 20.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(mid + offsets)))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2 + offsets


def true_value(logits: np.ndarray, tau: float, collapse: float) -> float:
    """E over seeds (and collapses) of the balanced accuracy on an infinite test set."""
    x, w = _NODES
    healthy = float(np.mean([(w / (1 + np.exp(-(l + tau * x)))).sum() for l in logits]))
    return (1 - collapse) * healthy + collapse / len(logits)


def tau_for(logits: np.ndarray, counts: tuple[int, ...], ratio: float) -> float:
    """The seed scale on the logit scale that makes the seed spread of a replicate's balanced
    accuracy about `ratio` times its test-image spread (delta method)."""
    a = 1 / (1 + np.exp(-logits))
    se_images = math.sqrt(float(np.sum(a * (1 - a) / np.asarray(counts)))) / len(counts)
    return ratio * se_images / float(np.mean(a * (1 - a)))


@dataclass(frozen=True)
class Stage:
    """One simulated stage: its per-class logits, seed scale and collapse probability."""
    logits: np.ndarray
    tau: float
    collapse: float = 0.0

    @property
    def truth(self) -> float:
        return true_value(self.logits, self.tau, self.collapse)


def stage_for(target: float, counts: tuple[int, ...], ratio: float, collapse: float = 0.0) -> Stage:
    """A stage whose true balanced accuracy is `target` (collapse included) at the given ratio;
    `target` must lie between collapse / C and 1 - collapse (1 - 1/C)."""
    n_classes = len(counts)
    healthy = (target - collapse / n_classes) / (1 - collapse)
    if not 0 < healthy < 1:
        raise ValueError(f"no stage of {n_classes} classes has value {target} with {collapse:.0%} collapsed")
    logits = class_logits(healthy, n_classes)
    tau = tau_for(logits, counts, ratio)
    lo, hi = -30.0, 30.0  # the seed spread moves the mean of a sigmoid: shift the level back
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if true_value(logits + mid, tau, collapse) < target else (lo, mid)
    return Stage(logits + (lo + hi) / 2, tau, collapse)


def correctness(rng: np.random.Generator, labels: np.ndarray, stages: list[Stage], k: int) -> np.ndarray:
    """(stages, k, N) bool: which images each replicate of each stage classifies correctly."""
    from scipy.special import ndtri

    n = len(labels)
    z = rng.standard_normal(n)
    common = rng.standard_normal(k)
    out = np.empty((len(stages), k, n), dtype=bool)
    for s, st in enumerate(stages):
        d = math.sqrt(RHO_SEED) * common + math.sqrt(1 - RHO_SEED) * rng.standard_normal(k)
        a = 1 / (1 + np.exp(-(st.logits[None, :] + st.tau * d[:, None])))  # (k, C)
        e = rng.standard_normal((k, n))
        out[s] = RHO * z + math.sqrt(1 - RHO ** 2) * e < ndtri(a[:, labels])
        collapsed = rng.random(k) < st.collapse
        for r in np.flatnonzero(collapsed):
            out[s, r] = labels == rng.integers(0, len(st.logits))
    return out


class Evaluator:
    """Balanced accuracy of simulated replicates by the bootstrap's own code
    (bootstrap.balanced_accuracy_of), under one weight matrix made once per test set (as the
    bootstrap job makes one per image set) and under unit weights (the point values)."""

    def __init__(self, labels: np.ndarray, weights: np.ndarray) -> None:
        self.blocks = bootstrap.class_blocks(labels, weights)
        self.unit = bootstrap.class_blocks(labels, np.ones((1, len(labels)), dtype=np.int32))

    def __call__(self, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(draws (..., B), points (...)) of a (..., N) boolean correctness array."""
        flat = correct.reshape(-1, correct.shape[-1]).astype(np.float32)
        draws = bootstrap.balanced_accuracy_of(self.blocks, flat)
        return draws.reshape(*correct.shape[:-1], -1), self.point(correct)

    def point(self, correct: np.ndarray) -> np.ndarray:
        """(...) balanced accuracy on the test set itself (no resampling)."""
        flat = correct.reshape(-1, correct.shape[-1]).astype(np.float32)
        return bootstrap.balanced_accuracy_of(self.unit, flat)[:, 0].reshape(correct.shape[:-1])


def previous_interval(per_replicate: np.ndarray, seed: int, level: float = 0.95) -> tuple[float, float]:
    """The scheme before: each draw b averages k replicates picked with replacement, each under
    image weights b; the interval is the percentiles of those draws."""
    k, b = per_replicate.shape
    index = np.random.default_rng(seed).integers(0, k, size=(b, k))
    combined = per_replicate[index, np.arange(b)[:, None]].mean(1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(combined, [tail, 100 - tail])
    return float(low), float(high)


RATES = ("cover", "cover_plain", "cover_old", "cover_satterthwaite", "cover_k_minus_1", "cover_diff", "cover_diff_old", "above_fail_at_boundary",
         "order_fail_at_boundary", "stated_fail_at_truth", "stated_reproduced_at_margin", "above_fail_power",
         "order_fail_power", "order_hold_power", "stated_reproduced_power", "broken_fail_at_boundary",
         "broken_fail_power", "broken_hold_power")


def _covers_with(e: Estimate, truth: float, df: float) -> bool:
    """Whether e's interval, made with `df` degrees of freedom instead of its own, covers truth."""
    return abs(e.mean - truth) <= t_quantile(df, e.level) * e.se


def _plain_satterthwaite(e: Estimate) -> float:
    seed_part = e.sd ** 2 / e.k if e.k > 1 else 0.0
    return (seed_part + e.se_images ** 2) ** 2 / (seed_part ** 2 / (e.k - 1)) if seed_part > 0 else math.inf


def measure(counts: tuple[int, ...], k: int, ratio: float, collapse: float, sims: int, seed: int,
            draws: int = 1000, level: float = 0.95, shift: float = 0.05, equivalence: float = 0.02,
            target: float = 0.75) -> dict[str, float]:
    """The share of `sims` simulations in which each rate of RATES happens, for one test set,
    replicate count and seed setting, through the pipeline's own bootstrap, intervals and rules:

    A (true value `target`, its seeds at `ratio`, `collapse` mixture), B distributed as A, C
    `shift` below A, all of one chain; "the paper" is one more replicate of A on the same test
    images. Coverage of A's value and of A - B (0); "does not hold" where the truth sits on the
    boundary: A above its own true value, A > B, A's stated value at the paper's; "reproduced"
    with the paper's value `equivalence` away; power: A above truth + shift, C > A fails, A > C
    holds, the paper's value reproduced. C5: per-class survivors at rate broken_fail (0.01:
    boundary) and 0.05 (power: fails) and 0 (holds)."""
    labels, n_classes = labels_of(counts), len(counts)
    evaluate = Evaluator(labels, bootstrap.stratified_weights(labels, draws, derive_seed(seed, 1)))
    a = stage_for(target, counts, ratio, collapse)
    c = stage_for(target - shift, counts, ratio, collapse)
    truth = a.truth
    rng = np.random.default_rng(derive_seed(seed, 2))
    hits = dict.fromkeys(RATES, 0)
    for i in range(sims):
        correct = correctness(rng, labels, [a, a, c], k + 1)
        d, p = evaluate(correct[:, :k])
        paper = float(evaluate.point(correct[0, k]))
        ea, eab = combine(p[0], d[0], level, value_scale(len(labels))), combine(p[0] - p[1], d[0] - d[1], level)
        plain = combine(p[0], d[0], level)
        eca, eac = combine(p[2] - p[0], d[2] - d[0], level), combine(p[0] - p[2], d[0] - d[2], level)
        hits["cover"] += ea.low <= truth <= ea.high
        hits["cover_plain"] += plain.low <= truth <= plain.high
        hits["cover_satterthwaite"] += _covers_with(plain, truth, _plain_satterthwaite(plain))
        hits["cover_k_minus_1"] += _covers_with(plain, truth, float(k - 1) if k > 1 else math.inf)
        hits["cover_old"] += (lambda lo, hi: lo <= truth <= hi)(*previous_interval(d[0], i, level))
        hits["cover_diff"] += eab.low <= 0 <= eab.high
        hits["cover_diff_old"] += (lambda lo, hi: lo <= 0 <= hi)(*previous_interval(d[0] - d[1], i, level))
        hits["above_fail_at_boundary"] += rules.above(ea, truth).verdict == rules.FAILS
        hits["above_fail_power"] += rules.above(ea, truth + shift).verdict == rules.FAILS
        hits["order_fail_at_boundary"] += rules.order(eab).verdict == rules.FAILS
        hits["order_fail_power"] += rules.order(eca).verdict == rules.FAILS
        hits["order_hold_power"] += rules.order(eac).verdict == rules.HOLDS
        hits["stated_fail_at_truth"] += rules.stated(ea, paper, equivalence)[0].verdict == rules.FAILS
        hits["stated_reproduced_at_margin"] += rules.stated(ea, paper - equivalence, equivalence)[0].verdict == \
            rules.REPRODUCED
        hits["stated_reproduced_power"] += rules.stated(ea, paper, equivalence)[0].verdict == rules.REPRODUCED
        for rate, name, verdict in ((0.01, "broken_fail_at_boundary", rules.FAILS),
                                    (0.05, "broken_fail_power", rules.FAILS), (0.0, "broken_hold_power", rules.HOLDS)):
            survive = correctness(rng, labels, [Stage(np.full(n_classes, _logit(rate)), 0.0)], k)[0]
            got = np.stack([np.bincount(labels[s], minlength=n_classes) for s in survive])
            images = np.tile(np.asarray(counts), (k, 1))
            hits[name] += rules.broken(got, images, 0.01, 0.10, level)[0].verdict == verdict
    return {r: n / sims for r, n in hits.items()}


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))
