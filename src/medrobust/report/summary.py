"""The study's summary table: every test metric of every selected model, one row each, from the
evaluation files of every seed replicate of one dataset and stage (clean, MedMNIST-C, AutoAttack,
and a nonrobust-only model's last epoch), with its bootstrap interval and spread over replicates
(medrobust.report.intervals)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medrobust.core.errors import DataError
from medrobust.core.stages import METRICS, parse_stage
from medrobust.report.intervals import estimate
from medrobust.report.tables import Row



def _values(files: Mapping[str, dict[str, Any]]) -> dict[str, tuple[dict[str, Any], int | None]]:
    """condition -> (metrics, images) of one replicate's evaluation files' contents."""
    found: dict[str, tuple[dict[str, Any], int | None]] = {}
    for kind, condition in (("clean", "clean"), ("clean_last", "clean_last_epoch"), ("clean_published", "clean_published")):
        if kind in files:
            found[condition] = (files[kind]["metrics"], files[kind]["metrics"].get("n"))
    for kind in ("corrupted", "corrupted_published"):
        if kind in files:
            found[kind] = (files[kind]["mean"], files[kind].get("n"))
    if "autoattack" in files:
        aa = files["autoattack"]
        found["autoattack"] = (aa["metrics"], aa["metrics"].get("n"))
        if aa.get("clean_metrics"):
            found["autoattack_clean"] = (aa["clean_metrics"], aa["metrics"].get("n"))
    return found


def _check_point(where: str, reported: float, point: float) -> None:
    """The bootstrap's unit-weight value must be the evaluation's own: else the probabilities
    belong to another evaluation (a stale or foreign file)."""
    if not (math.isnan(reported) and math.isnan(point)) and abs(reported - point) > 1e-9:
        raise DataError(f"{where}: the evaluation says {reported!r}, its saved probabilities give {point!r}")


def stage_rows(dataset: str, stage: str, n_classes: int, replicates: Sequence[Mapping[str, dict[str, Any]]],
               draws: Mapping[str, np.ndarray], level: float) -> list[Row]:
    """Rows of one stage: per condition and metric, the mean over replicates of the evaluation
    files' values, with the interval and spread of the bootstrap draws (`draws`, one stage's
    medrobust bootstrap output)."""
    model, eps = parse_stage(stage)
    per = [_values(files) for files in replicates]
    rows = []
    for condition, (metrics, images) in per[0].items():
        for metric in METRICS:
            if metric not in metrics:
                continue
            key = f"{condition}/{metric}"
            if key not in draws:
                raise DataError(f"{dataset} {stage}: no bootstrap draws for {key}")
            e = estimate(draws, key, level)
            if e.k != len(per):
                raise DataError(f"{dataset} {stage}: {e.k} replicates in the bootstrap draws, {len(per)} evaluated")
            for r, values in enumerate(per):
                _check_point(f"{dataset} {stage} replicate {r} {key}", float(values[condition][0][metric]),
                             float(draws[f"{key}/point"][r]))
            rows.append(Row(dataset, model, eps, condition, metric, e.mean, n_classes, images, e.low, e.high,
                            e.sd, e.k))
    return rows
