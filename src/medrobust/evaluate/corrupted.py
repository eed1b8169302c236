"""MedMNIST-C evaluation: a checkpoint's metrics on every corruption and severity of a
corrupted test set (medrobust.data.corrupt), and their mean."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medrobust.core.errors import DataError
from medrobust.core.io import check_labels, npz_shapes, read_npz
from medrobust.core.metrics import classification_metrics
from medrobust.core.network import load_model, predict
from medrobust.core.numerics import exact_evaluation
from medrobust.core.splits import as_nchw
from medrobust.jobs.progress import ProgressLog

log = logging.getLogger(__name__)


def evaluate_corrupted(model_path: str | Path, weights: str, corrupted_path: str | Path, device: torch.device,
                       batch_size: int = 1024) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of a checkpoint on every corruption and severity of a corrupted test set, and the
    per-image class probabilities behind them: `probs` (corruptions, S, N, C) in the order of
    `corruptions` (sorted names), with `labels` (N,).

    The file holds `labels` (N,) and one uint8 array (S, N, H, W[, C]) per corruption, named
    `corruption/<name>`. The average is the mean over severities, then over corruptions. The
    model is evaluated at its `weights` epoch (core.stages.EPOCHS).
    """
    model, ckpt = load_model(model_path, device, weights)
    precision = exact_evaluation()
    shapes = npz_shapes(corrupted_path)
    names = sorted(k.split("/", 1)[1] for k in shapes if k.startswith("corruption/"))
    if not names:
        raise DataError(f"{corrupted_path}: not a corrupted test set (no corruption/<name> arrays)")
    y = read_npz(corrupted_path, ("labels",))["labels"]
    per: dict[str, list[dict[str, float]]] = {}
    all_probs: list[list[np.ndarray]] = []
    meter = ProgressLog(log, "corrupted test images", sum(int(np.prod(shapes[f"corruption/{n}"][:2])) for n in names))
    for name in names:
        stack = read_npz(corrupted_path, (f"corruption/{name}",))[f"corruption/{name}"]
        where = f"{corrupted_path} [corruption/{name}]"
        if stack.ndim not in (4, 5):
            raise DataError(f"{where}: shape {stack.shape}, expected (severities, N, H, W[, C])")
        labels = check_labels(where, y, stack.shape[1], ckpt["model_args"]["n_classes"])
        per[name], severities = [], []
        for images in stack:
            probs = predict(model, as_nchw(images).to(device), batch_size, precision)
            per[name].append(classification_metrics(labels, probs))
            severities.append(probs.astype(np.float32))
            meter.advance(len(labels))
        all_probs.append(severities)
    keys = ("balanced_accuracy", "auc", "accuracy")
    by_corruption = {n: {k: float(np.mean([m[k] for m in per[n]])) for k in keys} for n in names}
    mean = {k: float(np.mean([by_corruption[n][k] for n in names])) for k in keys}
    result = {"mean": mean, "by_corruption": by_corruption, "by_severity": per, "n": len(labels)}
    return result, {"labels": labels, "probs": np.array(all_probs), "corruptions": np.array(names)}
