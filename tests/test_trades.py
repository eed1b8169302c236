"""TRADES: the loss is its formula, the inner attack its constraints, bf16 does not weaken it,
adversarial validation keeps the best epoch, and robust.reference is the authors' own TRADES."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from medrobust.core.network import build, predict
from medrobust.core.numerics import derive_seed
from medrobust.core.pgd import PGDConfig, cross_entropy, default_step_size, pgd
from medrobust.core.splits import load_split
from medrobust.train.loop import Data, fit
from medrobust.train.trades import Trades, kl_divergence, trades_loss, trades_perturb

from conftest import train_config

EPS = 4 / 255


def test_loss_equals_its_formula_and_the_reference_kl() -> None:
    g = torch.Generator().manual_seed(0)
    nat, adv = torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g)
    y = torch.randint(0, 5, (16,), generator=g)
    total, ce, kl = trades_loss(nat, adv, y, beta=5.0, label_smoothing=0.1)
    p, log_p, log_q = nat.softmax(1), nat.log_softmax(1), adv.log_softmax(1)
    smooth = torch.full((16, 5), 0.1 / 5).scatter_add_(1, y[:, None], torch.full((16, 1), 0.9))
    want_ce = -(smooth * log_p).sum(1).mean()
    want_kl = (p * (log_p - log_q)).sum(1).mean()
    reference_kl = torch.nn.KLDivLoss(reduction="sum")(log_q, p) / 16  # TRADES' own formulation
    assert ce.item() == pytest.approx(want_ce.item(), rel=1e-6)
    assert kl.item() == pytest.approx(want_kl.item(), rel=1e-6) == pytest.approx(reference_kl.item(), rel=1e-6)
    assert total.item() == pytest.approx((want_ce + 5.0 * want_kl).item(), rel=1e-6)


def test_kl_term_is_zero_without_perturbation() -> None:
    logits = torch.randn(8, 3)
    total, ce, kl = trades_loss(logits, logits.clone(), torch.zeros(8, dtype=torch.long), beta=5.0)
    assert kl.item() == pytest.approx(0.0, abs=1e-7) and total.item() == pytest.approx(ce.item())
    assert (kl_divergence(logits, logits) >= -1e-7).all()


def test_inner_attack_stays_in_ball_and_range_and_raises_kl(tiny_model, prepared_medium: Path) -> None:
    x, _ = load_split(prepared_medium, "test", torch.device("cpu"), 4)
    x = x[:64].float() / 255
    tiny_model.train()
    try:
        adv = trades_perturb(tiny_model, x, EPS, 10, default_step_size(EPS, 10), torch.Generator().manual_seed(0))
        assert tiny_model.training  # restored
    finally:
        tiny_model.eval()
    assert (adv - x).abs().max() <= EPS + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        start = x + 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        assert kl_divergence(tiny_model(x), tiny_model(adv)).mean() > 10 * kl_divergence(tiny_model(x), tiny_model(start)).mean()


def test_bf16_does_not_weaken_the_attacks(tiny_model, prepared_medium: Path) -> None:
    """The attacks under bf16 autocast are as strong as in fp32 (KL reached; PGD accuracy)."""
    x, y = load_split(prepared_medium, "test", torch.device("cpu"), 4)
    x, y = x[:64].float() / 255, y[:64]
    kls = {}
    for precision in ("fp32", "bf16"):
        adv = trades_perturb(tiny_model, x, EPS, 10, default_step_size(EPS, 10), torch.Generator().manual_seed(0), precision)
        with torch.no_grad():
            kls[precision] = kl_divergence(tiny_model(x), tiny_model(adv)).mean().item()
    assert kls["bf16"] >= 0.9 * kls["fp32"]
    accs = {}
    for precision in ("fp32", "bf16"):
        adv = pgd(tiny_model, x, cross_entropy(y), PGDConfig(EPS, 10, default_step_size(EPS, 10)), precision=precision)
        accs[precision] = float((torch.from_numpy(predict(tiny_model, adv, 256, "fp32").argmax(1)) == y).float().mean())
    assert accs["bf16"] <= accs["fp32"] + 0.02


def test_adversarial_validation_keeps_the_best_epoch(prepared_small: Path, tmp_path: Path) -> None:
    dev = torch.device("cpu")
    tx, ty = load_split(prepared_small, "train", dev, 4)
    vx, vy = load_split(prepared_small, "val", dev, 4)
    cfg = train_config("robust_eps4", lr=0.1, batch_size=50, epochs=4, depth=10, width=1, precision="fp32", eps=EPS,
                       attack_steps=3, val_attack_steps=5, patience=0)
    model, _, history, chosen, _ = fit(cfg, Data(tx, ty, vx, vy, 4), tmp_path / "s", objective=Trades(cfg))
    robust = [h["val_robust_balanced_accuracy"] for h in history]
    assert len(history) == 4 and chosen["val_robust_balanced_accuracy"] == max(robust)
    assert chosen == history[robust.index(max(robust))]
    assert all(0 < h["train_loss"] < 10 for h in history)


def test_patience_stops_training(prepared_small: Path, tmp_path: Path) -> None:
    dev = torch.device("cpu")
    tx, ty = load_split(prepared_small, "train", dev, 4)
    vx, vy = load_split(prepared_small, "val", dev, 4)
    # lr 0 after the first steps: nothing improves, so patience 1 stops after the second epoch
    cfg = train_config("robust_eps4", lr=1e-9, batch_size=100, epochs=6, depth=10, width=1, precision="fp32",
                       eps=EPS, attack_steps=2, val_attack_steps=2, patience=1, ema_decay=0.0)
    _, _, history, chosen, _ = fit(cfg, Data(tx, ty, vx[:40], vy[:40], 4), tmp_path / "s", objective=Trades(cfg))
    assert len(history) < 6 and chosen["epoch"] == 1


def _authors_trades(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, eps: float,
                    steps: int, step_size: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """TRADES as its authors' trades_loss computes it (yaodongyu/TRADES, trades.py), written
    out here: the attack in eval mode from x + 0.001 N(0, 1), unprojected, projected after
    every step; then, in train mode, CE(f(x), y) without label smoothing plus beta times the
    batch-mean KL(f(x) || f(x_adv)), f(x) computed a second time for it."""
    model.eval()
    x_adv = x + 0.001 * torch.randn(x.shape, generator=gen, device=gen.device)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(x_adv), 1), F.softmax(model(x), 1), reduction="sum")
        (grad,) = torch.autograd.grad(kl, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + step_size * grad.sign(), x - eps), x + eps).clamp(0.0, 1.0)
    model.train()
    logits = model(x)
    kl = F.kl_div(F.log_softmax(model(x_adv), 1), F.softmax(model(x), 1), reduction="sum") / len(x)
    return x_adv, F.cross_entropy(logits, y) + beta * kl


@pytest.mark.parametrize("reference", [True, False])
def test_robust_reference_is_the_authors_trades(reference: bool) -> None:
    """With robust.reference the loss, the adversarial batch and the batch-norm statistics equal
    the authors' trades_loss; without it (this pipeline's reading) all three differ, on a batch
    whose pixels are 30% exactly 0 (where the start's projection matters)."""
    torch.manual_seed(0)
    x = torch.rand(16, 1, 32, 32)
    x[torch.rand_like(x) < 0.3] = 0.0
    y = torch.randint(0, 3, (16,))
    margs = {"depth": 10, "width": 1, "activation": "swish", "n_classes": 3, "n_channels": 1, "mean": [0.5],
             "std": [0.25]}
    ours, theirs = build(**margs), build(**margs)
    theirs.load_state_dict(ours.state_dict())
    cfg = train_config("robust_eps8", eps=8 / 255, attack_steps=3, beta=5.0, precision="fp32", label_smoothing=0.1,
                       reference=reference, seed=3)
    step_size = default_step_size(cfg.eps, cfg.attack_steps, cfg.step_size_factor)

    def generator() -> torch.Generator:  # the draw of Trades.loss at step 7
        return torch.Generator().manual_seed(derive_seed(cfg.seed, 5, 7))

    x_ours = trades_perturb(ours, x, cfg.eps, cfg.attack_steps, step_size, generator(), "fp32", reference)
    ours.train()  # as in training; the attack inside runs in eval mode, as before the line above
    loss, _ = Trades(cfg).loss(ours, x, y, 7)
    x_theirs, loss_theirs = _authors_trades(theirs, x, y, generator(), cfg.eps, cfg.attack_steps, step_size, 5.0)
    stats = [(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()) if a.dtype.is_floating_point]
    same = (torch.equal(x_ours, x_theirs), loss.item() == pytest.approx(loss_theirs.item(), rel=1e-6),
            all(torch.allclose(a, b, atol=1e-7) for a, b in stats))
    assert same == ((True, True, True) if reference else (False, False, False))
