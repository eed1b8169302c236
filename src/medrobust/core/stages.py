"""The study's vocabulary, defined once: model stages (base, nonrobust_eps<e>, robust_eps<e>; e
the L-inf budget in 1/255), the metrics and their labels, the epochs a model may keep."""

from __future__ import annotations

import re

MODELS = ("base", "nonrobust", "robust")
STAGE_PATTERN = r"base|(?:nonrobust|robust)_eps\d+"  # also the Snakefile's wildcard constraint
METRICS = ("balanced_accuracy", "auc")
METRIC_LABELS = {"balanced_accuracy": "balanced accuracy", "auc": "AUC"}
EPOCHS = ("best", "last")  # a trained model's weights: its best epoch's (by its method's metric), its last's


def stage_name(model: str, eps: int | None) -> str:
    """('robust', 4) -> 'robust_eps4'; ('base', None) -> 'base'."""
    if model not in MODELS:
        raise ValueError(f"not a model: {model!r} (one of {', '.join(MODELS)})")
    return "base" if model == "base" else f"{model}_eps{eps}"


def parse_stage(stage: str) -> tuple[str, int | None]:
    """'robust_eps4' -> ('robust', 4); 'base' -> ('base', None); anything else: ValueError."""
    match = re.fullmatch(r"(base)|(nonrobust|robust)_eps(\d+)", stage)
    if not match:
        raise ValueError(f"not a stage: {stage!r}")
    return ("base", None) if match[1] else (match[2], int(match[3]))


def model_of(stage: str) -> str:
    return parse_stage(stage)[0]


def stage_eps(stage: str) -> int:
    """The budget (in 1/255) of a nonrobust or robust stage."""
    eps = parse_stage(stage)[1]
    if eps is None:
        raise ValueError(f"stage {stage!r} has no eps")
    return eps


def stage_names(eps: list[int]) -> list[str]:
    """base, then nonrobust_eps<e> and robust_eps<e> for each budget e."""
    return ["base"] + [stage_name(kind, e) for e in eps for kind in ("nonrobust", "robust")]


def stage_label(stage: str) -> str:
    """'robust_eps4' -> 'robust eps4' (tables and verdicts)."""
    return stage.replace("_eps", " eps")


def metric_title(metric: str) -> str:
    """'balanced_accuracy' -> 'Balanced accuracy' (axis labels)."""
    label = METRIC_LABELS[metric]
    return label[0].upper() + label[1:]
