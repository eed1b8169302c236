"""Model selection over a grid by a validation metric; the test split is never read."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from medrobust.core.errors import DataError
from medrobust.core.io import read_json
from medrobust.core.paths import point_of_file

CRITERIA = ("val_balanced_accuracy", "val_auc", "val_robust_balanced_accuracy")
TIE_BREAKERS = ("val_balanced_accuracy", "val_auc")


def rank(candidates: list[dict[str, Any]], criterion: str) -> list[dict[str, Any]]:
    """Candidates best first: by `criterion`, then clean validation balanced accuracy and AUC,
    then name. NaN counts as worst, so an undefined metric never beats a defined one."""
    order = [criterion] + [k for k in TIE_BREAKERS if k != criterion]

    def key(c: dict[str, Any]) -> tuple[Any, ...]:
        vals = [c["val"][k] for k in order]
        return tuple(-v if not math.isnan(v) else math.inf for v in vals) + (c["point"],)

    return sorted(candidates, key=key)


def select(metrics_paths: list[str | Path], criterion: str, epoch: str) -> dict[str, Any]:
    """Read each grid point's metrics.json (medrobust.core.paths.point_dir) and pick the best by
    `criterion` at the epoch a model keeps (`epoch`: its best or its last)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    candidates = []
    for path in map(Path, metrics_paths):
        m = read_json(path)
        if epoch not in m or criterion not in m[epoch] or "epochs" not in m:
            raise DataError(f"{path}: no validation metrics of its {epoch} epoch (is it a medrobust training "
                            "metrics file of this version?)")
        epochs = m["epochs"]
        kept = {"kept": epochs[epoch], "kept_by": epochs["best_by"] if epoch == "best" else "last epoch"}
        candidates.append({"point": point_of_file(path), "path": str(path), "hparams": m["hparams"],
                           "val": {k: v for k, v in m[epoch].items() if k.startswith("val_")},
                           "epochs": {**epochs, **kept}})
    if not candidates:
        raise DataError("no candidates to select from")
    ranked = rank(candidates, criterion)
    best = ranked[0]
    return {
        "criterion": criterion,
        "selected": best["point"],
        "reason": (f"highest {criterion} ({best['val'][criterion]:.4f}) of {len(ranked)} grid points on the "
                   "validation split; ties broken by clean validation balanced accuracy, AUC, then name; "
                   "the test split was not read"),
        "candidates": ranked,
    }
