"""What produced an artefact: package versions, git commit, config hash, host, and the device."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from medrobust.jobs.device import in_use

PACKAGES = ("medrobust", "torch", "torchvision", "numpy", "medmnist", "medmnistc", "pyautoattack", "scikit-learn",
            "scipy", "pandas", "matplotlib", "snakemake")
REPO = Path(__file__).resolve().parents[3]  # the checkout (src/medrobust/jobs/provenance.py)


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(repo: Path = REPO) -> dict[str, Any]:
    """HEAD and whether the work tree had uncommitted changes (None outside a git checkout)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def record(config: Any = None) -> dict[str, Any]:
    """The provenance block written beside every result."""
    rec: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "versions": versions(),
        "git": git_commit(),
    }
    if config is not None:
        rec["config_hash"] = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    if "torch" in sys.modules:  # a light command (no torch) ran on no device; importing torch would cost seconds
        try:  # the GPUs, driver, CUDA, cuDNN and float32 settings of this process
            rec["device"] = in_use()
        except Exception as e:  # provenance is written after the work is done: it must never fail the job
            rec["device"] = {"unknown": f"{type(e).__name__}: {e}"}
    return rec


def write_invocation(config: dict[str, Any], results: str = "results") -> Path:
    """The resolved config, package versions and git commit of one invocation of the workflow,
    under results/provenance/<time>.json."""
    from medrobust.core.io import write_json

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = Path(results) / "provenance" / f"{stamp}.json"
    write_json(path, {"config": config, **record(config)})
    return path

