"""Every test number of one stage with its uncertainty: the bootstrap draws of each replicate's
evaluations (`stage_draws`, the `bootstrap` job), and the mean, interval and spread over
replicates made from them (`estimate`, `difference`: the summary table and the verdicts).

One weight matrix per image set (medrobust.report.bootstrap.stratified_weights, from the labels
and the run's seed) serves every stage, replicate, corruption and severity of a dataset, so
draws of different models are paired image by image. The corrupted mean of a draw is the mean
over severities, then corruptions, of the metric under that draw's weights: images are
resampled jointly across all of them.

The interval of a mean over k replicates (or of a paired difference, replicate r of one stage
minus replicate r of the other: they belong to one chain) adds the two levels of uncertainty:

    se^2 = s^2 / k + v,    interval = mean +- t(df, (1 + level) / 2) * se

A value (balanced accuracy or AUC, in [0, 1]) is taken to the logit scale first, replicate
values and draws alike (clipped to [0.5/N, 1 - 0.5/N] for N test images), and the interval's
ends are carried back: when the seeds dominate, a replicate's value is skewed against 0 or 1
(a seed effect that moves the logit of each class's accuracy), and a symmetric interval on
three skewed values under-covered there (0.83-0.87 at k = 3 on BreastMNIST's 156 images with
seed spreads 4-10 times the image spread; 0.93-0.96 on the logit scale). A paired difference
keeps the plain scale: its seed effects are symmetric, and it covered everywhere.

s^2 the variance of the k replicate values (the seeds), v the bootstrap variance over test
images of the replicate-averaged value (the same weights for every replicate, so errors that
the replicates share, on the same hard images, are counted once and not k times). The t
quantile's degrees of freedom are Satterthwaite's for s^2/k + v, with s^2 (k - 1 degrees of
freedom) taken at its one-sided 75% upper confidence bound u = s^2 (k - 1) / chi2_{k-1}(0.25):

    df = (u/k + v)^2 / ((u/k)^2 / (k - 1))

k - 1 when the seeds dominate, towards the normal quantile when the test images do. Plain
Satterthwaite under-covers (0.91-0.93 at k = 3) because a seed spread underestimated by chance
also inflates df; k - 1 alone over-covers (up to 1.00) and, with Holm's adjustment on top,
leaves "does not hold" almost out of reach at k = 3. docs/verdicts.md shows all three,
simulated with this code by bench/verdict_rules.py. With k = 1 there is no seed level to
estimate (se^2 = v, normal quantile): the verdicts that rest on it say so.

The Monte-Carlo error of an interval end comes from v alone (the mean is exact): the standard
error of a variance estimated from B draws, sqrt((m4 - v^2) / B) with m4 their fourth central
moment, carried through the square root and the quantile.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrobust.core.errors import DataError
from medrobust.core.io import npz_shapes, read_npz
from medrobust.core.numerics import derive_seed
from medrobust.core.stages import METRICS
from medrobust.report import bootstrap

# evaluation kind -> (condition of the summary table, array of its probability file)
CONDITIONS = {"clean": [("clean", "probs")], "clean_last": [("clean_last_epoch", "probs")],
              "corrupted": [("corrupted", "probs")], "clean_published": [("clean_published", "probs")],
              "corrupted_published": [("corrupted_published", "probs")],
              "autoattack": [("autoattack", "probs"), ("autoattack_clean", "clean_probs")]}
WEIGHTS = 1  # purpose of derive_seed(seed, purpose)


def _weights(labels: np.ndarray, draws: int, seed: int, cache: dict[bytes, np.ndarray]) -> np.ndarray:
    key = labels.tobytes()
    if key not in cache:
        cache[key] = bootstrap.stratified_weights(labels, draws, derive_seed(seed, WEIGHTS))
    return cache[key]


def _read(path: str) -> dict[str, np.ndarray]:
    names = tuple(npz_shapes(path))
    arrays = read_npz(path, names)
    if "labels" not in arrays:
        raise DataError(f"{path}: not a probability file (no labels array)")
    return arrays


def _draws_of(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> tuple[dict[str, np.ndarray],
                                                                                   dict[str, float]]:
    """Draws and the point value (unit weights) of each metric; probs (N, C) or a corrupted
    stack (corruptions, severities, N, C), averaged over severities, then corruptions."""
    stack = probs if probs.ndim == 4 else probs[None, None]
    ones = np.ones((1, len(labels)), dtype=weights.dtype)
    per, unit = bootstrap.metric_draws(labels, stack, weights), bootstrap.metric_draws(labels, stack, ones)
    return ({m: per[m].mean(1).mean(0) for m in METRICS},
            {m: float(unit[m][..., 0].mean(1).mean(0)) for m in METRICS})


def survivors(labels: np.ndarray, probs: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(correct, images) per true class: the counts behind balanced accuracy (C5's exact bounds)."""
    right = probs.argmax(-1) == labels
    return (np.bincount(labels[right], minlength=n_classes)[:n_classes],
            np.bincount(labels, minlength=n_classes)[:n_classes])


def stage_draws(replicates: Sequence[Mapping[str, str]], draws: int, seed: int) -> dict[str, np.ndarray]:
    """For one stage: '<condition>/<metric>' -> (k, draws) and '<condition>/<metric>/point' -> (k,),
    from each replicate's probability files by evaluation kind (clean, clean_last, corrupted,
    autoattack), and 'autoattack/correct', 'autoattack/images' -> (k, C): per true class, the
    images classified correctly under attack and the images attacked. Every replicate must have
    the same kinds."""
    kinds = [sorted(files) for files in replicates]
    if any(k != kinds[0] for k in kinds):
        raise DataError(f"replicates with different evaluations: {kinds}")
    cache: dict[bytes, np.ndarray] = {}
    rows: dict[str, list[np.ndarray]] = {}
    for files in replicates:
        for kind, path in sorted(files.items()):
            arrays = _read(path)
            labels = arrays["labels"].ravel()
            for condition, name in CONDITIONS[kind]:
                values, point = _draws_of(labels, arrays[name], _weights(labels, draws, seed, cache))
                rows.setdefault(f"{condition}/n", []).append(np.array(len(labels)))
                for m in METRICS:
                    rows.setdefault(f"{condition}/{m}", []).append(values[m])
                    rows.setdefault(f"{condition}/{m}/point", []).append(np.array(point[m]))
                if condition == "autoattack":
                    correct, images = survivors(labels, arrays[name], arrays[name].shape[-1])
                    rows.setdefault("autoattack/correct", []).append(correct)
                    rows.setdefault("autoattack/images", []).append(images)
    return {key: np.stack(v) for key, v in rows.items()}


def write_draws(arrays: Mapping[str, np.ndarray], path: str | Path) -> None:
    from medrobust.core.io import write_npz

    write_npz(path, dict(arrays))


@dataclass(frozen=True)
class Logit:
    """The scale of a value in [0, 1] (a balanced accuracy, an AUC): log(x / (1 - x)), with x
    first clipped to [floor, 1 - floor] (floor 0.5/N for N test images: the empirical logit)."""
    floor: float

    def to(self, x: np.ndarray | float) -> np.ndarray:
        x = np.clip(np.asarray(x, dtype=np.float64), self.floor, 1 - self.floor)
        return np.log(x / (1 - x))

    def at(self, threshold: float) -> float:
        """A threshold on this scale, unclipped (so that an interval end and a p-value agree)."""
        with np.errstate(divide="ignore"):
            return float(np.log(threshold) - np.log1p(-threshold))

    def back(self, z: float) -> float:
        return float(1 / (1 + np.exp(-z)))

    def slope(self, x: float) -> float:
        """d back / d z at back(z) = x: carries an error on this scale to the value's."""
        return x * (1 - x)


@dataclass(frozen=True)
class Estimate:
    """A test number over k replicates: their mean, the spread over replicates (NaN for k = 1),
    the standard error of both levels (`se_images` the test-image part), the degrees of
    freedom of its t quantile (inf: normal) and the Monte-Carlo error of the interval ends.

    `scale` None: the interval is mean +- quantile * se. A Logit scale: se, se_images and df
    belong to the replicate values' logits, `centre` is their mean, and the interval ends and
    p-values are made there and carried back (mean and sd stay those of the values)."""
    mean: float
    sd: float
    k: int
    se: float
    se_images: float
    df: float
    level: float
    mc_error: float
    scale: Logit | None = None
    centre: float = math.nan

    @property
    def quantile(self) -> float:
        return t_quantile(self.df, self.level)

    def _end(self, sign: int) -> float:
        if self.scale is None:
            return self.mean + sign * self.quantile * self.se
        if self.se == 0:  # every replicate and every draw alike (e.g. all at 0): no spread to carry
            return self.mean
        return self.scale.back(self.centre + sign * self.quantile * self.se)

    @property
    def low(self) -> float:
        return self._end(-1)

    @property
    def high(self) -> float:
        return self._end(+1)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def _distance(self, threshold: float) -> float:
        if self.scale is None:
            return self.mean - threshold
        return self.centre - self.scale.at(threshold)

    def p_at_most(self, threshold: float) -> float:
        """One-sided p-value against 'the true value is above threshold': small when the
        estimate lies well at or below it (the interval's upper end at or below the threshold
        exactly when p <= (1 - level) / 2)."""
        return _p(self._distance(threshold), self.se, self.df)

    def p_at_least(self, threshold: float) -> float:
        """One-sided p-value against 'the true value is below threshold'."""
        return _p(-self._distance(threshold), self.se, self.df)


@functools.lru_cache(maxsize=1024)
def t_quantile(df: float, level: float) -> float:
    from scipy.stats import norm, t

    q = (1 + level) / 2
    return float(norm.ppf(q) if math.isinf(df) else t.ppf(q, df))


def _p(distance: float, se: float, df: float) -> float:
    """P(T <= distance / se) for T ~ t(df) (normal for df = inf); se = 0: 0 or 1."""
    from scipy.stats import norm, t

    if math.isnan(distance) or math.isnan(se):
        return math.nan
    if se == 0:
        return 0.0 if distance <= 0 else 1.0
    z = distance / se
    return float(norm.cdf(z) if math.isinf(df) else t.cdf(z, df))


SEED_BOUND = 0.25  # lower chi-square quantile: s^2 at its one-sided 75% upper bound in df


def degrees_of_freedom(seed_var: float, k: int, image_var: float) -> float:
    """Satterthwaite's degrees of freedom of s^2/k + v, with s^2 at its 75% upper bound."""
    if k < 2:
        return math.inf
    upper = seed_var * (k - 1) / _chi2_quantile(SEED_BOUND, k - 1) / k
    if upper <= 0:
        return math.inf
    return (upper + image_var) ** 2 / (upper ** 2 / (k - 1))


@functools.lru_cache(maxsize=64)
def _chi2_quantile(q: float, df: int) -> float:
    from scipy.stats import chi2

    return float(chi2.ppf(q, df))


def combine(points: np.ndarray, draws: np.ndarray, level: float, scale: Logit | None = None) -> Estimate:
    """The estimate of k replicate values `points` whose (k, B) bootstrap draws share image
    weights: se^2 = s^2/k + var over draws of the replicate mean; `degrees_of_freedom`. With a
    `scale`, points and draws are first taken to it (Estimate)."""
    values = np.asarray(points, dtype=np.float64).ravel()
    draws = np.atleast_2d(np.asarray(draws, dtype=np.float64))
    k = len(values)
    if draws.shape[0] != k:
        raise DataError(f"{k} replicate values but draws of {draws.shape[0]}")
    if k == 0 or np.isnan(values).any() or np.isnan(draws).any():
        return Estimate(math.nan, math.nan, k, math.nan, math.nan, math.inf, level, math.nan, scale)
    if scale is not None:
        points, draws = scale.to(values), scale.to(draws)
    else:
        points = values
    averaged = draws.mean(0)
    v = float(np.var(averaged, ddof=1)) if np.ptp(averaged) > 0 else 0.0  # ptp: no rounding noise for equal values
    s2 = float(np.var(points, ddof=1)) if np.ptp(points) > 0 else 0.0
    se = math.sqrt(s2 / k + v)
    df = degrees_of_freedom(s2, k, v)
    centred = averaged - averaged.mean()
    mc_var = math.sqrt(max(float(np.mean(centred ** 4)) - v ** 2, 0.0) / max(averaged.size, 1))
    mc = t_quantile(df, level) * mc_var / (2 * se) if se > 0 else 0.0
    e = Estimate(float(values.mean()), float(np.std(values, ddof=1)) if k > 1 else math.nan, k, se, math.sqrt(v), df,
                 level, mc, scale, float(points.mean()))
    if scale is None or se == 0:
        return e
    steepest = max(scale.slope(e.low), scale.slope(e.high))  # the error of an end, carried back
    return dataclasses.replace(e, mc_error=mc * steepest)


def value_scale(n_images: int) -> Logit:
    """The scale of a value's interval on N test images (module docstring)."""
    return Logit(0.5 / max(n_images, 1))


def estimate(arrays: Mapping[str, np.ndarray], key: str, level: float) -> Estimate:
    """The mean, interval and spread of '<condition>/<metric>' of one stage's draws, made on the
    logit scale (`value_scale`)."""
    condition = key.split("/", 1)[0]
    if f"{condition}/n" not in arrays:
        raise DataError(f"bootstrap draws without the test set size of {condition}: re-run the bootstrap job")
    return combine(arrays[f"{key}/point"], arrays[key], level, value_scale(int(np.max(arrays[f"{condition}/n"]))))


def difference(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], key_a: str, key_b: str,
               level: float) -> Estimate:
    """a minus b, paired: replicate r with replicate r (one chain), under the same image weights;
    the spread is that of the per-replicate differences."""
    per_a, per_b = a[key_a], b[key_b]
    if per_a.shape != per_b.shape:
        raise DataError(f"cannot pair {key_a} {per_a.shape} with {key_b} {per_b.shape}")
    return combine(a[f"{key_a}/point"] - b[f"{key_b}/point"], per_a - per_b, level)
