"""What every long job shares: interruption (SIGTERM), and its resumable state (`resumable`): a
folder held by one process (a lock) whose parts are continued only by the job whose fingerprint
(code, settings, input data, device and precision) it carries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from medrobust.jobs.locks import held

log = logging.getLogger("medrobust")


def sigterm_flag() -> Callable[[], bool]:
    """Turn SIGTERM (SLURM time limit or preemption) into a request to save state and stop."""
    requested = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        log.warning("received signal %d: saving state at the next safe point", signum)
        requested["stop"] = True

    signal.signal(signal.SIGTERM, handler)
    return lambda: requested["stop"]


def state_lock(state: str | Path) -> contextlib.AbstractContextManager[None]:
    """Hold `<state>.lock` for the block, so that two processes never work on one job's state.

    A second process refuses at once (StateBusy, naming the holder: host, pid, SLURM job) instead
    of waiting. The lock is a POSIX record lock, which the kernel (or NFS's lock daemon) releases
    when its process dies; `<state>.lock` itself stays after the block. Where the file system has
    no POSIX locks (Lustre without flock, NFS without a lock daemon), an exclusive file
    `<state>.lock.excl` takes its place, deleted after the block and taken over from a killed
    holder only when provably stale (medrobust.jobs.locks says when). A file system with neither
    gives LockUnavailable, one line.
    """
    return held(Path(f"{state}.lock"), str(state))


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content (streamed; a few hundred MB take about a second)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def fingerprint(command: str, settings: dict[str, Any], *files: str | Path, device: str | None = None,
                precision: str | None = None) -> dict[str, str]:
    """What a resumable state must match to be continued: the code that `medrobust <command>`
    runs (every package module it imports), every result-changing setting, the content of every
    input file, and, when given, the kind of device ("cpu", "cuda") and the resolved precision
    ("bf16", "fp32"): a state half-trained on a GPU in bf16 is not continued on a CPU in fp32."""
    from medrobust.jobs.codedeps import code_digest

    tag = {"code": code_digest(command),
           "settings": hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16],
           "data": hashlib.sha256("".join(file_digest(p) for p in files).encode()).hexdigest()[:16]}
    if device is not None or precision is not None:
        tag["device"] = f"{device}/{precision}"
    return tag


def fingerprint_mismatch(saved: Any, current: dict[str, str]) -> str | None:
    """None when a saved state belongs to this very job; else why not, for the log."""
    if not isinstance(saved, dict):
        return "its fingerprint.json is not a fingerprint"
    what = {"code": "other code", "settings": "other settings", "data": "other input data"}
    differ = [what[k] for k in what if saved.get(k) != current[k]]
    if "device" in current and saved.get("device") != current["device"]:
        differ.append(f"another kind of device or precision (was {saved.get('device', 'unrecorded')}, "
                      f"now {current['device']})")
    return f"it was written by {' and '.join(differ)}" if differ else None


@contextlib.contextmanager
def resumable(directory: str | Path, fingerprint: dict[str, str], what: str) -> Iterator[Path]:
    """The one resumable state of every long job (training, construction, corruption, AutoAttack):
    a folder of parts beside the job's outputs, held by this process alone (`state_lock`), kept
    only when its fingerprint.json is this job's (else cleared, the log saying why), written part
    by part (each atomically) and removed when the block ends normally, its parts being in the
    outputs then. An exception (Interrupted: a stop request) leaves it for the next attempt."""
    import shutil

    from medrobust.core.io import read_json, write_json

    directory = Path(directory)
    stamp = directory / "fingerprint.json"
    with state_lock(directory):
        why = fingerprint_mismatch(read_json(stamp), fingerprint) if stamp.exists() else None
        if why:
            log.warning("discarding the %s in %s: %s", what, directory, why)
        if why or not stamp.exists():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            write_json(stamp, fingerprint)
        yield directory
        shutil.rmtree(directory, ignore_errors=True)
