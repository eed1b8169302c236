"""`medrobust <command>`: the entry points the Snakemake rules call (and you can, by hand)."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from medrobust.cli_outputs import add_commands
from medrobust.errors import ConfigError, DataError, DownloadError
from medrobust.io import atomic_path, write_json, write_npz

log = logging.getLogger("medrobust")
EXIT_INTERRUPTED = 143  # as if killed by SIGTERM, so schedulers treat it as a preemption


def cmd_synthesize(a: argparse.Namespace) -> None:
    from medrobust.synthetic import SyntheticSpec, generate

    spec = SyntheticSpec(**json.loads(a.spec), image_size=a.size)
    write_npz(a.out, generate(spec))
    log.info("wrote %s (%s)", a.out, spec)


def cmd_download(a: argparse.Namespace) -> None:
    from medrobust.data import fetch, medmnist_source

    if a.medmnist:
        _, url, md5 = medmnist_source(a.medmnist, a.size, a.mirror)
    else:
        url, md5 = a.url, a.md5
    fetch(url, md5, a.out)
    log.info("downloaded %s from %s (md5 %s verified)", a.out, url, md5)


def cmd_prepare(a: argparse.Namespace) -> None:
    from medrobust.data import Source, prepare
    from medrobust.provenance import record

    src = Source(Path(a.source), a.n_classes, a.n_channels, a.source_size, a.medmnist)
    stats = prepare(src, a.out, a.size)
    write_json(a.stats, {**stats, "provenance": record()})
    log.info("wrote %s: %s", a.out, {k: v for k, v in stats.items() if k.endswith("counts")})


def parse_json(text: str, flag: str) -> dict[str, Any]:
    """A command-line JSON object, or a ConfigError naming the flag."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{flag}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag}: expected a JSON object, got {type(value).__name__}")
    return value


def cmd_train(a: argparse.Namespace) -> None:
    """Standard training (cross-entropy): base and nonrobust-only models."""
    from medrobust.train import Standard

    _train(a, "train", Standard)


def cmd_train_trades(a: argparse.Namespace) -> None:
    """TRADES training with adversarial validation: the robust models."""
    from medrobust.trades import Trades

    _train(a, "train-trades", Trades)


def _train(a: argparse.Namespace, command: str, objective: Any) -> None:
    import torch

    from medrobust.evaluate import load_split
    from medrobust.history import write_history
    from medrobust.provenance import record
    from medrobust.runtime import fingerprint, pick_device, resolve_precision, sigterm_flag, state_lock
    from medrobust.train import Data, TrainConfig, fit

    torch.set_num_threads(a.threads)
    hparams = parse_json(a.hparams, "--hparams")
    cfg = TrainConfig.from_dict(hparams)
    if (cfg.method == "trades") != (command == "train-trades"):
        raise ConfigError(f"--hparams: method {cfg.method!r} is trained by 'medrobust "
                          f"{'train-trades' if cfg.method == 'trades' else 'train'}', not '{command}'")
    device = pick_device(a.device)
    torch.backends.cudnn.benchmark = True
    train_x, train_y = load_split(a.train_data, "train", device, a.n_classes)
    val_x, val_y = load_split(a.val_data, "val", device, a.n_classes)
    data = Data(train_x, train_y, val_x, val_y, a.n_classes)
    state = Path(a.state)
    log.info("training %s on %s (%d train, %d val images) with %s", a.out_model, device, len(train_y), len(val_y), hparams)
    t0 = time.perf_counter()
    with state_lock(state):
        tag = fingerprint(command, {**hparams, "n_classes": a.n_classes}, a.train_data, a.val_data)
        ema, margs, history, chosen = fit(cfg, data, state, tag, sigterm_flag(), a.checkpoint_every,
                                          a.eval_batch_size, objective(cfg))
        final = {k: v for k, v in chosen.items() if k.startswith("val_") or k == "epoch"}
        meta = {"hparams": hparams, "final": final, "history": history, "train_data": a.train_data,
                "val_data": a.val_data, "device": str(device), "precision": resolve_precision(cfg.precision, device),
                "seconds_this_session": time.perf_counter() - t0, "code": tag["code"], "provenance": record(hparams)}
        with atomic_path(a.out_model) as tmp:
            torch.save({"model_args": margs, "state_dict": ema.state_dict(), **meta}, tmp)
        write_json(a.out_metrics, meta)
        write_history(history, cfg.batch_size, a.out_history)
        state.unlink(missing_ok=True)
    log.info("done: val balanced accuracy %.4f, AUC %.4f", final["val_balanced_accuracy"], final["val_auc"])


def cmd_construct(a: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from medrobust.construct import ConstructionConfig, construct
    from medrobust.evaluate import load_model, load_split
    from medrobust.provenance import record
    from medrobust.runtime import fingerprint, pick_device, sigterm_flag, state_lock

    torch.set_num_threads(a.threads)
    device = pick_device(a.device)
    settings = parse_json(a.settings, "--settings")
    cfg = ConstructionConfig.from_dict(settings)
    model, ckpt = load_model(a.model, device)
    n_classes = ckpt["model_args"]["n_classes"]
    x, y = load_split(a.data, "train", device, n_classes)
    parts = Path(f"{a.out}.parts")
    log.info("constructing %s from %s: %d training images, %s", a.out, a.model, len(y), cfg)
    with state_lock(parts):
        tag = fingerprint("construct", {**settings, "batch_size": a.batch_size}, a.model, a.data)
        built = construct(model, x, y, n_classes, cfg, parts, tag, a.batch_size, should_stop=sigterm_flag())
        images = built["adv"].transpose(0, 2, 3, 1)  # MedMNIST layout: (N, H, W) or (N, H, W, 3)
        write_npz(a.out, {"train_images": images[..., 0] if images.shape[-1] == 1 else images,
                          "train_labels": built["targets"].astype(np.int64)[:, None],
                          "train_source_index": built["source_index"],
                          "train_original_labels": built["labels"]})
        stats = built["stats"]
        write_json(a.stats, {**stats, "model": a.model, "data": a.data, "code": tag["code"],
                             "provenance": record(settings)})
        shutil.rmtree(parts, ignore_errors=True)  # the chunks are in the output now
    log.info("used %d of %d images; target hit rate %.4f; targets equal to the original label %.4f (chance %.4f); "
             "max L-inf %.3f/255", stats["n_used"], stats["n_train"], stats["target_hit_rate"],
             stats["targets_equal_labels_fraction"], stats["chance"], stats["linf_max_255"])


def cmd_select(a: argparse.Namespace) -> None:
    from medrobust.provenance import record
    from medrobust.select import select

    choice = select(a.metrics, a.criterion)
    chosen = Path(choice["candidates"][0]["path"]).parent / "model.pt"
    with atomic_path(a.model_out) as tmp:
        shutil.copyfile(chosen, tmp)
    write_json(a.out, {**choice, "model": str(chosen), "provenance": record()})
    log.info("selected %s: %s", choice["selected"], choice["reason"])


def cmd_evaluate(a: argparse.Namespace) -> None:
    import torch

    from medrobust.evaluate import evaluate
    from medrobust.provenance import record
    from medrobust.runtime import pick_device

    torch.set_num_threads(a.threads)
    metrics = evaluate(a.model, a.data, a.split, pick_device(a.device))
    write_json(a.out, {"split": a.split, "model": a.model, "data": a.data, "metrics": metrics, "provenance": record()})
    log.info("%s on %s [%s]: %s", a.model, a.data, a.split, metrics)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medrobust", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    _data_commands(sub)
    _model_commands(sub)
    add_commands(sub)
    return p


def _data_commands(sub: Any) -> None:
    s = sub.add_parser("synthesize", help="write the planted-feature dataset (MedMNIST npz format)")
    s.add_argument("--spec", required=True, help="JSON of SyntheticSpec fields")
    s.add_argument("--size", type=int, default=64, help="image side in pixels")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_synthesize)

    s = sub.add_parser("download", help="download and md5-check a MedMNIST (or your own) npz file")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--medmnist", help="MedMNIST flag, e.g. pathmnist")
    src.add_argument("--url", help="your own file's URL (with --md5)")
    s.add_argument("--md5")
    s.add_argument("--size", type=int, default=64, help="MedMNIST release (28, 64, 128, 224)")
    s.add_argument("--mirror", help="base URL replacing MedMNIST's host")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("prepare", help="check a MedMNIST-format npz and resize it once")
    s.add_argument("--source", required=True)
    s.add_argument("--medmnist", help="load through medmnist's dataset class for this flag")
    s.add_argument("--n-classes", type=int, required=True)
    s.add_argument("--n-channels", type=int, choices=(1, 3), required=True)
    s.add_argument("--source-size", type=int, required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--stats", required=True)
    s.set_defaults(func=cmd_prepare)


def _model_commands(sub: Any) -> None:
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
        s.add_argument("--device", default="auto")
        s.add_argument("--threads", type=int, default=2)
        s.set_defaults(func=func)

    s = sub.add_parser("construct", help="build the nonrobust-feature training set (targeted PGD)")
    s.add_argument("--model", required=True, help="the selected base model")
    s.add_argument("--data", required=True, help="prepared npz whose train split is attacked")
    s.add_argument("--settings", required=True, help="JSON of ConstructionConfig fields")
    s.add_argument("--out", required=True)
    s.add_argument("--stats", required=True)
    s.add_argument("--batch-size", type=int, default=512)
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int, default=2)
    s.set_defaults(func=cmd_construct)

    s = sub.add_parser("select", help="pick the best grid point by a validation metric")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--criterion", default="val_balanced_accuracy")
    s.add_argument("--out", required=True)
    s.add_argument("--model-out", required=True)
    s.set_defaults(func=cmd_select)

    s = sub.add_parser("evaluate", help="clean metrics of a checkpoint on one split")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--split", default="test", choices=("train", "val", "test"))
    s.add_argument("--out", required=True)
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int, default=2)
    s.set_defaults(func=cmd_evaluate)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parser().parse_args(argv)
    from medrobust.runtime import Interrupted

    try:
        args.func(args)
    except (ConfigError, DataError, DownloadError) as e:
        log.error("%s", e)
        return 2
    except Interrupted as e:
        log.warning("%s", e)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
