"""Figures and tables from a small summary: files are written, numbers are the fixture's, missing stays missing."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medrobust.core.errors import DataError
from medrobust.evaluate.saliency import normalise_saliency
from medrobust.report.figures import bar_figure, bar_plot, eps_figure, eps_plot, saliency_figure, saliency_plot
from medrobust.report.tables import (
    Row,
    Table,
    hyperparameter_table,
    load_paper_values,
    read_summary,
    robustness_table,
    write_summary,
    write_table,
)

BA, AUC = "balanced_accuracy", "auc"
NAN = float("nan")


def _rows() -> list[Row]:
    """PathMNIST (9 classes) and BreastMNIST (binary). Missing on purpose: nonrobust at eps 8, robust eps 8
    except clean balanced accuracy, AutoAttack AUC, BreastMNIST's robust OOD; PathMNIST's nonrobust
    AutoAttack is NaN (undefined), which counts as missing."""
    rows = []
    for d, c, (base, rob, nr, rob_aa) in (("pathmnist", 9, (0.8855, 0.7508, 0.5924, 0.5845)),
                                          ("breastmnist", 2, (0.80, 0.7475, 0.60, 0.70))):
        for model, eps, clean, aa in (("base", None, base, 0.0003), ("robust", 4, rob, rob_aa), ("nonrobust", 4, nr, NAN)):
            rows += [Row(d, model, eps, "clean", BA, clean, c), Row(d, model, eps, "clean", AUC, clean + 0.1, c),
                     Row(d, model, eps, "autoattack", BA, aa if d == "pathmnist" else 0.0, c, 100),
                     Row(d, model, eps, "autoattack_clean", BA, clean - 0.01, c, 100)]
            if not (d == "breastmnist" and model == "robust"):
                rows += [Row(d, model, eps, "corrupted", BA, clean / 2, c),
                         Row(d, model, eps, "corrupted", AUC, clean / 2 + 0.1, c)]
        rows.append(Row(d, "robust", 8, "clean", BA, rob - 0.0308, c))
    return rows


def _synthetic() -> list[Row]:
    return [Row("synthetic", m, e, k, BA, 0.7, 4) for m, e in (("base", None), ("robust", 4), ("nonrobust", 4))
            for k in ("clean", "corrupted", "autoattack")]


def _written(table: Table, root: Path) -> tuple[list[list[str]], str, str]:
    paths = {k: root / f"t.{k}" for k in ("csv", "md", "tex")}
    write_table(table, out_csv=paths["csv"], out_md=paths["md"], out_tex=paths["tex"])
    with open(paths["csv"], newline="") as f:
        parsed = list(csv.reader(f))
    return parsed, paths["md"].read_text(), paths["tex"].read_text()


def _by_key(table: Table, n: int) -> dict[tuple, tuple]:
    return {row[:n]: row[n:] for row in table.rows}


def test_summary_round_trip(tmp_path: Path) -> None:
    rows = _rows()
    write_summary(rows, tmp_path / "s.csv")
    back = read_summary(tmp_path / "s.csv")
    assert repr(back) == repr(rows)  # repr, not ==: NaN != NaN, but both print as nan


@pytest.mark.parametrize("line, message", [
    ("pathmnist,foo,4,clean,auc,0.5,9", "model 'foo'"),
    ("pathmnist,base,4,clean,auc,0.5,9", "eps must be empty"),
    ("pathmnist,robust,,clean,auc,0.5,9", "eps must be empty"),
    ("pathmnist,base,,clean,auc,1.5,9", "outside [0, 1]"),
    ("pathmnist,base,,clean,auc,x,9", "s.csv, line 3: could not convert"),
    ("pathmnist,base,,clean,balanced_accuracy,0.5,9", "more than one row"),
    ("pathmnist,base,,clean,auc,0.5,3", "n_classes 9 and 3"),
])
def test_read_summary_rejects_bad_rows(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text("dataset,model,eps,condition,metric,value,n_classes\n"
                    f"pathmnist,base,,clean,balanced_accuracy,0.5,9\n{line}\n")
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_summary(path)


def test_read_summary_names_missing_columns(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("dataset,model,value\npathmnist,base,0.5\n")
    with pytest.raises(DataError, match=r"s\.csv: missing columns \['condition', 'eps', 'metric', 'n_classes'\]"):
        read_summary(tmp_path / "s.csv")


def _assert_png_pdf(png: Path, pdf: Path) -> None:
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert pdf.read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("metric", [BA, AUC])
def test_bar_figure_writes_png_and_pdf(tmp_path: Path, metric: str) -> None:
    bar_figure(_rows(), metric, out_png=tmp_path / "f.png", out_pdf=tmp_path / "f.pdf")
    _assert_png_pdf(tmp_path / "f.png", tmp_path / "f.pdf")


def test_bar_plot_draws_present_values_and_marks_missing() -> None:
    ax = bar_plot(_rows(), BA).axes[0]
    heights = sorted(round(p.get_height(), 2) for p in ax.patches)
    assert len(heights) == 11 and 88.55 in heights and 44.28 in heights  # 12 bars less BreastMNIST's robust OOD
    assert [t.get_text() for t in ax.texts] == ["n/a"]
    chance = sorted(round(y, 2) for c in ax.collections for y in c.get_segments()[0][:, 1])
    assert chance == [11.11, 11.11, 50.0, 50.0]  # one line per dataset at 1/C
    auc_ax = bar_plot(_rows(), AUC).axes[0]
    assert {round(y, 2) for c in auc_ax.collections for y in c.get_segments()[0][:, 1]} == {50.0}


def test_eps_figure_marks_missing_eps8(tmp_path: Path) -> None:
    eps_figure(_rows(), out_png=tmp_path / "f.png", out_pdf=tmp_path / "f.pdf")
    _assert_png_pdf(tmp_path / "f.png", tmp_path / "f.pdf")
    clean, ood = eps_plot(_rows()).axes[:2]
    assert len(clean.texts) == 2 and len(clean.patches) == 6  # nonrobust eps 8 absent on both datasets
    assert len(ood.texts) == 5 and len(ood.patches) == 3  # and BreastMNIST robust OOD at eps 4 and 8


def test_figures_reject_unknown_metric_and_empty_summary() -> None:
    with pytest.raises(ValueError, match="metric"):
        bar_plot(_rows(), "accuracy")
    with pytest.raises(ValueError, match="no rows"):
        eps_plot([])


def test_normalise_saliency_on_known_gradient() -> None:
    grad = np.array([[[-3.0, 1.0], [0.0, 2.0]], [[1.0, -1.0], [0.5, 0.0]]])  # (C=2, H=2, W=2)
    np.testing.assert_allclose(normalise_saliency(grad), [[1.0, 0.2], [0.0, 0.6]])
    np.testing.assert_allclose(normalise_saliency(np.array([[0.0, -2.0], [1.0, 2.0]])), [[0, 1], [0.5, 1]])
    np.testing.assert_array_equal(normalise_saliency(np.full((3, 4, 4), 7.0)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="gradient"):
        normalise_saliency(np.zeros(5))


def _saliency_inputs(channels: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    images = rng.random((2, 8, 8, channels))
    maps = {m: np.stack([normalise_saliency(rng.normal(size=(channels, 8, 8))) for _ in range(2)])
            for m in ("Robust", "Nonrobust")}
    return images, maps


@pytest.mark.parametrize("channels", [1, 3])
def test_saliency_figure(tmp_path: Path, channels: int) -> None:
    images, maps = _saliency_inputs(channels)
    saliency_figure(images, maps, out_png=tmp_path / "f.png", out_pdf=tmp_path / "f.pdf",
                    predictions={"Robust": ("kidney", "kidney"), "Nonrobust": ("kidney", "liver")})
    _assert_png_pdf(tmp_path / "f.png", tmp_path / "f.pdf")
    axes = saliency_plot(images, maps).axes
    assert [a.get_title() for a in axes[:3]] == ["Image", "Robust", "Nonrobust"]


def test_saliency_figure_checks_its_inputs() -> None:
    images, maps = _saliency_inputs(1)
    with pytest.raises(ValueError, match="images must be"):
        saliency_plot(images[:1], maps)
    with pytest.raises(ValueError, match="'Robust' has shape"):
        saliency_plot(images, {**maps, "Robust": maps["Robust"][:, :4]})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        saliency_plot(images, {**maps, "Robust": maps["Robust"] * 2})


def test_robustness_table_values_and_missing(tmp_path: Path) -> None:
    rows_in = _rows()
    # one row with an interval and replicates: the table shows them
    rows_in = [Row(r.dataset, r.model, r.eps, r.condition, r.metric, r.value, r.n_classes, r.n, 0.70, 0.78, 0.01, 3)
               if (r.dataset, r.model, r.eps, r.condition) == ("pathmnist", "robust", 4, "autoattack_clean")
               and r.metric == "balanced_accuracy" else r for r in rows_in]
    table = robustness_table(rows_in)
    rows = _by_key(table, 3)
    # clean and attacked on the same images (the attack's), with their number
    assert rows[("PathMNIST", "All features", "")] == (100, None, pytest.approx(87.55), "", pytest.approx(0.03), "")
    assert rows[("PathMNIST", "Robust features", 4)][:3] == (100, None, pytest.approx(74.08))
    assert rows[("PathMNIST", "Robust features", 4)][3] == "[70.00, 78.00]"
    assert rows[("PathMNIST", "Nonrobust features only", 4)][4] is None  # NaN in the summary
    # the robust eps-8 model was not attacked: its full-test clean number is not Table 1's
    assert rows[("PathMNIST", "Robust features", 8)] == (None, None, None, "", None, "")
    parsed, md, tex = _written(table, tmp_path)
    assert parsed[0] == list(table.columns) and len(parsed) == 1 + 10
    pm_rob4 = next(r for r in parsed if r[:3] == ["PathMNIST", "Robust features", "4"])
    assert pm_rob4[3:] == ["100", "", "74.08", "[70.00, 78.00]", "58.45", ""]
    assert "| Dataset | Model | ε (/255) | Images | Replicates | Clean balanced accuracy (%) |" in md
    assert r"\begin{tabular}" in tex and r"$\varepsilon$ (/255)" in tex and r"100 & -- & 74.08 & [70.00, 78.00]" in tex


def test_packaged_paper_values_are_the_papers() -> None:
    v = load_paper_values()["values"]
    stated = {(d, m, c): e["value"] for d, ms in v.items() for m, cs in ms.items() for c, e in cs.items()}
    for d, clean, aa in (("pathmnist", 76.08, 57.45), ("pneumoniamnist", 83.68, 73.85), ("octmnist", 72.60, 59.00),
                         ("organsmnist", 73.71, 67.88), ("breastmnist", 74.75, 64.79)):
        assert (stated[(d, "robust", "clean")], stated[(d, "robust", "autoattack")]) == (clean, aa)
        # Sec. 4.3's "<= 0.04%" for base and nonrobust-only models is claim C5, not a stated number
        assert (d, "base", "autoattack") not in stated and (d, "nonrobust", "autoattack") not in stated
    assert stated[("pathmnist", "base", "clean")] == 88.55 and stated[("pathmnist", "nonrobust", "clean")] == 59.24
    assert stated[("pneumoniamnist", "nonrobust", "clean")] == 81.62 and stated[("octmnist", "base", "clean")] == 82.90
    assert [stated[(d, m, "corrupted")] for d in ("pathmnist", "octmnist") for m in ("base", "robust")] == \
        [24.89, 45.78, 27.72, 60.90]


def test_load_paper_values_rejects_malformed(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("eps: 4\nmetric: balanced_accuracy\nvalues:\n"
                                     "  pathmnist: {base: {clean: {at_most: 2, source: x}}}\n")
    with pytest.raises(ValueError, match="needs a value and a source"):
        load_paper_values(tmp_path / "p.yaml")


def _selection(dataset: str, stage: str, grid: list[tuple[float, int, int, bool]], chosen: int) -> dict:
    candidates = [{"point": f"lr{lr}_bs{bs}_ep{ep}_aug{int(aug)}",
                   "hparams": {"lr": lr, "batch_size": bs, "epochs": ep, "augment": aug, "method": "trades",
                               "eps": 4 / 255, "beta": 5.0, "depth": 16, "width": 8, "weight_decay": 5e-4},
                   "val": {"val_balanced_accuracy": 0.5 + 0.01 * i, "val_robust_balanced_accuracy": 0.4 + 0.01 * i}}
                  for i, (lr, bs, ep, aug) in enumerate(grid)]
    return {"dataset": dataset, "stage": stage, "criterion": "val_robust_balanced_accuracy",
            "selected": candidates[chosen]["point"], "candidates": candidates}


def test_hyperparameter_table(tmp_path: Path) -> None:
    grid = [(lr, bs, 200, False) for lr in (0.1, 0.4, 0.2) for bs in (256, 1024)]
    table = hyperparameter_table([_selection("pathmnist", "robust_eps4", grid, 3),
                                  _selection("synthetic", "robust_eps8", grid[:1], 0)])
    first = dict(zip(table.columns, table.rows[0], strict=True))
    assert first["Stage"] == "Robust features (ε=4/255)" and first["Runs"] == 6
    assert first["Learning rate grid"] == "{0.4, 0.2, 0.1}" and first["Batch size grid"] == "{1024, 256}"
    assert first["Max epochs grid"] == "{200}" and first["Augmentation grid"] == "{no}"
    assert (first["Selected learning rate"], first["Selected batch size"]) == ("0.4", "1024")
    assert first["Validation (%)"] == pytest.approx(43.0)
    assert "eps=4/255" in first["Other settings"] and "beta=5" in first["Other settings"]
    parsed, md, tex = _written(table, tmp_path)
    assert parsed[1][0] == "PathMNIST" and parsed[2][0] == "synthetic" and "| Dataset | Stage | Runs |" in md
    assert r"\begin{tabular}" in tex and r"\{0.4, 0.2, 0.1\}" in tex


def test_hyperparameter_table_names_a_bad_selection() -> None:
    bad = _selection("pathmnist", "base", [(0.1, 32, 200, False)], 0) | {"selected": "nope"}
    with pytest.raises(ValueError, match="pathmnist/base: selected grid point 'nope'"):
        hyperparameter_table([bad])
