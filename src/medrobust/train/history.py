"""A training run's per-epoch history as CSV (`history.csv` beside every model), and back.

Written once, atomically, from the history rows that the resumable state carries, when the run
ends: a resumed run therefore writes every epoch (those before the interruption included), and
a killed one leaves no half-written file. Timing columns (`images_per_second`, `seconds`)
describe the machine, not the run: a resumed epoch counts only the time since the resume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from medrobust.core.errors import DataError
from medrobust.core.io import float_cell, read_csv, write_csv

COLUMNS = ("epoch", "step", "lr", "train_loss", "train_accuracy", "val_balanced_accuracy", "val_auc",
           "val_robust_balanced_accuracy", "images_per_second", "seconds")
TIMING = ("images_per_second", "seconds")


def write_history(history: Sequence[dict[str, float]], batch_size: int, path: str | Path) -> None:
    """Each epoch's values under COLUMNS, empty where not measured (robust validation of standard
    training); images/s = the epoch's training images / its seconds."""
    rows, previous = [], 0
    for h in history:
        row = {k: h.get(k) for k in COLUMNS}
        row["images_per_second"] = (h["step"] - previous) * batch_size / h["seconds"] if h.get("seconds") else None
        previous = h["step"]
        rows.append([int(row[k]) if k in ("epoch", "step") else float_cell(row[k]) for k in COLUMNS])
    write_csv(path, COLUMNS, rows)


def read_history(path: str | Path) -> list[dict[str, float]]:
    """Rows of a history.csv as floats (NaN where empty); a missing column names the file."""
    columns, rows = read_csv(path)
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise DataError(f"{path}: not a training history (missing columns {missing})")
    try:
        return [{k: float(v) if v else math.nan for k, v in r.items()} for r in rows]
    except ValueError as e:
        raise DataError(f"{path}: not a training history ({e})") from None
