"""How each test number moves under a named variant (docs/variants.md): the paired sensitivity table.

A variant's replicates 1..k-1 are paired with the main run's replicates 1..k-1 (same seeds, same
test images; replicate 0, the main run's grid winner, has no twin), and both bootstrap draws use
the same image weights (medrobust.report.intervals), so the difference variant - main is a
paired one: `intervals.difference`, the seeds' spread of the per-replicate differences plus
the test images' (its ends cut to [-1, 1], the range a difference of two values in [0, 1] can
take: with two pairs the t quantile is 12.7). A difference whose interval excludes 0 is reported as `differs`; one whose
interval contains it as `not distinguished` (which is not a proof of no effect). Variants are
outside the verdicts' multiplicity families: these intervals are each at the bootstrap level.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medrobust.core.errors import DataError
from medrobust.core.io import npz_shapes, read_csv, read_npz
from medrobust.core.stages import METRICS
from medrobust.report.intervals import difference, estimate
from medrobust.report.tables import load_paper_values
from medrobust.report.verdicts import RunResults, judge, load_claims

VERDICT_COLUMNS = ["variant", "dataset", "claim", "metric", "subject", "main", "value", "change"]
COLUMNS = ["variant", "dataset", "stage", "condition", "metric", "pairs", "main", "main_low", "main_high",
           "value", "value_low", "value_high", "difference", "difference_low", "difference_high", "reading"]


def _read(path: str) -> dict[str, np.ndarray]:
    return read_npz(path, tuple(npz_shapes(path)))


def _keys(arrays: Mapping[str, np.ndarray]) -> list[str]:
    """'<condition>/<metric>' of one stage's draws, in a fixed order."""
    return sorted(k for k in arrays if k.count("/") == 1 and k.split("/")[1] in METRICS)


Runs = dict[str, dict[str, dict[str, dict[str, np.ndarray]]]]  # run -> dataset -> stage -> draws


def draws_by_run(inputs: Mapping[str, str]) -> Runs:
    """Named bootstrap draws (`main/<dataset>/<stage>`: replicates 0..k-1 of every stage;
    `<variant>/<dataset>/<stage>`: a variant's replicates 1..k-1 of what it moves) by run,
    dataset and stage, the main run's cut to its replicates 1..k-1."""
    runs: Runs = {}
    for name, path in sorted(inputs.items()):
        run, dataset, stage = name.split("/")
        arrays = _read(path)
        runs.setdefault(run, {}).setdefault(dataset, {})[stage] = (
            {k: v[1:] for k, v in arrays.items()} if run == "main" else arrays)
    for run, datasets in runs.items():
        for dataset, stages in datasets.items():
            for stage, arrays in stages.items():
                main = runs["main"][dataset][stage]
                if len(arrays[f"{_keys(arrays)[0]}/point"]) != len(main[f"{_keys(main)[0]}/point"]):
                    raise DataError(f"{inputs[f'{run}/{dataset}/{stage}']}: not the main run's replicates 1..k-1 "
                                    f"of {dataset} {stage}")
    return runs


def rows(runs: Runs, level: float) -> list[dict[str, Any]]:
    """One row per variant, dataset, stage, condition and metric that the variant moved (a
    condition whose draws are the main run's is its own evaluation file: not moved)."""
    out = []
    for variant, datasets in runs.items():
        for dataset, stage, other in ((d, s, a) for d, st in datasets.items() for s, a in st.items()):
            if variant == "main":
                continue
            main = runs["main"][dataset][stage]
            for key in _keys(other):
                if np.array_equal(other[key], main[key]):  # the main run's own evaluation (e.g. a last epoch)
                    continue
                m, v = estimate(main, key, level), estimate(other, key, level)
                d = difference(other, main, key, key, level)
                out.append({"variant": variant, "dataset": dataset, "stage": stage, "condition": key.split("/")[0],
                            "metric": key.split("/")[1], "pairs": d.k, "main": m.mean, "main_low": m.low,
                            "main_high": m.high, "value": v.mean, "value_low": v.low, "value_high": v.high,
                            "difference": d.mean, "difference_low": max(d.low, -1.0),
                            "difference_high": min(d.high, 1.0),
                            "reading": "differs" if d.low > 0 or d.high < 0 else "not distinguished"})
    return out


def read(path: str | Path) -> list[dict[str, Any]]:
    """sensitivity.csv's rows, numbers as floats (a file of other columns is a DataError)."""
    columns, found = read_csv(path)
    if columns != COLUMNS:
        raise DataError(f"{path}: expected columns {', '.join(COLUMNS)}, got {columns}")
    text = ("variant", "dataset", "stage", "condition", "metric", "reading")
    try:
        return [{k: v if k in text else float(v) for k, v in r.items()} for r in found]
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) and not math.isnan(value) else str(value)


def verdict_rows(runs: Runs, run_of: Callable[[str, dict[str, Any]], RunResults],
                 table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every verdict of every dataset judged on the main run's replicates 1..k-1 and again with a
    variant's draws in place of the stages it moved: `same`, `changes`, or `borderline` when it
    changes while none of the numbers the variant moved on that dataset and metric `differs`."""
    claims, paper, out = load_claims(), load_paper_values(), []
    for variant, datasets in ((v, d) for v, d in runs.items() if v != "main"):
        for dataset, main in runs["main"].items():
            before = judge(run_of(dataset, main), claims, paper)
            after = {(x.claim, x.metric, x.subject): x for x in
                     judge(run_of(dataset, {**main, **datasets.get(dataset, {})}), claims, paper)}
            moved = {r["metric"] for r in table if (r["variant"], r["dataset"], r["reading"]) == (variant, dataset, "differs")}
            for b in before:
                a = after[(b.claim, b.metric, b.subject)]
                change = "same" if a.verdict == b.verdict else "changes" if b.metric in moved else "borderline"
                out.append({"variant": variant, "dataset": dataset, "claim": b.name, "metric": b.metric,
                            "subject": b.subject, "main": b.verdict, "value": a.verdict, "change": change})
    return out


def write(table: list[dict[str, Any]], verdicts: list[dict[str, Any]], csv_path: str | Path,
          verdicts_path: str | Path, md_path: str | Path, level: float) -> None:
    for rows_, path, columns in ((table, csv_path, COLUMNS), (verdicts, verdicts_path, VERDICT_COLUMNS)):
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows_)
    lines = [f"# Sensitivity to the variants ({level:.0%} intervals, paired on replicates 1..k-1)", "",
             "| variant | dataset | stage | condition | metric | main | variant | difference | reading |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['variant']} | {r['dataset']} | {r['stage']} | {r['condition']} | {r['metric']} "
                     f"| {r['main']:.3f} [{r['main_low']:.3f}, {r['main_high']:.3f}] "
                     f"| {r['value']:.3f} [{r['value_low']:.3f}, {r['value_high']:.3f}] "
                     f"| {r['difference']:+.3f} [{r['difference_low']:+.3f}, {r['difference_high']:+.3f}] "
                     f"| {r['reading']} |")
    changed = [r for r in verdicts if r["change"] != "same"]
    lines += ["", f"Every verdict judged on replicates 1..k-1, under the main run and under each variant: "
              f"{len(verdicts) - len(changed)} of {len(verdicts)} the same" + ("." if not changed else "; these change:"), ""]
    if changed:
        lines += ["| variant | dataset | claim | metric | subject | main | variant | change |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['variant']} | {r['dataset']} | {r['claim']} | {r['metric']} | {r['subject']} | {r['main']} "
                  f"| {r['value']} | {r['change']} |" for r in changed]
    Path(md_path).write_text("\n".join(lines) + "\n")
