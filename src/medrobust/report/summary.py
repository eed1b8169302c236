"""The study's summary table: every test metric of every selected model, one row each, read
from the evaluation files (clean, MedMNIST-C, AutoAttack) of one dataset and stage."""

from __future__ import annotations

import re
from typing import Any

from medrobust.report.tables import Row

METRICS = ("balanced_accuracy", "auc")


def stage_model(stage: str) -> tuple[str, int | None]:
    """'base' -> ('base', None); 'robust_eps4' -> ('robust', 4); 'nonrobust_eps8' -> ('nonrobust', 8)."""
    if stage == "base":
        return "base", None
    m = re.fullmatch(r"(robust|nonrobust)_eps(\d+)", stage)
    if not m:
        raise ValueError(f"unknown stage {stage!r}")
    return m[1], int(m[2])


def stage_rows(dataset: str, stage: str, n_classes: int, clean: dict[str, Any],
               corrupted: dict[str, Any] | None = None, autoattack: dict[str, Any] | None = None) -> list[Row]:
    """Rows of one selected model from its evaluation files' contents (missing ones: no rows)."""
    model, eps = stage_model(stage)
    found = {"clean": clean["metrics"],
             "corrupted": corrupted["mean"] if corrupted else None,
             "autoattack": autoattack["metrics"] if autoattack else None,
             "autoattack_clean": autoattack.get("clean_metrics") if autoattack else None}
    images = {"clean": clean["metrics"].get("n"), "corrupted": corrupted.get("n") if corrupted else None,
              "autoattack": autoattack["metrics"].get("n") if autoattack else None}
    images["autoattack_clean"] = images["autoattack"]
    return [Row(dataset, model, eps, condition, metric, float(values[metric]), n_classes, images[condition])
            for condition, values in found.items() if values
            for metric in METRICS if metric in values]
