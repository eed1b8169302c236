"""What the benchmark scripts share: their common flags, device set-up and timing sync."""

from __future__ import annotations

import argparse

import torch

from medrobust.runtime import pick_device


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto: the GPU when there is one")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    return p


def setup(args: argparse.Namespace) -> torch.device:
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    return pick_device(args.device)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock time measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
