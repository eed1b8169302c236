"""The paper's figures: saliency overlays (Fig. 1), test performance bars (Figs. 2-3), eps (Fig. 4).

Matplotlib's object API (no pyplot, so no global figure state or GUI backend). Each `*_plot`
builds a Figure from data; its `*_figure` twin writes it as PNG and PDF, each atomically. A missing value is drawn as a grey "n/a", not a bar.
Each bar is the mean over seed replicates, with its 95% interval as an error bar where the summary has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from medrobust.core.stages import METRICS, metric_title
from medrobust.report.plotting import COLORS, save_figure
from medrobust.report.breakdown import PROTOCOL_KINDS
from medrobust.report.tables import CONDITION_LABELS, MODEL_LABELS, Results, Row, dataset_label

DASHES = (0, (3, 2))
SALIENCY_CMAP = "inferno"
GROUP_WIDTH = 0.84  # of the unit space each dataset has on the x axis


@dataclass(frozen=True)
class Bar:
    """One bar: a model's metric under a condition; dashed bars are the second of a pair."""
    model: str
    eps: int | None
    condition: str
    dashed: bool


def _draw_bar(ax: Axes, x: float, value: float | None, width: float, color: str, dashed: bool,
              interval: tuple[float, float] | None = None) -> None:
    """A bar, with its 95% interval (bootstrap over test images and replicates) as an error bar."""
    if value is not None and interval is not None:
        low, high = interval
        ax.errorbar(x, 100 * value, yerr=[[100 * max(value - low, 0)], [100 * max(high - value, 0)]], fmt="none",
                    ecolor="black", elinewidth=0.8, capsize=1.5, zorder=3)
    if value is None:
        ax.text(x, 1.5, "n/a", rotation=90, ha="center", va="bottom", fontsize=6, color="0.4")
    elif dashed:
        ax.bar(x, 100 * value, width, facecolor=to_rgba(color, 0.18), edgecolor=color, linestyle=DASHES, linewidth=1.2)
    else:
        ax.bar(x, 100 * value, width, color=color, edgecolor=color, linewidth=1.2)


def _draw_groups(ax: Axes, res: Results, metric: str, pairs: Sequence[tuple[Bar, Bar]]) -> None:
    """Per dataset, the pairs side by side (a pair's two bars touch), and the dashed chance line."""
    gap = 0.4  # between pairs, in bar widths
    width = GROUP_WIDTH / (2 * len(pairs) + gap * (len(pairs) - 1))
    for i, d in enumerate(res.datasets):
        for p, pair in enumerate(pairs):
            for j, bar in enumerate(pair):
                x = i - GROUP_WIDTH / 2 + width * (p * (2 + gap) + j + 0.5)
                _draw_bar(ax, x, res.get(d, bar.model, bar.eps, bar.condition, metric), width,
                          COLORS[bar.model], bar.dashed, res.interval(d, bar.model, bar.eps, bar.condition, metric))
        half = GROUP_WIDTH / 2 + 0.03
        ax.hlines(100 * res.chance(d, metric), i - half, i + half, colors="black", linestyles="--", linewidth=1)
    ax.set_xticks(range(len(res.datasets)), [dataset_label(d) for d in res.datasets])
    pad = max(0, 3 - len(res.datasets)) / 2  # one or two datasets: narrower bars, centred
    ax.set_xlim(-0.55 - pad, len(res.datasets) - 0.45 + pad)
    ax.set_ylim(0, 100)
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    ax.set_ylabel(metric_title(metric))
    ax.grid(axis="y", color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)


def _legend(ax: Axes, models: list[Patch | Line2D], solid: str, dashed: str, y: float) -> None:
    """Models on the first row; bar styles and the chance line on the second (legends fill by column)."""
    styles = [Patch(facecolor="0.45", edgecolor="0.45", label=solid),
              Patch(facecolor="white", edgecolor="0.45", linestyle=DASHES, label=dashed),
              Line2D([], [], color="black", linestyle="--", linewidth=1, label="Chance")]
    handles = [h for pair in zip(models, styles, strict=True) for h in pair]
    ax.legend(handles=handles, ncol=3, loc="lower center", bbox_to_anchor=(0.5, y), frameon=False, fontsize=8)


def _results(summary: Sequence[Row], metric: str) -> Results:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    res = Results.of(summary)
    if not res.datasets:
        raise ValueError("the summary has no rows")
    return res


def bar_plot(summary: Sequence[Row], metric: str = "balanced_accuracy", eps: int = 4,
             protocol: str = "applied") -> Figure:
    """Figs. 2 (balanced accuracy) and 3 (AUC): per dataset, the base, robust and nonrobust-only
    models at `eps`; solid bars in-distribution, dashed bars mean OOD under one MedMNIST-C
    protocol (applied: beside the prepared test set; published: beside its own clean 224 px
    baseline; datasets without it are left empty)."""
    clean, corrupted = PROTOCOL_KINDS[protocol]
    res = _results(summary, metric)
    pairs = [(Bar(m, eps, clean, False), Bar(m, eps, corrupted, True)) for m in COLORS]
    fig = Figure(figsize=(max(6.5, 1.9 * len(res.datasets)), 3.4), layout="constrained")
    ax = fig.subplots()
    _draw_groups(ax, res, metric, pairs)
    models = [Patch(color=COLORS[m], label=MODEL_LABELS[m] + ("" if m == "base" else f" (ε={eps}/255)"))
              for m in COLORS]
    _legend(ax, models, CONDITION_LABELS[clean], CONDITION_LABELS[corrupted], 1.0)
    return fig


def bar_figure(summary: Sequence[Row], metric: str = "balanced_accuracy", eps: int = 4, protocol: str = "applied", *,
               out_png: str | Path, out_pdf: str | Path) -> None:
    """bar_plot written as PNG and PDF."""
    save_figure(bar_plot(summary, metric, eps, protocol), out_png, out_pdf)


def eps_plot(summary: Sequence[Row], eps: tuple[int, int] = (4, 8), metric: str = "balanced_accuracy") -> Figure:
    """Fig. 4: robust and nonrobust-only models at two budgets (solid: eps[0], dashed: eps[1]),
    in-distribution (top, as in the paper) and mean OOD (bottom, an addition). The base model,
    which has no eps, is a blue reference line over each dataset."""
    res = _results(summary, metric)
    small, large = eps
    fig = Figure(figsize=(max(6.5, 1.9 * len(res.datasets)), 5.6), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, condition in zip(axes, ("clean", "corrupted")):
        pairs = [(Bar(m, small, condition, False), Bar(m, large, condition, True)) for m in ("robust", "nonrobust")]
        _draw_groups(ax, res, metric, pairs)
        for i, d in enumerate(res.datasets):
            base = res.get(d, "base", None, condition, metric)
            if base is not None:
                ax.hlines(100 * base, i - GROUP_WIDTH / 2, i + GROUP_WIDTH / 2, colors=COLORS["base"], linewidth=1.6)
        ax.set_title(CONDITION_LABELS[condition], loc="left", fontsize=9)
    handles = [Patch(color=COLORS[m], label=MODEL_LABELS[m]) for m in ("robust", "nonrobust")]
    handles.append(Line2D([], [], color=COLORS["base"], linewidth=1.6, label=MODEL_LABELS["base"] + " (no ε)"))
    _legend(axes[0], handles, f"ε={small}/255", f"ε={large}/255", 1.08)
    return fig


def eps_figure(summary: Sequence[Row], eps: tuple[int, int] = (4, 8), *, out_png: str | Path,
               out_pdf: str | Path, metric: str = "balanced_accuracy") -> None:
    """eps_plot written as PNG and PDF."""
    save_figure(eps_plot(summary, eps, metric), out_png, out_pdf)


def _check_saliency_inputs(images: np.ndarray, maps: dict[str, np.ndarray]) -> None:
    if images.ndim != 4 or images.shape[0] != 2 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (2, H, W, 1 or 3) [clean, adversarial], got {images.shape}")
    if not maps:
        raise ValueError("no saliency maps")
    for label, m in maps.items():
        if m.shape != (2, *images.shape[1:3]):
            raise ValueError(f"saliency {label!r} has shape {m.shape}, expected {(2, *images.shape[1:3])}")
    for name, a in [("images", images), *maps.items()]:
        if a.min() < 0 or a.max() > 1:
            raise ValueError(f"{name} must lie in [0, 1] (maps: medrobust.evaluate.saliency.normalise_saliency)")


def saliency_plot(images: np.ndarray, maps: dict[str, np.ndarray],
                  row_titles: tuple[str, str] = ("Original", "Adversarial"),
                  predictions: dict[str, tuple[str, str]] | None = None) -> Figure:
    """Fig. 1: rows clean / adversarial; columns the image, then each model's saliency over it.

    `maps` holds each model's (2, H, W) saliency in [0, 1] (see medrobust.evaluate.saliency.normalise_saliency);
    `predictions` optionally gives each model's predicted class text for the two images.
    """
    _check_saliency_inputs(images, maps)
    n = 1 + len(maps)
    fig = Figure(figsize=(1.75 * n + 0.9, 3.9), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    grey = images.mean(axis=-1)
    for r in range(2):
        shown = images[r] if images.shape[-1] == 3 else images[r, ..., 0]
        axes[r, 0].imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[r, 0].set_ylabel(row_titles[r], fontsize=9)
        for c, (label, m) in enumerate(maps.items(), start=1):
            axes[r, c].imshow(grey[r], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[r, c].imshow(m[r], cmap=SALIENCY_CMAP, vmin=0, vmax=1, alpha=0.65, interpolation="nearest")
            if predictions and label in predictions:
                axes[r, c].set_xlabel(f"pred: {predictions[label][r]}", fontsize=8)
            if r == 0:
                axes[r, c].set_title(label, fontsize=9)
    axes[0, 0].set_title("Image", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(ScalarMappable(Normalize(0, 1), SALIENCY_CMAP), ax=axes, shrink=0.8, label="Attribution (normalised)")
    return fig


def saliency_figure(images: np.ndarray, maps: dict[str, np.ndarray], *, out_png: str | Path, out_pdf: str | Path,
                    row_titles: tuple[str, str] = ("Original", "Adversarial"),
                    predictions: dict[str, tuple[str, str]] | None = None) -> None:
    """saliency_plot written as PNG and PDF."""
    save_figure(saliency_plot(images, maps, row_titles, predictions), out_png, out_pdf)
