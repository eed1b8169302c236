"""Under --sdm apptainer a GPU job sees the node's GPUs only with `apptainer exec --nv`: the SLURM
profile sets it. Apptainer is not in Debian 12, so a stand-in `apptainer` on PATH records the
command line Snakemake builds and runs the job's command on the host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO, env_with_venv, slice_config

STAND_IN = """#!/usr/bin/env bash
# apptainer --version, else: record the arguments, and run what follows the image on the host
if [ "$1" = "--version" ]; then echo "apptainer version 1.3.4"; exit 0; fi
printf '%s\\n' "$*" >> "$APPTAINER_CALLS"
while [ $# -gt 0 ] && [ "$1" != "$IMAGE" ]; do shift; done
shift
exec "$@"
"""


def test_the_profile_gives_apptainer_jobs_the_gpus(tmp_path: Path) -> None:
    bin_dir, image, calls = tmp_path / "bin", tmp_path / "medrobust.sif", tmp_path / "calls.txt"
    bin_dir.mkdir()
    (bin_dir / "apptainer").write_text(STAND_IN)
    (bin_dir / "apptainer").chmod(0o755)
    image.write_text("not a real image: the stand-in never opens it")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(slice_config({"base": {"tiny": {"lr": [0.1], "batch_size": [64], "epochs": [1]}},
                                                 "nonrobust": {"tiny": {"lr": [0.1], "batch_size": [64], "epochs": [1]}},
                                                 "robust": {"tiny": {"lr": [0.1], "batch_size": [64], "epochs": [1]}}},
                                                container=str(image))))
    env = env_with_venv()
    env |= {"PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "APPTAINER_CALLS": str(calls), "IMAGE": str(image)}
    # the profile's settings, run here (--executor local): what a cluster job's step would run
    done = subprocess.run([sys.executable, "-m", "snakemake", "results/synthetic/data/prepared.npz", "--configfile",
                           str(cfg), "--profile", "slurm", "--executor", "local", "--cores", "1", "--sdm", "apptainer",
                           "-d", str(tmp_path / "wd")], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    recorded = calls.read_text().splitlines()
    assert len(recorded) == 2 and all(line.startswith("exec") and " --nv " in f" {line} " for line in recorded), recorded
    assert (tmp_path / "wd" / "results/synthetic/data/prepared.npz").exists()
