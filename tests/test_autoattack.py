"""AutoAttack through pyautoattack: class-count-aware attack lists, bounded by PGD, resumable."""

import warnings
from pathlib import Path

import pytest
import torch

from medrobust.attacks import autoattack
from medrobust.core.errors import Interrupted
from medrobust.core.pgd import PGDConfig, cross_entropy, default_step_size, pgd
from medrobust.core.splits import load_split


EPS = 0.5 / 255  # small enough that the tiny model keeps some points under PGD-20


@pytest.mark.parametrize("n_classes, attacks, targets", [
    (2, ["apgd-ce", "fab", "square"], 1),
    (3, ["apgd-ce", "apgd-dlr", "fab-t", "square"], 2),
    (4, ["apgd-ce", "apgd-t", "fab-t", "square"], 3),
    (9, ["apgd-ce", "apgd-t", "fab-t", "square"], 8),
    (11, ["apgd-ce", "apgd-t", "fab-t", "square"], 9),
])
def test_attack_plan_follows_the_class_count(n_classes: int, attacks: list[str], targets: int) -> None:
    assert autoattack.attack_plan(n_classes) == (attacks, targets)


def test_the_plan_passes_pyautoattacks_own_class_checks() -> None:
    from pyautoattack import checks

    for n in (2, 4, 9, 11):  # 3: the check warns about any DLR attack, see the next test
        attacks, targets = autoattack.attack_plan(n)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            checks.check_n_classes(n, attacks, targets, targets)
    with pytest.warns(Warning, match="not possible to use the DLR loss"):  # the standard list on 2 classes
        checks.check_n_classes(2, ["apgd-ce", "apgd-t", "fab-t", "square"], 9, 9)


@pytest.fixture(scope="module")
def batch(prepared_medium: Path):
    x, y = load_split(prepared_medium, "test", torch.device("cpu"), 4)
    return x[:24].float() / 255, y[:24]


def _cheap(aa):  # the standard attacks with fewer iterations and queries, for test time
    aa.apgd.n_iter = aa.apgd_targeted.n_iter = aa.fab.n_iter = 20
    aa.square.n_queries = 200
    return aa


def test_autoattack_is_at_least_as_strong_as_pgd(tiny_model, batch, tmp_path: Path) -> None:
    x, y = batch
    adv = pgd(tiny_model, x, cross_entropy(y), PGDConfig(EPS, 20, default_step_size(EPS, 20)))
    with torch.no_grad():
        pgd_acc = (tiny_model(adv).argmax(1) == y).float().mean().item()
        clean_acc = (tiny_model(x).argmax(1) == y).float().mean().item()
    aa = _cheap(autoattack.build(tiny_model, 4, EPS, 0, torch.device("cpu")))
    progress = autoattack.run(aa, x, y, tmp_path / "state", 64)
    aa_acc = list(progress.done.values())[-1]
    assert 0 < pgd_acc < clean_acc  # the test means something: PGD breaks some points, not all
    assert aa_acc <= pgd_acc
    assert list(progress.done) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert all(a >= b for a, b in zip(progress.done.values(), list(progress.done.values())[1:]))
    assert (progress.x_adv - x).abs().max() <= EPS + 1e-6 and 0 <= progress.x_adv.min() and progress.x_adv.max() <= 1
    with torch.no_grad():  # the saved images really are adversarial where the flags say so
        still = tiny_model(progress.x_adv).argmax(1) == y
    assert still.float().mean().item() == pytest.approx(aa_acc)


def test_interrupted_autoattack_resumes_after_the_last_finished_attack(tiny_model, batch, tmp_path: Path) -> None:
    x, y = batch
    state = tmp_path / "state"
    aa = _cheap(autoattack.build(tiny_model, 4, EPS, 0, torch.device("cpu")))
    with pytest.raises(Interrupted):
        autoattack.run(aa, x, y, state, 64, should_stop=lambda: True)
    saved = torch.load(state / "progress.pt", weights_only=True)
    assert list(saved["done"]) == ["apgd-ce"]
    resumed = autoattack.run(_cheap(autoattack.build(tiny_model, 4, EPS, 0, torch.device("cpu"))), x, y, state, 64)
    fresh = autoattack.run(_cheap(autoattack.build(tiny_model, 4, EPS, 0, torch.device("cpu"))), x, y,
                           tmp_path / "fresh", 64)
    assert resumed.done == fresh.done
    assert torch.equal(resumed.robust, fresh.robust)


def test_interrupted_inside_attacks_resumes_at_the_next_batch_with_equal_results(tiny_model, batch,
                                                                                 tmp_path: Path) -> None:
    """A stop after every batch (SIGTERM, requeue, again and again) gives the uninterrupted result."""
    x, y = batch
    fresh = autoattack.run(_cheap(autoattack.build(tiny_model, 4, EPS, 0, torch.device("cpu"))), x, y,
                           tmp_path / "fresh", 2)
    state, mid_attack = tmp_path / "state", set()
    while True:
        try:
            resumed = autoattack.run(_cheap(autoattack.build(tiny_model, 4, EPS, 0, torch.device("cpu"))), x, y,
                                     state, 2, should_stop=lambda: True)
            break
        except Interrupted:
            saved = torch.load(state / "progress.pt", weights_only=True)
            if saved["attack"] is not None:  # stopped inside an attack: its point list and batches done kept
                assert 0 < saved["batches_done"] < -(-len(saved["index"]) // 2)
                mid_attack.add(saved["attack"])
    assert {"apgd-ce", "apgd-t"} <= mid_attack  # the second attack's list is the one saved at its start
    assert resumed.done == fresh.done
    assert torch.equal(resumed.robust, fresh.robust) and torch.equal(resumed.x_adv, fresh.x_adv)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_few_class_models_get_a_valid_attack_list(batch, tmp_path: Path, n_classes: int) -> None:
    """The standard list crashes on 2 classes (DLR); the plan's lists run, every attack on
    points that the previous ones left (a linear model on unit-scale inputs survives eps 1/255
    at some points)."""
    x, _ = batch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(x[0].numel(), n_classes)).eval()
    y = model(x).argmax(1).detach()  # every point correctly classified, so the first attack runs on all
    aa = _cheap(autoattack.build(model, n_classes, EPS, 0, torch.device("cpu")))
    progress = autoattack.run(aa, x, y, tmp_path / "s", 64)
    assert list(progress.done) == autoattack.attack_plan(n_classes)[0]


def test_batch_by_batch_equals_one_pyautoattack_call(tiny_model, batch) -> None:
    """run() calls pyautoattack one batch at a time (for progress lines); the adversarial images
    equal one call over all batches, which reseeds every batch alike."""
    x, y = batch
    with torch.no_grad():  # run() passes only the points still robust, so its batches are pyautoattack's
        keep = tiny_model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    aa = _cheap(autoattack.build(tiny_model, 4, EPS, 0, torch.device("cpu")))
    aa.attacks_to_run = ["apgd-ce"]
    x_one, _ = aa.run_standard_evaluation(x, y, batch_size=16)
    x_ours = torch.cat([aa.run_standard_evaluation(xb, yb, batch_size=16)[0] for xb, yb in zip(x.split(16), y.split(16))])
    assert len(x) > 16 and torch.equal(x_one, x_ours)


def test_nothing_left_to_attack_is_not_an_error(tiny_model, batch, tmp_path: Path) -> None:
    """A model wrong on every clean point (as an untrained or collapsed one can be): every attack
    has nothing to do, and the robust accuracy after each is 0 (the bring-your-own run met this)."""
    x, _ = batch
    with torch.no_grad():
        wrong = (tiny_model(x).argmax(1) + 1) % 4
    progress = autoattack.run(_cheap(autoattack.build(tiny_model, 4, EPS, 0, torch.device("cpu"))), x, wrong,
                              tmp_path / "s", 64)
    assert progress.done == {a: 0.0 for a in ("apgd-ce", "apgd-t", "fab-t", "square")}
    assert torch.equal(progress.x_adv, x)
