"""Shared fixtures: small synthetic datasets written in MedMNIST's npz format."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medrobust.core.io import write_npz
from medrobust.data.synthetic import SyntheticSpec, generate

REPO = Path(__file__).resolve().parents[1]
BIN = Path(shutil.which("medrobust") or REPO / ".venv" / "bin" / "medrobust").parent


def env_with_venv() -> dict[str, str]:
    """The environment for subprocesses: the venv's console scripts first on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="session")
def small_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-class grey synthetic dataset at 64 px (400/100/100 images)."""
    path = tmp_path_factory.mktemp("data") / "small_64.npz"
    write_npz(path, generate(SyntheticSpec(n_train=400, n_val=100, n_test=100)))
    return path


@pytest.fixture(scope="session")
def prepared_small(small_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medrobust.data.prepare import Source, prepare

    out = tmp_path_factory.mktemp("prep") / "prepared.npz"
    prepare(Source(small_npz, 4, 1, 64), out, 32)
    return out


def breastmnist_like(root: Path, n_train: int = 546) -> Path:
    """A file shaped exactly like MedMNIST's breastmnist_64.npz (546/78/156 grey images, 2 classes)."""
    spec = SyntheticSpec(n_classes=2, n_train=n_train, n_val=78, n_test=156, seed=3)
    path = root / "breastmnist_64.npz"
    write_npz(path, generate(spec))
    return path


def corrupt(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] + np.random.default_rng(0).bytes(100))


@pytest.fixture()
def http_dir(tmp_path: Path):
    """A folder served over HTTP on 127.0.0.1 (only loopback); yields (folder, base URL)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def prepared_medium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4-class grey synthetic set at 32 px with 3000/200/200 images: enough SGD steps for a
    tiny model to pick up the nonrobust texture, as natural-image models do."""
    from medrobust.data.prepare import Source, prepare

    root = tmp_path_factory.mktemp("medium")
    write_npz(root / "medium_64.npz", generate(SyntheticSpec(n_train=3000, n_val=200, n_test=200, seed=1)))
    prepare(Source(root / "medium_64.npz", 4, 1, 64), root / "prepared.npz", 32)
    return root / "prepared.npz"


@pytest.fixture(scope="session")
def tiny_model(prepared_medium: Path, tmp_path_factory: pytest.TempPathFactory):
    """A standard WRN-10-1 trained for 10 epochs on prepared_medium (about 30 s on 2 cores).
    It learns the nonrobust texture (validation accuracy ~100%, above the shapes' 81%)."""
    import torch

    from medrobust.core.splits import load_split
    from medrobust.train.loop import Data, fit

    dev = torch.device("cpu")
    tx, ty = load_split(prepared_medium, "train", dev, 4)
    vx, vy = load_split(prepared_medium, "val", dev, 4)
    cfg = train_config(lr=0.1, batch_size=64, epochs=10, depth=10, width=1, precision="fp32", ema_decay=0.9)
    model, _, _, _, last = fit(cfg, Data(tx, ty, vx, vy, 4), tmp_path_factory.mktemp("tiny") / "s")
    if last is not None:  # its last epoch, as a base model keeps
        model.load_state_dict(last)
    return model.eval()


@pytest.fixture(scope="session")
def checkpoint(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_model saved as a medrobust checkpoint (4 classes, grey)."""
    from medrobust.core.network import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, {"depth": 10, "width": 1, "n_classes": 4, "n_channels": 1, "activation": "swish",
                           "mean": [0.0], "std": [1.0]},  # the real ones: buffers in the state dict
                    tiny_model.state_dict(), hparams={"precision": "fp32"})
    return path


def train_config(stage: str = "base", **given: Any) -> Any:
    """A TrainConfig of `stage` at the schema's defaults (medrobust.core.hparams.defaults), with `given`."""
    from medrobust.core.hparams import defaults
    from medrobust.train.loop import TrainConfig

    return TrainConfig.from_dict(defaults(stage, **given))


def tag(name: str) -> dict[str, str]:
    """A job fingerprint (medrobust.jobs.state.fingerprint) for tests that run jobs by hand."""
    return {"code": name, "settings": name, "data": name}


def sigterm_when_logged(cmd: list[str], log: Path, marker: str, env: dict[str, str]) -> int:
    """Run `cmd` with stderr to `log`; send SIGTERM (as SLURM does at a time limit or preemption)
    once `marker` appears there; return the exit code."""
    import signal
    import subprocess
    import time

    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stderr=f, env=env)
        deadline = time.monotonic() + 300
        while marker not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, f"ended before '{marker}' was logged"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=300)


def slice_config(grids: dict, **extra: object) -> dict:
    """A one-dataset synthetic study (WRN-10-1, fp32, CPU, one thread per job) small enough to run a
    slice of the DAG in a minute or two: the container and SLURM tests' config."""
    return {
        "datasets": {"synthetic": {"source": "synthetic", "grid": "tiny", "synthetic": {
            "n_classes": 4, "n_channels": 1, "n_train": 400, "n_val": 100, "n_test": 100, "seed": 0}}},
        "eps": [4],
        "model": {"depth": 10, "width": 1},
        "training": {"precision": "fp32"},
        "threads": {"train": 1, "construct": 1, "evaluate": 1},
        **extra,
        "compute": {"device": "cpu", **extra.get("compute", {})},  # (the SLURM test's GPU is fake)
        "grids": grids,
    }
