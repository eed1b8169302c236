"""The verdict rules, pure: each turns an estimate (medrobust.report.intervals.Estimate, or the
counts behind a balanced accuracy) into an outcome with the one-sided p-value of its failing
side, and `holm` adjusts those p-values within a family before anything reads "does not hold".
docs/verdicts.md states and justifies each rule; bench/verdict_rules.py measures its error
rates by simulation with this code.

With [lo, hi] the interval at the run's level (95%) and alpha = (1 - level) / 2 = 2.5%:

- above t:       holds if lo > t; does not hold if hi <= t (k >= 3); else inconclusive
- a > b:         on the paired difference: holds if lo > 0, does not hold if hi <= 0 (k >= 3 both)
- stated P:      on mean - P with the paper's own seed variance (prediction interval):
                 reproduced if [lo, hi] lies within [-D, D]; does not hold if it excludes 0 (k >= 3);
                 else consistent, resolving +-max(|lo|, |hi|)
- gap in [L, H]: does not hold if [lo, hi] lies outside [L - D, H + D] (k >= 3); else consistent
- broken:        exact per-class (Clopper-Pearson) bounds of the balanced accuracy of every
                 replicate: holds if every upper bound <= tau_hold; does not hold if a lower bound
                 > tau_fail; else inconclusive
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medrobust.report.intervals import Estimate

HOLDS, FAILS, UNSURE = "holds", "does not hold", "inconclusive"
REPRODUCED, CONSISTENT, BORDERLINE = "reproduced", "consistent", "borderline"
SEED_K = 3  # replicates needed for a verdict that rests on the seed spread


@dataclass(frozen=True)
class Outcome:
    """A rule's verdict before multiplicity: `p` the one-sided p-value of the failing side (NaN
    where the check cannot fail), `margin` the distance of the nearest deciding interval end
    from its threshold (for "borderline"), `note` why a verdict was withheld."""
    verdict: str
    p: float = math.nan
    margin: float = math.inf
    note: str = ""
    resolves: float | None = None  # stated numbers and gaps: the +-X the data resolve


def _fails(e: Estimate, p: float, alpha: float, note_if_short: str) -> tuple[str, str]:
    if p > alpha:
        return UNSURE, ""
    if e.k < SEED_K:
        return UNSURE, note_if_short
    return FAILS, ""


def above(e: Estimate, t: float, seed_based_hold: bool = False) -> Outcome:
    """The true value above t. seed_based_hold: holding also needs k >= 3 (an ordering)."""
    if math.isnan(e.mean) or math.isnan(e.se):
        return Outcome(UNSURE, note="no estimate")
    alpha = (1 - e.level) / 2
    p = e.p_at_most(t)
    margin = min(abs(e.low - t), abs(e.high - t))
    if e.low > t:
        if seed_based_hold and e.k < SEED_K:
            return Outcome(UNSURE, p, margin, f"needs k >= {SEED_K} replicates to hold (has {e.k})")
        return Outcome(HOLDS, p, margin)
    verdict, note = _fails(e, p, alpha, f"needs k >= {SEED_K} replicates to fail (has {e.k})")
    return Outcome(verdict, p, margin, note)


def order(e: Estimate) -> Outcome:
    """a > b on the paired difference a - b."""
    return above(e, 0.0, seed_based_hold=True)


def prediction(e: Estimate, paper: float) -> Estimate:
    """mean - paper, with the variance of one more run (the paper's, on the same test images)
    beside the mean of k: se^2 = s^2 (1 + 1/k), k - 1 degrees of freedom; the test images both
    share are not part of it. NaN spread for k = 1 (nothing to judge by)."""
    sd = e.sd if e.k > 1 else math.nan
    se = sd * math.sqrt(1 + 1 / e.k) if e.k > 1 else math.nan
    return Estimate(e.mean - paper, sd, e.k, se, 0.0, float(max(e.k - 1, 1)), e.level, 0.0)


def stated(e: Estimate, paper: float, delta: float) -> tuple[Outcome, Estimate]:
    """A number the paper states: (outcome, the estimate of mean - paper it rests on)."""
    d = prediction(e, paper)
    if e.k < 2 or math.isnan(d.se):
        return Outcome(UNSURE, note="needs k >= 2 replicates (the paper's seed variance)"), d
    resolves = max(abs(d.low), abs(d.high))
    p = 2 * min(d.p_at_most(0.0), d.p_at_least(0.0))  # two-sided: either side fails
    alpha = 1 - e.level
    margin = min(abs(d.low + delta), abs(d.high - delta), abs(d.low), abs(d.high))
    if -delta <= d.low and d.high <= delta:
        return Outcome(REPRODUCED, p / 2, margin, resolves=resolves), d
    if p <= alpha:
        if e.k < SEED_K:
            return Outcome(CONSISTENT, p / 2, margin, f"needs k >= {SEED_K} replicates to fail", resolves), d
        return Outcome(FAILS, p / 2, margin, resolves=resolves), d
    return Outcome(CONSISTENT, p / 2, margin, resolves=resolves), d


def gap(e: Estimate, low: float, high: float, delta: float) -> Outcome:
    """A stated range of a paired difference: only 'does not hold' (outside [L - D, H + D]) or
    'consistent'; these extremes of the paper's own numbers cannot be reproduced, only refuted."""
    if math.isnan(e.mean) or math.isnan(e.se):
        return Outcome(UNSURE, note="no estimate")
    lo, hi = low - delta, high + delta
    p = min(e.p_at_most(lo), e.p_at_least(hi))
    margin = min(abs(e.high - lo), abs(e.low - hi))
    verdict, note = _fails(e, p, (1 - e.level) / 2, f"needs k >= {SEED_K} replicates to fail")
    return Outcome(CONSISTENT if verdict == UNSURE else verdict, p, margin, note,
                   max(abs(e.low - (low + high) / 2), abs(e.high - (low + high) / 2)))


# ---- C5: exact bounds on a balanced accuracy near 0 ------------------------------------------

def _cp_upper(x: np.ndarray, n: np.ndarray, alpha: float) -> np.ndarray:
    from scipy.stats import beta

    return np.where(x >= n, 1.0, beta.ppf(1 - alpha, x + 1, np.maximum(n - x, 1)))


def _cp_lower(x: np.ndarray, n: np.ndarray, alpha: float) -> np.ndarray:
    from scipy.stats import beta

    return np.where(x <= 0, 0.0, beta.ppf(alpha, np.maximum(x, 1), n - x + 1))


def balanced_bounds(correct: np.ndarray, images: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) per replicate of the balanced accuracy from per-class counts (k, C): the
    mean over classes of exact one-sided Clopper-Pearson bounds at alpha / C (Bonferroni over
    the classes, so the mean's bound holds with probability >= 1 - alpha). Classes without
    images are left out."""
    correct, images = np.atleast_2d(correct), np.atleast_2d(images)
    present = images > 0
    n_present = present.sum(1)
    a = alpha / np.maximum(n_present, 1)[:, None]
    lower = np.where(present, _cp_lower(correct, np.maximum(images, 1), a), 0.0).sum(1) / n_present
    upper = np.where(present, _cp_upper(correct, np.maximum(images, 1), a), 0.0).sum(1) / n_present
    return lower, upper


def _p_lower_above(correct: np.ndarray, images: np.ndarray, tau: float) -> float:
    """The smallest alpha at which some replicate's lower bound (Bonferroni over replicates
    too) exceeds tau: the p-value of 'every replicate at most tau' (bisection on log alpha)."""
    k = len(np.atleast_2d(correct))
    if balanced_bounds(correct, images, 0.5 / k)[0].max() <= tau:
        return 1.0
    lo, hi = -30.0, math.log(0.5)
    for _ in range(24):  # log alpha to within 30 / 2**24
        mid = (lo + hi) / 2
        if balanced_bounds(correct, images, math.exp(mid) / k)[0].max() > tau:
            hi = mid
        else:
            lo = mid
    return min(1.0, math.exp(hi))


def broken(correct: np.ndarray, images: np.ndarray, tau_fail: float, tau_hold: float,
           level: float) -> tuple[Outcome, float, float]:
    """C5, 'almost completely broken' under attack: (outcome, lower, upper) with the lower bound
    the largest over replicates at alpha / k and the upper bound the largest at alpha (every
    replicate must hold: an intersection, no adjustment needed)."""
    alpha = (1 - level) / 2
    correct, images = np.atleast_2d(correct), np.atleast_2d(images)
    k = len(correct)
    low = float(balanced_bounds(correct, images, alpha / k)[0].max())
    high = float(balanced_bounds(correct, images, alpha)[1].max())
    p = _p_lower_above(correct, images, tau_fail)
    margin = min(abs(low - tau_fail), abs(high - tau_hold))
    if low > tau_fail:
        return Outcome(FAILS, p, margin), low, high
    return Outcome(HOLDS if high <= tau_hold else UNSURE, p, margin), low, high


# ---- multiplicity and Monte-Carlo error ------------------------------------------------------

def holm(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries are left out of the family and stay NaN)."""
    values = np.asarray(p, dtype=np.float64)
    idx = np.flatnonzero(~np.isnan(values))
    out = np.full(len(values), np.nan)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(values[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * values[i]))
        out[i] = running
    return out.tolist()


def borderline(outcome: Outcome, mc_error: float) -> bool:
    """An interval end within two Monte-Carlo errors of a threshold that decides the verdict
    (another set of bootstrap draws could tip it); not for a verdict withheld for another
    reason (its note)."""
    return not outcome.note and outcome.margin < 2 * mc_error
