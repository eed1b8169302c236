"""TRADES (Zhang et al., 2019): CE(y, f(x)) + beta * KL(f(x) || f(x + delta)); paper Eq. 2.

As in the authors' reference code (yaodongyu/TRADES, `trades.py`):

* the inner attack maximises KL(f(x) || f(x')) by L-inf PGD (medrobust.core.pgd), starting at
  x + 0.001 * N(0, 1), with the model in eval mode (batch-norm statistics fixed) and f(x) held
  constant;
* the outer loss runs in train mode, with gradients through both f(x) and f(x + delta);
* the KL term is summed over classes and averaged over the batch ('batchmean').

Three differences, stated in the README, which `robust.reference: true` removes (then the loss
and the adversarial batch equal the authors' trades_loss; tests/test_trades.py): label
smoothing on the CE term (the paper uses it for every model; `training.label_smoothing` sets it),
the start point projected onto [0, 1] and the eps-ball before the first step (the reference
projects only after each step), and two forward passes in train mode per step (x, x_adv) where
the reference makes three (x for the CE term, x_adv and x again for the KL term), so batch-norm
running statistics move twice a step, not three times. Logits are cast to fp32
before the softmaxes, so bf16 autocast changes only the network's arithmetic, not the KL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from medrobust.core.metrics import classification_metrics
from medrobust.core.network import predict
from medrobust.core.numerics import as_float, autocast, derive_seed, eval_mode
from medrobust.core.pgd import PGDConfig, cross_entropy, default_step_size, pgd
from medrobust.train.loop import Data, TrainConfig


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(softmax(p) || softmax(q)), in fp32."""
    log_p, log_q = F.log_softmax(logits_p.float(), 1), F.log_softmax(logits_q.float(), 1)
    return (log_p.exp() * (log_p - log_q)).sum(1)


def kl_as_published(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(softmax(p) || softmax(q)) as the authors' code computes it (KLDivLoss on
    log_softmax(q) against softmax(p)): the same value as `kl_divergence` up to rounding, which
    decides the sign of the near-zero gradients of an attack's first step from x + 0.001 N(0, 1)."""
    return F.kl_div(F.log_softmax(logits_q.float(), 1), F.softmax(logits_p.float(), 1), reduction="none").sum(1)


def trades_loss(logits_nat: torch.Tensor, logits_adv: torch.Tensor, labels: torch.Tensor, beta: float,
                label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, natural CE, robust KL), each averaged over the batch."""
    ce = F.cross_entropy(logits_nat.float(), labels, label_smoothing=label_smoothing)
    kl = kl_divergence(logits_nat, logits_adv).mean()
    return ce + beta * kl, ce, kl


def trades_reference_loss(logits: torch.Tensor, logits_adv: torch.Tensor, logits_again: torch.Tensor,
                          labels: torch.Tensor, beta: float) -> torch.Tensor:
    """The authors' loss: CE on the first pass of x, KL(f(x) || f(x_adv)) with f(x) from a second
    pass of x (the same value in eval mode; in train mode, batch norm moves once more)."""
    return F.cross_entropy(logits.float(), labels) + beta * kl_as_published(logits_again, logits_adv).mean()


def trades_perturb(model: nn.Module, x: torch.Tensor, eps: float, steps: int, step_size: float,
                   generator: torch.Generator | None = None, precision: str = "fp32",
                   reference: bool = False) -> torch.Tensor:
    """x + delta, ||delta||_inf <= eps, in [0, 1], maximising KL(f(x) || f(x + delta)): PGD from
    x + 0.001 N(0, 1) (projected; unprojected with `reference`), keeping the last iterate, with
    f(x) computed once in eval mode."""
    x = x.detach()
    with eval_mode(model), torch.no_grad(), autocast(x.device, precision):
        logits_nat = model(x).float()
    attack = PGDConfig(eps, steps, step_size, start="trades_reference" if reference else "trades", keep="last")
    kl = kl_as_published if reference else kl_divergence
    return pgd(model, x, lambda logits_adv: kl(logits_nat, logits_adv), attack, precision=precision,
               generator=generator)


def robust_metrics(model: nn.Module, cfg: TrainConfig, data: Data, batch_size: int) -> dict[str, float]:
    """Validation metrics under untargeted PGD (eps, val_attack_steps): the adversarial
    validation that keeps the best epoch and selects the grid point (Section 3.2)."""
    n = cfg.val_max_images or len(data.val_y)
    x, y = data.val_x[:n], data.val_y[:n]
    attack = PGDConfig(cfg.eps, cfg.val_attack_steps, default_step_size(cfg.eps, cfg.val_attack_steps, cfg.step_size_factor))
    adv = torch.cat([pgd(model, as_float(x[i:i + batch_size]), cross_entropy(y[i:i + batch_size]), attack,
                         precision=cfg.precision) for i in range(0, n, batch_size)])
    return classification_metrics(y.cpu().numpy(), predict(model, adv, batch_size, cfg.precision))


@dataclass(frozen=True)
class Trades:
    """The TRADES objective for medrobust.train.loop.fit: the loss above on a fresh inner attack every
    step, adversarial validation every epoch, and the epoch with the best robust validation
    balanced accuracy kept (Rice et al.'s early stopping)."""

    cfg: TrainConfig
    best_by: str = "val_robust_balanced_accuracy"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        gen = torch.Generator(device=x.device).manual_seed(derive_seed(cfg.seed, 5, step))  # start noise drawn there
        x_adv = trades_perturb(model, x, cfg.eps, cfg.attack_steps,
                               default_step_size(cfg.eps, cfg.attack_steps, cfg.step_size_factor), gen, cfg.precision,
                               cfg.reference)
        with autocast(x.device, cfg.precision):
            logits, logits_adv = model(x), model(x_adv)
            if cfg.reference:  # the authors' third pass: x again for the KL term, no label smoothing
                return trades_reference_loss(logits, logits_adv, model(x), y, cfg.beta), logits
        return trades_loss(logits, logits_adv, y, cfg.beta, cfg.label_smoothing)[0], logits

    def validate(self, model: nn.Module, data: Data, batch_size: int) -> dict[str, float]:
        return {f"robust_{k}": v for k, v in robust_metrics(model, self.cfg, data, batch_size).items()}
