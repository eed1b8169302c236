"""How much bf16 autocast changes what the study measures: the network's response to the
construction's own perturbations.

For a batch of training images x, the construction's targeted PGD (eps, steps as given; fp32)
gives perturbations delta; then, for each image, Delta = logits(x + delta) - logits(x) is computed
in fp32 and under bf16 autocast, and the script prints the median (and 90th percentile) over
images of |Delta_bf16 - Delta_fp32| / |Delta_fp32|. It also builds the set both ways (PGD under
each precision) and prints both target hit rates (judged in fp32), and the stem's relative error
on delta alone (the stem runs in fp32 under autocast, so it should be ~0).

    python bench/precision.py [--model results/synthetic/rep0/base/model.pt]
        [--data results/synthetic/data/prepared.npz] [--width 8]  # --width: a random WRN-16-W

On CPUs without native bf16 (AVX2) autocast is slow but exact in what it rounds: the numbers
equal a GPU's up to kernel choice. `bench/first_gpu.sh` runs it on CUDA.
"""

from __future__ import annotations

import torch

from medrobust.attacks.construct import draw_targets
from medrobust.core.network import predict
from medrobust.core.numerics import autocast
from medrobust.core.pgd import PGDConfig, cross_entropy, default_step_size, pgd

from benchlib import model_and_batch, model_parser, setup


def logits(model: torch.nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    with torch.no_grad(), autocast(x.device, precision):
        return model(x.contiguous(memory_format=torch.channels_last)).float()


def stem_response(model: torch.nn.Module, x: torch.Tensor, delta: torch.Tensor, precision: str) -> torch.Tensor:
    """stem(x + delta) - stem(x) inside the model's own forward pass (a hook), at `precision`."""
    seen: list[torch.Tensor] = []
    hook = model.stem.register_forward_hook(lambda m, i, o: seen.append(o.float()))
    try:
        logits(model, x + delta, precision), logits(model, x, precision)
    finally:
        hook.remove()
    return seen[0] - seen[1]


def relative(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image: |a - b| / |b| over all but the first dimension."""
    return (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-12)


def main() -> None:
    p = model_parser(__doc__, batch_size=256, steps=20)
    a = p.parse_args()
    device = setup(a)
    model, x, y = model_and_batch(a, device, "train")
    targets = draw_targets(y, model.fc.out_features, "uniform", seed=0)
    eps = a.eps_255 / 255
    cfg = PGDConfig(eps, a.steps, default_step_size(eps, a.steps))
    adv = {prec: pgd(model, x, cross_entropy(targets, targeted=True), cfg, precision=prec) for prec in ("fp32", "bf16")}
    delta = adv["fp32"] - x
    response = {prec: logits(model, x + delta, prec) - logits(model, x, prec) for prec in ("fp32", "bf16")}
    err = relative(response["bf16"], response["fp32"])
    stem = {prec: stem_response(model, x, delta, prec) for prec in ("fp32", "bf16")}
    hits = {prec: float((torch.from_numpy(predict(model, v, 512, "fp32").argmax(1)).to(device) == targets).float().mean())
            for prec, v in adv.items()}
    name = f"WRN-16-{a.width} (random init)" if a.width else a.model
    print(f"device {device}, {name}, {len(x)} training images, targeted PGD-{a.steps} eps {a.eps_255:g}/255")
    print(f"logit response to delta, bf16 vs fp32: median relative error {err.median():.4f}, "
          f"90th percentile {err.quantile(0.9):.4f}")
    print(f"stem response to delta under bf16 autocast vs fp32: max relative error "
          f"{relative(stem['bf16'], stem['fp32']).max():.2e}")
    print(f"target hit rate: construction in fp32 {hits['fp32']:.3f}, in bf16 {hits['bf16']:.3f}")
    print(f"verdict: {'construct in fp32 (median > 1%)' if err.median() > 0.01 else 'bf16 is fine (median <= 1%)'}")


if __name__ == "__main__":
    main()
