"""Sanity checks (results/summary/checks.csv): each check on known inputs, the command end to
end on hand-written files, and the rule in the demo's DAG."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from medrobust.cli.main import main
from medrobust.core.io import write_json
from medrobust.core.paths import key
from medrobust.report.checks import (
    autoattack_near_zero,
    beats_chance,
    every_check,
    one_class,
    robust_not_below_base,
    target_hit_rate,
)
from medrobust.report.tables import Row, write_summary

from conftest import REPO, env_with_venv

BA = "balanced_accuracy"


def test_one_class_predictions() -> None:
    collapsed = one_class("breastmnist", "robust_eps8", [0, 156])
    assert collapsed is not None and collapsed.flag
    assert collapsed.measured == "100.00% class 1 (156 of 156)"
    assert collapsed.expected == "< 95.00% of clean test predictions in one class"
    assert not one_class("d", "base", [94, 6]).flag  # type: ignore[union-attr]
    assert one_class("d", "base", [5, 95, 0]).flag  # type: ignore[union-attr]  # the threshold counts
    assert one_class("d", "base", [0, 0]) is None  # nothing predicted: nothing measured


def test_target_hit_rate() -> None:
    low = target_hit_rate("d", "nonrobust_eps4", 0.85, 1000)
    assert low.flag and low.measured == "85.00% of 1000 images"
    assert not target_hit_rate("d", "nonrobust_eps4", 0.95).flag
    assert target_hit_rate("d", "nonrobust_eps4", float("nan"), 0).flag  # no image was used


def test_autoattack_near_zero() -> None:
    assert autoattack_near_zero("d", "base", 0.10).flag
    assert autoattack_near_zero("d", "base", 0.10).measured == "10.00%"
    assert not autoattack_near_zero("d", "nonrobust_eps4", 0.0).flag
    assert not autoattack_near_zero("d", "base", 0.05).flag  # "above 5%" is flagged, 5% is not


def test_robust_not_below_base_under_corruption() -> None:
    reversed_claim = robust_not_below_base("d", "robust_eps4", robust=0.30, base=0.45)
    assert reversed_claim.flag and reversed_claim.measured == "30.00%" and "45.00%" in reversed_claim.expected
    assert not robust_not_below_base("d", "robust_eps4", robust=0.46, base=0.25).flag


def _history(values: list[float]) -> list[dict[str, float]]:
    return [{"epoch": i + 1, "val_balanced_accuracy": v} for i, v in enumerate(values)]


def test_beats_chance() -> None:
    stuck = beats_chance("d", "robust_eps8", _history([0.25, 0.25, 0.2]), 4)
    assert stuck is not None and stuck.flag and stuck.measured == "best 25.00% (epoch 1) of 3 epochs"
    learnt = beats_chance("d", "base", _history([0.25, 0.31]), 4)
    assert learnt is not None and not learnt.flag
    one_of_three = float(np.mean([1.0, 0.0, 0.0]))  # a constant prediction's balanced accuracy, computed
    assert beats_chance("d", "base", _history([one_of_three]), 3).flag  # type: ignore[union-attr]
    assert beats_chance("d", "base", [], 4) is None


def _study(root: Path) -> list[dict]:
    """A two-stage study on disk: the base model learnt, predicts both classes and falls to 0 under
    attack; the robust model (eps 8) collapsed to class 1, never beat chance and does worse than
    base under corruptions; the eps-8 nonrobust set hit its targets 85% of the time. The
    nonrobust-only model has no clean evaluation, selection or AutoAttack: no rows for those."""
    write_summary([Row("breastmnist", "base", None, "clean", BA, 0.80, 2),
                   Row("breastmnist", "base", None, "corrupted", BA, 0.60, 2),
                   Row("breastmnist", "base", None, "autoattack", BA, 0.0, 2),
                   Row("breastmnist", "robust", 8, "clean", BA, 0.50, 2),
                   Row("breastmnist", "robust", 8, "corrupted", BA, 0.50, 2),
                   Row("breastmnist", "robust", 8, "autoattack", BA, 0.50, 2)], root / "metrics.csv")
    inputs = {}
    for stage, counts, history in (("base", [60, 96], [0.5, 0.7, 0.8]), ("robust_eps8", [0, 156], [0.5, 0.5])):
        write_json(root / stage / "clean.json", {"metrics": {BA: 0.5, "predicted_class_counts": counts}})
        point = "lr0.1_bs128_ep3_aug0"
        write_json(root / stage / point / "metrics.json", {"history": _history(history)})
        write_json(root / stage / "selected.json", {"selected": point, "candidates": [
            {"point": "lr0.05_bs128_ep3_aug0", "path": str(root / "elsewhere.json")},  # not selected: never read
            {"point": point, "path": str(root / stage / point / "metrics.json")}]})
        inputs[key("breastmnist", stage, None, "selection")] = str(root / stage / "selected.json")
        inputs[key("breastmnist", stage, 0, "clean")] = str(root / stage / "clean.json")
    write_json(root / "nonrobust_eps8.json", {"target_hit_rate": 0.85, "n_used": 400})
    inputs |= {key("breastmnist", "nonrobust_eps8", None, "selection"): str(root / "absent_selected.json"),
               key("breastmnist", "nonrobust_eps8", 0, "clean"): str(root / "absent.json"),
               key("breastmnist", "nonrobust_eps8", 0, "construction"): str(root / "nonrobust_eps8.json")}
    return inputs


def test_checks_command_end_to_end(tmp_path: Path) -> None:
    inputs = _study(tmp_path)
    out = tmp_path / "summary" / "checks.csv"
    assert main(["checks", "--inputs", json.dumps(inputs), "--n-classes", '{"breastmnist": 2}',
                 "--summary", str(tmp_path / "metrics.csv"), "--out", str(out)]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(list(r) == ["dataset", "stage", "check", "expected", "measured", "flag"] for r in rows)
    flags = {(r["stage"], r["check"]): r["flag"] for r in rows}
    assert flags == {
        ("base", "one_class_predictions"): "false",
        ("base", "autoattack_near_zero"): "false",
        ("base", "beats_chance_on_validation"): "false",
        ("robust_eps8", "one_class_predictions"): "true",
        ("robust_eps8", "robust_vs_base_corrupted"): "true",
        ("robust_eps8", "beats_chance_on_validation"): "true",
        ("nonrobust_eps8", "target_hit_rate"): "true",
    }
    collapsed = next(r for r in rows if r["stage"] == "robust_eps8" and r["check"] == "one_class_predictions")
    assert collapsed["measured"] == "100.00% class 1 (156 of 156)"


def test_a_clean_evaluation_without_the_new_counts_gives_no_one_class_row(tmp_path: Path) -> None:
    """A clean evaluation written before predicted_class_counts existed: no row, not an error."""
    write_json(tmp_path / "clean.json", {"metrics": {BA: 0.8}})
    layout = [{"dataset": "d", "stage": "base", "n_classes": 2, "clean": str(tmp_path / "clean.json"),
               "selection": str(tmp_path / "missing.json")}]
    assert every_check(layout, [Row("d", "base", None, "clean", BA, 0.8, 2)]) == []


def test_checks_csv_is_a_target_of_the_demo(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                           "--configfile", str(REPO / "config.demo.yaml"), "-n"],
                          capture_output=True, text=True, env=env_with_venv(), timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    jobs = {m[1]: m[2] for m in re.finditer(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", done.stdout, re.M)}
    assert "output: results/summary/checks.csv" in jobs["checks"]
    assert "results/summary/checks.csv" in re.search(r"input: (.*)", jobs["all"])[1]  # type: ignore[index]
    for needed in ("results/summary/metrics.csv", "results/synthetic/rep0/data/nonrobust_eps4.json",
                   "results/synthetic/grid/robust_eps4/selected.json", "results/synthetic/rep0/base/eval/clean.json",
                   "results/synthetic/grid/lr0.1_bs64_ep20_aug0/base/metrics.json"):
        assert needed in jobs["checks"], needed


def test_checks_module_is_torch_free() -> None:
    """The checks run in a light job: importing them must not pull in torch."""
    done = subprocess.run([sys.executable, "-c", "import sys, medrobust.report.checks; print('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
