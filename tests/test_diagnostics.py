"""The reviewer's figures and the corruption table from known inputs: files are written, and what
is drawn is the input's numbers (curves, bar heights, the amplified perturbation)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medrobust.report.breakdown import read_cells, stage_cells, write_cells
from medrobust.report.diagnostics import (
    corruptions_figure,
    corruptions_plot,
    curves_figure,
    curves_plot,
    examples_figure,
    examples_plot,
    kept_epoch,
    pick_examples,
)


def _history(peak: float, robust: bool) -> list[dict[str, float]]:
    rows = []
    for e in range(1, 6):
        row = {"epoch": e, "val_balanced_accuracy": peak * e / 5, "val_robust_balanced_accuracy": math.nan}
        if robust:
            row["val_robust_balanced_accuracy"] = [0.3, 0.5, 0.4, 0.45, 0.42][e - 1] * peak
        rows.append(row)
    return rows


def _selection(histories: dict, criterion: str, chosen: str) -> dict:
    final = {v: (max(h, key=lambda r: r[criterion]) if criterion.startswith("val_robust") else h[-1])
             for v, h in histories.items()}
    return {"criterion": criterion, "selected": chosen,
            "candidates": [{"point": v, "val": {k: r[k] for k in r if k.startswith("val_")}} for v, r in final.items()]}


def _written(tmp_path: Path, name: str) -> dict[str, Path]:
    return {"out_png": tmp_path / f"{name}.png", "out_pdf": tmp_path / f"{name}.pdf"}


def _check_files(paths: dict[str, Path]) -> None:
    assert paths["out_png"].read_bytes()[:4] == b"\x89PNG" and paths["out_pdf"].read_bytes()[:4] == b"%PDF"


def test_standard_curves_one_panel_selected_last_epoch(tmp_path: Path) -> None:
    histories = {"lr0.1_bs64_ep5_aug0": _history(0.9, False), "lr0.05_bs64_ep5_aug0": _history(0.7, False)}
    selection = _selection(histories, "val_balanced_accuracy", "lr0.1_bs64_ep5_aug0")
    fig = curves_plot(histories, selection, 4, "Synthetic, All features")
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["lr0.1_bs64_ep5_aug0 (selected)"].get_ydata()) == pytest.approx([18, 36, 54, 72, 90])
    assert list(lines["lr0.05_bs64_ep5_aug0"].get_ydata()) == pytest.approx([14, 28, 42, 56, 70])
    assert list(lines["kept weights (epoch 5)"].get_xdata()) == [5]
    assert "validation balanced accuracy (90.0%)" in fig._suptitle.get_text()
    paths = _written(tmp_path, "curves")
    curves_figure(histories, selection, 4, "t", **paths)
    _check_files(paths)


def test_robust_curves_add_the_criterion_panel_and_mark_the_best_epoch() -> None:
    histories = {"a": _history(0.8, True), "b": _history(1.0, True)}
    selection = _selection(histories, "val_robust_balanced_accuracy", "b")
    assert kept_epoch(histories["b"]) == 2 and kept_epoch(_history(1.0, False)) == 5
    fig = curves_plot(histories, selection, 2, "t")
    clean, robust = fig.axes
    assert robust.get_title(loc="right") == "selection criterion" and clean.get_title(loc="right") == ""
    kept = [line for line in robust.get_lines() if line.get_label().startswith("kept")][0]
    assert list(kept.get_xdata()) == [2] and list(kept.get_ydata()) == pytest.approx([50])
    chance = [line for line in robust.get_lines() if line.get_label() == "chance"][0]
    assert list(chance.get_ydata()) == [50, 50]


def test_examples_show_relabelled_images_of_different_classes_first() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    targets = np.array([0, 1, 1, 2, 3, 2, 0, 3])  # relabelled: positions 1, 3, 4, 6 (classes 0, 1, 2, 3)
    picked = pick_examples(labels, targets, 6, seed=0)
    assert sorted(picked[:4]) == [1, 3, 4, 6] and sorted(labels[picked[:4]]) == [0, 1, 2, 3]
    assert len(set(picked)) == 6 and all(targets[i] == labels[i] for i in picked[4:])
    assert list(pick_examples(labels, targets, 6, seed=0)) == list(picked)  # seeded


def test_examples_draw_the_perturbation_amplified(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.2, 0.8, (3, 8, 8, 1)).astype(np.float32)
    delta = rng.choice([-4 / 255, 0, 4 / 255], clean.shape).astype(np.float32)
    fig = examples_plot(clean, clean + delta, np.array([0, 1, 2]), np.array([1, 1, 0]), 4, "Synthetic")
    axes = np.array(fig.axes).reshape(3, 3)
    shown = axes[2, 0].images[0].get_array()
    assert np.allclose(shown, 0.5 + delta[0, ..., 0] * 255 / 8, atol=1e-6)  # +-eps -> white / black
    assert set(np.unique(np.round(shown, 4))) <= {0.0, 0.5, 1.0}
    assert axes[1, 0].get_xlabel() == "new label 1" and axes[0, 0].get_xlabel() == "label 0"
    assert axes[1, 0].xaxis.label.get_color() == "tab:red" and axes[1, 1].xaxis.label.get_color() == "black"
    paths = _written(tmp_path, "examples")
    examples_figure(np.repeat(clean, 3, -1), np.repeat(clean + delta, 3, -1), np.zeros(3, int), np.ones(3, int), 4,
                    "RGB", **paths)  # RGB images too
    _check_files(paths)


def _evaluations(offset: float) -> tuple[dict, dict]:
    per = {"noise": [{"balanced_accuracy": offset + 0.1 * s, "auc": 0.9} for s in range(5)],
           "blur": [{"balanced_accuracy": offset, "auc": 0.8} for _ in range(5)]}
    by_corruption = {n: {k: float(np.mean([m[k] for m in v])) for k in ("balanced_accuracy", "auc")}
                     for n, v in per.items()}
    mean = {k: float(np.mean([by_corruption[n][k] for n in per])) for k in ("balanced_accuracy", "auc")}
    return ({"metrics": {"balanced_accuracy": 0.95, "auc": 0.99}},
            {"by_severity": per, "by_corruption": by_corruption, "mean": mean})


def test_corruption_table_breaks_down_the_summary_mean(tmp_path: Path) -> None:
    cells = []
    for stage, offset in (("base", 0.1), ("robust_eps4", 0.5), ("nonrobust_eps4", 0.2), ("robust_eps8", 0.4)):
        clean, corrupted = _evaluations(offset)
        files = {"clean": clean, "corrupted": corrupted}
        if stage == "base":  # MedMNIST-C as published beside the applied protocol: rows of their own
            files |= {"clean_published": clean, "corrupted_published": _evaluations(offset + 0.05)[1]}
        cells += stage_cells("synthetic", stage, files)
    write_cells(cells, tmp_path / "c.csv")
    back = read_cells(tmp_path / "c.csv")
    assert back == cells
    value = {(c.model, c.eps, c.corruption, c.severity, c.metric): c.value for c in back if c.protocol == "applied"}
    published = {(c.corruption, c.severity, c.metric): c.value for c in back if c.protocol == "published"}
    assert published["noise", "mean", "balanced_accuracy"] == pytest.approx(0.35)
    assert {c.model for c in back if c.protocol == "published"} == {"base"}
    assert value["base", None, "noise", "mean", "balanced_accuracy"] == pytest.approx(0.3)
    assert value["base", None, "all", "2", "balanced_accuracy"] == pytest.approx((0.2 + 0.1) / 2)
    assert value["base", None, "all", "mean", "balanced_accuracy"] == pytest.approx((0.3 + 0.1) / 2)
    assert value["robust", 4, "none", "0", "auc"] == 0.99

    fig = corruptions_plot(back, "synthetic", 4, 4)
    top, bottom = fig.axes
    heights = sorted(round(p.get_height(), 6) for p in top.patches)
    assert heights == sorted(round(100 * v, 6) for v in (0.1, 0.3, 0.5, 0.7, 0.2, 0.4))  # eps 8 only below
    robust8 = [line for line in bottom.get_lines() if "8/255" in line.get_label()][0]
    assert robust8.get_linestyle() == "--"
    assert list(robust8.get_ydata()) == pytest.approx([95, 40, 45, 50, 55, 60])
    paths = _written(tmp_path, "corruptions")
    corruptions_figure(back, "synthetic", 4, 4, **paths)
    _check_files(paths)
    with pytest.raises(ValueError, match="no balanced_accuracy rows for other"):
        corruptions_plot(back, "other", 4, 4)
    with pytest.raises(ValueError, match="no balanced_accuracy rows for synthetic under the published protocol"):
        corruptions_plot([c for c in back if c.protocol == "applied"], "synthetic", 4, 4, "published")
    assert "as published (224 px)" in corruptions_plot(back, "synthetic", 4, 4, "published")._suptitle.get_text()
