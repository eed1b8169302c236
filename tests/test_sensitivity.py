"""The paired sensitivity table (medrobust.report.sensitivity): a variant's replicates 1..k-1
against the main run's replicates 1..k-1, under the same bootstrap weights."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medrobust.core.errors import DataError
from medrobust.core.io import write_npz
from medrobust.report.diagnostics import sensitivity_plot
from medrobust.report.sensitivity import draws_by_run, read, rows, write

N_IMAGES = 400


def draws(values: list[float], noise: np.ndarray) -> dict[str, np.ndarray]:
    """One stage's bootstrap arrays: each replicate's value plus the same image noise per draw."""
    point = np.array(values)
    return {"clean/balanced_accuracy": point[:, None] + noise[None, :], "clean/balanced_accuracy/point": point,
            "clean/n": np.full(len(values), N_IMAGES)}


def test_a_variant_is_paired_with_replicates_1_to_k_minus_1(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).normal(0, 0.01, 500)
    # replicate 0 of the main run (its grid winner) is far off: pairing it would show
    files = {"main/d/nonrobust_eps4": draws([0.20, 0.70, 0.72], noise),
             "shifted/d/nonrobust_eps4": draws([0.80, 0.82], noise),  # +0.10 on each twin
             "same/d/nonrobust_eps4": draws([0.70, 0.72], np.random.default_rng(1).normal(0, 0.01, 500)),
             "untouched/d/nonrobust_eps4": draws([0.70, 0.72], noise)}  # the main run's own files: not moved
    inputs = {}
    for name, arrays in files.items():
        inputs[name] = str(tmp_path / (name.replace("/", "_") + ".npz"))
        write_npz(inputs[name], arrays)
    table = {r["variant"]: r for r in rows(draws_by_run(inputs), 0.95)}
    shifted, same = table["shifted"], table["same"]
    assert "untouched" not in table
    assert shifted["pairs"] == 2 and shifted["main"] == pytest.approx(0.71)
    assert shifted["difference"] == pytest.approx(0.10) and shifted["reading"] == "differs"
    assert shifted["difference_low"] == pytest.approx(0.10) == shifted["difference_high"]  # no spread at all
    assert same["difference"] == pytest.approx(0.0) and same["reading"] == "not distinguished"
    write([shifted, same], [], tmp_path / "s.csv", tmp_path / "v.csv", tmp_path / "s.md", 0.95)
    with open(tmp_path / "s.csv") as f:
        assert [r["reading"] for r in csv.DictReader(f)] == ["differs", "not distinguished"]
    back = read(tmp_path / "s.csv")
    assert back[0]["difference"] == pytest.approx(0.10, abs=1e-4) and back[0]["stage"] == "nonrobust_eps4"
    # the figure: one row per moved number of Fig. 2 / Table 1; a variant that moves none says so
    ax = sensitivity_plot(back, "shifted", 4).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["d · Nonrobust features only (ε=4/255) · In-distribution"]
    assert "moves none" in sensitivity_plot(back, "other", 4).axes[0].texts[0].get_text()
    assert "| shifted | d | nonrobust_eps4 | clean | balanced_accuracy | 0.710" in (tmp_path / "s.md").read_text()

    write_npz(inputs["same/d/nonrobust_eps4"], draws([0.70, 0.72, 0.75], noise))  # all 3 replicates: not paired
    with pytest.raises(DataError, match="not the main run's replicates 1..k-1"):
        draws_by_run(inputs)
