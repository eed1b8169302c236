"""Fig. 1's ingredients: an adversarial example of a test image and the saliency maps of two
models on it (the gradient of the predicted class score with respect to the input)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medrobust.core.numerics import exact_evaluation
from medrobust.core.pgd import PGDConfig, cross_entropy, default_step_size, pgd


def normalise_saliency(grad: np.ndarray) -> np.ndarray:
    """(H, W) map in [0, 1] from an input gradient (C, H, W) or (H, W): absolute value, maximum
    over channels, min-max scaled; a constant map becomes all zeros."""
    a = np.abs(np.asarray(grad, dtype=np.float64))
    if a.ndim == 3:
        a = a.max(axis=0)
    if a.ndim != 2:
        raise ValueError(f"expected a (C, H, W) or (H, W) gradient, got shape {np.shape(grad)}")
    span = a.max() - a.min() if a.size else 0.0
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


def saliency(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of each image's predicted-class logit w.r.t. the image, and the predictions."""
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    pred = logits.argmax(1)
    (grad,) = torch.autograd.grad(logits.gather(1, pred[:, None]).sum(), x)
    return grad.cpu().numpy(), pred.cpu().numpy()


# How the image was chosen, as recorded in fig1_saliency.json.
CHOICES = {
    "given": "the index asked for (--index; evaluation.saliency.index)",
    "robust_holds": "first image both models get right, flipped for the standard model only",
    "both_flip": "first image both models get right and the attack flips for the standard model "
                 "(on every such image it flips the robust model too)",
}
BATCH = 256


@dataclass
class Example:
    index: int
    label: int
    choice: str  # one of CHOICES' values
    images: np.ndarray  # (2, H, W, C) in [0, 1]: clean, adversarial
    maps: dict[str, np.ndarray]  # model label -> (2, H, W) in [0, 1]
    predictions: dict[str, list[int]]  # model label -> [clean, adversarial] predictions


def flips(standard: nn.Module, robust: nn.Module, x: torch.Tensor, y: torch.Tensor,
          cfg: PGDConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, with PGD against the standard model: (both models right on the clean image and
    the standard model wrong on the adversarial one; of those, the robust model still right on it)."""
    adv = pgd(standard, x, cross_entropy(y), cfg)
    with torch.no_grad():
        right = (standard(x).argmax(1) == y) & (robust(x).argmax(1) == y)
        flipped = right & (standard(adv).argmax(1) != y)
        return flipped, flipped & (robust(adv).argmax(1) == y)


def pick_index(standard: nn.Module, robust: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: PGDConfig,
               index: int | None) -> tuple[int, str]:
    """`index` if given; else the first test image both models classify correctly whose
    adversarial version flips the standard model but not the robust one (the contrast of the
    paper's Fig. 1), else the first that flips the standard model. Returns it and the rule used."""
    if index is not None:
        if not 0 <= index < len(x):
            raise ValueError(f"saliency index {index} is outside the test split (0..{len(x) - 1})")
        return index, CHOICES["given"]
    fallback = None
    for start in range(0, len(x), BATCH):
        flipped, holds = flips(standard, robust, x[start:start + BATCH], y[start:start + BATCH], cfg)
        if holds.any():
            return start + int(holds.nonzero()[0]), CHOICES["robust_holds"]
        if fallback is None and flipped.any():
            fallback = start + int(flipped.nonzero()[0])
    if fallback is None:
        raise ValueError("no test image is classified correctly by both models and flipped by the attack "
                         "for the standard model")
    return fallback, CHOICES["both_flip"]


def example(models: dict[str, nn.Module], standard: str, robust: str, x: torch.Tensor, y: torch.Tensor,
            eps: float, steps: int, index: int | None, seed: int) -> Example:
    """Saliency of every model on test image `index` (or the one pick_index chooses) and on its
    adversarial version, made by L-inf PGD against the `standard` model."""
    torch.manual_seed(seed)
    exact_evaluation()  # the attacks and predictions of the figure in exact fp32, as every test number
    cfg = PGDConfig(eps=eps, steps=steps, step_size=default_step_size(eps, steps))
    i, choice = pick_index(models[standard], models[robust], x, y, cfg, index)
    clean = x[i:i + 1]
    adv = pgd(models[standard], clean, cross_entropy(y[i:i + 1]), cfg)
    both = torch.cat([clean, adv])
    maps, preds = {}, {}
    for label, model in models.items():
        grads, pred = saliency(model, both)
        maps[label] = np.stack([normalise_saliency(g) for g in grads])
        preds[label] = pred.tolist()
    images = both.detach().cpu().numpy().transpose(0, 2, 3, 1)
    return Example(i, int(y[i]), choice, images, maps, preds)
