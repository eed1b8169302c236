"""Command of workflow/rules/nonrobust.smk: construct (the nonrobust-feature training set)."""

from __future__ import annotations

import argparse
from typing import Any

from medrobust.cli.args import add_device_args, add_model_args, job_device, log, parse_json
from medrobust.core.io import write_json, write_npz


def cmd_construct(a: argparse.Namespace) -> None:
    import numpy as np

    from medrobust.attacks.construct import ConstructionConfig, construct
    from medrobust.core.network import load_model
    from medrobust.core.numerics import resolve_precision
    from medrobust.core.splits import load_split
    from medrobust.jobs.provenance import record
    from medrobust.jobs.state import fingerprint, resumable, sigterm_flag

    should_stop = sigterm_flag()  # first, so that a SIGTERM at any time is a request to stop
    device = job_device(a)
    settings = parse_json(a.settings, "--settings")
    cfg = ConstructionConfig.from_dict(settings)
    model, ckpt = load_model(a.model, device, a.weights)
    n_classes = ckpt["model_args"]["n_classes"]
    x, y = load_split(a.data, "train", device, n_classes)
    log.info("constructing %s from %s: %d training images, %s", a.out, a.model, len(y), cfg)
    tag = fingerprint("construct", {**settings, "batch_size": a.batch_size}, a.model, a.data,
                      device=device.type, precision=resolve_precision(cfg.precision, device))
    with resumable(a.state, tag, "chunks") as parts:
        built = construct(model, x, y, n_classes, cfg, parts, a.batch_size, should_stop=should_stop)
        images = built["adv"].transpose(0, 2, 3, 1)  # MedMNIST layout: (N, H, W) or (N, H, W, 3)
        write_npz(a.out, {"train_images": images[..., 0] if images.shape[-1] == 1 else images,
                          "train_labels": built["targets"].astype(np.int64)[:, None],
                          "train_source_index": built["source_index"],
                          "train_original_labels": built["labels"]})
        stats = built["stats"]
        write_json(a.stats, {**stats, "model": a.model, "weights": a.weights, "data": a.data, "code": tag["code"],
                             "provenance": record(settings)})
    log.info("used %d of %d images; target hit rate %.4f; targets equal to the original label %.4f (chance %.4f); "
             "max L-inf %.3f/255", stats["n_used"], stats["n_train"], stats["target_hit_rate"],
             stats["targets_equal_labels_fraction"], stats["chance"], stats["linf_max_255"])


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("construct", help="build the nonrobust-feature training set (targeted PGD)")
    add_model_args(s, "the base model (its epoch: --weights)")
    s.add_argument("--data", required=True, help="prepared npz whose train split is attacked")
    s.add_argument("--settings", required=True, help="JSON of ConstructionConfig fields")
    s.add_argument("--out", required=True)
    s.add_argument("--stats", required=True)
    s.add_argument("--state", required=True, help="resumable state: a folder beside the outputs, removed once "
                   "they are written")
    s.add_argument("--batch-size", type=int, required=True)
    add_device_args(s)
    s.set_defaults(func=cmd_construct)
