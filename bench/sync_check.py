"""A few training, TRADES and PGD steps on a GPU with `torch.cuda.set_sync_debug_mode("error")`:
any operation inside them that would block on the GPU (a host copy of a per-step scalar, a
random draw on the CPU copied over, boolean-mask indexing, .item()) raises instead of silently
stalling the pipeline. The CPU test of the same property is tests/test_sync.py (it counts the
operations with a dispatch mode); this is its check on real CUDA.

    python bench/sync_check.py [--width 1] [--batch-size 128]
"""

from __future__ import annotations

import torch

from medrobust.core import hparams
from medrobust.core.pgd import PGDConfig, cross_entropy, pgd
from medrobust.train.loop import Data, Standard, TrainConfig, new_run, train_step
from medrobust.train.trades import Trades

from benchlib import parser, setup


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    a = p.parse_args()
    device = setup(a)
    if device.type != "cuda":
        raise SystemExit("sync_check: needs a GPU (--device cuda)")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4 * a.batch_size, 1, 32, 32), generator=g, dtype=torch.uint8).to(device)
    y = torch.randint(0, 2, (len(x),), generator=g).to(device)
    data = Data(x, y, x[:a.batch_size], y[:a.batch_size], 2)
    margs = {"depth": 16, "width": a.width, "activation": "swish", "n_classes": 2, "n_channels": 1,
             "mean": [0.5], "std": [0.25]}
    for method in ("standard", "trades"):
        stage = "robust_eps4" if method == "trades" else "base"
        cfg = TrainConfig.from_dict(hparams.defaults(stage, batch_size=a.batch_size, augment=True, width=a.width,
                                                     precision="bf16"))
        run, objective = new_run(cfg, margs, device), Trades(cfg) if method == "trades" else Standard(cfg)
        perm = torch.randperm(len(y), device=device)
        train_step(run, cfg, objective, data, perm, 4)  # warm-up: lazy initialisation, cudnn autotuning
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        for _ in range(3):
            train_step(run, cfg, objective, data, perm, 4)
        torch.cuda.set_sync_debug_mode("default")
        print(f"{method} training: 3 steps without a host synchronisation")
    model = run.model.eval()
    targets = torch.arange(a.batch_size, device=device) % 2
    xb = x[:a.batch_size].float() / 255
    for start in ("none", "uniform"):
        gen = torch.Generator(device=device).manual_seed(0)
        pgd(model, xb, cross_entropy(targets, targeted=True), PGDConfig(4 / 255, 2, 1 / 255, start=start),
            precision="bf16", generator=gen)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        pgd(model, xb, cross_entropy(targets, targeted=True), PGDConfig(4 / 255, 10, 1 / 255, start=start),
            precision="bf16", generator=gen)
        torch.cuda.set_sync_debug_mode("default")
        print(f"PGD-10 (start {start}): without a host synchronisation")


if __name__ == "__main__":
    main()
