"""One GPU per job on a multi-GPU node, chosen before CUDA starts (torch-free).

Snakemake's `--resources gpu=8` only bounds how many GPU jobs run at once; nothing tells each job
which GPU is its own, so without this every job would run on cuda:0. `claim_gpu()` picks one
device of those the job inherited and narrows CUDA_VISIBLE_DEVICES to it. It must run before the
first CUDA call of the process (torch.cuda.is_available() included): the CUDA driver reads
CUDA_VISIBLE_DEVICES once, when it starts, so it never imports torch itself.

- The devices a job inherited: CUDA_VISIBLE_DEVICES when set (indices or UUIDs, GPU-... / MIG-...;
  an empty value hides them all), else as many indices as `nvidia-smi -L` lists GPUs (or, without
  nvidia-smi, entries of /proc/driver/nvidia/gpus/). None at all: claim_gpu returns None and the
  caller's device check decides.
- A SLURM job given exactly one device (SLURM_JOB_ID set, one device inherited) keeps it as it is:
  SLURM's cgroup already made it this job's own, and there is nothing to choose.
- Anything else (a local run on a multi-GPU node, or a single GPU shared by several jobs) takes one
  of `jobs_per_gpu` slots of one device: an flock on `<lock dir>/<device>.slot<j>`. The lock dir is
  node-local ($MEDROBUST_GPU_LOCK_DIR, else /tmp/medrobust-gpu-locks-<uid>, mode 0700): GPUs belong
  to a node, so the locks must too, and a checkout on Lustre or NFS may lack flock or share it
  between nodes. The lock file is never deleted (as in medrobust.jobs.locks, so that no two processes
  lock two inodes of one name); the kernel drops the flock when the process dies, kill -9 included.
- Order: slots before devices (slot 0 of every device, then slot 1, ...), devices in the order they
  were inherited, so jobs spread over all GPUs before any two share one.
- All slots held: wait, polling every POLL_S seconds, with one INFO line at first and one every
  REPEAT_S seconds after.

The open lock file is kept, for the life of the process, by this module (and by the returned
GpuClaim): the caller needs to hold nothing. A second claim_gpu() in the same process returns the
first claim (a second flock of the same file, through a new open file, would wait on itself).
Slot counts only agree between jobs that name a device the same way (index or UUID) and share the
lock dir (same user, same /tmp or MEDROBUST_GPU_LOCK_DIR).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import stat
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from medrobust.core.errors import ConfigError
from medrobust.jobs.locks import BUSY, LockUnavailable, new_record, strerror, write_record

log = logging.getLogger("medrobust")

VISIBLE = "CUDA_VISIBLE_DEVICES"
LOCK_DIR_VAR = "MEDROBUST_GPU_LOCK_DIR"
PROC_GPUS = Path("/proc/driver/nvidia/gpus")
POLL_S = 2.0
REPEAT_S = 600.0
SMI_TIMEOUT_S = 30  # a wedged driver can hang nvidia-smi; a job should not hang with it


@dataclass(frozen=True)
class GpuClaim:
    """The device this process uses, as CUDA_VISIBLE_DEVICES names it (now its cuda:0).
    slot and lock_path are None where SLURM gave the job this one device (no lock taken)."""

    device: str
    slot: int | None = None
    lock_path: Path | None = None
    file: IO[str] | None = field(default=None, repr=False, compare=False)  # holds the flock


_held: GpuClaim | None = None


def count_gpus(smi: str = "nvidia-smi", proc: Path = PROC_GPUS) -> int:
    """How many GPUs this node shows, without CUDA: `nvidia-smi -L`, else the driver's /proc entries;
    0 when neither is there (a CPU node)."""
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=SMI_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        done = None
    if done is not None and done.returncode == 0:
        # MIG instances are listed indented under their GPU; only whole GPUs have indices here
        return sum(1 for line in done.stdout.splitlines() if line.startswith("GPU "))
    try:
        return sum(1 for _ in proc.iterdir())
    except OSError:
        return 0


def parse_visible(text: str) -> list[str]:
    """The devices a CUDA_VISIBLE_DEVICES value names. Like CUDA, the list ends at the first empty
    or negative entry ("-1" is the usual way to hide every GPU)."""
    devices = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry or entry.startswith("-"):
            break
        devices.append(entry)
    return devices


def visible_devices(env: Mapping[str, str], discover: Callable[[], int] = count_gpus) -> list[str]:
    """The devices this process inherited: CUDA_VISIBLE_DEVICES when set, else indices 0..n-1."""
    text = env.get(VISIBLE)
    if text is not None:
        return parse_visible(text)
    return [str(i) for i in range(discover())]


def default_lock_dir(env: Mapping[str, str]) -> Path:
    given = env.get(LOCK_DIR_VAR)
    # /tmp itself, not $TMPDIR: TMPDIR may differ between shells (or be per job), and then two runs
    # on one node would not see each other's locks
    return Path(given) if given else Path(f"/tmp/medrobust-gpu-locks-{os.getuid()}")


def ready_lock_dir(path: Path) -> Path:
    """`path` created (0700) if missing; refused unless it is a real directory of this user, since
    in a shared /tmp another user could have made it first to hold our GPUs or plant links."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as e:
        raise LockUnavailable(f"{path}: cannot create the GPU lock directory ({strerror(e)}); "
                              f"set {LOCK_DIR_VAR} to a writable node-local directory") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise LockUnavailable(f"{path}: the GPU lock directory is not a directory of this user; "
                              f"remove it or set {LOCK_DIR_VAR} to another node-local directory")
    return path


def lock_name(device: str, slot: int) -> str:
    """`<device>.slot<j>`, the device id kept to [A-Za-z0-9._-] (old MIG ids hold '/')."""
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', device)}.slot{slot}"


def try_lock(path: Path) -> IO[str] | None:
    """`path` open and flocked with this process's record in it; None when another holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise LockUnavailable(f"{path}: cannot open the GPU lock file ({strerror(e)})") from None
    f = os.fdopen(fd, "r+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.close()
        if e.errno in BUSY:
            return None
        raise LockUnavailable(f"{path}: cannot lock the GPU lock file ({strerror(e)}); "
                              f"set {LOCK_DIR_VAR} to a directory on a local disk") from None
    try:
        f.seek(0)
        f.truncate()
        write_record(f, new_record())  # who holds this GPU, for a person looking at the dir
    except OSError:
        pass  # the flock is what counts; a record that could not be written only names no one
    return f


def try_slots(directory: Path, devices: list[str], jobs_per_gpu: int) -> GpuClaim | None:
    """The first free slot, slot-major (so jobs spread over the devices first); None if all held."""
    for slot in range(jobs_per_gpu):
        for device in devices:
            path = directory / lock_name(device, slot)
            f = try_lock(path)
            if f is not None:
                return GpuClaim(device, slot, path, f)
    return None


def wait_for_slot(directory: Path, devices: list[str], jobs_per_gpu: int, timeout: float | None) -> GpuClaim:
    """A slot, once one is free; TimeoutError after `timeout` seconds (None: wait for ever)."""
    n, k = len(devices), jobs_per_gpu
    start = said = None
    while True:
        claim = try_slots(directory, devices, jobs_per_gpu)
        if claim is not None:
            return claim
        now = time.monotonic()
        start = now if start is None else start
        if said is None or now - said >= REPEAT_S:
            log.info("all %d GPU%s busy (%d job%s each); waiting for one to free (locks in %s)",
                     n, "s" if n != 1 else "", k, "s" if k != 1 else "", directory)
            said = now
        if timeout is not None and now - start >= timeout:
            raise TimeoutError(f"all {n} GPUs still busy after {timeout:g} s (locks in {directory})")
        time.sleep(POLL_S)


def claim_gpu(jobs_per_gpu: int = 1, *, timeout: float | None = None, lock_dir: str | Path | None = None,
              discover: Callable[[], int] = count_gpus) -> GpuClaim | None:
    """Make one inherited GPU this process's own and CUDA_VISIBLE_DEVICES name only it; call before
    anything touches CUDA. None when no GPU is visible. Waits while all slots are held."""
    global _held
    if jobs_per_gpu < 1:
        raise ConfigError(f"jobs_per_gpu: must be at least 1, got {jobs_per_gpu}")
    if _held is not None:
        return _held
    devices = visible_devices(os.environ, discover)
    if not devices:
        return None
    if os.environ.get("SLURM_JOB_ID") and len(devices) == 1:
        _held = GpuClaim(devices[0])
        return _held
    directory = ready_lock_dir(Path(lock_dir) if lock_dir is not None else default_lock_dir(os.environ))
    claim = wait_for_slot(directory, devices, jobs_per_gpu, timeout)
    os.environ[VISIBLE] = claim.device
    log.info("GPU %s (slot %d of %d) is this job's: %s", claim.device, claim.slot + 1, jobs_per_gpu,
             claim.lock_path)
    _held = claim
    return claim
