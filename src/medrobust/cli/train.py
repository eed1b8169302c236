"""Commands of workflow/rules/train.smk: train (standard), train-trades (robust), select."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from medrobust.cli.args import add_device_args, job_device, log, parse_json
from medrobust.core.errors import ConfigError
from medrobust.core.io import atomic_path, write_json
from medrobust.core.stages import EPOCHS


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

    from medrobust.core.network import save_checkpoint
    from medrobust.core.numerics import resolve_precision
    from medrobust.core.splits import load_split
    from medrobust.jobs.provenance import record
    from medrobust.jobs.state import fingerprint, resumable, sigterm_flag
    from medrobust.train.history import write_history
    from medrobust.train.loop import Data, TrainConfig, fit

    hparams = parse_json(a.hparams, "--hparams") if a.hparams else selected_hparams(a.selected, a.seed)
    if a.overlay:  # a variant (medrobust.core.paths.overlay): the selected point with its changes
        if not a.selected:
            raise ConfigError("--overlay needs --selected (it changes the selected point's settings)")
        hparams |= parse_json(a.overlay, "--overlay")
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
    log.info("training %s on %s (%d train, %d val images) with %s", a.out_model, device, len(train_y), len(val_y), hparams)
    t0 = time.perf_counter()
    tag = fingerprint(command, {**hparams, "n_classes": a.n_classes}, a.train_data, a.val_data,
                      device=device.type, precision=precision)
    with resumable(a.state, tag, "training state") as state:
        method = objective(cfg)
        run = fit(cfg, data, state, sigterm_flag(), a.checkpoint_every, a.eval_batch_size, method)
        meta = {"hparams": hparams, "best": val_row(run.best), "last": val_row(run.history[-1]),
                "epochs": epochs_record(run.history, run.best, method.best_by),
                "history": run.history, "train_data": a.train_data, "val_data": a.val_data, "device": str(device),
                "precision": precision, "seconds_this_session": time.perf_counter() - t0, "code": tag["code"],
                "provenance": record(hparams)}
        save_checkpoint(a.out_model, run.model_args, run.model.state_dict(), run.last_state, **meta)
        write_json(a.out_metrics, meta)
        write_history(run.history, cfg.batch_size, a.out_history)
    log.info("done: best epoch %d (by %s), last %d: val balanced accuracy %.4f and %.4f", meta["epochs"]["best"],
             meta["epochs"]["best_by"], meta["epochs"]["last"], meta["best"]["val_balanced_accuracy"],
             meta["last"]["val_balanced_accuracy"])


def selected_hparams(path: str, seed: int | None) -> dict[str, Any]:
    """A seed replicate's settings: the selected grid point's (medrobust select), another seed."""
    from medrobust.core.errors import DataError
    from medrobust.core.io import read_json

    if seed is None:
        raise ConfigError("--selected needs --seed (the replicate's seed)")
    choice = read_json(path)
    try:
        hparams = dict(choice["candidates"][0]["hparams"])
    except (KeyError, IndexError, TypeError):
        raise DataError(f"{path}: not a selection (medrobust select) with a selected grid point") from None
    return {**hparams, "seed": seed}


def val_row(row: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in row.items() if k.startswith("val_") or k == "epoch"}


def epochs_record(history: list[dict[str, float]], best: dict[str, float], criterion: str) -> dict[str, Any]:
    """The best epoch and by what, the last one, and the best by clean validation balanced
    accuracy (for TRADES another than `best`)."""
    clean = max(history, key=lambda h: h["val_balanced_accuracy"])
    return {"best": int(best["epoch"]), "best_by": criterion, "last": int(history[-1]["epoch"]),
            "best_val_balanced_accuracy": int(clean["epoch"]), "of": len(history)}


def cmd_select(a: argparse.Namespace) -> None:
    from medrobust.jobs.provenance import record
    from medrobust.train.select import select

    choice = select(a.metrics, a.criterion, a.epoch)
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
        given = s.add_mutually_exclusive_group(required=True)
        given.add_argument("--hparams", help="JSON of TrainConfig fields")
        given.add_argument("--selected", help="a selection (selected.json): train its grid point again, with --seed")
        s.add_argument("--seed", type=int, help="with --selected: the seed replicate's seed")
        s.add_argument("--overlay", help="with --selected: JSON of the settings a variant changes (docs/variants.md)")
        s.add_argument("--state", required=True, help="resumable state: a folder beside the outputs, removed once they are written")
        s.add_argument("--out-model", required=True)
        s.add_argument("--out-metrics", required=True)
        s.add_argument("--out-history", required=True, help="per-epoch history (CSV)")
        s.add_argument("--checkpoint-every", type=int, required=True, help="epochs between resumable checkpoints")
        s.add_argument("--eval-batch-size", type=int, required=True)
        add_device_args(s)
        s.set_defaults(func=func)

    s = sub.add_parser("select", help="pick the best grid point by a validation metric")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--criterion", required=True)
    s.add_argument("--epoch", choices=EPOCHS, required=True,
                   help="the epoch a model keeps, whose validation metrics select (best: by the method's metric)")
    s.add_argument("--out", required=True)
    s.add_argument("--model-out", required=True)
    s.set_defaults(func=cmd_select)
