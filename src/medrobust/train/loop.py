"""Training: SGD + Nesterov, cosine LR, label smoothing, EMA of weights; standard or TRADES.

The loss is an `Objective`: `Standard` (cross-entropy) here, TRADES in medrobust.train.trades. An
objective may add validation metrics and name one of them as the criterion of the best epoch
(TRADES: balanced accuracy under PGD; standard training: clean balanced accuracy); training stops
early after `patience` epochs without improvement (0: the full schedule is always run). The best
epoch's weights are returned, and the last epoch's beside them: which one a model keeps is a
setting of its selection and evaluation (medrobust.core.hparams.kept_epoch), not of its training,
so choosing the other re-trains nothing.

Data live as tensors on the device; a batch is gathered by index and augmented as a whole.
Random numbers are drawn there too, and a step's loss and accuracy are summed there and read
once per epoch, so that a training step never makes the host wait for the GPU (tests/test_sync.py).
Everything random is a pure function of (seed, epoch) or (seed, step), so a run resumed at
any step from its state file ends bit-identical to an uninterrupted one on a CPU (tested). On a
GPU, cuDNN's autotuned kernels (`cudnn.benchmark`) are not deterministic, so a resumed run ends
equal up to floating-point noise, as two uninterrupted runs do.

The EMA is written here rather than with torch.optim.swa_utils.AveragedModel: that class copies
the weights at its first update and has no warm-up, while this EMA averages from step 0 with
the decay min(d, (1 + t) / (10 + t)); the numbers would differ. Its update is the same
`_foreach_lerp_` that swa_utils' `get_ema_multi_avg_fn` uses.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from medrobust.core.errors import ConfigError, Interrupted
from medrobust.core.io import atomic_path
from medrobust.core.metrics import classification_metrics
from medrobust.core.network import WideResNet, build, predict
from medrobust.core.numerics import as_float, autocast, derive_seed
from medrobust.jobs.device import gpu_name
from medrobust.jobs.progress import format_duration

log = logging.getLogger(__name__)


# the settings a TRADES run must be given (robust.* in the schema)
TRADES_SETTINGS = ("beta", "eps", "attack_steps", "step_size_factor", "val_attack_steps", "val_max_images", "patience",
                   "reference")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting that changes a training result (and nothing else), as
    medrobust.core.hparams.train_hparams gives them from the config: no defaults repeat the
    schema's here."""
    lr: float
    batch_size: int
    epochs: int
    augment: bool
    seed: int
    momentum: float
    nesterov: bool
    weight_decay: float
    label_smoothing: float
    ema_decay: float
    crop_padding: int
    hflip: bool
    precision: str
    channels_last: bool
    depth: int
    width: int
    activation: str
    # what a method or a stage adds (medrobust.core.hparams.train_hparams): TRADES' settings, and
    # which epoch a nonrobust-only model keeps; the values below mean "not this method's"
    method: str = "standard"  # or "trades"
    beta: float = math.nan
    eps: float = math.nan  # L-inf budget of the TRADES attack and of the adversarial validation
    attack_steps: int = 0
    step_size_factor: float = math.nan  # step = factor * eps / steps, for both attacks
    val_attack_steps: int = 0
    val_max_images: int = 0  # 0: the whole validation set
    patience: int = 0  # 0: no early stopping
    reference: bool = False  # TRADES as its authors' trades_loss (robust.reference)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown training setting(s): {', '.join(unknown)} (known: {', '.join(known)})")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in d
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if d.get("method") == "trades":
            missing += [k for k in TRADES_SETTINGS if k not in d]
        if missing:
            raise ConfigError(f"missing training setting(s): {', '.join(missing)}")
        return cls(**d)


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Cosine annealing from base_lr to 0 as a pure function of the step."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


def ema_decay_at(decay: float, step: int) -> float:
    """EMA decay with the usual warm-up, so early averages are not dominated by the init."""
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
    for e, m in zip(ema.buffers(), model.buffers()):
        if e.dtype.is_floating_point:
            e.lerp_(m, 1.0 - decay)
        else:
            e.copy_(m)


def augment_batch(x: torch.Tensor, gen: torch.Generator, crop_padding: int, hflip: bool) -> torch.Tensor:
    """Random reflect-padded crops and horizontal flips of a whole batch, drawn from `gen` (a
    generator on x's device: offsets drawn on the host would be a blocking copy every step)."""
    b, c, h, w = x.shape
    if crop_padding:
        p = crop_padding
        padded = F.pad(x, (p, p, p, p), mode="reflect")
        off = torch.randint(0, 2 * p + 1, (2, b), generator=gen, device=x.device)
        rows = (off[0][:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (off[1][:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = padded[torch.arange(b, device=x.device)[:, None, None, None],
                   torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    if hflip:
        flip = torch.rand(b, generator=gen, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of images (N, C, H, W), in [0, 1] units, chunked to bound memory."""
    total = torch.zeros(2, x.shape[1], dtype=torch.float64, device=x.device)
    for i in range(0, len(x), chunk):
        v = as_float(x[i:i + chunk]).transpose(0, 1).flatten(1).double()
        total += torch.stack([v.sum(1), v.pow(2).sum(1)])
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total[0] / n
    std = (total[1] / n - mean**2).clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def model_args(cfg: TrainConfig, n_classes: int, train_x: torch.Tensor) -> dict[str, Any]:
    """Architecture plus the training set's per-channel mean and std (normalisation inside)."""
    mean, std = channel_stats(train_x)
    return {"depth": cfg.depth, "width": cfg.width, "activation": cfg.activation, "n_classes": n_classes,
            "n_channels": int(train_x.shape[1]), "mean": mean, "std": std}


@dataclass
class Data:
    """Training and validation tensors on the training device."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    n_classes: int


class Objective(Protocol):
    """What a training method adds to the loop: its loss, extra validation metrics, and the
    validation metric (`best_by`) whose best epoch's weights are returned beside the last's."""

    best_by: str

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss, logits of the clean batch) of one training step."""
        ...

    def validate(self, model: nn.Module, data: Data, batch_size: int) -> dict[str, float]:
        """Extra validation metrics of the EMA model (keys without the val_ prefix)."""
        ...


@dataclass(frozen=True)
class Standard:
    """Cross-entropy with label smoothing; the best epoch by clean validation balanced accuracy."""

    cfg: TrainConfig
    best_by: str = "val_balanced_accuracy"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(x.device, self.cfg.precision):
            logits = model(x)
        return F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.label_smoothing), logits

    def validate(self, model: nn.Module, data: Data, batch_size: int) -> dict[str, float]:
        return {}


@dataclass
class Run:
    """Everything a resumed run needs; saved atomically to the state file."""
    model: WideResNet
    ema: WideResNet
    opt: torch.optim.Optimizer
    step: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    totals: torch.Tensor | None = None  # this epoch's (loss sum, correct, seen) so far
    best: dict[str, Any] | None = None  # {"row": epoch row, "ema": state dict} of the best epoch
    bad_epochs: int = 0  # epochs since the best one

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            torch.save({"step": self.step, "history": self.history,
                        "totals": self.totals, "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                        "opt": self.opt.state_dict(), "best": self.best, "bad_epochs": self.bad_epochs,
                        "gpu": gpu_name(next(self.model.parameters()).device)}, tmp)

    def load(self, path: Path) -> bool:
        """Restore from `path` if it exists (its folder, medrobust.jobs.state.resumable, holds only
        this very run's state)."""
        if not path.exists():
            return False
        device = next(self.model.parameters()).device
        state = torch.load(path, map_location=device, weights_only=False)
        was, now = state.get("gpu"), gpu_name(device)
        # a job's pieces may land on different GPU models of a partition: noise, no reason to start over
        if was != now:
            log.info("resuming %s on another GPU model (was %s, now %s): the result may differ from an "
                     "uninterrupted run by floating-point noise", path, was, now)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.step, self.history, self.totals = state["step"], state["history"], state["totals"]
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]
        return True


def new_run(cfg: TrainConfig, margs: dict[str, Any], device: torch.device) -> Run:
    torch.manual_seed(derive_seed(cfg.seed, 0))
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = build(**margs).to(device, memory_format=fmt)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    return Run(model, ema, opt, totals=torch.zeros(3, device=device))


def train_step(run: Run, cfg: TrainConfig, objective: Objective, data: Data, perm: torch.Tensor,
               total_steps: int) -> None:
    i = run.step % (total_steps // cfg.epochs)
    idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
    x, y = as_float(data.train_x[idx]), data.train_y[idx]
    if cfg.augment:
        gen = torch.Generator(device=x.device).manual_seed(derive_seed(cfg.seed, 2, run.step))
        x = augment_batch(x, gen, cfg.crop_padding, cfg.hflip)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for group in run.opt.param_groups:
        group["lr"] = cosine_lr(cfg.lr, run.step, total_steps)
    loss, logits = objective.loss(run.model, x, y, run.step)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    ema_update(run.ema, run.model, ema_decay_at(cfg.ema_decay, run.step))
    with torch.no_grad():  # accumulated on the device, read once per epoch
        # torch.full fills on the device; torch.tensor(len(y), device=...) would copy from the host
        run.totals += torch.stack([loss.detach() * len(y), (logits.argmax(1) == y).sum().float(),
                                   torch.full((), float(len(y)), device=x.device)])
    run.step += 1


def end_epoch(run: Run, cfg: TrainConfig, objective: Objective, data: Data, total: int, seconds: float,
              eval_batch_size: int) -> dict[str, float]:
    probs = predict(run.ema, data.val_x, eval_batch_size, cfg.precision)
    val = classification_metrics(data.val_y.cpu().numpy(), probs) | objective.validate(run.ema, data, eval_batch_size)
    loss, correct, seen = run.totals.tolist()
    row = {"epoch": run.step * cfg.epochs // total, "step": run.step, "lr": cosine_lr(cfg.lr, run.step - 1, total),
           "train_loss": loss / seen, "train_accuracy": correct / seen, "seconds": seconds,
           **{f"val_{k}": v for k, v in val.items()}}
    run.history.append(row)
    run.totals.zero_()
    return row


def track_best(run: Run, cfg: TrainConfig, criterion: str, row: dict[str, float]) -> bool:
    """Keep the best epoch by `criterion`; True when patience ran out."""
    if run.best is None or row[criterion] > run.best["row"][criterion]:
        run.best = {"row": row, "ema": copy.deepcopy(run.ema.state_dict())}
        run.bad_epochs = 0
    else:
        run.bad_epochs += 1
    return cfg.patience > 0 and run.bad_epochs >= cfg.patience


def steps_per_epoch(cfg: TrainConfig, data: Data) -> int:
    return max(1, len(data.train_y) // cfg.batch_size)


class Fitted(NamedTuple):
    """A finished run: the best epoch's EMA model (by the objective's `best_by`), its
    model_args, the per-epoch history, the best epoch's history row, and the last epoch's EMA
    weights when the best epoch is another."""
    model: WideResNet
    model_args: dict[str, Any]
    history: list[dict[str, float]]
    best: dict[str, float]
    last_state: dict[str, torch.Tensor] | None


def fit(cfg: TrainConfig, data: Data, state: Path, should_stop: Callable[[], bool] = lambda: False,
        checkpoint_every: int = 5, eval_batch_size: int = 1024, objective: Objective | None = None) -> Fitted:
    """Train (resuming from the state folder `state`: medrobust.jobs.state.resumable) and return
    the best epoch's weights (by the objective's `best_by`) with the last epoch's. State is saved
    every `checkpoint_every` epochs, and before raising Interrupted when `should_stop()` turns
    true."""
    state_path = state / "run.pt"
    objective = objective or Standard(cfg)
    criterion = objective.best_by
    device = data.train_x.device
    margs = model_args(cfg, data.n_classes, data.train_x)
    run = new_run(cfg, margs, device)
    per_epoch = steps_per_epoch(cfg, data)
    total = cfg.epochs * per_epoch
    if run.load(state_path):
        log.info("resumed from %s at step %d/%d (epoch %d)", state_path, run.step, total, run.step // per_epoch + 1)
    run.model.train()
    perm, t0, t_epoch, seen0 = None, time.perf_counter(), time.perf_counter(), run.step
    stop_early = False
    while run.step < total and not stop_early:
        epoch = run.step // per_epoch
        if perm is None or run.step % per_epoch == 0:
            gen = torch.Generator(device=device).manual_seed(derive_seed(cfg.seed, 1, epoch))
            perm = torch.randperm(len(data.train_y), generator=gen, device=device)
        train_step(run, cfg, objective, data, perm, total)
        if run.step % per_epoch == 0:
            row = end_epoch(run, cfg, objective, data, total, time.perf_counter() - t_epoch, eval_batch_size)
            run.model.train()
            t_epoch = time.perf_counter()
            _log_epoch(row, cfg, total, (run.step - seen0) * cfg.batch_size / (time.perf_counter() - t0))
            stop_early = track_best(run, cfg, criterion, row)
            if stop_early:
                log.info("early stop: no better %s for %d epochs", criterion, cfg.patience)
            elif (epoch + 1) % checkpoint_every == 0 and run.step < total:
                run.save(state_path)
        if should_stop() and run.step < total and not stop_early:
            run.save(state_path)
            raise Interrupted(f"stopped at step {run.step}/{total}; state saved to {state_path}")
    last = run.history[-1]
    if run.best is None or run.best["row"]["step"] == last["step"]:
        return Fitted(run.ema, margs, run.history, last, None)
    last_state = copy.deepcopy(run.ema.state_dict())
    run.ema.load_state_dict(run.best["ema"])
    return Fitted(run.ema, margs, run.history, run.best["row"], last_state)


def _log_epoch(row: dict[str, float], cfg: TrainConfig, total: int, img_per_s: float) -> None:
    remaining = (total - row["step"]) * cfg.batch_size / max(img_per_s, 1e-9)
    robust = f" robust {100 * row['val_robust_balanced_accuracy']:.1f}%" if "val_robust_balanced_accuracy" in row else ""
    log.info("epoch %d/%d | step %d/%d | lr %.4f | loss %.4f | train acc %.1f%% | val bacc %.1f%%%s auc %.4f"
             " | %.0f img/s | eta %s", row["epoch"], cfg.epochs, row["step"], total, row["lr"], row["train_loss"],
             100 * row["train_accuracy"], 100 * row["val_balanced_accuracy"], robust, row["val_auc"], img_per_s,
             format_duration(remaining))
