"""What a reviewer looks at beside the paper's figures: learning curves of every grid point
(and why the selected one was selected), the nonrobust-feature set itself (images, their
adversarial versions, the perturbation and the new label), results per corruption, and how the
numbers move under each variant.

Matplotlib's object API, as medrobust.report.figures; each `*_plot` builds a Figure from data and its
`*_figure` twin writes it as PNG and PDF (medrobust.report.plotting.save_figure).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from medrobust.core.stages import METRIC_LABELS, METRICS, parse_stage
from medrobust.report.breakdown import Cell
from medrobust.report.plotting import COLORS, save_figure
from medrobust.report.tables import CONDITION_LABELS, MODEL_LABELS, dataset_label

CRITERION_LABELS = {"val_balanced_accuracy": "validation balanced accuracy",
                    "val_robust_balanced_accuracy": "robust validation balanced accuracy (under PGD)",
                    "val_auc": "validation AUC"}
ROBUST = "val_robust_balanced_accuracy"


def stage_title(dataset: str, stage: str) -> str:
    model, eps = parse_stage(stage)
    return f"{dataset_label(dataset)}, {MODEL_LABELS[model]}" + ("" if eps is None else f" (ε={eps}/255)")


def _percent_axis(ax, ylabel: str) -> None:
    ax.set_ylim(0, 100)
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)


def kept_epoch(history: Sequence[dict[str, float]]) -> float:
    """The epoch whose weights a run returned: the first with the best robust validation balanced
    accuracy where that was measured (TRADES keeps its best epoch), else the last one."""
    robust = [r for r in history if not math.isnan(r.get(ROBUST, math.nan))]
    return max(robust, key=lambda r: r[ROBUST])["epoch"] if robust else history[-1]["epoch"]


def curves_plot(histories: dict[str, list[dict[str, float]]], selection: dict, n_classes: int, title: str) -> Figure:
    """Validation balanced accuracy (and, where measured, robust validation balanced accuracy)
    per epoch of every grid point; the selected one thick, its kept epoch marked."""
    criterion, chosen = selection["criterion"], selection["selected"]
    picked = next(c for c in selection["candidates"] if c["point"] == chosen)
    value = picked["val"][criterion]
    epochs = picked.get("epochs") or {}  # recorded by the training run (older selections: inferred)
    why = "" if not epochs else "last epoch" if epochs["kept_by"] == "last epoch" else f"best {epochs['kept_by']}"
    panels = ["val_balanced_accuracy"] + [ROBUST] * any(
        not math.isnan(r.get(ROBUST, math.nan)) for h in histories.values() for r in h)
    fig = Figure(figsize=(5.2 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    others = [v for v in histories if v != chosen]
    for ax, key in zip(axes, panels):
        for i, point in enumerate(others):
            h = histories[point]
            ax.plot([r["epoch"] for r in h], [100 * r[key] for r in h], color=f"C{(i + 4) % 10}", linewidth=1,
                    alpha=0.75, label=point)
        h = histories[chosen]
        ax.plot([r["epoch"] for r in h], [100 * r[key] for r in h], color="black", linewidth=2.4,
                label=f"{chosen} (selected)")
        epoch = epochs.get("kept", kept_epoch(h))
        kept = next(r for r in h if r["epoch"] == epoch)
        ax.plot([epoch], [100 * kept[key]], "o", markersize=8, markerfacecolor="none", markeredgecolor="black",
                markeredgewidth=1.5, label=f"kept weights (epoch {epoch:.0f}{'; ' + why if why else ''})")
        ax.axhline(100 / n_classes, color="0.3", linestyle="--", linewidth=1, label="chance")
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _percent_axis(ax, CRITERION_LABELS[key][0].upper() + CRITERION_LABELS[key][1:])
        if key == criterion:
            ax.set_title("selection criterion", fontsize=8, loc="right", color="0.3")
    axes[0].legend(fontsize=6.5, loc="lower right", frameon=False)
    ties = sum(c["val"][criterion] == value for c in selection["candidates"]) - 1
    tied = f", tied with {ties}: broken by validation balanced accuracy, AUC, name" if ties else ""
    points = f"{len(histories)} grid point{'s' if len(histories) > 1 else ''}"
    fig.suptitle(f"{title}: {points}; selected {chosen}\nby the highest "
                 f"{CRITERION_LABELS[criterion]} ({100 * value:.1f}%{tied})", fontsize=9)
    return fig


def curves_figure(histories: dict[str, list[dict[str, float]]], selection: dict, n_classes: int, title: str, *,
                  out_png: str | Path, out_pdf: str | Path) -> None:
    save_figure(curves_plot(histories, selection, n_classes, title), out_png, out_pdf)


def pick_examples(labels: np.ndarray, targets: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Up to n positions of the set, seeded: relabelled ones (target != label) first, one per
    original class in turn, so the figure shows images that 'appear unchanged but mislabelled'."""
    order = np.random.default_rng(seed).permutation(len(labels))

    def one_class_at_a_time(pool: np.ndarray) -> np.ndarray:
        rank, seen = np.zeros(len(pool), dtype=np.int64), {}
        for k, i in enumerate(pool):
            rank[k] = seen[labels[i]] = seen.get(labels[i], -1) + 1
        return pool[np.argsort(rank, kind="stable")]

    relabelled = order[targets[order] != labels[order]]
    unchanged = order[targets[order] == labels[order]]
    return np.concatenate([one_class_at_a_time(relabelled), one_class_at_a_time(unchanged)])[:n]


def examples_plot(clean: np.ndarray, adv: np.ndarray, labels: np.ndarray, targets: np.ndarray, eps: int,
                  title: str) -> Figure:
    """Columns: examples. Rows: the training image (original label), its adversarial version
    (the label it carries in the set), and the perturbation amplified so that +-eps spans the
    grey range. Images are float (N, H, W) or (N, H, W, C) in [0, 1]."""
    if clean.ndim == 3:
        clean, adv = clean[..., None], adv[..., None]
    gain = 255 / (2 * eps)
    fig = Figure(figsize=(1.45 * len(clean) + 1.2, 4.9), layout="constrained")
    axes = fig.subplots(3, len(clean), squeeze=False)
    delta = adv - clean
    for j in range(len(clean)):
        shown = [clean[j], adv[j], np.clip(0.5 + delta[j] * gain, 0, 1)]
        for r, image in enumerate(shown):
            ax = axes[r, j]
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_xlabel(f"label {labels[j]}", fontsize=8)
        axes[1, j].set_xlabel(f"new label {targets[j]}", fontsize=8,
                              color="tab:red" if targets[j] != labels[j] else "black")
        axes[2, j].set_xlabel(f"max |δ| {np.abs(delta[j]).max() * 255:.1f}/255", fontsize=7)
    for r, text in enumerate(("Training image", f"Adversarial (ε={eps}/255)", f"Perturbation ×{gain:.0f}")):
        axes[r, 0].set_ylabel(text, fontsize=8)
    fig.suptitle(f"{title}: nonrobust-feature set at ε={eps}/255 (targeted PGD, relabelled to the target)\n"
                 f"perturbation shown ×{gain:.0f}: mid-grey = 0, black / white = −{eps} / +{eps} (1/255)", fontsize=8)
    return fig


def examples_figure(clean: np.ndarray, adv: np.ndarray, labels: np.ndarray, targets: np.ndarray, eps: int,
                    title: str, *, out_png: str | Path, out_pdf: str | Path) -> None:
    save_figure(examples_plot(clean, adv, labels, targets, eps, title), out_png, out_pdf)


def _stage_style(model: str, eps: int | None, main_eps: int) -> dict:
    label = MODEL_LABELS[model] + ("" if eps is None else f" (ε={eps}/255)")
    return {"color": COLORS[model], "label": label, "linestyle": "-" if eps in (None, main_eps) else "--"}


def corruptions_plot(cells: Sequence[Cell], dataset: str, main_eps: int, n_classes: int,
                     protocol: str = "applied", metric: str = "balanced_accuracy") -> Figure:
    """Top: per corruption (mean over severities), the base, robust and nonrobust-only models at
    `main_eps`. Bottom: per severity (0: clean), mean over corruptions, every model. One
    MedMNIST-C protocol (breakdown.PROTOCOL_KINDS), named in the title."""
    mine = [c for c in cells if c.dataset == dataset and c.metric == metric and c.protocol == protocol]
    if not mine:
        raise ValueError(f"no {metric} rows for {dataset} under the {protocol} protocol")
    value = {(c.model, c.eps, c.corruption, c.severity): c.value for c in mine}
    models = sorted({(c.model, c.eps) for c in mine}, key=lambda m: (list(COLORS).index(m[0]), m[1] or 0))
    names = sorted({c.corruption for c in mine} - {"all", "none"})
    fig = Figure(figsize=(max(6.5, 0.55 * len(names) + 2), 6.4), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=(1.25, 1))
    main = [m for m in models if m[1] in (None, main_eps)]
    width = 0.84 / len(main)
    for k, (model, eps) in enumerate(main):
        xs = np.arange(len(names)) - 0.42 + width * (k + 0.5)
        top.bar(xs, [100 * value.get((model, eps, n, "mean"), np.nan) for n in names], width,
                color=COLORS[model], label=_stage_style(model, eps, main_eps)["label"])
    top.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], rotation=40, ha="right", fontsize=7)
    top.set_title("Per corruption (mean over severities 1-5)", fontsize=9, loc="left")
    severities = sorted({int(c.severity) for c in mine if c.severity != "mean"})
    for model, eps in models:
        ys = [100 * value.get((model, eps, "none" if s == 0 else "all", str(s)), np.nan) for s in severities]
        bottom.plot(severities, ys, marker="o", markersize=3, **_stage_style(model, eps, main_eps))
    bottom.set_xticks(severities, ["clean" if s == 0 else str(s) for s in severities])
    bottom.set_xlabel("severity", fontsize=8)
    bottom.set_title("Per severity (mean over corruptions)", fontsize=9, loc="left")
    for ax in (top, bottom):
        ax.axhline(100 / n_classes, color="0.3", linestyle=":", linewidth=1, label="chance")
        _percent_axis(ax, metric.replace("_", " ").capitalize())
    top.legend(fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False)
    bottom.legend(fontsize=6.5, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    what = {"applied": "applied at 64 px", "published": "as published (224 px)"}[protocol]
    fig.suptitle(f"{dataset_label(dataset)}: MedMNIST-C {what}, per corruption and severity", fontsize=9)
    return fig


def corruptions_figure(cells: Sequence[Cell], dataset: str, main_eps: int, n_classes: int, protocol: str = "applied", *,
                       out_png: str | Path, out_pdf: str | Path) -> None:
    save_figure(corruptions_plot(cells, dataset, main_eps, n_classes, protocol), out_png, out_pdf)


# the numbers of Fig. 2 (clean, OOD under each protocol) and Table 1 (AutoAttack)
SENSITIVITY_CONDITIONS = ("clean", "corrupted", "corrupted_published", "autoattack")


def sensitivity_plot(rows: Sequence[Mapping[str, Any]], variant: str, main_eps: int) -> Figure:
    """One variant's paired differences (variant - main on replicates 1..k-1, medrobust.report.
    sensitivity) with their intervals, for the numbers of Fig. 2 and Table 1 it moves (base and
    main-eps models), one row per dataset, model and condition; balanced accuracy and AUC."""
    mine = [r for r in rows if r["variant"] == variant and r["condition"] in SENSITIVITY_CONDITIONS
            and parse_stage(r["stage"])[1] in (None, main_eps)]
    order = sorted({(r["dataset"], r["stage"], r["condition"]) for r in mine},
                   key=lambda k: (k[0], list(COLORS).index(parse_stage(k[1])[0]), SENSITIVITY_CONDITIONS.index(k[2])))
    fig = Figure(figsize=(9.5, 1.2 + 0.24 * max(len(order), 4)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    value = {(r["dataset"], r["stage"], r["condition"], r["metric"]): r for r in mine}
    for ax, metric in zip(axes, METRICS):
        for i, k in enumerate(order):
            r = value.get((*k, metric))
            if r is not None:
                d, lo, hi = (100 * r[f] for f in ("difference", "difference_low", "difference_high"))
                ax.errorbar(d, i, xerr=[[d - lo], [hi - d]], fmt="o", markersize=3.5, capsize=2,
                            color=COLORS[parse_stage(k[1])[0]], mfc="white" if r["reading"] != "differs" else None)
        ax.axvline(0, color="0.3", linewidth=0.8)
        ax.set_xlim(-100, 100)
        ax.set_xlabel(f"{METRIC_LABELS[metric]}: variant - main (pp)", fontsize=8)
        ax.grid(axis="x", color="0.9", linewidth=0.6)
    axes[0].set_yticks(range(len(order)), [f"{dataset_label(d)} · {stage_title(d, s).split(', ', 1)[1]} · "
                                           f"{CONDITION_LABELS[c]}" for d, s, c in order], fontsize=6.5)
    axes[0].invert_yaxis()
    if not order:
        axes[0].text(0, 0.5, "moves none of the numbers of Fig. 2 and Table 1", ha="center", fontsize=8)
    fig.suptitle(f"Variant {variant}: paired differences on replicates 1..k-1, 95% intervals "
                 "(filled: the interval excludes 0)", fontsize=9)
    return fig


def sensitivity_figure(rows: Sequence[Mapping[str, Any]], variant: str, main_eps: int, *, out_png: str | Path,
                       out_pdf: str | Path) -> None:
    save_figure(sensitivity_plot(rows, variant, main_eps), out_png, out_pdf)
