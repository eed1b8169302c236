"""Results broken down for a reviewer: per corruption and severity (`results/summary/corruptions.csv`,
the out-of-distribution mean of the summary table broken down, for every dataset and selected
model), and per grid point (a dataset's selection table: what each grid point scored on
validation and which one was selected, by which criterion).

One row per dataset, model, eps, corruption, severity and metric. `severity` is 1..5, or `mean`
(the mean over severities, what corrupted_test.json calls by_corruption); corruption `all` is
the mean over corruptions (severity `mean`: the summary table's *corrupted* value); corruption
`none`, severity 0, is the clean test set. `protocol` says which MedMNIST-C (applied: the
corruptions applied to the 64 px images, against the prepared test set; published: MedMNIST-C as
published at 224 px, against the clean 224 px test images shrunk the same way).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medrobust.core.errors import DataError
from medrobust.core.io import read_csv, write_csv
from medrobust.core.stages import METRICS, parse_stage

COLUMNS = ("dataset", "model", "eps", "corruption", "severity", "metric", "value", "protocol")
# each protocol's evaluation kinds: (clean baseline, corrupted)
PROTOCOL_KINDS = {"applied": ("clean", "corrupted"), "published": ("clean_published", "corrupted_published")}
SELECTION_COLUMNS = ("stage", "point", "lr", "batch_size", "epochs", "augment", "criterion", "value",
                     "val_balanced_accuracy", "val_auc", "selected")


@dataclass(frozen=True)
class Cell:
    dataset: str
    model: str
    eps: int | None
    corruption: str
    severity: str  # "0" (clean), "1".."5", or "mean"
    metric: str
    value: float
    protocol: str = "applied"


def stage_cells(dataset: str, stage: str, files: dict[str, dict[str, Any]]) -> list[Cell]:
    """The rows of one selected model from its evaluations (kind -> contents), under each
    protocol whose two evaluations (PROTOCOL_KINDS) are there."""
    return [c for protocol, (clean, corrupted) in PROTOCOL_KINDS.items() if clean in files and corrupted in files
            for c in _protocol_cells(dataset, stage, files[clean], files[corrupted], protocol)]


def _protocol_cells(dataset: str, stage: str, clean: dict[str, Any], corrupted: dict[str, Any],
                    protocol: str) -> list[Cell]:
    model, eps = parse_stage(stage)
    cells = [Cell(dataset, model, eps, "none", "0", m, clean["metrics"][m]) for m in METRICS]
    by_severity = corrupted["by_severity"]
    for name in sorted(by_severity):
        for s, metrics in enumerate(by_severity[name], start=1):
            cells += [Cell(dataset, model, eps, name, str(s), m, metrics[m]) for m in METRICS]
        cells += [Cell(dataset, model, eps, name, "mean", m, corrupted["by_corruption"][name][m]) for m in METRICS]
    n_severities = {len(v) for v in by_severity.values()}
    if len(n_severities) != 1:
        raise DataError(f"{dataset} {stage}: corruptions with different numbers of severities {sorted(n_severities)}")
    for s in range(1, n_severities.pop() + 1):
        cells += [Cell(dataset, model, eps, "all", str(s), m,
                       float(np.mean([by_severity[n][s - 1][m] for n in by_severity]))) for m in METRICS]
    cells += [Cell(dataset, model, eps, "all", "mean", m, corrupted["mean"][m]) for m in METRICS]
    return [replace(c, protocol=protocol) for c in cells]


def write_cells(cells: Iterable[Cell], path: str | Path) -> None:
    write_csv(path, COLUMNS, ([c.dataset, c.model, c.eps, c.corruption, c.severity, c.metric, repr(c.value),
                               c.protocol] for c in cells))


def read_cells(path: str | Path) -> list[Cell]:
    columns, rows = read_csv(path)
    if tuple(columns) != COLUMNS:
        raise DataError(f"{path}: expected columns {', '.join(COLUMNS)}, got {columns}")
    try:
        return [Cell(r["dataset"], r["model"], int(r["eps"]) if r["eps"] else None, r["corruption"],
                     r["severity"], r["metric"], float(r["value"]), r["protocol"]) for r in rows]
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None


def selection_rows(selections: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per stage and grid point, best first within a stage, from each stage's selected.json."""
    rows = []
    for stage, sel in selections.items():
        for c in sel["candidates"]:
            hp, val = c.get("hparams", {}), c["val"]
            rows.append({"stage": stage, "point": c["point"], **{k: hp.get(k) for k in SELECTION_COLUMNS[2:6]},
                         "criterion": sel["criterion"], "value": val[sel["criterion"]],
                         "val_balanced_accuracy": val.get("val_balanced_accuracy"), "val_auc": val.get("val_auc"),
                         "selected": c["point"] == sel["selected"]})
    return rows


def write_rows(rows: Iterable[dict[str, Any]], columns: Sequence[str], path: str | Path) -> None:
    write_csv(path, columns, ([r.get(c) for c in columns] for r in rows))


def dataset_checks(checks_csv: str | Path, dataset: str) -> tuple[list[str], list[dict[str, str]]]:
    """The columns of the study's checks.csv and its rows of one dataset."""
    columns, rows = read_csv(checks_csv)
    return columns, [r for r in rows if r.get("dataset") == dataset]
