"""Results that belong to their provenance: code inputs derived from what a command imports,
resumable state that is never continued by other code or by two processes at once, and bad
input that gets one line naming the file or key (never a traceback) and writes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medrobust.core.config import encodes_laterality, horizontal_flips, load
from medrobust.core.errors import Interrupted
from medrobust.core.hparams import defaults
from medrobust.core.io import read_npz, write_npz
from medrobust.jobs import codedeps
from medrobust.jobs.state import resumable, state_lock

from conftest import REPO, corrupt, env_with_venv, sigterm_when_logged

ONE_CPU = ["--device", "cpu", "--threads", "1", "--jobs-per-gpu", "1"]
BEST = ["--weights", "best"]
TINY_HP = defaults(lr=0.1, batch_size=50, depth=10, width=1, precision="fp32", ema_decay=0.9)


# ---- code inputs ------------------------------------------------------------------------

def test_each_command_runs_the_modules_its_rules_depend_on() -> None:
    train, trades, construct = (set(codedeps.command_modules(c)) for c in ("train", "train-trades", "construct"))
    assert {"train.loop", "core.network", "core.metrics", "core.io", "jobs.state", "cli.train"} <= train
    # editing TRADES or an attack re-trains no base model
    assert not {"train.trades", "core.pgd", "attacks.construct", "attacks.autoattack"} & train
    assert {"train.trades", "core.pgd", "train.loop"} <= trades
    assert {"attacks.construct", "core.pgd", "core.network", "cli.nonrobust"} <= construct
    assert "train.loop" not in construct
    assert "core.pgd" not in codedeps.command_modules("autoattack")
    assert set(codedeps.command_modules("figure")) >= {"report.figures", "report.tables", "cli.outputs"}
    with pytest.raises(ValueError, match="no command 'nope'"):
        codedeps.command_modules("nope")


def _imported(args: list[str], tmp_path: Path) -> set[str]:
    """The package modules a real `medrobust <args>` process has imported when it ends."""
    probe = ("import atexit, sys\n"
             f"atexit.register(lambda: open({str(tmp_path / 'mods.json')!r}, 'w').write(__import__('json').dumps("
             "sorted(m[len('medrobust.'):] for m in sys.modules if m.startswith('medrobust.')))))\n"
             "from medrobust.cli.main import main\nsys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads((tmp_path / "mods.json").read_text()))


@pytest.mark.parametrize("command", ["train", "train-trades"])
def test_static_code_inputs_cover_what_really_runs(command: str, prepared_small: Path, tmp_path: Path) -> None:
    trades = {"attack_steps": 1, "val_attack_steps": 1, "val_max_images": 20} if command == "train-trades" else {}
    hp = defaults("robust_eps4" if trades else "base", **{**TINY_HP, "epochs": 1, **trades})
    really = _imported([command, "--train-data", str(prepared_small), "--val-data", str(prepared_small),
                        "--n-classes", "4", "--hparams", json.dumps(hp), "--state", str(tmp_path / "s"),
                        "--out-model", str(tmp_path / "m.pt"), "--out-metrics", str(tmp_path / "m.json"),
                        "--out-history", str(tmp_path / "h.csv"), "--checkpoint-every", "5",
                        "--eval-batch-size", "1024", *ONE_CPU], tmp_path)
    # the other command module is loaded for its argument parsers only (codedeps' docstring)
    assert really - set(codedeps.COMMAND_MODULES) <= set(codedeps.command_modules(command))
    assert ("train.trades" in really) == (command == "train-trades")


def test_code_digest_follows_every_module_of_the_command(tmp_path: Path) -> None:
    pkg = tmp_path / "medrobust"
    shutil.copytree(REPO / "src" / "medrobust", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = {c: codedeps.code_digest(c, pkg) for c in ("train", "train-trades", "construct")}
    trades = pkg / "train" / "trades.py"
    trades.write_text(trades.read_text() + "\n# an edit\n")
    after = {c: codedeps.code_digest(c, pkg) for c in before}
    assert after["train"] == before["train"] and after["construct"] == before["construct"]
    assert after["train-trades"] != before["train-trades"]


# ---- resumable state --------------------------------------------------------------------

def _train_args(data: Path, out: Path, epochs: int) -> list[str]:
    return ["train", "--train-data", str(data), "--val-data", str(data), "--n-classes", "4",
            "--hparams", json.dumps({**TINY_HP, "epochs": epochs}), "--state", str(out / "state"),
            "--out-model", str(out / "model.pt"), "--out-metrics", str(out / "metrics.json"),
            "--out-history", str(out / "history.csv"), "--checkpoint-every", "100", "--eval-batch-size", "1024",
            *ONE_CPU]


def test_one_resumable_state_for_every_job(tmp_path: Path, caplog) -> None:
    """medrobust.jobs.state.resumable, which training, construction, corruption and AutoAttack
    share: a job's parts are kept for the same job, cleared (saying why) for another, kept when
    the job stops, and removed when it ends."""
    state, job = tmp_path / "state", {"code": "c", "settings": "s", "data": "d"}
    with pytest.raises(Interrupted), resumable(state, job, "parts") as folder:
        (folder / "part").write_text("finished")
        raise Interrupted("stopped")
    with pytest.raises(Interrupted), resumable(state, job, "parts") as folder:
        assert (folder / "part").read_text() == "finished"  # the same job: continued
        raise Interrupted("stopped again")
    with resumable(state, {**job, "settings": "other"}, "parts") as folder:
        assert not (folder / "part").exists()
    assert f"discarding the parts in {state}: it was written by other settings" in caplog.text
    assert not state.exists()  # ended: its parts are in the outputs


def test_a_second_process_on_the_same_state_refuses(prepared_small: Path, tmp_path: Path) -> None:
    with state_lock(tmp_path / "state"):
        done = subprocess.run([sys.executable, "-m", "medrobust.cli.main", *_train_args(prepared_small, tmp_path, 1)],
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "state: another process (pid" in done.stderr
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "metrics.json").exists()
    with state_lock(tmp_path / "state"):  # released (the file stays: no unlink while held)
        pass


def test_state_written_by_other_code_is_not_resumed(prepared_small: Path, tmp_path: Path) -> None:
    """Interrupt a run, edit the package it runs (a copy on PYTHONPATH), run again: it starts
    afresh and says why."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "medrobust", src / "medrobust", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**env_with_venv(), "PYTHONPATH": str(src)}
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "medrobust.cli.main", *_train_args(prepared_small, out, 4)]
    assert sigterm_when_logged(cmd, out / "log.txt", "epoch 1/4", env) == 143
    assert (out / "state" / "run.pt").exists()
    train_py = src / "medrobust" / "train" / "loop.py"
    train_py.write_text(train_py.read_text() + "\n# a fix\n")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"discarding the training state in {out / 'state'}: it was written by other code" in done.stderr
    assert "resumed from" not in done.stderr
    assert json.loads((out / "metrics.json").read_text())["code"] == codedeps.code_digest("train", src / "medrobust")


# ---- bad input: one line naming the file or key, exit 2, nothing written --------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medrobust.cli.main", *args], capture_output=True, text=True, timeout=300)


def _one_line(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and all(w in errors[0] for w in words), done.stderr[-2000:]


def test_unknown_training_and_construction_settings_are_named(checkpoint: Path, prepared_small: Path,
                                                             tmp_path: Path) -> None:
    args = _train_args(prepared_small, tmp_path, 1)
    args[args.index("--hparams") + 1] = json.dumps({**TINY_HP, "epochs": 1, "lable_smoothing": 0.1})
    _one_line(_cli(*args), "lable_smoothing")
    assert not (tmp_path / "model.pt").exists()
    done = _cli("construct", "--model", str(checkpoint), *BEST, "--data", str(prepared_small), "--settings",
                json.dumps({"eps": 0.01, "stepz": 3}), "--state", str(tmp_path / "n_state"), "--batch-size", "8",
                "--out", str(tmp_path / "n.npz"), "--stats", str(tmp_path / "n.json"), *ONE_CPU)
    _one_line(done, "stepz")
    _one_line(_cli(*args[:args.index("--hparams") + 1], "{not json", *args[args.index("--hparams") + 2:]), "--hparams")
    assert not list(tmp_path.glob("n.*"))


def _relabelled(src: Path, dest: Path, split: str, labels: np.ndarray) -> Path:
    arrays = read_npz(src, tuple(f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")))
    write_npz(dest, {**arrays, f"{split}_labels": labels})
    return dest


def test_labels_outside_the_classes_are_named(checkpoint: Path, prepared_small: Path, tmp_path: Path) -> None:
    test = read_npz(prepared_small, ("test_labels",))["test_labels"].copy()
    test[3] = 7
    bad = _relabelled(prepared_small, tmp_path / "bad.npz", "test", test)
    out = tmp_path / "clean.json"
    _one_line(_cli("evaluate", "--model", str(checkpoint), *BEST, "--data", str(bad), "--out", str(out), *ONE_CPU),
              "bad.npz [test]", "labels span 0..7", "4 classes")
    assert not out.exists()
    args = _train_args(prepared_small, tmp_path, 1)
    args[args.index("--n-classes") + 1] = "3"  # the data have 4
    _one_line(_cli(*args), "prepared.npz [train]", "3 classes")


def test_images_and_labels_of_different_lengths_are_named(checkpoint: Path, prepared_small: Path, tmp_path: Path) -> None:
    test = read_npz(prepared_small, ("test_labels",))["test_labels"]
    short = _relabelled(prepared_small, tmp_path / "short.npz", "test", test[:-5])
    _one_line(_cli("evaluate", "--model", str(checkpoint), *BEST, "--data", str(short), "--out", str(tmp_path / "e.json"),
                   *ONE_CPU),
              "short.npz [test]", "95 labels for 100 images")
    images = read_npz(prepared_small, ("test_images",))["test_images"]
    write_npz(tmp_path / "c.npz", {"labels": test[:-1], "corruption/identity": np.stack([images] * 5)})
    _one_line(_cli("evaluate-corrupted", "--model", str(checkpoint), *BEST, "--data", str(tmp_path / "c.npz"),
                   "--out", str(tmp_path / "c.json"), *ONE_CPU), "c.npz [corruption/identity]", "99 labels for 100 images")
    assert not list(tmp_path.glob("*.json"))


def test_a_missing_or_corrupt_model_is_named(prepared_small: Path, tmp_path: Path) -> None:
    _one_line(_cli("evaluate", "--model", str(tmp_path / "none.pt"), *BEST, "--data", str(prepared_small),
                   "--out", str(tmp_path / "e.json"), *ONE_CPU), "none.pt: checkpoint not found")


def _byo_config(tmp_path: Path, path: Path) -> Path:
    grid = {"lr": [0.1], "batch_size": [64], "epochs": [1]}
    cfg = {"datasets": {"mine": {"source": "npz", "grid": "g", "path": str(path), "n_classes": 4, "n_channels": 1,
                                 "source_image_size": 64}},
           "grids": {"base": {"g": grid}, "nonrobust": {"g": grid}, "robust": {"g": grid}}}
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    return tmp_path / "c.yaml"


@pytest.mark.parametrize("damage", ["truncated", "missing", "short"])
def test_a_bad_dataset_file_stops_the_workflow_with_one_line(damage: str, small_npz: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine.npz"
    if damage == "truncated":
        shutil.copy(small_npz, mine)
        corrupt(mine)
    elif damage == "short":
        arrays = read_npz(small_npz, tuple(f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")))
        write_npz(mine, {**arrays, "val_labels": arrays["val_labels"][:-1]})
    work = tmp_path / "work"
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
                           "--configfile", str(_byo_config(tmp_path, mine)), "-n"],
                          capture_output=True, text=True, env=env_with_venv(), timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout
    expected = {"truncated": f"{mine}: not a readable npz file (BadZipFile", "missing": f"{mine}: file not found",
                "short": f"{mine} [val]: 99 labels for 100 images"}[damage]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"medrobust: datasets.mine.path: {expected}"), done.stderr
    assert not (work / "results").exists()


# ---- training choices --------------------------------------------------------------------

def test_flips_are_off_where_labels_encode_laterality() -> None:
    import medmnist

    lateral = {f for f, info in medmnist.INFO.items() if encodes_laterality(list(info["label"].values()))}
    assert lateral == {"organamnist", "organcmnist", "organsmnist", "organmnist3d"}  # femur, kidney, lung left/right
    config = load(REPO / "config.yaml")
    assert not horizontal_flips(config, "organsmnist")
    assert all(horizontal_flips(config, d) for d in ("pathmnist", "pneumoniamnist", "octmnist", "breastmnist"))
    config["datasets"]["organsmnist"]["hflip"] = True  # an explicit choice wins
    config["datasets"]["pathmnist"]["hflip"] = False
    assert horizontal_flips(config, "organsmnist") and not horizontal_flips(config, "pathmnist")
    config["training"]["augmentation"]["hflip"] = False
    assert not horizontal_flips(config, "octmnist")


def test_the_full_study_follows_the_paper_where_it_is_silent_no_more() -> None:
    config = load(REPO / "config.yaml")
    assert config["robust"]["patience"] == 0  # the full schedule, best robust-validation epoch kept
    assert config["nonrobust"]["targets"] == "uniform"  # D_rand: P(t = y) = 1/C


def test_the_estimate_says_how_it_counts_early_stopping() -> None:
    def estimate(config: str) -> str:
        done = subprocess.run([sys.executable, "-m", "medrobust.cli.main", "estimate", str(REPO / config)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "full schedule of every grid point, as the paper" in estimate("config.yaml")
    assert "an upper bound, since robust.patience 3" in estimate("config.demo.yaml")
