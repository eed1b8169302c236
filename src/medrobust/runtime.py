"""What every job shares: device and precision, seeds, image conversion, eval mode, interruption (SIGTERM),
one process per resumable state (a lock), and the fingerprint a resumable state must match.

Torch is imported inside the functions that need it, so that light commands (select, tables)
and the scheduler can import this module cheaply.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import platform
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from medrobust.errors import DataError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("medrobust")


class Interrupted(RuntimeError):
    """A job stopped on request (SIGTERM) after saving its state."""


class StateBusy(DataError):
    """Another process holds the lock of a resumable state."""


def derive_seed(*parts: int) -> int:
    """An independent 32-bit seed for each tuple of integers (seed, purpose, index, ...)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def pick_device(name: str = "auto") -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is bf16 on CUDA and fp32 elsewhere; explicit choices are kept."""
    import torch

    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast where asked (weights stay fp32); a no-op for fp32."""
    import torch

    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@overload
def as_float(x: torch.Tensor) -> torch.Tensor: ...
@overload
def as_float(x: np.ndarray) -> np.ndarray: ...
def as_float(x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Images stored as uint8 (0..255) or float (0..1) to float32 in [0, 1]: tensors or arrays."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float32) / 255 if x.dtype == np.uint8 else x.astype(np.float32)
    import torch

    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module, freeze: bool = False) -> Iterator[torch.nn.Module]:
    """The model in eval mode for the block (batch-norm statistics fixed, no dropout), and with
    `freeze` its parameters without gradients; both restored afterwards, even on an error."""
    was_training = model.training
    grads_were = [p.requires_grad for p in model.parameters()]
    model.eval()
    if freeze:
        model.requires_grad_(False)
    try:
        yield model
    finally:
        for p, g in zip(model.parameters(), grads_were):
            p.requires_grad_(g)
        model.train(was_training)


def sigterm_flag() -> Callable[[], bool]:
    """Turn SIGTERM (SLURM time limit or preemption) into a request to save state and stop."""
    requested = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        log.warning("received signal %d: saving state at the next safe point", signum)
        requested["stop"] = True

    signal.signal(signal.SIGTERM, handler)
    return lambda: requested["stop"]


@contextlib.contextmanager
def state_lock(state: str | Path) -> Iterator[None]:
    """Hold `<state>.lock` for the block, so that two processes never work on one job's state.

    A second process refuses at once (StateBusy, naming the holder) instead of waiting. POSIX
    record locks are released by the kernel when a process dies, so a killed job leaves no stale
    lock; they also work on NFS with a lock daemon, as cluster home and scratch file systems have.
    """
    path = Path(f"{state}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            f.seek(0)
            holder = f.read().strip() or "unknown process"
            raise StateBusy(f"{state}: another process ({holder}) is working on this job's state; "
                            "wait for it to finish or stop it, then run again") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {platform.node()}")
        f.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content (streamed; a few hundred MB take about a second)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def fingerprint(command: str, settings: dict[str, Any], *files: str | Path) -> dict[str, str]:
    """What a resumable state must match to be continued: the code that `medrobust <command>`
    runs (every package module it imports), every result-changing setting, and the content
    of every input file."""
    from medrobust.codedeps import code_digest

    return {"code": code_digest(command),
            "settings": hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16],
            "data": hashlib.sha256("".join(file_digest(p) for p in files).encode()).hexdigest()[:16]}


def fingerprint_mismatch(saved: Any, current: dict[str, str]) -> str | None:
    """None when a saved state belongs to this very job; else why not, for the log."""
    if not isinstance(saved, dict):
        return "it was written by an older medrobust without a code fingerprint"
    what = {"code": "other code", "settings": "other settings", "data": "other input data"}
    differ = [what[k] for k in what if saved.get(k) != current[k]]
    return f"it was written by {' and '.join(differ)}" if differ else None
