"""Loading data and models onto a device, batched prediction, and clean evaluation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medrobust.errors import DataError
from medrobust.io import check_labels, npz_keys, npz_shapes, read_npz
from medrobust.metrics import classification_metrics
from medrobust.models import WideResNet, build
from medrobust.progress import ProgressLog
from medrobust.runtime import as_float, autocast

log = logging.getLogger("medrobust.evaluate")


def load_split(path: str | Path, split: str, device: torch.device,
               n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as (N, C, H, W) tensors kept in their stored dtype (uint8 or float), labels int64,
    checked: as many labels as images, each in 0..n_classes-1."""
    arrays = read_npz(path, (f"{split}_images", f"{split}_labels"))
    images = arrays[f"{split}_images"]
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DataError(f"{path} [{split}]: images have shape {images.shape}, expected (N, H, W[, C])")
    labels = check_labels(f"{path} [{split}]", arrays[f"{split}_labels"], len(images), n_classes)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return x.to(device), torch.from_numpy(labels).to(device)


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int, precision: str = "auto") -> np.ndarray:
    """Softmax probabilities (N, C) of `model` in eval mode on images stored as uint8 or float."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = as_float(x[i:i + batch_size])
        with autocast(xb.device, precision):
            logits = model(xb.contiguous(memory_format=torch.channels_last))
        out.append(torch.softmax(logits.float(), 1).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def load_model(path: str | Path, device: torch.device) -> tuple[WideResNet, dict[str, Any]]:
    """Rebuild a model from a self-describing checkpoint; return it (eval mode) and the checkpoint."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        model = build(**ckpt["model_args"])
        model.load_state_dict(ckpt["state_dict"])
    except Exception as e:  # torch raises many types for a bad file; all mean the same here
        raise DataError(f"{path}: not a medrobust checkpoint ({type(e).__name__}: {e})") from None
    return model.to(device, memory_format=torch.channels_last).eval(), ckpt


def evaluate(model_path: str | Path, data_path: str | Path, split: str, device: torch.device,
             batch_size: int = 1024) -> dict[str, Any]:
    """Balanced accuracy, macro AUC and accuracy of a checkpoint on one split of a prepared file,
    and how many images it assigns to each class (a model predicting one class shows there)."""
    model, ckpt = load_model(model_path, device)
    x, y = load_split(data_path, split, device, ckpt["model_args"]["n_classes"])
    probs = predict(model, x, batch_size, ckpt["hparams"]["precision"])
    counts = np.bincount(probs.argmax(1), minlength=probs.shape[1]).tolist()
    return {**classification_metrics(y.cpu().numpy(), probs), "n": len(y), "predicted_class_counts": counts}


def evaluate_corrupted(model_path: str | Path, corrupted_path: str | Path, device: torch.device,
                       batch_size: int = 1024) -> dict[str, Any]:
    """Metrics of a checkpoint on every corruption and severity of a corrupted test set.

    The file holds `labels` (N,) and one uint8 array (S, N, H, W[, C]) per corruption, named
    `corruption/<name>`. The average is the mean over severities, then over corruptions.
    """
    model, ckpt = load_model(model_path, device)
    precision = ckpt["hparams"]["precision"]
    names = sorted(k.split("/", 1)[1] for k in npz_keys(corrupted_path) if k.startswith("corruption/"))
    if not names:
        raise DataError(f"{corrupted_path}: not a corrupted test set (no corruption/<name> arrays)")
    y = read_npz(corrupted_path, ("labels",))["labels"]
    per: dict[str, list[dict[str, float]]] = {}
    shapes = npz_shapes(corrupted_path)
    meter = ProgressLog(log, "corrupted test images", sum(int(np.prod(shapes[f"corruption/{n}"][:2])) for n in names))
    for name in names:
        stack = read_npz(corrupted_path, (f"corruption/{name}",))[f"corruption/{name}"]
        where = f"{corrupted_path} [corruption/{name}]"
        if stack.ndim not in (4, 5):
            raise DataError(f"{where}: shape {stack.shape}, expected (severities, N, H, W[, C])")
        labels = check_labels(where, y, stack.shape[1], ckpt["model_args"]["n_classes"])
        per[name] = []
        for images in stack:
            x = torch.from_numpy(np.ascontiguousarray((images[..., None] if images.ndim == 3 else images)
                                                      .transpose(0, 3, 1, 2))).to(device)
            per[name].append(classification_metrics(labels, predict(model, x, batch_size, precision)))
            meter.advance(len(labels))
    keys = ("balanced_accuracy", "auc", "accuracy")
    by_corruption = {n: {k: float(np.mean([m[k] for m in per[n]])) for k in keys} for n in names}
    mean = {k: float(np.mean([by_corruption[n][k] for n in names])) for k in keys}
    return {"mean": mean, "by_corruption": by_corruption, "by_severity": per, "n": len(labels)}
