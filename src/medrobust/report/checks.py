"""Sanity checks a reviewer sees (results/summary/checks.csv): one row per dataset, stage and
check, saying what was expected, what was measured and whether it is flagged.

Flags inform; they never fail the run. Each check is a pure function of the numbers it judges;
`gather` reads them from the evaluation, construction, selection and training files, and a
missing input (e.g. no AutoAttack for a stage) gives no row for that check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

from medrobust.core.io import read_json, write_csv
from medrobust.core.stages import parse_stage
from medrobust.report.tables import Results, Row

ONE_CLASS_SHARE = 0.95  # flagged when at least this share of clean test predictions is one class
MIN_TARGET_HIT_RATE = 0.9  # flagged below: the nonrobust-feature set is not what the paper's is
MAX_AUTOATTACK_BALANCED_ACCURACY = 0.05  # base and nonrobust-only models; the paper reports about 0
CHANCE_ROUND_OFF = 1e-9  # a constant prediction's balanced accuracy is 1/C up to float round-off
COLUMNS = ("dataset", "stage", "check", "expected", "measured", "flag")
METRIC = "balanced_accuracy"


@dataclass(frozen=True)
class Check:
    dataset: str
    stage: str
    check: str
    expected: str
    measured: str
    flag: bool


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def one_class(dataset: str, stage: str, counts: Sequence[int]) -> Check | None:
    """Does the selected model put (nearly) every clean test image in one class?"""
    n = sum(counts)
    if not n:
        return None
    top = max(range(len(counts)), key=lambda c: counts[c])
    share = counts[top] / n
    return Check(dataset, stage, "one_class_predictions",
                 f"< {_pct(ONE_CLASS_SHARE)} of clean test predictions in one class",
                 f"{_pct(share)} class {top} ({counts[top]} of {n})", share >= ONE_CLASS_SHARE)


def target_hit_rate(dataset: str, stage: str, rate: float, n_used: int | None = None) -> Check:
    """Did the targeted attack that built the nonrobust-feature set reach its targets?"""
    of = "" if n_used is None else f" of {n_used} images"
    measured = f"undefined (no images{of})" if math.isnan(rate) else f"{_pct(rate)}{of}"
    return Check(dataset, stage, "target_hit_rate",
                 f">= {_pct(MIN_TARGET_HIT_RATE)} of adversarial images classified as their target",
                 measured, math.isnan(rate) or rate < MIN_TARGET_HIT_RATE)


def autoattack_near_zero(dataset: str, stage: str, value: float) -> Check:
    """A base or nonrobust-only model should have (about) no balanced accuracy under AutoAttack."""
    return Check(dataset, stage, "autoattack_near_zero",
                 f"<= {_pct(MAX_AUTOATTACK_BALANCED_ACCURACY)} balanced accuracy under AutoAttack (paper: about 0)",
                 _pct(value), value > MAX_AUTOATTACK_BALANCED_ACCURACY)


def robust_not_below_base(dataset: str, stage: str, robust: float, base: float) -> Check:
    """The paper's claim: the robust model does better than the base model under corruptions."""
    return Check(dataset, stage, "robust_vs_base_corrupted",
                 f">= the base model's {_pct(base)} mean balanced accuracy under MedMNIST-C corruptions",
                 _pct(robust), robust < base)


def beats_chance(dataset: str, stage: str, history: Sequence[dict[str, Any]], n_classes: int) -> Check | None:
    """Did the selected grid point's validation balanced accuracy ever rise above chance (1/C)?"""
    values = [(row.get("epoch"), row["val_balanced_accuracy"]) for row in history
              if not math.isnan(row.get("val_balanced_accuracy", math.nan))]
    if not values:
        return None
    epoch, best = max(values, key=lambda v: v[1])
    chance = 1 / n_classes
    return Check(dataset, stage, "beats_chance_on_validation",
                 f"validation balanced accuracy above chance ({_pct(chance)} = 1/{n_classes}) in some epoch",
                 f"best {_pct(best)} (epoch {epoch}) of {len(values)} epoch{'s' if len(values) > 1 else ''}",
                 best <= chance + CHANCE_ROUND_OFF)


def selected_history(selection: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The per-epoch history of the selected grid point (None when its metrics file or the
    file's history is missing)."""
    chosen = next((c for c in selection["candidates"] if c["point"] == selection["selected"]), None)
    if chosen is None or not Path(chosen["path"]).exists():
        return None
    return read_json(chosen["path"]).get("history")


def summary_checks(dataset: str, stage: str, results: Results) -> list[Check]:
    """The checks read off the summary table: AutoAttack near zero, robust vs base under corruption."""
    model, eps = parse_stage(stage)
    out = []
    attacked = results.get(dataset, model, eps, "autoattack", METRIC)
    if model in ("base", "nonrobust") and attacked is not None:
        out.append(autoattack_near_zero(dataset, stage, attacked))
    robust, base = (results.get(dataset, m, eps, "corrupted", METRIC) for m in ("robust", "base"))
    if model == "robust" and robust is not None and base is not None:
        out.append(robust_not_below_base(dataset, stage, robust, base))
    return out


def stage_checks(entry: dict[str, Any], results: Results) -> list[Check]:
    """Every check of one stage; `entry` names its files (clean, selection, construction)."""
    dataset, stage = entry["dataset"], entry["stage"]
    found: list[Check | None] = []
    if entry.get("clean") and Path(entry["clean"]).exists():
        counts = read_json(entry["clean"])["metrics"].get("predicted_class_counts")
        found.append(one_class(dataset, stage, counts) if counts else None)
    if entry.get("construction") and Path(entry["construction"]).exists():
        stats = read_json(entry["construction"])
        found.append(target_hit_rate(dataset, stage, stats["target_hit_rate"], stats.get("n_used")))
    found += summary_checks(dataset, stage, results)
    if entry.get("selection") and Path(entry["selection"]).exists():
        history = selected_history(read_json(entry["selection"]))
        found.append(beats_chance(dataset, stage, history, entry["n_classes"]) if history else None)
    return [c for c in found if c is not None]


def every_check(stages: Iterable[dict[str, Any]], summary: Iterable[Row]) -> list[Check]:
    """Every check of every stage (each a {dataset, stage, n_classes, clean, selection[,
    construction]} with file paths), in their order."""
    results = Results.of(summary)
    return [c for entry in stages for c in stage_checks(entry, results)]


def write_checks(checks: Iterable[Check], path: str | Path) -> None:
    write_csv(path, COLUMNS, ([*astuple(c)[:-1], "true" if c.flag else "false"] for c in checks))
