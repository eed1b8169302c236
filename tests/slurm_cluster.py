"""A real single-node SLURM cluster on localhost, for tests (Debian's Slurm 22.05, no systemd).

munged, MariaDB, slurmdbd, slurmctld and slurmd are started by hand with every config, pid
file, state and log under one folder (nothing in /etc is touched; clients find the cluster
through SLURM_CONF). The node has 2 CPUs and one fake GPU (gres/gpu, type "fake", on
/dev/null). Only 127.0.0.1 is contacted. Each daemon is stopped by the PID in its pid file;
daemons left over by an aborted run in the same folder are stopped first. Every wait times out.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "slurmdbd", "mariadb-server")
CLUSTER, ACCOUNT, PARTITIONS, GPU_TYPE = "medrobust", "medrobust", ("main", "other"), "fake"
SACCT_FIELDS = ("JobIDRaw", "JobName", "State", "Partition", "Account", "AllocTRES", "Comment")


class Ports(NamedTuple):
    """TCP ports of the daemons, all bound to 127.0.0.1 (MariaDB off its default 3306)."""

    slurmctld: int = 6817
    slurmd: int = 6818
    slurmdbd: int = 6819
    mariadb: int = 6820


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def sbin(name: str) -> str:
    """A daemon's path (/usr/sbin may be missing from PATH)."""
    return shutil.which(name) or f"/usr/sbin/{name}"


def slurm_installed() -> bool:
    return Path(sbin("slurmctld")).exists()


def install_packages() -> None:
    """Debian's SLURM packages, from the registry, when slurmctld is missing."""
    if not slurm_installed():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update"], env, timeout=300)
        run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], env, timeout=900)


def wait_for(what: str, ok: Callable[[], bool], log: Path, timeout: float = 60) -> None:
    """Poll ok() until it holds; else raise with the tail of the daemon's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.SubprocessError, OSError, RuntimeError):
            if ok():
                return
        time.sleep(0.5)
    text = log.read_text(errors="replace")[-3000:] if log.exists() else "(missing)"
    raise RuntimeError(f"{what} not ready after {timeout} s; {log}:\n{text}")


def pidfiles(d: Path) -> dict[str, Path]:
    """Each daemon's pid file, in the order they are stopped."""
    return {"slurmd": d / "run/slurmd.pid", "slurmctld": d / "run/slurmctld.pid",
            "slurmdbd": d / "run/slurmdbd.pid", "mariadbd": d / "mysql/mariadbd.pid",
            "munged": d / "munge/munged.pid"}


def pid_of(pidfile: Path, name: str) -> int | None:
    """The live (not zombie) process `name` whose PID a pid file holds, or None."""
    try:
        pid = int(pidfile.read_text().split()[0])
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError, IndexError):
        return None
    comm, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
    return pid if comm == name[:15] and state != "Z" else None


def stop(pidfile: Path, name: str, timeout: float = 20) -> None:
    """SIGTERM the process of a pid file, wait for it, then SIGKILL it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if (pid := pid_of(pidfile, name)) is None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while pid_of(pidfile, name) == pid and time.monotonic() < deadline:
            time.sleep(0.2)
    pidfile.unlink(missing_ok=True)


def write_configs(d: Path, ports: Ports) -> None:
    host, socket_path = socket.gethostname(), d / "munge/munge.socket"
    detected = dict(f.split("=", 1) for f in run([sbin("slurmd"), "-C"]).split() if "=" in f)
    memory = int(detected["RealMemory"]) * 9 // 10  # claiming more than slurmd finds drains the node
    (d / "slurm.conf").write_text(f"""ClusterName={CLUSTER}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ports.slurmctld}
SlurmdPort={ports.slurmd}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={socket_path}
StateSaveLocation={d / 'state'}
SlurmdSpoolDir={d / 'spool'}
SlurmctldPidFile={d / 'run/slurmctld.pid'}
SlurmdPidFile={d / 'run/slurmd.pid'}
SlurmctldLogFile={d / 'log/slurmctld.log'}
SlurmdLogFile={d / 'log/slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports.slurmdbd}
AccountingStoragePass={socket_path}
AccountingStorageTRES=gres/gpu,gres/gpu:{GPU_TYPE}
AccountingStoreFlags=job_comment
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory={memory} Gres=gpu:{GPU_TYPE}:1 State=UNKNOWN
PartitionName={PARTITIONS[0]} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName={PARTITIONS[1]} Nodes=ALL MaxTime=INFINITE State=UP
""")  # AccountingStoragePass: the munge socket of clients' slurmdbd connections (sacct, sacctmgr)
    (d / "gres.conf").write_text(f"NodeName={host} Name=gpu Type={GPU_TYPE} File=/dev/null\n")
    dbd = d / "slurmdbd.conf"
    dbd.write_text(f"""AuthInfo=socket={socket_path}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={ports.slurmdbd}
SlurmUser=root
PidFile={d / 'run/slurmdbd.pid'}
LogFile={d / 'log/slurmdbd.log'}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={ports.mariadb}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
""")
    dbd.chmod(0o600)
    # snakemake-executor-plugin-slurm-jobstep drops SLURM_* (SLURM_CONF too) before its srun:
    # this srun, first on the jobs' PATH, puts it back.
    srun = d / "bin/srun"
    srun.write_text(f'#!/bin/sh\nSLURM_CONF={d / "slurm.conf"} exec {shutil.which("srun")} "$@"\n')
    srun.chmod(0o755)


def start_munge(d: Path) -> None:
    m, user = d / "munge", pwd.getpwnam("munge")
    m.mkdir(mode=0o700, exist_ok=True)
    key = m / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    for path in (m, key):
        os.chown(path, user.pw_uid, user.pw_gid)
    run([sbin("runuser"), "-u", "munge", "--", sbin("munged"), "--force", f"--key-file={key}",
         f"--socket={m / 'munge.socket'}", f"--pid-file={m / 'munged.pid'}",
         f"--log-file={m / 'munged.log'}", f"--seed-file={m / 'munged.seed'}"])
    wait_for("munged", lambda: (m / "munge.socket").exists() and pid_of(m / "munged.pid", "munged") is not None,
             m / "munged.log")


def start_mariadb(d: Path, ports: Ports) -> None:
    """MariaDB on 127.0.0.1 with its own socket and port; the slurm user slurmdbd logs in as."""
    m, data, user = d / "mysql", d / "mysql/data", pwd.getpwnam("mysql")
    m.mkdir(exist_ok=True)
    os.chown(m, user.pw_uid, user.pw_gid)
    if not (data / "mysql").is_dir():
        shutil.rmtree(data, ignore_errors=True)
        run(["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={data}",
             "--auth-root-authentication-method=socket", "--skip-test-db"], timeout=120)
    subprocess.Popen(
        [sbin("mariadbd"), "--no-defaults", "--user=mysql", f"--datadir={data}", "--bind-address=127.0.0.1",
         f"--port={ports.mariadb}", f"--socket={m / 'mysqld.sock'}", f"--pid-file={m / 'mariadbd.pid'}",
         f"--log-error={m / 'mariadbd.log'}", "--skip-name-resolve"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    sql = ["mariadb", "--no-defaults", f"--socket={m / 'mysqld.sock'}", "-u", "root", "-e"]
    wait_for("mariadbd", lambda: bool(run([*sql, "SELECT 1"])), m / "mariadbd.log")
    run([*sql, "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';"
               " GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"])


def register_accounting(env: dict[str, str]) -> None:
    """The cluster, an account and root's association in slurmdbd, once."""
    mgr = ["sacctmgr", "-i", "-n"]
    if CLUSTER not in run([*mgr, "list", "cluster", "format=cluster"], env):
        run([*mgr, "add", "cluster", CLUSTER], env)
    if ACCOUNT not in run([*mgr, "list", "account", "format=account"], env):
        run([*mgr, "add", "account", ACCOUNT, f"cluster={CLUSTER}"], env)
    if ACCOUNT not in run([*mgr, "list", "assoc", "user=root", "format=account"], env):
        run([*mgr, "add", "user", "root", f"account={ACCOUNT}", f"cluster={CLUSTER}"], env)


def cancel_all_jobs(env: dict[str, str], timeout: float = 60) -> None:
    """Cancel whatever is queued or running (e.g. left by an aborted run); wait until it is gone."""
    def queue_empty() -> bool:
        return not run(["squeue", "-h", "-o", "%i"], env, timeout=10).strip()

    with contextlib.suppress(subprocess.SubprocessError, RuntimeError, OSError):
        if not queue_empty():
            run(["scancel", "--user=root"], env, timeout=10)
            deadline = time.monotonic() + timeout
            while not queue_empty() and time.monotonic() < deadline:
                time.sleep(1)


def stop_all(d: Path, env: dict[str, str]) -> None:
    files = pidfiles(d)
    if all(pid_of(files[n], n) is not None for n in ("slurmctld", "slurmd")):
        cancel_all_jobs(env, timeout=30)
    for name, pidfile in files.items():
        stop(pidfile, name)


def check_ports_free(ports: Ports) -> None:
    for name, port in ports._asdict().items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("", port))
            except OSError as e:
                raise RuntimeError(f"port {port} ({name}) is taken by a process that this folder's "
                                   "pid files do not name; pass other Ports") from e


def start_all(d: Path, env: dict[str, str], ports: Ports) -> None:
    def node_states() -> set[str]:
        return set(run(["sinfo", "-h", "-N", "-o", "%T"], env, timeout=10).split())

    start_munge(d)
    start_mariadb(d, ports)
    run([sbin("slurmdbd")], env)
    wait_for("slurmdbd", lambda: run(["sacctmgr", "-n", "list", "cluster"], env, timeout=10) is not None,
             d / "log/slurmdbd.log")
    register_accounting(env)
    run([sbin("slurmctld")], env)
    wait_for("slurmctld", lambda: "UP" in run(["scontrol", "ping"], env, timeout=10), d / "log/slurmctld.log")
    run([sbin("slurmd")], env)
    wait_for("slurmd", lambda: node_states() <= {"idle", "mixed", "allocated"}, d / "log/slurmd.log")
    cancel_all_jobs(env)  # jobs of an aborted run, recovered from the saved state
    wait_for("an idle node", lambda: node_states() == {"idle"}, d / "log/slurmd.log")


@contextlib.contextmanager
def local_slurm(workdir: Path, base_env: dict[str, str] | None = None,
                ports: Ports = Ports()) -> Iterator[dict[str, str]]:
    """Bring the cluster up under workdir (made world-traversable: munged runs as user munge);
    yield base_env (default: os.environ) plus what a client needs (SLURM_CONF, PATH); stop
    every daemon on exit. Reuse one workdir: a later run stops what a killed one left there."""
    install_packages()
    d = workdir.resolve()
    for sub in ("run", "log", "state", "spool", "bin"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    d.chmod(0o755)
    base = dict(os.environ if base_env is None else base_env)
    env = {**base, "SLURM_CONF": str(d / "slurm.conf"), "PATH": f"{d / 'bin'}{os.pathsep}{base.get('PATH', '')}"}
    write_configs(d, ports)
    stop_all(d, env)
    check_ports_free(ports)
    try:
        start_all(d, env, ports)
        yield env
    finally:
        stop_all(d, env)


def sacct(env: dict[str, str], job_name: str, timeout: float = 30) -> list[dict[str, str]]:
    """Accounting rows (allocations, not steps) of the jobs named job_name, as SACCT_FIELDS ->
    value; the SLURM plugin names every job of a Snakemake run after the run's UUID and
    comments it rule_<rule>[_wildcards_<values>]."""
    out = run(["sacct", "-X", "--parsable2", "--noheader", "--starttime=now-2days", "--endtime=now",
               f"--name={job_name}", f"--format={','.join(SACCT_FIELDS)}"], env, timeout=timeout)
    return [dict(zip(SACCT_FIELDS, line.split("|"))) for line in out.splitlines() if line.strip()]
