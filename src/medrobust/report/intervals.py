"""Every test number of one stage with its uncertainty: the bootstrap draws of each replicate's
evaluations (`stage_draws`, the `bootstrap` job), and the mean, interval and spread over
replicates made from them (`estimate`, `difference`: the summary table and the verdicts).

One weight matrix per image set (medrobust.report.bootstrap.stratified_weights, from the labels
and the run's seed) serves every stage, replicate, corruption and severity of a dataset, so
draws of different models are paired image by image; one replicate index per (k, draws) serves
every stage of a dataset, so replicates are paired too (replicate r's robust model with its own
base model). The corrupted mean of a draw is the mean over severities, then corruptions, of
the metric under that draw's weights: images are resampled jointly across all of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrobust.errors import DataError
from medrobust.io import npz_shapes, read_npz
from medrobust.report import bootstrap
from medrobust.runtime import derive_seed

METRICS = ("balanced_accuracy", "auc")
# evaluation kind -> (condition of the summary table, array of its probability file)
CONDITIONS = {"clean": [("clean", "probs")], "clean_last": [("clean_last_epoch", "probs")],
              "corrupted": [("corrupted", "probs")],
              "autoattack": [("autoattack", "probs"), ("autoattack_clean", "clean_probs")]}
WEIGHTS, REPLICATES = 1, 2  # purposes of derive_seed(seed, purpose)


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
    stack = probs.reshape(-1, *probs.shape[-2:]) if probs.ndim == 4 else probs[None]
    shape = probs.shape[:2] if probs.ndim == 4 else (1, 1)
    ones = np.ones((1, len(labels)), dtype=weights.dtype)
    out, point = {}, {}
    per = [bootstrap.metric_draws(labels, p, weights) for p in stack]
    unit = [bootstrap.metric_draws(labels, p, ones) for p in stack]
    for m in METRICS:
        out[m] = np.stack([d[m] for d in per]).reshape(*shape, -1).mean(1).mean(0)
        point[m] = float(np.stack([u[m][0] for u in unit]).reshape(shape).mean(1).mean(0))
    return out, point


def stage_draws(replicates: Sequence[Mapping[str, str]], draws: int, seed: int) -> dict[str, np.ndarray]:
    """For one stage: '<condition>/<metric>' -> (k, draws) and '<condition>/<metric>/point' -> (k,),
    from each replicate's probability files by evaluation kind (clean, clean_last, corrupted,
    autoattack). Every replicate must have the same kinds."""
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
                for m in METRICS:
                    rows.setdefault(f"{condition}/{m}", []).append(values[m])
                    rows.setdefault(f"{condition}/{m}/point", []).append(np.array(point[m]))
    return {key: np.stack(v) for key, v in rows.items()}


def write_draws(arrays: Mapping[str, np.ndarray], path: str | Path) -> None:
    from medrobust.io import write_npz

    write_npz(path, dict(arrays))


@dataclass(frozen=True)
class Estimate:
    """A test number over k replicates: their mean, the bootstrap interval (replicates and
    images resampled), the spread over replicates (NaN for k = 1) and the draws behind them."""
    mean: float
    low: float
    high: float
    sd: float
    k: int
    draws: np.ndarray

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def replicate_index(k: int, draws: int, seed: int) -> np.ndarray:
    """The same for every stage of a run (paired replicates)."""
    return bootstrap.replicate_index(k, draws, derive_seed(seed, REPLICATES))


def _of(points: np.ndarray, combined: np.ndarray, level: float) -> Estimate:
    low, high = bootstrap.percentile_interval(combined, level)
    sd = float(np.std(points, ddof=1)) if len(points) > 1 else math.nan
    return Estimate(float(np.mean(points)), low, high, sd, len(points), combined)


def estimate(arrays: Mapping[str, np.ndarray], key: str, seed: int, level: float) -> Estimate:
    """The mean, interval and spread of '<condition>/<metric>' of one stage's draws."""
    per, points = arrays[key], arrays[f"{key}/point"]
    return _of(points, bootstrap.combine(per, replicate_index(*per.shape, seed)), level)


def difference(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], key_a: str, key_b: str, seed: int,
               level: float) -> Estimate:
    """a minus b, paired: the same image weights and the same replicate draws for both (their
    replicate r belong to one chain); the spread is that of the per-replicate differences."""
    per_a, per_b = a[key_a], b[key_b]
    if per_a.shape != per_b.shape:
        raise DataError(f"cannot pair {key_a} {per_a.shape} with {key_b} {per_b.shape}")
    index = replicate_index(*per_a.shape, seed)
    combined = bootstrap.combine(per_a, index) - bootstrap.combine(per_b, index)
    return _of(a[f"{key_a}/point"] - b[f"{key_b}/point"], combined, level)
