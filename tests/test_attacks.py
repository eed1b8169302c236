"""PGD invariants, agreement with torchattacks, and the nonrobust-set construction."""

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchattacks

from medrobust.attacks.construct import ConstructionConfig, construct, draw_targets
from medrobust.core.errors import Interrupted
from medrobust.core.hparams import construction_defaults
from medrobust.core.network import predict
from medrobust.core.pgd import PGDConfig, cross_entropy, default_step_size, pgd, project
from medrobust.core.splits import load_split


EPS = 4 / 255
TOL = 1e-6


@pytest.fixture(scope="module")
def batch(prepared_medium: Path):
    x, y = load_split(prepared_medium, "test", torch.device("cpu"), 4)
    return x[:64].float() / 255, y[:64]


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("random_start", [False, True])
@pytest.mark.parametrize("keep", ["best", "last"])
def test_pgd_stays_in_the_ball_and_the_pixel_range(tiny_model, batch, targeted, random_start, keep) -> None:
    x, y = batch
    labels = (y + 1) % 4 if targeted else y
    tiny_model.train().requires_grad_(True)  # as inside a training loop
    try:
        cfg = PGDConfig(EPS, 10, default_step_size(EPS, 10), start="uniform" if random_start else "none", keep=keep)
        adv = pgd(tiny_model, x, cross_entropy(labels, targeted), cfg, generator=torch.Generator().manual_seed(0))
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
    targets = draw_targets(y, 4, "other", seed=0)
    cfg = PGDConfig(EPS, 100, default_step_size(EPS, 100))
    ours = _success(tiny_model, pgd(tiny_model, x, cross_entropy(targets, targeted=True), cfg), targets)
    last = PGDConfig(EPS, 100, cfg.step_size, keep="last")
    ours_last = _success(tiny_model, pgd(tiny_model, x, cross_entropy(targets, targeted=True), last), targets)
    atk = torchattacks.PGD(tiny_model, eps=EPS, alpha=cfg.step_size, steps=100, random_start=False)
    atk.set_mode_targeted_by_label(quiet=True)
    theirs = _success(tiny_model, atk(x, targets), targets)
    assert ours > 0.95  # measured 1.00 on this tiny model
    assert abs(ours - theirs) <= 0.01 + 1e-9 and abs(ours_last - theirs) <= 0.01 + 1e-9


def test_untargeted_pgd_breaks_a_standard_model(tiny_model, batch) -> None:
    x, y = batch
    clean = _success(tiny_model, x, y)
    adv = pgd(tiny_model, x, cross_entropy(y), PGDConfig(EPS, 20, default_step_size(EPS, 20)))
    assert clean > 0.6 and _success(tiny_model, adv, y) < 0.1


@pytest.mark.parametrize("n_classes", [2, 4, 9])
def test_uniform_targets_agree_with_labels_at_chance(n_classes: int) -> None:
    """The default (D_rand): P(t = y) = 1/C, so the new label says nothing about the old one."""
    y = torch.arange(20000) % n_classes
    t = draw_targets(y, n_classes, "uniform", seed=0)
    assert abs(float((t == y).float().mean()) - 1 / n_classes) < 0.02
    for c in range(n_classes):  # and within every original class, the targets are uniform
        counts = torch.bincount(t[y == c], minlength=n_classes).float()
        assert (counts / counts.sum() - 1 / n_classes).abs().max() < 0.03
    assert torch.equal(t, draw_targets(y, n_classes, "uniform", seed=0))


def test_other_and_deterministic_targets_never_keep_the_label() -> None:
    y = torch.arange(4000) % 4
    t = draw_targets(y, 4, "other", seed=1)
    assert not (t == y).any()
    assert torch.equal(t, draw_targets(y, 4, "other", seed=1))
    counts = torch.bincount(t[y == 0], minlength=4)
    assert counts[0] == 0 and counts[1:].min() > 280  # ~333 each among classes 1..3
    assert torch.equal(draw_targets(y, 4, "deterministic", 0), (y + 1) % 4)
    two = torch.arange(100) % 2  # with two classes both flip every label
    assert torch.equal(draw_targets(two, 2, "other", 0), 1 - two) and torch.equal(draw_targets(two, 2, "deterministic", 0), 1 - two)


def _check_pairing(built: dict, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor) -> None:
    """Every adversarial image sits within eps of its own source image and carries that image's target."""
    src = torch.from_numpy(built["source_index"])
    assert torch.equal(torch.from_numpy(built["targets"]), targets[src])
    assert torch.equal(torch.from_numpy(built["labels"]), y[src])
    assert (torch.from_numpy(built["adv"]) - x[src].float() / 255).abs().amax() <= EPS + 1e-6


def _stop_after(n: int) -> Callable[[], bool]:
    """A stop flag that turns true at its (n + 1)-th reading."""
    readings = itertools.count(1)
    return lambda: next(readings) > n


def test_construction_statistics_and_resume(tiny_model, prepared_medium: Path, tmp_path: Path) -> None:
    x, y = load_split(prepared_medium, "train", torch.device("cpu"), 4)
    x, y = x[:120], y[:120]
    cfg = ConstructionConfig.from_dict(construction_defaults(eps=EPS, steps=30, random_start=True,
                                                             precision="fp32"))  # seeded per batch
    targets = draw_targets(y, 4, "uniform", 0)
    whole = construct(tiny_model, x, y, 4, cfg, tmp_path / "a", batch_size=20, chunk=40)
    stats = whole["stats"]
    correct = predict(tiny_model, x, 256, "fp32").argmax(1) == y.numpy()
    assert stats["n_used"] == correct.sum() == len(whole["adv"]) == len(whole["targets"])
    assert (whole["source_index"] == correct.nonzero()[0]).all()
    _check_pairing(whole, x, y, targets)
    assert stats["linf_max_255"] <= 4 + 1e-4 and stats["target_hit_rate"] > 0.9
    assert stats["targets_equal_labels"] == int((targets[correct] == y[correct]).sum()) > 0
    assert stats["targets_equal_labels_fraction"] == pytest.approx(stats["targets_equal_labels"] / stats["n_used"])
    assert sum(stats["target_class_counts"]) == stats["n_used"]
    assert whole["adv"].dtype == "float32" and whole["adv"].min() >= 0 and whole["adv"].max() <= 1

    # SIGTERM at step 15 of the second batch (the flag is read before each of its 30 steps): the
    # attack stops there, the unfinished batch is dropped, the first one kept
    with pytest.raises(Interrupted, match="after 20 of .*stopped at step 15 of 30 of a 20-image batch"):
        construct(tiny_model, x, y, 4, cfg, tmp_path / "b", batch_size=20, chunk=40,
                  should_stop=_stop_after(30 + 15))
    assert [p.name for p in (tmp_path / "b").glob("0*.pt")] == ["00000.pt"]
    saved = torch.load(tmp_path / "b" / "00000.pt", weights_only=True)
    assert len(saved["adv"]) == 20 < len(saved["source_index"])  # the chunk's finished batch, kept
    # requeued: three more batches, across a chunk boundary, then SIGTERM
    with pytest.raises(Interrupted):
        construct(tiny_model, x, y, 4, cfg, tmp_path / "b", batch_size=20, chunk=40,
                  should_stop=_stop_after(3 * 30))
    again = construct(tiny_model, x, y, 4, cfg, tmp_path / "b", batch_size=20, chunk=40)
    assert again["stats"]["attack_images_per_second"] is not None
    for key in ("adv", "targets", "source_index", "labels"):  # bit-identical to the uninterrupted run
        assert (again[key] == whole[key]).all()
    assert {k: v for k, v in again["stats"].items() if "second" not in k} == \
        {k: v for k, v in whole["stats"].items() if "second" not in k}


class _FlipOne(torch.nn.Module):
    """The model, except that one image's prediction flips (as a borderline one may on another GPU)."""

    def __init__(self, model: torch.nn.Module, image: torch.Tensor) -> None:
        super().__init__()
        self.model, self.image = model, image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        hit = (x - self.image).abs().flatten(1).amax(1) == 0
        return torch.where(hit[:, None], -logits, logits)


def test_resume_after_a_prediction_flips_keeps_every_image_with_its_label(tiny_model, prepared_medium: Path,
                                                                          tmp_path: Path, caplog) -> None:
    x, y = load_split(prepared_medium, "train", torch.device("cpu"), 4)
    x, y = x[:120], y[:120]
    cfg = ConstructionConfig.from_dict(construction_defaults(eps=EPS, steps=10, precision="fp32"))
    targets = draw_targets(y, 4, "uniform", 0)
    with pytest.raises(Interrupted):  # chunks 0 and 1 done, chunk 2 begun, then a requeue
        construct(tiny_model, x, y, 4, cfg, tmp_path / "p", batch_size=20, chunk=40,
                  should_stop=lambda: (tmp_path / "p" / "00001.pt").exists())
    first = int(torch.from_numpy(predict(tiny_model, x[:40], 64, "fp32").argmax(1) == y[:40].numpy()).nonzero()[0])
    flipped = _FlipOne(tiny_model, x[first].float() / 255).eval()
    resumed = construct(flipped, x, y, 4, cfg, tmp_path / "p", batch_size=20, chunk=40)
    assert "rebuilding" in caplog.text and "00000.pt" in caplog.text and "00001.pt" not in caplog.text
    assert first not in resumed["source_index"].tolist()
    correct = predict(flipped, x, 64, "fp32").argmax(1) == y.numpy()
    assert (resumed["source_index"] == correct.nonzero()[0]).all()
    _check_pairing(resumed, x, y, targets)
