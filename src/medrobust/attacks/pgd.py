"""L-inf PGD (Madry et al.) in [0, 1] pixel space, as a pure function of tensors.

Conventions, following robust_overfitting and DeepMind's adversarial_robustness:

* images are in [0, 1] (the model normalises inside), and every iterate is projected onto
  both the eps-ball around x and the pixel range;
* the model is put in eval mode for the attack (batch-norm statistics fixed, so a sample's
  perturbation does not depend on the rest of its batch) and restored afterwards;
* parameters get no gradients: only the input's gradient is computed;
* **the best iterate is returned**, per sample: the one with the best attack objective among
  all iterates (the start included; the final one costs one extra forward pass). PGD with a
  fixed step size can overshoot and oscillate near the end; returning the best objective seen
  makes the result monotone in the number of steps, and for the nonrobust-set construction it
  yields the most confident move towards the target class. `keep="last"` gives the plain
  last iterate (as torchattacks and the TRADES reference do).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from medrobust.runtime import autocast


@dataclass(frozen=True)
class PGDConfig:
    eps: float  # L-inf radius in [0, 1] units
    steps: int
    step_size: float
    random_start: bool = False
    keep: str = "best"  # "best" or "last"

    def __post_init__(self) -> None:
        if self.eps < 0 or self.steps < 0 or self.step_size < 0:
            raise ValueError(f"eps, steps and step_size must be non-negative: {self}")
        if self.keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {self.keep!r}")


def default_step_size(eps: float, steps: int, factor: float = 2.5) -> float:
    """Madry et al.'s rule: factor * eps / steps lets a straight path reach the ball's surface
    from any start and still leaves room to move along it."""
    return factor * eps / max(steps, 1)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Onto the L-inf ball of radius eps around x, then onto [0, 1] (x in [0, 1], so the
    intersection is non-empty and clamping in this order lands in both)."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def objective(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per-sample value the attack maximises: CE to the true label, or minus CE to the target."""
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    return -ce if targeted else ce


def pgd(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, cfg: PGDConfig, *, targeted: bool = False,
        precision: str = "fp32", generator: torch.Generator | None = None) -> torch.Tensor:
    """L-inf PGD on a batch. `labels` are the true labels (untargeted) or the targets (targeted).

    Returns adversarial images in [0, 1] within eps of x (float32, detached)."""
    was_training = model.training
    model.eval()
    grads_were = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        x = x.detach().float()
        x_adv = x.clone()
        if cfg.random_start:
            noise = torch.rand(x.shape, generator=generator, device="cpu").to(x.device)
            x_adv = project(x + (2 * noise - 1) * cfg.eps, x, cfg.eps)
        best, best_obj = x_adv.clone(), torch.full((len(x),), -torch.inf, device=x.device)
        for _ in range(cfg.steps):
            x_adv.requires_grad_(True)
            with autocast(x.device, precision):
                logits = model(x_adv)
            obj = objective(logits, labels, targeted)
            (grad,) = torch.autograd.grad(obj.sum(), x_adv)
            with torch.no_grad():
                _keep_best(best, best_obj, x_adv, obj)
                x_adv = project(x_adv + cfg.step_size * grad.sign(), x, cfg.eps)
        if cfg.keep == "last":
            return x_adv.detach()
        with torch.no_grad(), autocast(x.device, precision):
            _keep_best(best, best_obj, x_adv, objective(model(x_adv), labels, targeted))
        return best
    finally:
        for p, g in zip(model.parameters(), grads_were):
            p.requires_grad_(g)
        model.train(was_training)


def _keep_best(best: torch.Tensor, best_obj: torch.Tensor, x_adv: torch.Tensor, obj: torch.Tensor) -> None:
    better = obj.detach() > best_obj
    best[better] = x_adv.detach()[better]
    best_obj[better] = obj.detach()[better]
