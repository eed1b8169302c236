"""Commands of workflow/rules/train.smk: train (standard), train-trades (robust), select."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from medrobust.cli.args import add_device_args, job_device, log, parse_json
from medrobust.errors import ConfigError
from medrobust.io import atomic_path, write_json


def cmd_train(a: argparse.Namespace) -> None:
    """Standard training (cross-entropy): base and nonrobust-only models."""
    from medrobust.train.loop import Standard

    _train(a, "train", Standard)


def cmd_train_trades(a: argparse.Namespace) -> None:
    """TRADES training with adversarial validation: the robust models."""
    from medrobust.train.trades import Trades

    _train(a, "train-trades", Trades)


def _train(a: argparse.Namespace, command: str, objective: Any) -> None:
    import torch

    from medrobust.data.splits import load_split
    from medrobust.provenance import record
    from medrobust.runtime import fingerprint, resolve_precision, sigterm_flag, state_lock
    from medrobust.train.history import write_history
    from medrobust.train.loop import Data, TrainConfig, fit

    hparams = parse_json(a.hparams, "--hparams")
    cfg = TrainConfig.from_dict(hparams)
    if (cfg.method == "trades") != (command == "train-trades"):
        raise ConfigError(f"--hparams: method {cfg.method!r} is trained by 'medrobust "
                          f"{'train-trades' if cfg.method == 'trades' else 'train'}', not '{command}'")
    device = job_device(a)
    torch.backends.cudnn.benchmark = True
    train_x, train_y = load_split(a.train_data, "train", device, a.n_classes)
    val_x, val_y = load_split(a.val_data, "val", device, a.n_classes)
    data = Data(train_x, train_y, val_x, val_y, a.n_classes)
    precision = resolve_precision(cfg.precision, device)
    state = Path(a.state)
    log.info("training %s on %s (%d train, %d val images) with %s", a.out_model, device, len(train_y), len(val_y), hparams)
    t0 = time.perf_counter()
    with state_lock(state):
        tag = fingerprint(command, {**hparams, "n_classes": a.n_classes}, a.train_data, a.val_data,
                          device=device.type, precision=precision)
        ema, margs, history, chosen = fit(cfg, data, state, tag, sigterm_flag(), a.checkpoint_every,
                                          a.eval_batch_size, objective(cfg))
        final = {k: v for k, v in chosen.items() if k.startswith("val_") or k == "epoch"}
        meta = {"hparams": hparams, "final": final, "history": history, "train_data": a.train_data,
                "val_data": a.val_data, "device": str(device), "precision": precision,
                "seconds_this_session": time.perf_counter() - t0, "code": tag["code"], "provenance": record(hparams)}
        with atomic_path(a.out_model) as tmp:
            torch.save({"model_args": margs, "state_dict": ema.state_dict(), **meta}, tmp)
        write_json(a.out_metrics, meta)
        write_history(history, cfg.batch_size, a.out_history)
        state.unlink(missing_ok=True)
    log.info("done: val balanced accuracy %.4f, AUC %.4f", final["val_balanced_accuracy"], final["val_auc"])


def cmd_select(a: argparse.Namespace) -> None:
    from medrobust.provenance import record
    from medrobust.train.select import select

    choice = select(a.metrics, a.criterion)
    chosen = Path(choice["candidates"][0]["path"]).parent / "model.pt"
    with atomic_path(a.model_out) as tmp:
        shutil.copyfile(chosen, tmp)
    write_json(a.out, {**choice, "model": str(chosen), "provenance": record()})
    log.info("selected %s: %s", choice["selected"], choice["reason"])


def add_parsers(sub: Any) -> None:
    for name, func, what in (("train", cmd_train, "train one standard model (base, nonrobust-only)"),
                             ("train-trades", cmd_train_trades, "train one TRADES model (robust)")):
        s = sub.add_parser(name, help=f"{what}; resumes from --state if it belongs to this job")
        s.add_argument("--train-data", required=True, help="npz whose train_* arrays are trained on")
        s.add_argument("--val-data", required=True, help="npz whose val_* arrays are validated on")
        s.add_argument("--n-classes", type=int, required=True)
        s.add_argument("--hparams", required=True, help="JSON of TrainConfig fields")
        s.add_argument("--state", required=True, help="resumable state file (kept beside the outputs)")
        s.add_argument("--out-model", required=True)
        s.add_argument("--out-metrics", required=True)
        s.add_argument("--out-history", required=True, help="per-epoch history (CSV)")
        s.add_argument("--checkpoint-every", type=int, default=5, help="epochs between resumable checkpoints")
        s.add_argument("--eval-batch-size", type=int, default=1024)
        add_device_args(s)
        s.set_defaults(func=func)

    s = sub.add_parser("select", help="pick the best grid point by a validation metric")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--criterion", default="val_balanced_accuracy")
    s.add_argument("--out", required=True)
    s.add_argument("--model-out", required=True)
    s.set_defaults(func=cmd_select)
