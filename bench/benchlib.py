"""What the benchmark scripts share: their common flags, device set-up and timing sync."""

from __future__ import annotations

import argparse

import torch

from medrobust.device import require_device


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto: the GPU when there is one")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    return p


def attack_parser(doc: str | None, batch_size: int, steps: int) -> argparse.ArgumentParser:
    """`parser` plus the attack benchmarks' batch size, PGD steps, eps and repeats."""
    p = parser(doc)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--steps", type=int, default=steps, help="PGD steps")
    p.add_argument("--eps-255", type=float, default=4)
    p.add_argument("--repeats", type=int, default=3)
    return p


def setup(args: argparse.Namespace) -> torch.device:
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    return require_device(args.device)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock time measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
