"""A job longer than the partition's time limit runs in pieces on a real SLURM cluster
(tests/slurm_cluster.py): SLURM warns it before the limit (the profile's --signal=TERM@<s>), it
saves its state and exits, Snakemake resubmits it (the rule's retries), and it resumes; the
result equals an uninterrupted run's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from medrobust.core import paths

from conftest import REPO, env_with_venv, slice_config
from same_results import assert_same_results
from slurm_cluster import local_slurm, sacct, slurm_installed
from test_slurm import CLUSTER_DIR, FAST_POLLING, env_without_venv, finish, snakemake

POINT = "lr0.1_bs64_ep600_aug0"
MODEL = f"{paths.point_dir('synthetic', 'base', POINT)}/model.pt"
# ~300 s of training on one core: about three pieces of 60-120 s under a 3-minute limit that
# SLURM signals 60 s (up to 120 s, its timer's resolution) ahead
TINY = {"lr": [0.1], "batch_size": [64], "epochs": [1]}
CONFIG = slice_config({"base": {"tiny": {**TINY, "epochs": [600]}}, "nonrobust": {"tiny": TINY}, "robust": {"tiny": TINY}},
                      # an estimate (hence the retries: 10) well above the truth (~3 pieces), so
                      # that a loaded machine still finishes
                      compute={"train_images_per_second": 300, "min_runtime_minutes": 2},
                      # no periodic checkpoints: every state saved is a piece's, at its signal
                      training={"precision": "fp32", "checkpoint_every": 10000})
LIMITS = {"MEDROBUST_MAX_RUNTIME_MINUTES": "3", "MEDROBUST_SIGNAL_SECONDS": "60"}


def saved_steps(state: Path, stop: threading.Event, seen: list[int]) -> None:
    """Record the step of every state the job saves (each piece saves once, at its signal)."""
    last = None
    while not stop.is_set():
        try:
            stamp = state.stat().st_mtime_ns
            if stamp != last:
                step = torch.load(state, map_location="cpu", weights_only=False)["step"]
                last = stamp
                seen.append(int(step))
        except (OSError, EOFError, RuntimeError, KeyError):
            pass
        time.sleep(1)


@pytest.mark.slurm
@pytest.mark.slow
def test_a_training_longer_than_the_time_limit_finishes_in_pieces(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: starts munged, MariaDB and the SLURM daemons on localhost")
    if not slurm_installed() and not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and apt-get is unavailable to install it")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    common = [MODEL, "--configfile", str(cfg)]
    logs = {run: tmp_path / f"{run}.log" for run in ("local", "slurm")}
    local = snakemake([*common, "--cores", "1", "-d", str(tmp_path / "local")], env_with_venv(), logs["local"])
    seen: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=saved_steps, args=(tmp_path / "slurm" / MODEL.replace("model.pt", "state/run.pt"),
                                                         stop, seen), daemon=True)
    watcher.start()
    try:
        with local_slurm(CLUSTER_DIR, {**env_without_venv(), **LIMITS}) as env:
            command = f"{REPO / '.venv/bin/snakemake'} --profile slurm"
            args = [*common, "-d", str(tmp_path / "slurm"), *FAST_POLLING]
            with logs["slurm"].open("w") as log:
                slurm = subprocess.Popen([*command.split(), *args], cwd=REPO, env=env, text=True,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            out = finish(slurm, logs["slurm"], timeout=1500)
            rows = sacct(env, re.search(r"SLURM run ID: (\S+)", out)[1])
    except BaseException:
        local.kill()
        raise
    finally:
        stop.set()
        watcher.join(timeout=10)
    finish(local, logs["local"], timeout=900)
    print("\n".join("|".join(r.values()) for r in rows))
    print("steps saved at each piece's signal:", seen)
    pieces = [r for r in rows if r["Comment"].startswith("rule_train")]
    assert len(pieces) >= 2, rows  # it did not fit in one job
    assert [r["State"] for r in pieces] == ["FAILED"] * (len(pieces) - 1) + ["COMPLETED"], pieces
    assert len(seen) == len(pieces) - 1 and seen == sorted(set(seen)) and seen[0] > 0, seen  # each piece advanced
    calls = [c for c in re.findall(r"sbatch call: (sbatch .*)", out) if "rule_train" in c]
    assert len(calls) == len(pieces) and all(" -t 3 " in c and "--signal=TERM@60" in c for c in calls), calls
    assert_same_results(tmp_path / "local", tmp_path / "slurm", [MODEL.replace("model.pt", "metrics.json")])
    a, b = (torch.load(tmp_path / run / MODEL, map_location="cpu", weights_only=False)["state_dict"]
            for run in ("local", "slurm"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
