"""One process per resumable state, on the file systems clusters have (local disks, NFS, Lustre).

`held(path, what)` holds the lock `path` (`<state>.lock`) for a block, or refuses at once:

- A POSIX record lock (fcntl.lockf) on `path`, first. The kernel or the NFS lock daemon releases
  it when its process dies, so it never goes stale. The file is never deleted: deleting a locked
  file lets a late opener lock the orphaned inode while a newcomer locks a new file at the same
  name, and both would work on the state. It stays, empty or naming its last holder; each new
  holder writes its own record into it.
- Where the file system has no POSIX locks (Lustre mounted without flock, NFS without a lock
  daemon: lockf fails with UNSUPPORTED), an exclusive file `<path>.excl`, created with
  O_CREAT|O_EXCL and holding its owner's record (JSON: host, pid, SLURM job and cluster, token).
  Its owner deletes it after the block. A killed owner leaves it behind; it is taken over only
  when provably stale: its host is this one and its pid is gone, or its SLURM job (on this
  SLURM cluster) has ended according to squeue. Anything else, squeue missing or failing
  included, refuses, naming the file to delete by hand.

Refusals are StateBusy (naming the holder); a file system that allows neither lock gives
LockUnavailable. Both are DataErrors: one line for the user, exit code 2.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import platform
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from medrobust.core.errors import DataError

log = logging.getLogger("medrobust")

BUSY = frozenset({errno.EACCES, errno.EAGAIN})
# POSIX (fcntl, F_SETLK) gives EINVAL when "fildes refers to a file that does not support locking";
# lockf's lock request itself is always valid, so EINVAL can only mean that here
UNSUPPORTED = frozenset({errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL})
# squeue states of a job whose processes are all gone; others (PENDING, COMPLETING, ...) are not proof
ENDED = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
                   "PREEMPTED", "TIMEOUT"})
SQUEUE_TIMEOUT_S = 60
TAKEOVER_TRIES = 5
FIX = ("put the results directory on a file system with locking (a local disk, NFS with a lock daemon, "
       "Lustre mounted with -o flock)")


class StateBusy(DataError):
    """Another process holds the lock of a resumable state."""


class LockUnavailable(DataError):
    """No lock can be had: the file system allows neither kind, or the lock file cannot be written."""


class PosixLocksUnsupported(OSError):
    """lockf failed with an errno of UNSUPPORTED: use the exclusive file instead."""


def new_record() -> dict[str, Any]:
    """Who holds a lock; the token tells this holder's file from any other with the same pid."""
    return {"host": platform.node(), "pid": os.getpid(), "slurm_job": os.environ.get("SLURM_JOB_ID"),
            "slurm_cluster": os.environ.get("SLURM_CLUSTER_NAME"), "token": uuid.uuid4().hex}


def parse_record(text: str | None) -> dict[str, Any] | None:
    """A holder record read back, or None when absent, partly written or not one."""
    try:
        r = json.loads(text or "")
    except ValueError:
        return None
    valid = (isinstance(r, dict) and isinstance(r.get("host"), str) and isinstance(r.get("token"), str)
             and type(r.get("pid")) is int and r["pid"] > 0  # os.kill(0 or -1, ...) would mean a group
             and (r.get("slurm_job") is None or re.fullmatch(r"[0-9]+", str(r["slurm_job"])) is not None))
    return r if valid else None


def describe(record: dict[str, Any] | None) -> str:
    if record is None:
        return "unknown process"
    job = f", SLURM job {record['slurm_job']}" if record.get("slurm_job") else ""
    return f"pid {record['pid']} on {record['host']}{job}"


def busy(what: str, holder: dict[str, Any] | None, delete: Path | None = None) -> StateBusy:
    hint = f"; if it is no longer running, delete {delete}" if delete else ""
    return StateBusy(f"{what}: another process ({describe(holder)}) is working on this job's state; "
                     f"wait for it to finish or stop it, then run again{hint}")


def strerror(e: OSError) -> str:
    return e.strerror or str(e)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # gone meanwhile (released) or unreadable: no holder to name
        return None


def write_record(f: IO[str], record: dict[str, Any]) -> None:
    f.write(json.dumps(record))
    f.flush()
    os.fsync(f.fileno())  # so that a refused process on another NFS client can name the holder


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def slurm_job_ended(job: str) -> bool:
    """True only when squeue says so: the job has an ENDED state or is no longer known."""
    try:
        done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True,
                              timeout=SQUEUE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return False
    if done.returncode != 0:
        # squeue's answer for one job id already purged from the controller (MinJobAge after its end)
        return "Invalid job id specified" in done.stderr
    state = done.stdout.split()
    return not state or state[0] in ENDED


def stale_reason(holder: dict[str, Any] | None) -> str | None:
    """Why the holder provably no longer runs, or None when that cannot be proven."""
    if holder is None:
        return None
    if holder["host"] == platform.node() and not pid_alive(holder["pid"]):
        return f"process {holder['pid']} no longer exists on this host"
    job = holder.get("slurm_job")
    # a job id is only meaningful to the squeue of the cluster that ran it (file systems are shared)
    if job and holder.get("slurm_cluster") == os.environ.get("SLURM_CLUSTER_NAME") and slurm_job_ended(str(job)):
        return f"SLURM job {job} is no longer running"
    return None


def posix_locked(path: Path, what: str, me: dict[str, Any]) -> IO[str]:
    """`path` open and POSIX-locked, with `me` written into it; or StateBusy, PosixLocksUnsupported,
    LockUnavailable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
    except OSError as e:
        raise LockUnavailable(f"{path}: cannot create the lock file ({strerror(e)}); "
                              "check that the results directory is writable") from None
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.seek(0)
        holder = parse_record(f.read()) if e.errno in BUSY else None
        f.close()
        if e.errno in BUSY:
            raise busy(what, holder) from None
        if e.errno in UNSUPPORTED:
            raise PosixLocksUnsupported(e.errno, strerror(e)) from None
        raise LockUnavailable(f"{path}: cannot lock {what} ({strerror(e)}); {FIX}") from None
    try:
        f.seek(0)
        f.truncate()  # the last holder's record, if any, is not ours to keep
        write_record(f, me)
    except OSError as e:
        f.close()
        raise LockUnavailable(f"{path}: cannot write the lock file ({strerror(e)})") from None
    return f


def create_exclusive(path: Path, me: dict[str, Any], why_not_posix: str) -> bool:
    """Create `path` holding `me`; False when it exists already."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as e:
        raise LockUnavailable(f"{path}: cannot lock this job's state: the file system has neither POSIX locks "
                              f"({why_not_posix}) nor exclusive file creation ({strerror(e)}); {FIX}") from None
    try:
        with os.fdopen(fd, "w") as f:
            write_record(f, me)
    except OSError as e:
        path.unlink(missing_ok=True)
        raise LockUnavailable(f"{path}: cannot write the lock file ({strerror(e)})") from None
    return True


def retire(path: Path, stale: dict[str, Any]) -> bool:
    """Delete the lock file `path` if it still is the stale holder's; False when another process got
    there first. Renaming it aside would not do: a process that judged it stale a moment ago could
    then move away the fresh file of whoever retired it first. Instead a second name, unique to
    that stale record, is created with link(), which succeeds for one process only; that process
    checks the name points at the stale record and only then deletes `path`."""
    aside = Path(f"{path}.stale-{stale['token']}")
    try:
        os.link(path, aside)
    except (FileExistsError, FileNotFoundError):
        return False
    except OSError as e:
        raise LockUnavailable(f"{path}: its holder ({describe(stale)}) is gone, but the file cannot be "
                              f"retired ({strerror(e)}); delete it, then run again") from None
    try:
        pinned = parse_record(read_text(aside))
        if pinned is None or pinned["token"] != stale["token"]:
            return False  # `path` had changed hands already: `aside` named the new holder's file
        path.unlink()
        return True
    finally:
        aside.unlink(missing_ok=True)


def take_exclusive(path: Path, what: str, me: dict[str, Any], why_not_posix: str) -> None:
    """Create the exclusive file `path`, taking it over from a provably stale holder; or StateBusy."""
    holder = None
    for _ in range(TAKEOVER_TRIES):
        if create_exclusive(path, me, why_not_posix):
            return
        text = read_text(path)
        if text is None:
            continue  # deleted by its holder between our create and read: try again
        holder = parse_record(text)
        why = stale_reason(holder)
        if why is None:
            raise busy(what, holder, path)
        if retire(path, holder):
            log.warning("%s: took over the lock of %s: %s", path, describe(holder), why)
    raise busy(what, holder, path)


def release_exclusive(path: Path, me: dict[str, Any]) -> None:
    """Delete `path` if it still holds `me` (after a manual deletion it may be another's now)."""
    current = parse_record(read_text(path))
    if current is not None and current["token"] == me["token"]:
        path.unlink(missing_ok=True)
    else:
        log.warning("%s: the lock file was no longer this process's at release; left as it is", path)


@contextlib.contextmanager
def held(path: Path, what: str) -> Iterator[None]:
    """Hold the lock `path` for the block (POSIX lock, else `<path>.excl`), or refuse at once."""
    me = new_record()
    try:
        f = posix_locked(path, what, me)
    except PosixLocksUnsupported as e:
        excl = Path(f"{path}.excl")
        log.info("%s: no POSIX locks on this file system (%s); using %s", path, e.strerror, excl)
        take_exclusive(excl, what, me, strerror(e))
        try:
            yield
        finally:
            release_exclusive(excl, me)
        return
    with f:  # closing the file releases the POSIX lock; the file itself stays
        yield
