"""Shared fixtures: small synthetic datasets written in MedMNIST's npz format."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from medrobust.io import write_npz
from medrobust.synthetic import SyntheticSpec, generate

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
    from medrobust.data import Source, prepare

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
