"""Pre-activation WideResNet (Zagoruyko & Komodakis) with swish, normalisation inside.

The model takes images in [0, 1]; per-channel standardisation is its first operation, so
attacks and saliency maps work in pixel space. `model_args` fully describe a model, and
`build(**model_args)` rebuilds it; `save_checkpoint` writes the one checkpoint format and
`load_model` reads it. `predict` runs a model over images in batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from medrobust.core.errors import DataError
from medrobust.core.io import atomic_path
from medrobust.core.numerics import as_float, autocast, eval_mode
from medrobust.core.stages import EPOCHS

ACTIVATIONS = {"swish": nn.SiLU, "relu": nn.ReLU}


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, act: type[nn.Module]):
        super().__init__()
        self.bn1, self.act1 = nn.BatchNorm2d(c_in), act()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(c_out), act()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None if (c_in == c_out and stride == 1) else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.act1(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        o = self.conv2(self.act2(self.bn2(self.conv1(o))))
        return o + skip


class WideResNet(nn.Module):
    def __init__(self, depth: int, width: int, n_classes: int, n_channels: int,
                 mean: list[float], std: list[float], activation: str = "swish"):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n, act = (depth - 4) // 6, ACTIVATIONS[activation]
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.stem = nn.Conv2d(n_channels, widths[0], 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        for g, stride in enumerate((1, 2, 2)):
            for i in range(n):
                layers.append(Block(widths[g] if i == 0 else widths[g + 1], widths[g + 1], stride if i == 0 else 1, act))
        self.blocks = nn.Sequential(*layers)
        self.bn, self.act = nn.BatchNorm2d(widths[3]), act()
        self.fc = nn.Linear(widths[3], n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The stem sees the perturbation the study is about (4/255 of the pixel range): under
        # bf16 autocast its input would keep 8 bits of mantissa and blur it by a few percent, so
        # the standardisation and the stem run in fp32 (well under 1% of the FLOPs); the rest
        # follows the caller's autocast. Without autocast this is the plain fp32 forward.
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = self.stem((x.float() - self.mean) / self.std)
        x = self.act(self.bn(self.blocks(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def build(**model_args: Any) -> WideResNet:
    return WideResNet(**model_args)


def save_checkpoint(path: str | Path, model_args: dict[str, Any], state_dict: dict[str, Any],
                    last_state_dict: dict[str, Any] | None = None, **meta: Any) -> None:
    """The self-describing checkpoint `load_model` reads, written atomically: the network's
    arguments, the best epoch's weights, the last epoch's when they are another's (so that
    either is evaluated without retraining), and `meta` (hyperparameters, history, provenance)."""
    weights = {"state_dict": state_dict}
    if last_state_dict is not None:
        weights["last_state_dict"] = last_state_dict
    with atomic_path(path) as tmp:
        torch.save({"model_args": model_args, **weights, **meta}, tmp)


def load_model(path: str | Path, device: torch.device, weights: str) -> tuple[WideResNet, dict[str, Any]]:
    """Rebuild a model from a self-describing checkpoint at the weights of its `weights` epoch
    (EPOCHS: "best", or "last", carried as `last_state_dict` when it is not the best); return it
    (eval mode) and the checkpoint."""
    if weights not in EPOCHS:
        raise ValueError(f"weights must be one of {EPOCHS}, got {weights!r}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        model = build(**ckpt["model_args"])
        model.load_state_dict(ckpt["last_state_dict" if weights == "last" and "last_state_dict" in ckpt
                                   else "state_dict"])
    except Exception as e:  # torch raises many types for a bad file; all mean the same here
        raise DataError(f"{path}: not a medrobust checkpoint ({type(e).__name__}: {e})") from None
    return model.to(device, memory_format=torch.channels_last).eval(), ckpt


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int, precision: str = "auto") -> np.ndarray:
    """Softmax probabilities (N, C) of `model` in eval mode on images stored as uint8 or float."""
    out = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb = as_float(x[i:i + batch_size])
            with autocast(xb.device, precision):
                logits = model(xb.contiguous(memory_format=torch.channels_last))
            out.append(torch.softmax(logits.float(), 1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)
