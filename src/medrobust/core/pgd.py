"""L-inf PGD (Madry et al.) in [0, 1] pixel space with a pluggable objective: one loop for the
nonrobust-set construction (targeted cross-entropy), the adversarial validation and Fig. 1
(untargeted cross-entropy), and the TRADES inner attack (KL to the clean prediction).

Conventions, following robust_overfitting and DeepMind's adversarial_robustness:

* images are in [0, 1] (the model normalises inside), and every iterate is projected onto
  both the eps-ball around x and the pixel range;
* the model is put in eval mode for the attack (batch-norm statistics fixed, so a sample's
  perturbation does not depend on the rest of its batch) and restored afterwards;
* parameters get no gradients: only the input's gradient is computed;
* the start is x itself, a uniform draw in the eps-ball (Madry et al.), or x + 0.001 N(0, 1)
  (the TRADES reference), projected; or x + 0.001 N(0, 1) unprojected, as the TRADES authors'
  code starts (`trades_reference`: its first step projects);
* with `keep="best"` (the default) the best iterate is returned, per sample: the one with the
  highest objective among all iterates (the start included; the final one costs one extra
  forward pass). PGD with a fixed step size can overshoot and oscillate near the end; returning
  the best objective seen makes the result monotone in the number of steps, and for the
  nonrobust-set construction it yields the most confident move towards the target class.
  `keep="last"` gives the plain last iterate (as torchattacks and the TRADES reference do).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from medrobust.core.errors import Interrupted
from medrobust.core.numerics import autocast, eval_mode

Objective = Callable[[torch.Tensor], torch.Tensor]  # logits -> per-sample value the attack maximises
STARTS = ("none", "uniform", "trades", "trades_reference")


@dataclass(frozen=True)
class PGDConfig:
    eps: float  # L-inf radius in [0, 1] units
    steps: int
    step_size: float
    start: str = "none"  # one of STARTS (module docstring)
    keep: str = "best"  # "best" or "last"

    def __post_init__(self) -> None:
        if self.eps < 0 or self.steps < 0 or self.step_size < 0:
            raise ValueError(f"eps, steps and step_size must be non-negative: {self}")
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, got {self.start!r}")
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


def cross_entropy(labels: torch.Tensor, targeted: bool = False) -> Objective:
    """Cross-entropy to the true labels (untargeted), or minus cross-entropy to the targets."""

    def value(logits: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), labels, reduction="none")
        return -ce if targeted else ce

    return value


def start_point(x: torch.Tensor, cfg: PGDConfig, generator: torch.Generator | None) -> torch.Tensor:
    """The first iterate (cfg.start), projected. The noise is drawn on the generator's device
    (x's default generator when None); a generator on x's device spares a blocking copy."""
    device = x.device if generator is None else generator.device
    if cfg.start == "uniform":
        noise = torch.rand(x.shape, generator=generator, device=device).to(x.device)
        return project(x + (2 * noise - 1) * cfg.eps, x, cfg.eps)
    if cfg.start in ("trades", "trades_reference"):
        noisy = x + 0.001 * torch.randn(x.shape, generator=generator, device=device).to(x.device)
        return project(noisy, x, cfg.eps) if cfg.start == "trades" else noisy
    return x.clone()


def pgd(model: nn.Module, x: torch.Tensor, objective: Objective, cfg: PGDConfig, *, precision: str = "fp32",
        generator: torch.Generator | None = None, should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
    """L-inf PGD on a batch, maximising `objective` (e.g. `cross_entropy(labels)`).

    Returns adversarial images in [0, 1] within eps of x (float32, detached). `should_stop()`
    is read before every step: when true, Interrupted is raised and the batch is dropped (a
    long attack of a large batch stops within one step of a signal, not at the batch's end)."""
    with eval_mode(model, freeze=True):
        x = x.detach().float()
        x_adv = start_point(x, cfg, generator)
        best, best_value = x_adv.detach(), torch.full((len(x),), -torch.inf, device=x.device)
        for step in range(cfg.steps):
            if should_stop is not None and should_stop():
                raise Interrupted(f"stopped at step {step} of {cfg.steps} of a {len(x)}-image batch (dropped)")
            x_adv.requires_grad_(True)
            with autocast(x.device, precision):
                logits = model(x_adv)
            value = objective(logits)
            (grad,) = torch.autograd.grad(value.sum(), x_adv)
            with torch.no_grad():
                if cfg.keep == "best":
                    best, best_value = _kept_best(best, best_value, x_adv, value)
                x_adv = project(x_adv + cfg.step_size * grad.sign(), x, cfg.eps)
        if cfg.keep == "last":
            return x_adv.detach()
        with torch.no_grad(), autocast(x.device, precision):
            return _kept_best(best, best_value, x_adv, objective(model(x_adv)))[0]


def _kept_best(best: torch.Tensor, best_value: torch.Tensor, x_adv: torch.Tensor,
               value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(iterate, value) per sample: x_adv where its value beats the best so far, else the best.
    Selected with torch.where, as boolean-mask indexing would wait for the GPU (nonzero)."""
    better = value.detach() > best_value
    return (torch.where(better[:, None, None, None], x_adv.detach(), best),
            torch.where(better, value.detach(), best_value))
