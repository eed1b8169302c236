"""SIGTERM, as SLURM sends it at a time limit (SIGKILL follows 30 s later), to the real console
commands construct, autoattack and corrupt: each one stops well within those 30 s with exit
code 143 and its resumable state saved, and a rerun ends with the outputs of an uninterrupted run.

The signal goes to the command's whole process group, as SLURM delivers it to a job step, as
soon as the command's start line is logged; construct reads the stop flag before every attack
step (dropping the unfinished batch), autoattack and corrupt after every batch (or block of
images), so each one stops in the middle of its work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medrobust.core.hparams import construction_defaults

from conftest import env_with_venv

SIGKILL_AFTER = 30  # seconds from SLURM's SIGTERM to its SIGKILL
PROVENANCE_AND_TIMING = {"provenance", "seconds", "attack_images_per_second"}


def _stop_when_logged(cmd: list[str], log: Path, marker: str) -> tuple[int, float]:
    """Run `cmd` in its own process group (stdout and stderr to `log`); once `marker` is logged,
    send SIGTERM to the group; return the exit code and the seconds from the signal to the exit."""
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env_with_venv(), start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while marker not in log.read_text():
                assert proc.poll() is None, f"ended before '{marker}' was logged:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"'{marker}' not logged in 300 s"
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGTERM)
            sent = time.monotonic()
            code = proc.wait(timeout=120)
            return code, time.monotonic() - sent
        finally:
            if proc.poll() is None:  # only after a failed assertion: leave no job behind
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, env=env_with_venv(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


def _assert_same_outputs(a: Path, b: Path, names: list[str]) -> None:
    """Every npz array equal; every JSON field equal except timing and provenance."""
    for name in names:
        if name.endswith(".npz"):
            with np.load(a / name) as x, np.load(b / name) as y:
                assert sorted(x.files) == sorted(y.files)
                assert all(np.array_equal(x[k], y[k]) for k in x.files), name
        else:
            x, y = (json.loads((d / name).read_text()) for d in (a, b))
            assert {k: v for k, v in x.items() if k not in PROVENANCE_AND_TIMING} == \
                {k: v for k, v in y.items() if k not in PROVENANCE_AND_TIMING}, name


def _stop_then_resume(command: Callable[[Path], list[str]], marker: str, state: str, outputs: list[str],
                      tmp_path: Path) -> None:
    """An uninterrupted run, then a run stopped by SIGTERM and rerun to completion: the checks
    of the module docstring; `state` is a file the stopped run must have left."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    whole.mkdir()
    split.mkdir()
    _run(command(whole))
    code, seconds = _stop_when_logged(command(split), split / "log.txt", marker)
    log = (split / "log.txt").read_text()
    assert code == 143, log
    assert seconds < SIGKILL_AFTER, log
    assert "received signal 15" in log and "stopped " in log
    assert (split / state).exists()
    assert not any((split / name).exists() for name in outputs)  # nothing half-written
    resumed = _run(command(split))
    assert "resuming" in resumed
    assert not (split / state).exists()
    _assert_same_outputs(whole, split, outputs)
    print(f"{command(split)[1]}: exit {seconds:.2f} s after SIGTERM")  # for the record, with -s


def test_construct_stops_within_a_batch_and_resumes(checkpoint: Path, prepared_small: Path, tmp_path: Path) -> None:
    settings = construction_defaults(eps=4 / 255, steps=10, random_start=True, precision="fp32")

    def command(d: Path) -> list[str]:  # the ~100 training images the tiny model gets right: ~10 batches
        return ["medrobust", "construct", "--model", str(checkpoint), "--weights", "best", "--data", str(prepared_small),
                "--settings", json.dumps(settings), "--batch-size", "10", "--threads", "1", "--device", "cpu",
                "--jobs-per-gpu", "1",
                "--state", str(d / "state"), "--out", str(d / "set.npz"), "--stats", str(d / "set.json")]

    # the signal comes after the first batch's progress line, during the second batch's attack
    _stop_then_resume(command, "construction: ", "state/00000.pt", ["set.npz", "set.json"], tmp_path)


def test_autoattack_stops_within_an_attack_and_resumes(checkpoint: Path, prepared_medium: Path,
                                                       tmp_path: Path) -> None:
    def command(d: Path) -> list[str]:  # APGD-CE alone breaks every point: 6 batches of it
        return ["medrobust", "autoattack", "--model", str(checkpoint), "--weights", "best", "--data", str(prepared_medium),
                "--eps", "1", "--n-images", "30", "--seed", "0", "--batch-size", "5", "--threads", "1", "--device", "cpu",
                "--jobs-per-gpu", "1",
                "--state", str(d / "state"), "--out", str(d / "aa.json")]

    _stop_then_resume(command, "AutoAttack (", "state/progress.pt", ["aa.json", "aa_probs.npz"], tmp_path)


def test_corrupt_stops_within_a_block_and_resumes(small_npz: Path, tmp_path: Path) -> None:
    def command(d: Path) -> list[str]:  # 100 test images: 2 blocks for each of 13 x 5 corruptions
        return ["medrobust", "corrupt", "--source", str(small_npz), "--n-classes", "4", "--n-channels", "1",
                "--source-size", "64", "--size", "32", "--registry", "generic", "--apply-size", "64", "--seed", "0",
                "--state", str(d / "state"), "--out", str(d / "c.npz"), "--stats", str(d / "c.json")]

    _stop_then_resume(command, "corrupting", "state/pixelate-1.npy", ["c.npz", "c.json"], tmp_path)
