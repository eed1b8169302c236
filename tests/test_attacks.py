"""PGD invariants, agreement with torchattacks, and the nonrobust-set construction."""

from pathlib import Path

import pytest
import torch
import torchattacks

from medrobust.attacks import PGDConfig, default_step_size, pgd, project
from medrobust.construct import ConstructionConfig, construct, draw_targets
from medrobust.evaluate import load_split, predict
from medrobust.train import Interrupted

EPS = 4 / 255
TOL = 1e-6


@pytest.fixture(scope="module")
def batch(prepared_medium: Path):
    x, y = load_split(prepared_medium, "test", torch.device("cpu"))
    return x[:64].float() / 255, y[:64]


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("random_start", [False, True])
@pytest.mark.parametrize("keep", ["best", "last"])
def test_pgd_stays_in_the_ball_and_the_pixel_range(tiny_model, batch, targeted, random_start, keep) -> None:
    x, y = batch
    labels = (y + 1) % 4 if targeted else y
    tiny_model.train().requires_grad_(True)  # as inside a training loop
    try:
        cfg = PGDConfig(EPS, 10, default_step_size(EPS, 10), random_start=random_start, keep=keep)
        adv = pgd(tiny_model, x, labels, cfg, targeted=targeted, generator=torch.Generator().manual_seed(0))
        assert tiny_model.training and all(p.requires_grad for p in tiny_model.parameters())  # restored
        assert all(p.grad is None for p in tiny_model.parameters())  # no parameter gradients
    finally:
        tiny_model.eval().requires_grad_(False)
    assert (adv - x).abs().max() <= EPS + TOL
    assert adv.min() >= 0 and adv.max() <= 1
    assert not adv.requires_grad


def test_project_clamps_to_both_sets() -> None:
    x = torch.tensor([0.0, 0.5, 1.0])
    out = project(torch.tensor([-1.0, 0.9, 2.0]), x, 0.1)
    assert torch.allclose(out, torch.tensor([0.0, 0.6, 1.0]))


def test_step_size_rule() -> None:
    assert default_step_size(4 / 255, 100) == pytest.approx(0.1 / 255)


def _success(model, adv, targets) -> float:
    return float((torch.from_numpy(predict(model, adv, 256, "fp32").argmax(1)) == targets).float().mean())


def test_targeted_pgd_hits_nearly_always_and_agrees_with_torchattacks(tiny_model, batch) -> None:
    x, y = batch
    targets = draw_targets(y, 4, "random", seed=0)
    cfg = PGDConfig(EPS, 100, default_step_size(EPS, 100))
    ours = _success(tiny_model, pgd(tiny_model, x, targets, cfg, targeted=True), targets)
    ours_last = _success(tiny_model, pgd(tiny_model, x, targets, PGDConfig(EPS, 100, cfg.step_size, keep="last"),
                                         targeted=True), targets)
    atk = torchattacks.PGD(tiny_model, eps=EPS, alpha=cfg.step_size, steps=100, random_start=False)
    atk.set_mode_targeted_by_label(quiet=True)
    theirs = _success(tiny_model, atk(x, targets), targets)
    assert ours > 0.95  # measured 1.00 on this tiny model
    assert abs(ours - theirs) <= 0.01 + 1e-9 and abs(ours_last - theirs) <= 0.01 + 1e-9


def test_untargeted_pgd_breaks_a_standard_model(tiny_model, batch) -> None:
    x, y = batch
    clean = _success(tiny_model, x, y)
    adv = pgd(tiny_model, x, y, PGDConfig(EPS, 20, default_step_size(EPS, 20)))
    assert clean > 0.6 and _success(tiny_model, adv, y) < 0.1


def test_targets_differ_from_labels_and_cover_the_other_classes() -> None:
    y = torch.arange(4000) % 4
    t = draw_targets(y, 4, "random", seed=1)
    assert not (t == y).any()
    assert torch.equal(t, draw_targets(y, 4, "random", seed=1))
    counts = torch.bincount(t[y == 0], minlength=4)
    assert counts[0] == 0 and counts[1:].min() > 280  # ~333 each among classes 1..3
    assert torch.equal(draw_targets(y, 4, "deterministic", 0), (y + 1) % 4)


def test_construction_statistics_and_resume(tiny_model, prepared_medium: Path, tmp_path: Path) -> None:
    x, y = load_split(prepared_medium, "train", torch.device("cpu"))
    x, y = x[:120], y[:120]
    cfg = ConstructionConfig(eps=EPS, steps=30, precision="fp32")
    whole = construct(tiny_model, x, y, 4, cfg, tmp_path / "a", "t", batch_size=40, chunk=40)
    adv, targets, stats = whole
    correct = predict(tiny_model, x, 256, "fp32").argmax(1) == y.numpy()
    assert stats["n_used"] == correct.sum() == len(adv) == len(targets)
    assert (stats["source_index"] == correct.nonzero()[0]).all()
    assert stats["linf_max_255"] <= 4 + 1e-4 and stats["target_hit_rate"] > 0.9
    assert stats["targets_equal_labels"] == 0 and sum(stats["target_class_counts"]) == stats["n_used"]
    assert adv.dtype == "float32" and adv.min() >= 0 and adv.max() <= 1

    calls = iter([False, True])  # stop before the second chunk, as on SIGTERM
    with pytest.raises(Interrupted):
        construct(tiny_model, x, y, 4, cfg, tmp_path / "b", "t", batch_size=40, chunk=40, should_stop=lambda: next(calls))
    assert len(list((tmp_path / "b").glob("t-*.pt"))) == 1
    again = construct(tiny_model, x, y, 4, cfg, tmp_path / "b", "t", batch_size=40, chunk=40)
    assert (again[0] == adv).all() and (again[1] == targets).all()
