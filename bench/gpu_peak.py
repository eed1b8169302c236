"""What fraction of the GPU's dense bf16 peak a measured throughput is.

FLOPs per image come from torch's own FlopCounterMode on the model (forward; a training step
counts 3x: forward, and backward for inputs and weights; an attack step 2x: no weight
gradients). Peaks are the vendors' dense (no sparsity) bf16 tensor-core numbers; a GPU not in
the table prints no fraction rather than a guess.

    python bench/gpu_peak.py --width 8 --images-per-second 2400 --passes 3
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from medrobust.core.network import build

BF16_DENSE_TFLOPS = {"H200": 989, "H100": 989, "GH200": 989, "A100": 312, "A800": 312, "L40S": 362, "L40": 181,
                     "A40": 150, "A6000": 155, "A10": 125, "L4": 121, "RTX 4090": 165, "RTX 3090": 71, "B200": 2250}


def peak_tflops(name: str) -> float | None:
    """The longest table key contained in the device name (e.g. 'NVIDIA H200' -> H200)."""
    found = [k for k in BF16_DENSE_TFLOPS if k in name]
    return BF16_DENSE_TFLOPS[max(found, key=len)] if found else None


def forward_flops(depth: int, width: int, channels: int = 1, size: int = 32) -> float:
    model = build(depth=depth, width=width, n_classes=10, n_channels=channels, mean=[0.5] * channels,
                  std=[0.25] * channels).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, channels, size, size))
    return float(counter.get_total_flops())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--images-per-second", type=float, required=True)
    p.add_argument("--passes", type=float, default=3, help="forward-equivalents per image: 3 training, 2 attack")
    p.add_argument("--gpu", default=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    flops = forward_flops(a.depth, a.width) * a.passes * a.images_per_second
    peak = peak_tflops(a.gpu)
    share = f"{100 * flops / (peak * 1e12):.1f}% of its {peak} TFLOPS dense bf16 peak" if peak else "no peak known"
    print(f"WRN-{a.depth}-{a.width} on {a.gpu}: {flops / 1e12:.2f} TFLOPS achieved, {share}")


if __name__ == "__main__":
    main()
