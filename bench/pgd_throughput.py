"""Targeted L-inf PGD-100 (the nonrobust-set construction's attack): ours vs torchattacks.

Same model, same batch, same targets, eps, step size and steps, no random start; the two run
alternately `--repeats` times and the medians are compared. Ours runs as the construction
runs it (channels-last model, bf16 autocast on GPUs, no parameter gradients, best iterate
kept); torchattacks runs as documented (fp32, last iterate). Success = f(x_adv) = target.

    python bench/pgd_throughput.py [--model results/synthetic/rep0/base/model.pt]
        [--data results/synthetic/data/prepared.npz] [--batch-size 256] [--steps 100]

Defaults are the demo's outputs (run `./run.sh demo` first). `--width W` swaps in a randomly
initialised WRN-16-W of the same input shape, to time larger models (success then means little).
"""

from __future__ import annotations

import statistics
import time

import torch
import torchattacks

from medrobust.attacks.construct import draw_targets
from medrobust.core.network import predict
from medrobust.core.numerics import resolve_precision
from medrobust.core.pgd import PGDConfig, cross_entropy, default_step_size, pgd

from benchlib import model_and_batch, model_parser, setup, sync


def timed(fn, device: torch.device) -> tuple[float, torch.Tensor]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def main() -> None:
    p = model_parser(__doc__, batch_size=256, steps=100)
    a = p.parse_args()
    device = setup(a)
    model, x, y = model_and_batch(a, device, "test")
    n_classes = model.fc.out_features
    targets = draw_targets(y, n_classes, "other", seed=0)
    eps = a.eps_255 / 255
    cfg = PGDConfig(eps, a.steps, default_step_size(eps, a.steps))
    precision = resolve_precision("auto", device)
    reference = torchattacks.PGD(model, eps=eps, alpha=cfg.step_size, steps=a.steps, random_start=False)
    reference.set_mode_targeted_by_label(quiet=True)

    def success(adv: torch.Tensor) -> float:
        return float((torch.from_numpy(predict(model, adv, 512, "fp32").argmax(1)).to(device) == targets).float().mean())

    ours_t, theirs_t = [], []
    for _ in range(a.repeats):  # alternate, so drifting clocks or load hit both alike
        t, adv_ours = timed(lambda: pgd(model, x, cross_entropy(targets, targeted=True), cfg, precision=precision), device)
        ours_t.append(t)
        t, adv_theirs = timed(lambda: reference(x, targets), device)
        theirs_t.append(t)
    work = len(x) * a.steps
    ours, theirs = work / statistics.median(ours_t), work / statistics.median(theirs_t)
    print(f"device {device}, {'WRN-16-%d (random)' % a.width if a.width else a.model}, batch {len(x)}, "
          f"targeted PGD-{a.steps} eps {a.eps_255:g}/255, step {cfg.step_size * 255:.3f}/255, precision {precision}")
    print(f"ours         {ours:9.1f} image-steps/s   success {success(adv_ours):.3f}")
    print(f"torchattacks {theirs:9.1f} image-steps/s   success {success(adv_theirs):.3f}")
    print(f"ratio        {ours / theirs:9.2f}x")


if __name__ == "__main__":
    main()
