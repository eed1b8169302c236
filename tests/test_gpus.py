"""One GPU per job: concurrent processes (real ones, CPU only) each take a different inherited
device through flocks in a node-local directory, wait while all are held, get one freed by kill -9,
and leave a SLURM job's single GPU alone."""

from __future__ import annotations

import os
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medrobust.jobs import gpus
from medrobust.jobs.gpus import (claim_gpu, count_gpus, default_lock_dir, lock_name, parse_visible, ready_lock_dir,
                            visible_devices)
from medrobust.jobs.locks import LockUnavailable

# claims (default polling, 2 s), prints what it got, then holds the GPU until the stop file appears
CLAIM = """
import logging, os, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from medrobust.jobs.gpus import claim_gpu
c = claim_gpu(int(sys.argv[2]), lock_dir=sys.argv[1], timeout=float(sys.argv[4]) or None)
print(c.device, c.slot, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
while not os.path.exists(sys.argv[3]):
    time.sleep(0.05)
"""
WAITING = "waiting for one to free"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("MEDROBUST_GPU_LOCK_DIR", raising=False)
    yield
    forget_claim()


def forget_claim() -> None:
    """Let the next test claim afresh: the claim a process holds for its life, dropped."""
    if gpus._held is not None and gpus._held.file is not None:
        gpus._held.file.close()
    gpus._held = None


class Job:
    """One claiming process; stderr goes to a file, read for the waiting line."""

    def __init__(self, tmp: Path, n: int, visible: str, jobs_per_gpu: int = 1, timeout: float = 0) -> None:
        self.err = tmp / f"job{n}.err"
        env = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
        env["CUDA_VISIBLE_DEVICES"] = visible
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", CLAIM, str(tmp / "locks"), str(jobs_per_gpu),
                                          str(tmp / "stop"), str(timeout)], stdout=subprocess.PIPE, stderr=err,
                                         text=True, env=env)

    def claimed(self, within: float) -> tuple[str, str, str] | None:
        """(device, slot, CUDA_VISIBLE_DEVICES) once printed; None if nothing came within `within` s."""
        ready, _, _ = select.select([self.proc.stdout], [], [], within)
        if not ready:
            return None
        device, slot, visible = self.proc.stdout.readline().split()
        return device, slot, visible

    def waits(self, within: float) -> bool:
        end = time.monotonic() + within
        while time.monotonic() < end:
            if WAITING in self.err.read_text():
                return True
            time.sleep(0.05)
        return False


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[list[Job]]:
    started: list[Job] = []
    yield started
    (tmp_path / "stop").touch()
    for job in started:
        try:
            job.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            job.proc.kill()
            job.proc.wait()


def test_four_jobs_take_four_gpus_and_a_fifth_gets_the_one_freed_by_kill_9(tmp_path: Path, jobs: list[Job]) -> None:
    jobs += [Job(tmp_path, n, "0,1,2,3") for n in range(4)]
    got = [job.claimed(20) for job in jobs]
    assert sorted(g[0] for g in got) == ["0", "1", "2", "3"]
    assert all(device == visible and slot == "0" for device, slot, visible in got)
    jobs.append(Job(tmp_path, 4, "0,1,2,3"))
    assert jobs[4].waits(20), jobs[4].err.read_text()
    assert jobs[4].err.read_text().count(WAITING) == 1
    assert "all 4 GPUs busy (1 job each)" in jobs[4].err.read_text()
    assert jobs[4].claimed(0.5) is None
    os.kill(jobs[2].proc.pid, signal.SIGKILL)
    jobs[2].proc.wait()
    start = time.monotonic()
    fifth = jobs[4].claimed(10)
    assert fifth is not None and fifth[0] == got[2][0], jobs[4].err.read_text()
    assert time.monotonic() - start < 5  # polled every 2 s
    assert sorted(p.name for p in (tmp_path / "locks").iterdir()) == [f"{d}.slot0" for d in "0123"]
    assert stat.S_IMODE((tmp_path / "locks").stat().st_mode) == 0o700


def test_two_jobs_per_gpu_share_each_device_and_a_fifth_waits(tmp_path: Path, jobs: list[Job]) -> None:
    jobs += [Job(tmp_path, n, "0,1", jobs_per_gpu=2) for n in range(4)]
    got = sorted(job.claimed(20)[:2] for job in jobs)
    assert got == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    late = Job(tmp_path, 4, "0,1", jobs_per_gpu=2, timeout=1)
    jobs.append(late)
    assert late.proc.wait(timeout=20) != 0
    text = late.err.read_text()
    assert "all 2 GPUs busy (2 jobs each); " + WAITING in text and "TimeoutError" in text


def test_one_gpu_without_slurm_is_still_locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               jobs: list[Job]) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    claim = claim_gpu(lock_dir=tmp_path / "locks")
    assert claim is not None and (claim.device, claim.slot) == ("0", 0)
    assert claim.lock_path == tmp_path / "locks" / "0.slot0"
    assert claim_gpu(lock_dir=tmp_path / "locks") is claim  # a second call would wait on itself
    other = Job(tmp_path, 0, "0", timeout=0.5)
    jobs.append(other)
    assert other.proc.wait(timeout=20) != 0 and WAITING in other.err.read_text()


def test_a_slurm_job_with_one_gpu_keeps_it_without_a_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    claim = claim_gpu(lock_dir=tmp_path / "locks")
    assert claim is not None and (claim.device, claim.slot, claim.lock_path) == ("3", None, None)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert not (tmp_path / "locks").exists()


def test_a_slurm_job_with_several_gpus_locks_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    claim = claim_gpu(lock_dir=tmp_path / "locks")
    assert claim is not None and claim.device == "2" and os.environ["CUDA_VISIBLE_DEVICES"] == "2"


def test_uuids_name_devices_and_lock_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uuids = "GPU-8e3c1f2a-0000-1111-2222-333344445555,GPU-9f4d2a3b-6666-7777-8888-999900001111"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", uuids)
    claim = claim_gpu(lock_dir=tmp_path / "locks")
    first = uuids.split(",")[0]
    assert claim is not None and claim.device == first and os.environ["CUDA_VISIBLE_DEVICES"] == first
    assert (tmp_path / "locks" / f"{first}.slot0").exists()
    assert lock_name("MIG-GPU-8e3c/1/0", 2) == "MIG-GPU-8e3c_1_0.slot2"


@pytest.mark.parametrize("visible", ["", " ", "-1"])
def test_no_visible_gpu_gives_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, visible: str) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert claim_gpu(lock_dir=tmp_path / "locks") is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == visible and not (tmp_path / "locks").exists()


def test_without_cuda_visible_devices_the_count_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert claim_gpu(lock_dir=tmp_path / "locks", discover=lambda: 0) is None
    assert visible_devices({}, lambda: 3) == ["0", "1", "2"]
    claim = claim_gpu(lock_dir=tmp_path / "locks", discover=lambda: 3)
    assert claim is not None and claim.device == "0" and os.environ["CUDA_VISIBLE_DEVICES"] == "0"


def test_parse_visible_stops_like_cuda() -> None:
    assert parse_visible("0, 1,2") == ["0", "1", "2"]
    assert parse_visible("0,1,-1,2") == ["0", "1"]
    assert parse_visible("MIG-abc,GPU-def") == ["MIG-abc", "GPU-def"]


def test_count_gpus_from_nvidia_smi_else_proc(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-a)'\necho '  MIG 1g.18gb Device 0: (UUID: MIG-b)'\n"
                   "echo 'GPU 1: NVIDIA H200 (UUID: GPU-c)'\n")
    smi.chmod(0o755)
    proc = tmp_path / "gpus"
    assert count_gpus(str(smi), proc) == 2
    assert count_gpus(str(tmp_path / "missing"), proc) == 0  # no binary, no driver: a CPU node
    proc.mkdir()
    for bus in ("0000:01:00.0", "0000:41:00.0", "0000:81:00.0"):
        (proc / bus).mkdir()
    assert count_gpus(str(tmp_path / "missing"), proc) == 3


def test_lock_dir_is_node_local_and_this_users(tmp_path: Path) -> None:
    assert default_lock_dir({}) == Path(f"/tmp/medrobust-gpu-locks-{os.getuid()}")
    assert default_lock_dir({"MEDROBUST_GPU_LOCK_DIR": str(tmp_path)}) == tmp_path
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(LockUnavailable, match="not a directory of this user"):
        ready_lock_dir(link)
    with pytest.raises(LockUnavailable, match="cannot create"):
        ready_lock_dir(Path("/proc/medrobust-gpu-locks"))
