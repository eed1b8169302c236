"""What the benchmark scripts share: their common flags, device set-up and timing sync."""

from __future__ import annotations

import argparse

import torch

from medrobust.jobs.device import require_device


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


def model_parser(doc: str | None, batch_size: int, steps: int) -> argparse.ArgumentParser:
    """`attack_parser` plus a model and its data (the demo's outputs by default), or a WRN-16-W."""
    p = attack_parser(doc, batch_size, steps)
    p.add_argument("--model", default="results/synthetic/rep0/base/model.pt")
    p.add_argument("--data", default="results/synthetic/data/prepared.npz")
    p.add_argument("--width", type=int, help="a randomly initialised WRN-16-W (same input shape) instead of --model")
    return p


def model_and_batch(a: argparse.Namespace, device: torch.device,
                    split: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """--model (or a random WRN-16-<--width>) and the first --batch-size images of `split` in [0, 1]."""
    from medrobust.core.network import build, load_model
    from medrobust.core.numerics import as_float
    from medrobust.core.splits import load_split

    model, ckpt = load_model(a.model, device, "best")
    if a.width:
        model = build(**{**ckpt["model_args"], "depth": 16, "width": a.width}).to(device, memory_format=torch.channels_last).eval()
    x, y = load_split(a.data, split, device, ckpt["model_args"]["n_classes"])
    return model, as_float(x[:a.batch_size]), y[:a.batch_size]


def setup(args: argparse.Namespace) -> torch.device:
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    return require_device(args.device)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock time measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
