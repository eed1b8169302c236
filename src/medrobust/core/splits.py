"""A prepared file's split as tensors on a device, checked against the model's classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medrobust.core.errors import DataError
from medrobust.core.io import check_labels, read_npz


def load_split(path: str | Path, split: str, device: torch.device,
               n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as (N, C, H, W) tensors kept in their stored dtype (uint8 or float), labels int64,
    checked: as many labels as images, each in 0..n_classes-1."""
    arrays = read_npz(path, (f"{split}_images", f"{split}_labels"))
    images = arrays[f"{split}_images"]
    if images.ndim not in (3, 4):
        raise DataError(f"{path} [{split}]: images have shape {images.shape}, expected (N, H, W[, C])")
    labels = check_labels(f"{path} [{split}]", arrays[f"{split}_labels"], len(images), n_classes)
    return as_nchw(images).to(device), torch.from_numpy(labels).to(device)


def as_nchw(images: np.ndarray) -> torch.Tensor:
    """MedMNIST's (N, H, W) or (N, H, W, C) images as a contiguous (N, C, H, W) tensor, same dtype."""
    if images.ndim == 3:
        images = images[..., None]
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
