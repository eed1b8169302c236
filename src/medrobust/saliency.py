"""Fig. 1's ingredients: an adversarial example of a test image and the saliency maps of two
models on it (the gradient of the predicted class score with respect to the input)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medrobust.attacks import PGDConfig, default_step_size, pgd
from medrobust.figures import normalise_saliency


def saliency(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of each image's predicted-class logit w.r.t. the image, and the predictions."""
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    pred = logits.argmax(1)
    (grad,) = torch.autograd.grad(logits.gather(1, pred[:, None]).sum(), x)
    return grad.cpu().numpy(), pred.cpu().numpy()


@dataclass
class Example:
    index: int
    label: int
    images: np.ndarray  # (2, H, W, C) in [0, 1]: clean, adversarial
    maps: dict[str, np.ndarray]  # model label -> (2, H, W) in [0, 1]
    predictions: dict[str, list[int]]  # model label -> [clean, adversarial] predictions


def pick_index(standard: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: PGDConfig, index: int | None) -> int:
    """`index` if given; else the first test image the standard model classifies correctly and
    whose adversarial version it misclassifies (as in the paper's Fig. 1)."""
    if index is not None:
        if not 0 <= index < len(x):
            raise ValueError(f"saliency index {index} is outside the test split (0..{len(x) - 1})")
        return index
    for start in range(0, len(x), 256):
        xb, yb = x[start:start + 256], y[start:start + 256]
        adv = pgd(standard, xb, yb, cfg)
        with torch.no_grad():
            ok = (standard(xb).argmax(1) == yb) & (standard(adv).argmax(1) != yb)
        if ok.any():
            return start + int(ok.nonzero()[0])
    raise ValueError("no test image is both classified correctly and flipped by the attack")


def example(models: dict[str, nn.Module], standard: str, x: torch.Tensor, y: torch.Tensor, eps: float,
            steps: int, index: int | None, seed: int) -> Example:
    """Saliency of every model on test image `index` (or the first suitable one) and on its
    adversarial version, made by L-inf PGD against the `standard` model."""
    torch.manual_seed(seed)
    cfg = PGDConfig(eps=eps, steps=steps, step_size=default_step_size(eps, steps), random_start=False)
    i = pick_index(models[standard], x, y, cfg, index)
    clean = x[i:i + 1]
    adv = pgd(models[standard], clean, y[i:i + 1], cfg)
    both = torch.cat([clean, adv])
    maps, preds = {}, {}
    for label, model in models.items():
        grads, pred = saliency(model, both)
        maps[label] = np.stack([normalise_saliency(g) for g in grads])
        preds[label] = pred.tolist()
    images = both.detach().cpu().numpy().transpose(0, 2, 3, 1)
    return Example(i, int(y[i]), images, maps, preds)
