"""Clean evaluation: a checkpoint's metrics on one split of a prepared file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medrobust.core.metrics import classification_metrics
from medrobust.core.network import load_model, predict
from medrobust.core.numerics import exact_evaluation
from medrobust.core.splits import load_split


def evaluate(model_path: str | Path, weights: str, data_path: str | Path, split: str, device: torch.device,
             batch_size: int = 1024) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Balanced accuracy, macro AUC and accuracy of a checkpoint (at its `weights` epoch:
    core.stages.EPOCHS) on one split of a prepared file,
    and how many images it assigns to each class (a model predicting one class shows there); in
    exact fp32 (runtime.exact_evaluation), whatever precision the model was trained at. Also the
    per-image labels and class probabilities (the bootstrap's input, medrobust.report.bootstrap)."""
    model, ckpt = load_model(model_path, device, weights)
    x, y = load_split(data_path, split, device, ckpt["model_args"]["n_classes"])
    probs = predict(model, x, batch_size, exact_evaluation())
    labels = y.cpu().numpy()
    counts = np.bincount(probs.argmax(1), minlength=probs.shape[1]).tolist()
    metrics = {**classification_metrics(labels, probs), "n": len(y), "predicted_class_counts": counts}
    return metrics, {"labels": labels, "probs": probs.astype(np.float32)}
