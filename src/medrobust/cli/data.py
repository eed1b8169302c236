"""Commands of workflow/rules/data.smk: synthesize, download, prepare."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from medrobust.cli.args import log
from medrobust.core.errors import ConfigError
from medrobust.core.io import write_json, write_npz


def cmd_synthesize(a: argparse.Namespace) -> None:
    from medrobust.data.synthetic import SyntheticSpec, generate

    spec = SyntheticSpec(**json.loads(a.spec), image_size=a.size)
    write_npz(a.out, generate(spec))
    log.info("wrote %s (%s)", a.out, spec)


def cmd_download(a: argparse.Namespace) -> None:
    from medrobust.data.prepare import fetch, medmnist_source

    if a.medmnist:
        if a.size is None:
            raise ConfigError("--medmnist needs --size (the MedMNIST release: 28, 64, 128 or 224)")
        _, url, md5 = medmnist_source(a.medmnist, a.size, a.mirror)
    else:
        url, md5 = a.url, a.md5
    fetch(url, md5, a.out)
    log.info("downloaded %s from %s (md5 %s verified)", a.out, url, md5)


def cmd_prepare(a: argparse.Namespace) -> None:
    from medrobust.data.prepare import Source, prepare
    from medrobust.jobs.provenance import record

    src = Source(Path(a.source), a.n_classes, a.n_channels, a.source_size, a.medmnist)
    stats = prepare(src, a.out, a.size)
    write_json(a.stats, {**stats, "provenance": record()})
    log.info("wrote %s: %s", a.out, {k: v for k, v in stats.items() if k.endswith("counts")})


def cmd_published_test(a: argparse.Namespace) -> None:
    from medrobust.core.config import PUBLISHED_SIZE
    from medrobust.data.prepare import Source, published_test
    from medrobust.jobs.provenance import record

    src = Source(Path(a.source), a.n_classes, a.n_channels, PUBLISHED_SIZE, a.medmnist)
    split, small, stats = published_test(src, a.prepared, a.size)
    write_npz(a.out, split)
    write_npz(a.clean, small)
    write_json(a.stats, {**stats, "provenance": record()})
    log.info("wrote %s (%d test images at %d px) and %s (at %d px; mean |change| against %s: %.3f grey levels)",
             a.out, stats["n"], PUBLISHED_SIZE, a.clean, a.size, a.prepared, stats["mean_abs_change_vs_prepared"])


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("synthesize", help="write the planted-feature dataset (MedMNIST npz format)")
    s.add_argument("--spec", required=True, help="JSON of SyntheticSpec fields")
    s.add_argument("--size", type=int, required=True, help="image side in pixels")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_synthesize)

    s = sub.add_parser("download", help="download and md5-check a MedMNIST (or your own) npz file")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--medmnist", help="MedMNIST flag, e.g. pathmnist")
    src.add_argument("--url", help="your own file's URL (with --md5)")
    s.add_argument("--md5")
    s.add_argument("--size", type=int, help="with --medmnist: the release (28, 64, 128, 224)")
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

    s = sub.add_parser("published-test", help="extract the 224 px test split of MedMNIST-C as published, once")
    s.add_argument("--source", required=True, help="a 224 px MedMNIST-format npz (only its test split is read)")
    s.add_argument("--medmnist", help="load through medmnist's dataset class for this flag")
    s.add_argument("--n-classes", type=int, required=True)
    s.add_argument("--n-channels", type=int, choices=(1, 3), required=True)
    s.add_argument("--prepared", required=True, help="prepared.npz: its test labels must be the same")
    s.add_argument("--size", type=int, required=True, help="the clean baseline's side (image_size)")
    s.add_argument("--out", required=True, help="the test split at 224 px")
    s.add_argument("--clean", required=True, help="the test split shrunk to --size")
    s.add_argument("--stats", required=True)
    s.set_defaults(func=cmd_published_test)
