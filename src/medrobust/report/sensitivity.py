"""How each test number moves under a named variant (docs/variants.md): the paired sensitivity table.

A variant's replicates 1..k-1 are paired with the main run's replicates 1..k-1 (same seeds, same
test images; replicate 0, the main run's grid winner, has no twin), and both bootstrap draws use
the same image weights (medrobust.report.intervals), so the difference variant - main is a
paired one: `intervals.difference`, the seeds' spread of the per-replicate differences plus
the test images'. A difference whose interval excludes 0 is reported as `differs`; one whose
interval contains it as `not distinguished` (which is not a proof of no effect). Variants are
outside the verdicts' multiplicity families: these intervals are each at the bootstrap level.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medrobust.core.errors import DataError
from medrobust.core.io import npz_shapes, read_npz
from medrobust.core.stages import METRICS
from medrobust.report.intervals import difference, estimate

COLUMNS = ["variant", "dataset", "stage", "condition", "metric", "pairs", "main", "main_low", "main_high",
           "value", "value_low", "value_high", "difference", "difference_low", "difference_high", "reading"]


def _read(path: str) -> dict[str, np.ndarray]:
    return read_npz(path, tuple(npz_shapes(path)))


def _keys(arrays: Mapping[str, np.ndarray]) -> list[str]:
    """'<condition>/<metric>' of one stage's draws, in a fixed order."""
    return sorted(k for k in arrays if k.count("/") == 1 and k.split("/")[1] in METRICS)


def rows(inputs: Mapping[str, str], level: float) -> list[dict[str, Any]]:
    """One row per variant, dataset, stage, condition and metric that the variant moved, from
    named bootstrap draws: `main/<dataset>/<stage>` (replicates 0..k-1) and
    `<variant>/<dataset>/<stage>` (the variant's replicates 1..k-1, in order)."""
    out = []
    for name, path in sorted(inputs.items()):
        variant, dataset, stage = name.split("/")
        if variant == "main":
            continue
        main = {k: v[1:] for k, v in _read(inputs[f"main/{dataset}/{stage}"]).items()}  # replicates 1..k-1
        other = _read(path)
        if len(other[f"{_keys(other)[0]}/point"]) != len(main[f"{_keys(main)[0]}/point"]):
            raise DataError(f"{path}: not the main run's replicates 1..k-1 of {dataset} {stage}")
        for key in _keys(other):
            m, v = estimate(main, key, level), estimate(other, key, level)
            d = difference(other, main, key, key, level)
            out.append({"variant": variant, "dataset": dataset, "stage": stage, "condition": key.split("/")[0],
                        "metric": key.split("/")[1], "pairs": d.k, "main": m.mean, "main_low": m.low,
                        "main_high": m.high, "value": v.mean, "value_low": v.low, "value_high": v.high,
                        "difference": d.mean, "difference_low": d.low, "difference_high": d.high,
                        "reading": "differs" if d.low > 0 or d.high < 0 else "not distinguished"})
    return out


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) and not math.isnan(value) else str(value)


def write(table: list[dict[str, Any]], csv_path: str | Path, md_path: str | Path, level: float) -> None:
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in table)
    pct = f"{level:.0%}"
    lines = [f"# Sensitivity to the variants: main run vs each variant, paired on replicates 1..k-1 ({pct} intervals)",
             "", "| variant | dataset | stage | condition | metric | main | variant | difference | reading |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['variant']} | {r['dataset']} | {r['stage']} | {r['condition']} | {r['metric']} "
                     f"| {r['main']:.3f} [{r['main_low']:.3f}, {r['main_high']:.3f}] "
                     f"| {r['value']:.3f} [{r['value_low']:.3f}, {r['value_high']:.3f}] "
                     f"| {r['difference']:+.3f} [{r['difference_low']:+.3f}, {r['difference_high']:+.3f}] "
                     f"| {r['reading']} |")
    if not table:
        lines.append("| (no variant moved a test number) | | | | | | | | |")
    Path(md_path).write_text("\n".join(lines) + "\n")
