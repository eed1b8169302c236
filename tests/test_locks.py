"""One process per resumable state on cluster file systems: POSIX locks where they work, an
exclusive file where they do not (Lustre without flock, NFS without a lock daemon), taken over
only from a provably dead holder, and one line when neither can be had."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from medrobust.core.errors import DataError
from medrobust.jobs.locks import LockUnavailable, StateBusy, retire
from medrobust.jobs.state import state_lock

ELSEWHERE = "node-elsewhere-017"
HOLD = """
import sys, time
from medrobust.jobs.state import state_lock
with state_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""
# each process patches lockf away, waits for the go file, then tries once
CONTEND = """
import errno, fcntl, os, sys, time
def no_posix_locks(*args):
    raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
fcntl.lockf = no_posix_locks
from medrobust.jobs.locks import StateBusy
from medrobust.jobs.state import state_lock
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.005)
try:
    with state_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(3)
except StateBusy:
    print("busy", flush=True)
"""


def failing(code: int):
    def lockf(*args: object) -> None:
        raise OSError(code, os.strerror(code))
    return lockf


@pytest.fixture(autouse=True)
def outside_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_CLUSTER_NAME", raising=False)


@pytest.fixture
def no_posix_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fcntl, "lockf", failing(errno.ENOLCK))


@pytest.fixture
def live_pid() -> Iterator[int]:
    sleeper = subprocess.Popen(["sleep", "60"])
    yield sleeper.pid
    sleeper.kill()
    sleeper.wait()


@pytest.fixture
def dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def squeue_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    """A stand-in squeue first on PATH; it records its arguments in squeue.args."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/squeue.args\n{script}\n')
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "squeue.args"


def leave_holder(state: Path, host: str, pid: int, job: str | None = None) -> dict[str, object]:
    """A fallback lock file as a killed holder leaves it."""
    record = {"host": host, "pid": pid, "slurm_job": job, "slurm_cluster": None, "token": uuid.uuid4().hex}
    Path(f"{state}.lock.excl").write_text(json.dumps(record))
    return record


def holds_it(state: Path) -> bool:
    """This process's record is in the fallback lock file."""
    record = json.loads(Path(f"{state}.lock.excl").read_text())
    return record["pid"] == os.getpid() and record["host"] == platform.node()


# ---- POSIX locks ------------------------------------------------------------------------

def test_a_process_holding_the_posix_lock_excludes_another(tmp_path: Path) -> None:
    state = tmp_path / "state.pt"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(state)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StateBusy, match=rf"state.pt: another process \(pid {holder.pid} on "):
            with state_lock(state):
                pass
    finally:
        holder.kill()
        holder.wait()
    with state_lock(state):  # the kernel released the dead holder's lock
        assert json.loads(Path(f"{state}.lock").read_text())["pid"] == os.getpid()


def test_the_lock_file_stays_and_the_next_holder_names_itself(tmp_path: Path) -> None:
    state = tmp_path / "state.pt"
    Path(f"{state}.lock").write_text("pid 1 on some-old-node, a longer stale text than any record")
    with state_lock(state):
        first = json.loads(Path(f"{state}.lock").read_text())
    assert Path(f"{state}.lock").exists()  # never deleted: a deleted locked file lets two processes in
    with state_lock(state):
        second = json.loads(Path(f"{state}.lock").read_text())
    assert first["pid"] == second["pid"] == os.getpid() and first["token"] != second["token"]
    assert not Path(f"{state}.lock.excl").exists()


def test_another_lock_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fcntl, "lockf", failing(errno.EIO))
    with pytest.raises(LockUnavailable) as e:
        with state_lock(tmp_path / "state.pt"):
            pass
    assert "\n" not in str(e.value) and os.strerror(errno.EIO) in str(e.value) and "state.pt.lock" in str(e.value)


# ---- the exclusive file where POSIX locks are unsupported -------------------------------

@pytest.mark.parametrize("code", [errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL])
def test_without_posix_locks_an_exclusive_file_is_used(code: int, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fcntl, "lockf", failing(code))
    state = tmp_path / "state.pt"
    with state_lock(state):
        assert holds_it(state)
        me = rf"pid {os.getpid()} on {re.escape(platform.node())}"
        with pytest.raises(StateBusy, match=rf"state.pt: another process \({me}\) is working"):
            with state_lock(state):
                pass
        assert holds_it(state)  # the refused attempt left the holder's file alone
    assert not Path(f"{state}.lock.excl").exists()
    with state_lock(state):
        assert holds_it(state)


def test_the_holder_is_named_with_its_slurm_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                no_posix_locks: None) -> None:
    squeue_prints(tmp_path, monkeypatch, "echo RUNNING")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    state = tmp_path / "state.pt"
    with state_lock(state):
        with pytest.raises(StateBusy, match=r", SLURM job 4242\) is working"):
            with state_lock(state):
                pass


def test_a_dead_pid_on_this_host_is_taken_over(tmp_path: Path, dead_pid: int, no_posix_locks: None,
                                               caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state.pt"
    leave_holder(state, platform.node(), dead_pid)
    with caplog.at_level("WARNING", logger="medrobust"):
        with state_lock(state):
            assert holds_it(state)
    assert f"took over the lock of pid {dead_pid} on {platform.node()}: process {dead_pid} no longer exists" \
        in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt.lock"]  # nothing set aside is left


def test_a_live_pid_on_this_host_refuses(tmp_path: Path, live_pid: int, no_posix_locks: None) -> None:
    state = tmp_path / "state.pt"
    record = leave_holder(state, platform.node(), live_pid)
    refusal = rf"\(pid {live_pid} on .*; if it is no longer running, delete .*state.pt.lock.excl$"
    with pytest.raises(StateBusy, match=refusal):
        with state_lock(state):
            pass
    assert json.loads(Path(f"{state}.lock.excl").read_text()) == record


def test_another_host_without_squeue_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             no_posix_locks: None) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    state = tmp_path / "state.pt"
    leave_holder(state, ELSEWHERE, 1234, job="987")
    with pytest.raises(StateBusy, match=rf"\(pid 1234 on {ELSEWHERE}, SLURM job 987\)"):
        with state_lock(state):
            pass


def test_another_host_without_a_slurm_job_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  no_posix_locks: None) -> None:
    args = squeue_prints(tmp_path, monkeypatch, "")
    state = tmp_path / "state.pt"
    leave_holder(state, ELSEWHERE, 1234)
    with pytest.raises(StateBusy, match=rf"\(pid 1234 on {ELSEWHERE}\)"):
        with state_lock(state):
            pass
    assert not args.exists()  # no job to ask about


@pytest.mark.parametrize("script", ["", "echo COMPLETED", "echo TIMEOUT",
                                    "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1"])
def test_another_host_whose_slurm_job_ended_is_taken_over(script: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, no_posix_locks: None,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    args = squeue_prints(tmp_path, monkeypatch, script)
    state = tmp_path / "state.pt"
    leave_holder(state, ELSEWHERE, 1234, job="987")
    with caplog.at_level("WARNING", logger="medrobust"):
        with state_lock(state):
            assert holds_it(state)
    assert args.read_text().split() == ["-h", "-j", "987", "-o", "%T"]
    assert f"took over the lock of pid 1234 on {ELSEWHERE}, SLURM job 987: SLURM job 987 is no longer running" \
        in caplog.text


@pytest.mark.parametrize("script", ["echo RUNNING", "echo PENDING", "echo COMPLETING",
                                    "echo 'squeue: error: Unable to contact slurm controller' >&2; exit 1"])
def test_another_host_whose_slurm_job_may_run_refuses(script: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, no_posix_locks: None) -> None:
    squeue_prints(tmp_path, monkeypatch, script)
    state = tmp_path / "state.pt"
    record = leave_holder(state, ELSEWHERE, 1234, job="987")
    with pytest.raises(StateBusy, match=r"SLURM job 987\)"):
        with state_lock(state):
            pass
    assert json.loads(Path(f"{state}.lock.excl").read_text()) == record


def test_a_job_of_another_slurm_cluster_is_not_asked_about(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           no_posix_locks: None) -> None:
    """Its id means another job (or none) to this cluster's squeue."""
    args = squeue_prints(tmp_path, monkeypatch, "")
    monkeypatch.setenv("SLURM_CLUSTER_NAME", "here")
    state = tmp_path / "state.pt"
    leave_holder(state, ELSEWHERE, 1234, job="987")
    with pytest.raises(StateBusy):
        with state_lock(state):
            pass
    assert not args.exists()


@pytest.mark.parametrize("content", ["", "not json", '{"host": "x", "pid": 0, "token": "t"}'])
def test_an_unreadable_lock_file_refuses(content: str, tmp_path: Path, no_posix_locks: None) -> None:
    """Empty is also what a holder's file looks like for a moment after its creation."""
    state = tmp_path / "state.pt"
    Path(f"{state}.lock.excl").write_text(content)
    with pytest.raises(StateBusy, match=r"another process \(unknown process\)"):
        with state_lock(state):
            pass


def test_a_takeover_is_won_by_one_process(tmp_path: Path, dead_pid: int) -> None:
    state, go = tmp_path / "state.pt", tmp_path / "go"
    leave_holder(state, platform.node(), dead_pid)
    contenders = [subprocess.Popen([sys.executable, "-c", CONTEND, str(state), str(go)], stdout=subprocess.PIPE,
                                   text=True) for _ in range(8)]
    try:
        assert all(c.stdout.readline().strip() == "ready" for c in contenders)
        go.touch()
        outcomes = sorted(c.stdout.readline().strip() for c in contenders)
    finally:
        for c in contenders:
            c.kill()
            c.wait()
    assert outcomes == ["busy"] * 7 + ["held"]


def test_retiring_leaves_a_file_that_changed_hands(tmp_path: Path) -> None:
    """A process that judged the file stale a moment ago must not remove its new holder's."""
    path = tmp_path / "state.pt.lock.excl"
    stale = {"host": ELSEWHERE, "pid": 1234, "slurm_job": None, "token": "old"}
    fresh = {**stale, "token": "new"}
    path.write_text(json.dumps(fresh))
    assert not retire(path, stale)
    Path(f"{path}.stale-new").write_text("another process is retiring it")
    assert not retire(path, fresh)
    assert json.loads(path.read_text()) == fresh
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, f"{path.name}.stale-new"]


# ---- neither ----------------------------------------------------------------------------

def test_no_lock_at_all_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fcntl, "lockf", failing(errno.ENOSYS))
    real_open = os.open

    def read_only_fs(path: str, flags: int, *args: int) -> int:
        if flags & os.O_EXCL:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only_fs)
    with pytest.raises(LockUnavailable) as e:
        with state_lock(tmp_path / "state.pt"):
            pass
    message = str(e.value)
    assert isinstance(e.value, DataError) and "\n" not in message
    assert message.startswith(f"{tmp_path / 'state.pt.lock.excl'}: cannot lock this job's state")
    assert os.strerror(errno.ENOSYS) in message and os.strerror(errno.EROFS) in message
    assert "file system with locking" in message
