"""One training epoch: this pipeline vs. the way MedMNIST's own experiments train.

Reference: a torch DataLoader over the `medmnist` dataset class with per-sample torchvision
transforms (Resize to 32 px, ToTensor, Normalize), fp32, NCHW, `loss.item()` every step.
Ours: the prepared (resized once) uint8 tensors on the device, batches gathered by index,
batch-level augmentation off (as in the reference), channels-last, bf16 autocast on GPUs
(`precision: auto`), no per-step host sync. Same WRN, same data (a synthetic file shaped
exactly like PneumoniaMNIST-64, loaded through medmnist), same batch size, measured in the
same run. Prints images/s of both and the ratio.

    python bench/train_throughput.py [--width 8] [--batch-size 128] [--max-batches N]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import medmnist
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import transforms

from medrobust.core import hparams
from medrobust.core.io import write_npz
from medrobust.core.network import build
from medrobust.core.numerics import resolve_precision
from medrobust.core.splits import load_split
from medrobust.data.prepare import Source, prepare
from medrobust.data.synthetic import SyntheticSpec, generate
from medrobust.train.loop import Data, Standard, TrainConfig, model_args, new_run, steps_per_epoch, train_step

from benchlib import parser, setup, sync

WARMUP = 3  # batches excluded from timing (allocator, cudnn autotuning)



def reference_epoch(root: Path, margs: dict, device: torch.device, batch_size: int, max_batches: int,
                    workers: int) -> float:
    tf = transforms.Compose([transforms.Resize(32), transforms.ToTensor(),
                             transforms.Normalize(mean=[0.5], std=[0.5])])
    ds = medmnist.PneumoniaMNIST(split="train", root=str(root), size=64, transform=tf)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)
    model = build(**{**margs, "mean": [0.0], "std": [1.0]}).to(device).train()  # Normalize is in the transform
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    seen, t0 = 0, None
    for i, (x, y) in enumerate(loader):
        if i == WARMUP:
            sync(device)
            t0 = time.perf_counter()
        if i >= WARMUP + max_batches:
            break
        x, y = x.to(device), y.squeeze(1).long().to(device)
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        seen += len(y) if i >= WARMUP else 0
    sync(device)
    return seen / (time.perf_counter() - t0)


def our_epoch(prepared: Path, cfg: TrainConfig, device: torch.device, max_batches: int) -> float:
    tx, ty = load_split(prepared, "train", device, 2)
    data = Data(tx, ty, tx[:0], ty[:0], 2)
    run = new_run(cfg, model_args(cfg, 2, tx), device)
    total = cfg.epochs * steps_per_epoch(cfg, data)
    perm = torch.randperm(len(ty), device=device)
    t0 = None
    for i in range(min(steps_per_epoch(cfg, data), WARMUP + max_batches)):
        if i == WARMUP:
            sync(device)
            t0 = time.perf_counter()
        train_step(run, cfg, Standard(cfg), data, perm, total)
    sync(device)
    return (run.step - WARMUP) * cfg.batch_size / (time.perf_counter() - t0)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-batches", type=int, default=10**9, help="cap on timed batches (default: a full epoch)")
    p.add_argument("--ref-workers", type=int, nargs="+", default=[0], help="DataLoader workers of the reference")
    a = p.parse_args()
    device = setup(a)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        info = medmnist.INFO["pneumoniamnist"]["n_samples"]
        write_npz(root / "pneumoniamnist_64.npz", generate(SyntheticSpec(
            n_classes=2, n_train=info["train"], n_val=info["val"], n_test=info["test"])))
        prepare(Source(root / "pneumoniamnist_64.npz", 2, 1, 64, "pneumoniamnist"), root / "prepared.npz", 32)
        cfg = TrainConfig.from_dict(hparams.defaults(batch_size=a.batch_size, depth=a.depth, width=a.width))
        margs = {"depth": a.depth, "width": a.width, "activation": "swish", "n_classes": 2, "n_channels": 1}
        ours = our_epoch(root / "prepared.npz", cfg, device, a.max_batches)
        refs = {w: reference_epoch(root, margs, device, a.batch_size, a.max_batches, w) for w in a.ref_workers}
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), "
          f"WRN-{a.depth}-{a.width}, batch {a.batch_size}, PneumoniaMNIST-shaped data, "
          f"precision {resolve_precision(cfg.precision, device)}")
    print(f"ours (tensors on device, channels_last)          {ours:9.1f} img/s")
    for w, r in refs.items():
        print(f"reference (DataLoader, {w} workers, fp32, NCHW)   {r:9.1f} img/s   ratio {ours / r:5.2f}x")


if __name__ == "__main__":
    main()
