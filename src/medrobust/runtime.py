"""What every job shares: device and precision, seeds, image conversion, eval mode, interruption (SIGTERM),
one process per resumable state (a lock), and the fingerprint a resumable state must match.

Torch is imported inside the functions that need it, so that light commands (select, tables)
and the scheduler can import this module cheaply.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from medrobust.locks import held

if TYPE_CHECKING:
    import torch

log = logging.getLogger("medrobust")


class Interrupted(RuntimeError):
    """A job stopped on request (SIGTERM) after saving its state."""


def derive_seed(*parts: int) -> int:
    """An independent 32-bit seed for each tuple of integers (seed, purpose, index, ...)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is bf16 on CUDA and fp32 elsewhere; explicit choices are kept."""
    import torch

    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


EVALUATION_PRECISION = "fp32"


def exact_evaluation() -> str:
    """Every test-time number (clean, corrupted, AutoAttack, the figures' predictions) at one
    precision: fp32 with TF32 off and cudnn.benchmark off (no autotuned algorithm choice), so a
    checkpoint's test numbers agree across nodes up to argmax flips of near ties. Returns the
    precision to pass on. Training keeps bf16."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.set_float32_matmul_precision("highest")
    return EVALUATION_PRECISION


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


def state_lock(state: str | Path) -> contextlib.AbstractContextManager[None]:
    """Hold `<state>.lock` for the block, so that two processes never work on one job's state.

    A second process refuses at once (StateBusy, naming the holder: host, pid, SLURM job) instead
    of waiting. The lock is a POSIX record lock, which the kernel (or NFS's lock daemon) releases
    when its process dies; `<state>.lock` itself stays after the block. Where the file system has
    no POSIX locks (Lustre without flock, NFS without a lock daemon), an exclusive file
    `<state>.lock.excl` takes its place, deleted after the block and taken over from a killed
    holder only when provably stale (medrobust.locks says when). A file system with neither
    gives LockUnavailable, one line.
    """
    return held(Path(f"{state}.lock"), str(state))


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content (streamed; a few hundred MB take about a second)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def fingerprint(command: str, settings: dict[str, Any], *files: str | Path, device: str | None = None,
                precision: str | None = None) -> dict[str, str]:
    """What a resumable state must match to be continued: the code that `medrobust <command>`
    runs (every package module it imports), every result-changing setting, the content of every
    input file, and, when given, the kind of device ("cpu", "cuda") and the resolved precision
    ("bf16", "fp32"): a state half-trained on a GPU in bf16 is not continued on a CPU in fp32."""
    from medrobust.codedeps import code_digest

    tag = {"code": code_digest(command),
           "settings": hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16],
           "data": hashlib.sha256("".join(file_digest(p) for p in files).encode()).hexdigest()[:16]}
    if device is not None or precision is not None:
        tag["device"] = f"{device}/{precision}"
    return tag


def fingerprint_mismatch(saved: Any, current: dict[str, str]) -> str | None:
    """None when a saved state belongs to this very job; else why not, for the log."""
    if not isinstance(saved, dict):
        return "it was written by an older medrobust without a code fingerprint"
    what = {"code": "other code", "settings": "other settings", "data": "other input data"}
    differ = [what[k] for k in what if saved.get(k) != current[k]]
    if "device" in current and saved.get("device") != current["device"]:
        differ.append(f"another kind of device or precision (was {saved.get('device', 'unrecorded')}, "
                      f"now {current['device']})")
    return f"it was written by {' and '.join(differ)}" if differ else None


def claim_state_dir(directory: Path, fingerprint: dict[str, str], what: str) -> None:
    """Make `directory` (a job's resumable parts) this job's: keep its `what` if it carries this
    fingerprint (fingerprint.json), else clear it, saying why in the log."""
    import shutil

    from medrobust.io import read_json, write_json

    stamp = directory / "fingerprint.json"
    if stamp.exists():
        why = fingerprint_mismatch(read_json(stamp), fingerprint)
        if why is None:
            return
        log.warning("discarding the %s in %s: %s", what, directory, why)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    write_json(stamp, fingerprint)
