"""Training pieces, and resume after SIGTERM ending exactly where an uninterrupted run ends."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medrobust.core.errors import ConfigError, DataError, Interrupted
from medrobust.core.hparams import defaults
from medrobust.core.network import load_model
from medrobust.core.splits import load_split
from medrobust.jobs.state import resumable
from medrobust.train.history import COLUMNS, TIMING, read_history, write_history
from medrobust.train.loop import Data, TrainConfig, augment_batch, cosine_lr, ema_decay_at, ema_update, fit

from conftest import env_with_venv, sigterm_when_logged, tag, train_config

TINY = dict(depth=10, width=1, precision="fp32", ema_decay=0.9)  # beside the schema's defaults (hparams.defaults)


def test_cosine_schedule_is_a_pure_function_of_the_step() -> None:
    assert cosine_lr(0.4, 0, 100) == pytest.approx(0.4)
    assert cosine_lr(0.4, 50, 100) == pytest.approx(0.2)
    assert cosine_lr(0.4, 100, 100) == pytest.approx(0.0)


def test_ema_update_moves_towards_the_model() -> None:
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = a.weight.detach().clone()
    ema_update(a, b, 0.75)
    assert torch.allclose(a.weight, 0.75 * before + 0.25 * b.weight)
    assert ema_decay_at(0.999, 0) == pytest.approx(0.1) and ema_decay_at(0.999, 10**6) == 0.999


def test_augmentation_is_seeded_and_keeps_content() -> None:
    x = torch.rand(16, 3, 32, 32)
    one = augment_batch(x, torch.Generator().manual_seed(1), 4, True)
    two = augment_batch(x, torch.Generator().manual_seed(1), 4, True)
    other = augment_batch(x, torch.Generator().manual_seed(2), 4, True)
    assert one.shape == x.shape and torch.equal(one, two) and not torch.equal(one, other)
    assert torch.equal(augment_batch(x, torch.Generator(), 0, False), x)
    # a flipped-only batch holds the same pixels per image
    flipped = augment_batch(x, torch.Generator().manual_seed(0), 0, True)
    assert torch.allclose(flipped.sum((1, 2, 3)), x.sum((1, 2, 3)))


def test_training_learns_the_synthetic_task(prepared_small: Path, tmp_path: Path) -> None:
    dev = torch.device("cpu")
    tx, ty = load_split(prepared_small, "train", dev, 4)
    vx, vy = load_split(prepared_small, "val", dev, 4)
    cfg = train_config(lr=0.1, batch_size=50, epochs=6, augment=True, **TINY)
    _, margs, history, chosen, last = fit(cfg, Data(tx, ty, vx, vy, 4), tmp_path / "s")
    assert margs["n_channels"] == 1 and 0.2 < margs["mean"][0] < 0.6
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert history[-1]["val_balanced_accuracy"] > 0.6  # chance is 0.25
    scores = [h["val_balanced_accuracy"] for h in history]
    assert chosen == history[scores.index(max(scores))]  # the best epoch; the last one's weights beside it
    assert (last is None) == (chosen == history[-1])


def test_the_best_validation_epoch_is_returned_and_the_last_beside_it(prepared_small: Path, tmp_path: Path) -> None:
    """The epoch of best clean validation balanced accuracy is returned, and the last epoch's
    weights beside it: which one a model keeps is its selection's and evaluation's setting."""
    dev = torch.device("cpu")
    tx, ty = load_split(prepared_small, "train", dev, 4)
    vx, vy = load_split(prepared_small, "val", dev, 4)
    # labels shuffled against the images: validation accuracy wanders, and its best is early
    perm = torch.randperm(len(ty), generator=torch.Generator().manual_seed(0))
    cfg = train_config(lr=0.1, batch_size=50, epochs=5, **TINY)
    model, _, history, chosen, last = fit(cfg, Data(tx, ty[perm], vx, vy, 4), tmp_path / "s")
    scores = [h["val_balanced_accuracy"] for h in history]
    assert chosen == history[scores.index(max(scores))]
    if chosen["step"] != history[-1]["step"]:
        assert last is not None
        assert any(not torch.equal(last[k], v) for k, v in model.state_dict().items())
    else:
        assert last is None
    with pytest.raises(ConfigError, match="unknown training setting.*: keep"):  # not a training setting any more
        TrainConfig.from_dict(defaults(keep="best"))
    with pytest.raises(ConfigError, match="missing training setting.*: ema_decay"):  # no default but the schema's
        TrainConfig.from_dict({k: v for k, v in defaults().items() if k != "ema_decay"})
    with pytest.raises(ConfigError, match="missing training setting.*: beta"):
        TrainConfig.from_dict({k: v for k, v in defaults("robust_eps4").items() if k != "beta"})


def _train_cmd(data: Path, out: Path, epochs: int) -> list[str]:
    hp = defaults(lr=0.1, batch_size=25, epochs=epochs, augment=True, **TINY)
    return [sys.executable, "-m", "medrobust.cli.main", "train", "--train-data", str(data), "--val-data", str(data),
            "--n-classes", "4", "--hparams", json.dumps(hp), "--state", str(out / "state"),
            "--out-model", str(out / "model.pt"), "--out-metrics", str(out / "metrics.json"),
            "--out-history", str(out / "history.csv"), "--checkpoint-every", "100", "--eval-batch-size", "1024",
            "--threads", "1", "--jobs-per-gpu", "1"]


def test_sigterm_then_rerun_equals_uninterrupted(prepared_small: Path, tmp_path: Path) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    subprocess.run(_train_cmd(prepared_small, whole, 5), check=True, env=env_with_venv(), capture_output=True, timeout=600)

    # interrupted as SLURM does at a time limit or preemption: SIGTERM, mid-epoch
    split.mkdir()
    assert sigterm_when_logged(_train_cmd(prepared_small, split, 5), split / "log.txt", "epoch 1/5", env_with_venv()) == 143
    assert (split / "state" / "run.pt").exists()
    assert not any((split / f).exists() for f in ("model.pt", "metrics.json", "history.csv"))  # nothing half-written
    assert not list(split.glob(".*.part*"))

    done = subprocess.run(_train_cmd(prepared_small, split, 5), env=env_with_venv(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stderr
    assert not (split / "state").exists()

    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, split))
    assert a["best"] == b["best"] and a["last"] == b["last"]
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    # history.csv: every epoch, those before the interruption included; equal but for the timings
    ha, hb = (read_history(d / "history.csv") for d in (whole, split))
    assert [r["epoch"] for r in hb] == [1, 2, 3, 4, 5]
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in ha] == \
        [{k: v for k, v in r.items() if k not in TIMING} for r in hb]
    assert all(math.isnan(r["val_robust_balanced_accuracy"]) and r["images_per_second"] > 0 for r in hb)
    for epoch in ("best", "last"):  # the weights of either epoch, bit-identical
        ma, _ = load_model(whole / "model.pt", torch.device("cpu"), epoch)
        mb, ckpt = load_model(split / "model.pt", torch.device("cpu"), epoch)
        assert all(torch.equal(p, q) for p, q in zip(ma.state_dict().values(), mb.state_dict().values()))
    assert {"model_args", "hparams", "best", "last", "epochs", "provenance"} <= set(ckpt)
    assert ckpt["provenance"]["versions"]["torch"] == torch.__version__.split("+")[0]


def test_state_from_other_settings_is_ignored(prepared_small: Path, tmp_path: Path) -> None:
    dev = torch.device("cpu")
    tx, ty = load_split(prepared_small, "train", dev, 4)
    data = Data(tx, ty, tx[:50], ty[:50], 4)
    cfg = train_config(lr=0.1, batch_size=100, epochs=2, **TINY)
    state = tmp_path / "s"
    with pytest.raises(Interrupted), resumable(state, tag("old"), "training state") as folder:
        fit(cfg, data, folder, should_stop=lambda: True)
    assert (state / "run.pt").exists()
    with resumable(state, tag("new"), "training state") as folder:
        _, _, history, _, _ = fit(cfg, data, folder)
    assert not state.exists()  # its parts are in the outputs now
    assert len(history) == 2 and history[0]["step"] == 4  # started over, not resumed


def test_corrupt_checkpoint_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(DataError, match="model.pt: not a medrobust checkpoint"):
        load_model(bad, torch.device("cpu"), "best")


def test_history_csv_has_every_column_and_robust_where_measured(tmp_path: Path) -> None:
    history = [{"epoch": e, "step": 4 * e, "lr": 0.1 / e, "train_loss": 1.0 / e, "train_accuracy": 0.5,
                "seconds": 2.0, "val_balanced_accuracy": 0.6, "val_auc": 0.7, "val_accuracy": 0.6,
                "val_robust_balanced_accuracy": 0.3 * e, "val_robust_auc": 0.5} for e in (1, 2)]
    write_history(history, 32, tmp_path / "h.csv")
    header = (tmp_path / "h.csv").read_text().splitlines()[0]
    assert tuple(header.split(",")) == COLUMNS
    rows = read_history(tmp_path / "h.csv")
    assert [r["val_robust_balanced_accuracy"] for r in rows] == [0.3, 0.6]
    assert [r["images_per_second"] for r in rows] == [4 * 32 / 2.0] * 2  # 4 steps of 32 images in 2 s
    assert rows[1]["lr"] == 0.05 and rows[1]["epoch"] == 2
    (tmp_path / "bad.csv").write_text("epoch,loss\n1,2\n")
    with pytest.raises(DataError, match="bad.csv: not a training history"):
        read_history(tmp_path / "bad.csv")
