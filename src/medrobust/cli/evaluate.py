"""Commands of workflow/rules/evaluate.smk: corrupt (MedMNIST-C test sets), evaluate (clean),
evaluate-corrupted, autoattack."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrobust.cli.args import add_device_args, add_model_args, job_device, log
from medrobust.core.io import write_json, write_npz

if TYPE_CHECKING:
    import numpy as np
    import torch


def cmd_corrupt(a: argparse.Namespace) -> None:
    import numpy as np

    from medrobust.data.corrupt import corrupt_all, corruption_names
    from medrobust.data.prepare import Source, load_splits
    from medrobust.jobs.provenance import record
    from medrobust.jobs.state import fingerprint, resumable, sigterm_flag

    should_stop = sigterm_flag()  # first, so that a SIGTERM at any time is a request to stop
    src = Source(Path(a.source), a.n_classes, a.n_channels, a.source_size, a.medmnist)
    images, labels = load_splits(src, ("test",))["test"]
    settings = {"registry": a.registry, "apply_size": a.apply_size, "size": a.size, "seed": a.seed,
                "n_classes": a.n_classes, "n_channels": a.n_channels, "source_size": a.source_size,
                "medmnist": a.medmnist}
    log.info("corrupting %d test images of %s: %d corruptions x 5 severities at %d px", len(labels), a.source,
             len(corruption_names(a.registry)), a.apply_size)
    with resumable(a.state, fingerprint("corrupt", settings, a.source), "corrupted images") as state:
        sets = corrupt_all(images, a.registry, a.apply_size, a.size, a.seed, state, should_stop)
        write_npz(a.out, {"labels": labels.astype(np.int64), **{f"corruption/{k}": v for k, v in sets.items()}})
        write_json(a.stats, {"registry": a.registry, "apply_size": a.apply_size, "size": a.size, "n": len(labels),
                             "corruptions": sorted(sets), "source": a.source, "provenance": record()})
    log.info("wrote %s: %d corruptions x 5 severities of %d test images (applied at %d px)",
             a.out, len(sets), len(labels), a.apply_size)


def cmd_evaluate(a: argparse.Namespace) -> None:
    from medrobust.evaluate.clean import evaluate
    from medrobust.jobs.provenance import record

    a.out_probs = probs_path(a)
    metrics, probs = evaluate(a.model, a.weights, a.data, a.split, job_device(a))
    write_npz(a.out_probs, probs)
    write_json(a.out, {"split": a.split, "model": a.model, "weights": a.weights, "data": a.data, "metrics": metrics,
                       "probs": Path(a.out_probs).name, "provenance": record()})
    log.info("%s (%s epoch) on %s [%s]: %s", a.model, a.weights, a.data, a.split, metrics)


def cmd_evaluate_corrupted(a: argparse.Namespace) -> None:
    from medrobust.evaluate.corrupted import evaluate_corrupted
    from medrobust.jobs.provenance import record

    a.out_probs = probs_path(a)
    result, probs = evaluate_corrupted(a.model, a.weights, a.data, job_device(a))
    write_npz(a.out_probs, probs)
    write_json(a.out, {"model": a.model, "weights": a.weights, "data": a.data, **result, "probs": Path(a.out_probs).name,
                       "provenance": record()})
    log.info("%s on %s: mean %s", a.model, a.data, result["mean"])


def cmd_autoattack(a: argparse.Namespace) -> None:
    from medrobust.attacks import autoattack
    from medrobust.core.network import load_model
    from medrobust.core.numerics import eval_mode, exact_evaluation
    from medrobust.jobs.provenance import record
    from medrobust.jobs.state import fingerprint, resumable, sigterm_flag

    should_stop = sigterm_flag()  # first, so that a SIGTERM at any time is a request to stop
    a.out_probs = probs_path(a)
    device = job_device(a)
    precision = exact_evaluation()  # the attack and both metrics at one precision
    model, ckpt = load_model(a.model, device, a.weights)
    n_classes = ckpt["model_args"]["n_classes"]
    idx, x, y = attacked_images(a, device, n_classes)
    aa = autoattack.build(model, n_classes, a.eps / 255, a.seed, device)
    # pyautoattack reseeds every batch: the batch size changes the random restarts, hence results
    settings = {"eps": a.eps, "seed": a.seed, "n_images": a.n_images, "split": a.split, "batch_size": a.batch_size,
                "attacks": aa.attacks_to_run}
    log.info("AutoAttack (%s) at eps %d/255 on %d images of %s", ", ".join(aa.attacks_to_run), a.eps, len(y), a.model)
    # frozen: FAB calls backward() and would otherwise compute weight gradients it throws away
    tag = fingerprint("autoattack", settings, a.model, a.data, device=device.type, precision=precision)
    with resumable(a.state, tag, "AutoAttack progress") as state, eval_mode(model, freeze=True):
        progress = autoattack.run(aa, x, y, state, a.batch_size, should_stop)
        (clean, clean_probs), (metrics, adv_probs) = (image_metrics(model, images, y, a.batch_size, precision)
                                                      for images in (x, progress.x_adv))
        linf = (progress.x_adv - x).abs().amax().item() * 255
        write_npz(a.out_probs, {"labels": y.cpu().numpy(), "index": idx, "clean_probs": clean_probs,
                                "probs": adv_probs})
        write_json(a.out, {"model": a.model, "weights": a.weights, "data": a.data, **settings, "precision": precision,
                           "n_target_classes": autoattack.attack_plan(n_classes)[1],
                           "robust_accuracy_after": progress.done, "linf_max_255": linf, "code": tag["code"],
                           "clean_metrics": clean, "metrics": metrics, "probs": Path(a.out_probs).name,
                           "provenance": record(settings)})
    log.info("on the same %d images, clean: %s; under AutoAttack: %s (max L-inf %.4f/255)", len(y), clean, metrics,
             linf)


def probs_path(a: argparse.Namespace) -> str:
    """Where an evaluation's per-image probabilities go: --out-probs, else beside --out."""
    return a.out_probs or str(Path(a.out).with_name(Path(a.out).stem + "_probs.npz"))


def attacked_images(a: argparse.Namespace, device: torch.device,
                    n_classes: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """The split's images AutoAttack runs on (their indices, and the images as floats in [0, 1]):
    all, or a seeded subset of --n-images, the same for every model."""
    import numpy as np

    from medrobust.core.numerics import as_float
    from medrobust.core.splits import load_split

    x, y = load_split(a.data, a.split, device, n_classes)
    idx = np.arange(len(y))
    if 0 < a.n_images < len(y):
        idx = np.sort(np.random.default_rng(a.seed).choice(len(y), a.n_images, replace=False))
    return idx, as_float(x[idx]), y[idx]


def image_metrics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                  precision: str) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of the model on these images, and its class probabilities (float32)."""
    import numpy as np

    from medrobust.core.metrics import classification_metrics
    from medrobust.core.network import predict

    probs = predict(model, x, batch_size, precision)
    return {**classification_metrics(y.cpu().numpy(), probs), "n": len(y)}, probs.astype(np.float32)


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
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--state", required=True, help="resumable state: a folder, kept until the output is written")
    s.add_argument("--out", required=True)
    s.add_argument("--stats", required=True)
    s.set_defaults(func=cmd_corrupt)

    s = sub.add_parser("evaluate", help="clean metrics of a checkpoint on one split")
    add_model_args(s)
    s.add_argument("--data", required=True)
    s.add_argument("--split", default="test", choices=("train", "val", "test"))
    s.add_argument("--out", required=True)
    s.add_argument("--out-probs", help="npz of the labels and per-image class probabilities "
                   "(default: beside --out, <name>_probs.npz)")
    add_device_args(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("evaluate-corrupted", help="metrics on every corruption and severity, and their mean")
    add_model_args(s)
    s.add_argument("--data", required=True, help="the corrupted test set (medrobust corrupt)")
    s.add_argument("--out", required=True)
    s.add_argument("--out-probs", help="npz of the labels and per-image class probabilities "
                   "(default: beside --out, <name>_probs.npz)")
    add_device_args(s)
    s.set_defaults(func=cmd_evaluate_corrupted)

    s = sub.add_parser("autoattack", help="AutoAttack (L-inf) metrics; resumes from --state (batch by batch)")
    add_model_args(s)
    s.add_argument("--data", required=True)
    s.add_argument("--split", default="test", choices=("val", "test"))
    s.add_argument("--eps", type=int, required=True, help="in units of 1/255")
    s.add_argument("--n-images", type=int, required=True, help="a seeded random subset; 0 means the whole split")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--batch-size", type=int, required=True)
    s.add_argument("--state", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--out-probs", help="npz: image indices, labels, clean and attacked probabilities "
                   "(default: beside --out, <name>_probs.npz)")
    add_device_args(s)
    s.set_defaults(func=cmd_autoattack)
