"""The Containerfile's image, built for real with podman, runs part of the demo (synthesize,
prepare, one training job, selection, one evaluation) with the workflow copy inside it, offline,
and its results equal a local run's of the same targets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from medrobust.core import paths

from conftest import REPO, env_with_venv, slice_config
from container_image import build, image_size, install_packages, podman, podman_env, podman_installed
from same_results import assert_same_results, comparable

TAG = "localhost/medrobust:test"
# Fixed, so that a later run reuses the base image's work folder.
WORKDIR = Path(tempfile.gettempdir()) / "medrobust-container"
POINT = "lr0.1_bs64_ep2_aug0"
TARGETS = [f"{paths.point_dir('synthetic', 'base', POINT)}/metrics.json", paths.evaluation("synthetic", "base", 0, "clean")]
CONFIG = slice_config({stage: {"tiny": {"lr": [0.1], "batch_size": [64], "epochs": [2]}}
                       for stage in ("base", "nonrobust", "robust")})


@pytest.mark.container
@pytest.mark.slow
def test_demo_slice_in_the_container_image_equals_a_local_run(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: installs podman and runs rootful podman (runc) to build the image")
    if not podman_installed() and not shutil.which("apt-get"):
        pytest.skip("podman and mmdebstrap are not installed and apt-get is unavailable to install them")
    install_packages()
    WORKDIR.mkdir(exist_ok=True)
    env = podman_env(WORKDIR)
    for run in ("local", "container"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    log = (tmp_path / "local.log").open("w")
    local = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path / "local"),
         "--configfile", str(tmp_path / "local" / "cfg.yaml"), "--cores", "2", *TARGETS],
        env=env_with_venv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        seconds = build(REPO, TAG, WORKDIR, env)
        print(f"\nimage built in {seconds:.0f} s; {image_size(TAG, env) / 1e9:.2f} GB")
        start = time.monotonic()
        out = podman(["run", "--rm", "--network=none", f"-v={tmp_path / 'container'}:/work", "-w", "/work", TAG,
                      "snakemake", "-s", "/opt/medrobust/Snakefile", "--configfile", "/work/cfg.yaml",
                      "--cores", "2", *TARGETS], env, timeout=900, stderr=True)
        print(f"demo slice in the container: {time.monotonic() - start:.0f} s")
    finally:
        local.wait(timeout=900)
        log.close()
    assert local.returncode == 0, (tmp_path / "local.log").read_text()[-4000:]
    assert "5 of 5 steps (100%) done" in out, out[-4000:]
    files = assert_same_results(tmp_path / "local", tmp_path / "container", TARGETS)
    assert {f.name for f in files} == {"prepared.json", "prepared.npz", "metrics.json", "selected.json",
                                       "clean.json", "clean_probs.npz"}
    for rel in ("resources/synthetic/synthetic_64.npz", f"{paths.point_dir('synthetic', 'base', POINT)}/model.pt"):
        assert same_file_content(tmp_path / "local" / rel, tmp_path / "container" / rel), rel


def same_file_content(a: Path, b: Path) -> bool:
    """The same data (npz arrays) or weights (a checkpoint's tensors), whatever else they record."""
    if a.suffix == ".npz":
        x, y = comparable(a), comparable(b)
        return x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    import torch

    x, y = (torch.load(p, map_location="cpu", weights_only=False)["state_dict"] for p in (a, b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
