"""TRADES training throughput: this pipeline's step vs the TRADES reference formulation.

Reference: yaodongyu/TRADES `trades_loss` as written there: fp32, NCHW, `f(x)` recomputed inside
every step of the inner attack and twice in the outer loss, `KLDivLoss(size_average=False)`,
and `loss.item()` after every optimiser step (the reference logs it). Ours: `train_step` with
`method="trades"`: f(x) computed once for the attack, channels-last, bf16 autocast on GPUs,
no per-step host sync, EMA update included. Same WRN, same batches of the same synthetic data,
same eps, steps and step size; the two alternate `--repeats` times and medians are compared.

    python bench/trades_throughput.py [--width 1] [--batch-size 128] [--batches 10]
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from medrobust.core import hparams
from medrobust.core.network import build
from medrobust.core.numerics import resolve_precision
from medrobust.core.pgd import default_step_size
from medrobust.data.prepare import resize
from medrobust.data.synthetic import SyntheticSpec, generate_split
from medrobust.train.loop import Data, TrainConfig, model_args, new_run, train_step
from medrobust.train.trades import Trades

from benchlib import attack_parser, setup, sync


def reference_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                   eps: float, step_size: float, steps: int, beta: float) -> float:
    """yaodongyu/TRADES trades.py, transcribed (Variable and size_average updated)."""
    criterion_kl = nn.KLDivLoss(reduction="sum")
    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn(x.shape, device=x.device).detach()
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = criterion_kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1))
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
    opt.zero_grad()
    logits = model(x)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = (1.0 / len(x)) * criterion_kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1))
    loss = loss_natural + beta * loss_robust
    loss.backward()
    opt.step()
    return loss.item()



def main() -> None:
    p = attack_parser(__doc__, batch_size=128, steps=10)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--batches", type=int, default=10)
    a = p.parse_args()
    device = setup(a)
    n = a.batch_size * a.batches
    images, labels = generate_split(SyntheticSpec(n_train=n, n_val=8, n_test=8), "train")
    x = torch.from_numpy(resize(images, 32)[:, None]).to(device)
    y = torch.from_numpy(labels[:, 0].astype("int64")).to(device)
    eps = a.eps_255 / 255
    cfg = TrainConfig.from_dict(hparams.defaults("robust_eps4", batch_size=a.batch_size, depth=a.depth, width=a.width,
                                                 eps=eps, attack_steps=a.steps))
    data = Data(x, y, x[:0], y[:0], 4)
    margs = model_args(cfg, 4, x)
    run = new_run(cfg, margs, device)
    ref_model = build(**margs).to(device)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    perm = torch.arange(n, device=device)
    step = default_step_size(eps, a.steps)
    ours_t, ref_t = [], []
    for r in range(a.repeats + 1):  # the first round warms up both and is not counted
        sync(device)
        t0 = time.perf_counter()
        run.step = 0
        for _ in range(a.batches):
            train_step(run, cfg, Trades(cfg), data, perm, a.batches)
        sync(device)
        t1 = time.perf_counter()
        for b in range(a.batches):
            xb = x[b * a.batch_size:(b + 1) * a.batch_size].float() / 255
            reference_step(ref_model, ref_opt, xb, y[b * a.batch_size:(b + 1) * a.batch_size], eps, step, a.steps, 5.0)
        sync(device)
        t2 = time.perf_counter()
        if r:
            ours_t.append(t1 - t0)
            ref_t.append(t2 - t1)
    ours, ref = n / statistics.median(ours_t), n / statistics.median(ref_t)
    print(f"device {device}, WRN-{a.depth}-{a.width}, batch {a.batch_size}, TRADES with {a.steps}-step PGD, "
          f"eps {a.eps_255:g}/255, precision {resolve_precision('auto', device)}")
    print(f"ours                                    {ours:8.1f} img/s")
    print(f"reference (fp32, NCHW, .item() per step) {ref:8.1f} img/s")
    print(f"ratio                                   {ours / ref:8.2f}x")


if __name__ == "__main__":
    main()
