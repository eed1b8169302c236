"""Commands of workflow/rules/evaluate.smk: corrupt (MedMNIST-C test sets), evaluate (clean),
evaluate-corrupted, autoattack."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medrobust.cli.args import add_device_args, job_device, log
from medrobust.io import write_json, write_npz


def cmd_corrupt(a: argparse.Namespace) -> None:
    import numpy as np

    from medrobust.data.corrupt import corrupt_all
    from medrobust.data.prepare import Source, load_splits
    from medrobust.provenance import record

    src = Source(Path(a.source), a.n_classes, a.n_channels, a.source_size, a.medmnist)
    images, labels = load_splits(src)["test"]
    sets = corrupt_all(images, a.registry, a.apply_size, a.size, a.seed)
    write_npz(a.out, {"labels": labels.astype(np.int64), **{f"corruption/{k}": v for k, v in sets.items()}})
    write_json(a.stats, {"registry": a.registry, "apply_size": a.apply_size, "size": a.size, "n": len(labels),
                         "corruptions": sorted(sets), "source": a.source, "provenance": record()})
    log.info("wrote %s: %d corruptions x 5 severities of %d test images (applied at %d px)",
             a.out, len(sets), len(labels), a.apply_size)


def cmd_evaluate(a: argparse.Namespace) -> None:
    from medrobust.evaluate.clean import evaluate
    from medrobust.provenance import record

    metrics = evaluate(a.model, a.data, a.split, job_device(a))
    write_json(a.out, {"split": a.split, "model": a.model, "data": a.data, "metrics": metrics, "provenance": record()})
    log.info("%s on %s [%s]: %s", a.model, a.data, a.split, metrics)


def cmd_evaluate_corrupted(a: argparse.Namespace) -> None:
    from medrobust.evaluate.corrupted import evaluate_corrupted
    from medrobust.provenance import record

    result = evaluate_corrupted(a.model, a.data, job_device(a), a.batch_size)
    write_json(a.out, {"model": a.model, "data": a.data, **result, "provenance": record()})
    log.info("%s on %s: mean %s", a.model, a.data, result["mean"])


def cmd_autoattack(a: argparse.Namespace) -> None:
    import numpy as np

    from medrobust.attacks import autoattack
    from medrobust.data.splits import load_split
    from medrobust.evaluate.metrics import classification_metrics
    from medrobust.provenance import record
    from medrobust.runtime import as_float, fingerprint, sigterm_flag, state_lock
    from medrobust.train.models import load_model, predict

    device = job_device(a)
    model, ckpt = load_model(a.model, device)
    n_classes = ckpt["model_args"]["n_classes"]
    x, y = load_split(a.data, a.split, device, n_classes)
    idx = np.arange(len(y))
    if 0 < a.n_images < len(y):  # a fixed random subset, the same for every model
        idx = np.sort(np.random.default_rng(a.seed).choice(len(y), a.n_images, replace=False))
    x, y = as_float(x[idx]), y[idx]
    aa = autoattack.build(model, n_classes, a.eps / 255, a.seed, device)
    # pyautoattack reseeds every batch: the batch size changes the random restarts, hence results
    settings = {"eps": a.eps, "seed": a.seed, "n_images": a.n_images, "split": a.split, "batch_size": a.batch_size,
                "attacks": aa.attacks_to_run}
    log.info("AutoAttack (%s) at eps %d/255 on %d images of %s", ", ".join(aa.attacks_to_run), a.eps, len(y), a.model)
    with state_lock(a.state):
        tag = fingerprint("autoattack", settings, a.model, a.data)
        progress = autoattack.run(aa, x, y, Path(a.state), tag, a.batch_size, sigterm_flag())
        probs = predict(model, progress.x_adv, a.batch_size, "fp32")
        metrics = {**classification_metrics(y.cpu().numpy(), probs), "n": len(y)}
        linf = (progress.x_adv - x).abs().amax().item() * 255
        write_json(a.out, {"model": a.model, "data": a.data, **settings,
                           "n_target_classes": autoattack.attack_plan(n_classes)[1],
                           "robust_accuracy_after": progress.done, "linf_max_255": linf, "code": tag["code"],
                           "metrics": metrics, "provenance": record(settings)})
        Path(a.state).unlink(missing_ok=True)
    log.info("under AutoAttack: %s (max L-inf %.4f/255)", metrics, linf)


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("corrupt", help="MedMNIST-C corrupted test set (every corruption x 5 severities)")
    s.add_argument("--source", required=True, help="the dataset's MedMNIST-format npz at source resolution")
    s.add_argument("--medmnist", help="load through medmnist's dataset class for this flag")
    s.add_argument("--n-classes", type=int, required=True)
    s.add_argument("--n-channels", type=int, choices=(1, 3), required=True)
    s.add_argument("--source-size", type=int, required=True)
    s.add_argument("--size", type=int, required=True, help="working resolution of the models")
    s.add_argument("--registry", required=True, help="medmnistc registry key (a MedMNIST flag, or 'generic')")
    s.add_argument("--apply-size", type=int, required=True, help="resolution the corruptions are applied at")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--stats", required=True)
    s.set_defaults(func=cmd_corrupt)

    s = sub.add_parser("evaluate", help="clean metrics of a checkpoint on one split")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--split", default="test", choices=("train", "val", "test"))
    s.add_argument("--out", required=True)
    add_device_args(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("evaluate-corrupted", help="metrics on every corruption and severity, and their mean")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True, help="the corrupted test set (medrobust corrupt)")
    s.add_argument("--batch-size", type=int, default=1024)
    s.add_argument("--out", required=True)
    add_device_args(s)
    s.set_defaults(func=cmd_evaluate_corrupted)

    s = sub.add_parser("autoattack", help="AutoAttack (L-inf) metrics; resumes from --state")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--split", default="test", choices=("val", "test"))
    s.add_argument("--eps", type=int, required=True, help="in units of 1/255")
    s.add_argument("--n-images", type=int, default=0, help="a seeded random subset; 0 means the whole split")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int, default=500)
    s.add_argument("--state", required=True)
    s.add_argument("--out", required=True)
    add_device_args(s)
    s.set_defaults(func=cmd_autoattack)
