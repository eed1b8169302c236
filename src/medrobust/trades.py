"""TRADES (Zhang et al., 2019): CE(y, f(x)) + beta * KL(f(x) || f(x + delta)); paper Eq. 2.

As in the authors' reference code (yaodongyu/TRADES, `trades.py`):

* the inner attack maximises KL(f(x) || f(x')) by L-inf PGD, starting at x + 0.001 * N(0, 1),
  with the model in eval mode (batch-norm statistics fixed) and f(x) held constant;
* the outer loss runs in train mode, with gradients through both f(x) and f(x + delta);
* the KL term is summed over classes and averaged over the batch ('batchmean').

Two deliberate differences, both documented in the config: label smoothing on the CE term (the
paper uses it for every model), and the start point is projected onto [0, 1] and the eps-ball
before the first step (the reference projects only after each step). Logits are cast to fp32
before the softmaxes, so bf16 autocast changes only the network's arithmetic, not the KL.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from medrobust.attacks import project
from medrobust.evaluate import autocast


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(softmax(p) || softmax(q)), in fp32."""
    log_p, log_q = F.log_softmax(logits_p.float(), 1), F.log_softmax(logits_q.float(), 1)
    return (log_p.exp() * (log_p - log_q)).sum(1)


def trades_loss(logits_nat: torch.Tensor, logits_adv: torch.Tensor, labels: torch.Tensor, beta: float,
                label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, natural CE, robust KL), each averaged over the batch."""
    ce = F.cross_entropy(logits_nat.float(), labels, label_smoothing=label_smoothing)
    kl = kl_divergence(logits_nat, logits_adv).mean()
    return ce + beta * kl, ce, kl


def trades_perturb(model: nn.Module, x: torch.Tensor, eps: float, steps: int, step_size: float,
                   generator: torch.Generator | None = None, precision: str = "fp32") -> torch.Tensor:
    """x + delta, ||delta||_inf <= eps, in [0, 1], maximising KL(f(x) || f(x + delta)).

    The model is in eval mode during the attack and goes back to its previous mode after."""
    was_training = model.training
    model.eval()
    try:
        x = x.detach()
        with torch.no_grad(), autocast(x.device, precision):
            logits_nat = model(x).float()
        start = 0.001 * torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
        x_adv = project(x + start, x, eps)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with autocast(x.device, precision):
                logits_adv = model(x_adv)
            (grad,) = torch.autograd.grad(kl_divergence(logits_nat, logits_adv).sum(), x_adv)
            x_adv = project(x_adv.detach() + step_size * grad.sign(), x, eps)
        return x_adv.detach()
    finally:
        model.train(was_training)
