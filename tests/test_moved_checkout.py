"""A checkout moved or copied with its results (`cp -a`) re-runs nothing; a code edit in the copy
re-runs exactly the jobs whose command imports the edited module; a .venv that still belongs to
the original checkout is noticed by run.sh and by the Snakefile."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medrobust.core import paths

from conftest import REPO, env_with_venv, slice_config

TARGETS = [paths.evaluation("synthetic", "base", 0, "clean"), paths.nonrobust_set("synthetic", 4, 0)]
CONFIG = slice_config({"base": {"tiny": {"lr": [0.1], "batch_size": [64], "epochs": [1]}},
                       "nonrobust": {"tiny": {"lr": [0.1], "batch_size": [64], "epochs": [1]}},
                       "robust": {"tiny": {"lr": [0.1], "batch_size": [64], "epochs": [1]}}},
                      nonrobust={"steps": 2})


def copy_checkout(dest: Path) -> None:
    """The repository's files as a clone has them (tracked and untracked, not ignored)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)


def snakemake(checkout: Path, package: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Snakemake in `checkout` (its Snakefile, its working directory), importing medrobust from
    `package`'s src/, as that checkout's own .venv would (its editable install)."""
    env = {**env_with_venv(), "PYTHONPATH": str(package / "src")}
    return subprocess.run([sys.executable, "-m", "snakemake", *TARGETS, "--configfile", "cfg.yaml", *args],
                          cwd=checkout, env=env, capture_output=True, text=True, timeout=900)


def planned(out: str) -> dict[str, int]:
    """A dry run's job counts per rule (its 'Job stats' table); empty when nothing is to be done."""
    table = out.split("Job stats:", 1)[1].split("total", 1)[0] if "Job stats:" in out else ""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.slow
def test_a_copied_checkout_reruns_nothing_and_an_edit_exactly_its_jobs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    copy_checkout(a)
    (a / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    # a .venv as ./run.sh makes it: its scripts name its own Python
    (a / ".venv" / "bin").mkdir(parents=True)
    (a / ".venv" / "bin" / "medrobust").write_text(f"#!{a.resolve()}/.venv/bin/python\n")
    done = snakemake(a, a, "--cores", "2")
    assert done.returncode == 0, done.stderr[-4000:]

    subprocess.run(["cp", "-a", str(a), str(b)], check=True)
    before = snakemake(b, b, "-n")
    assert before.returncode == 0 and "Nothing to be done" in before.stdout + before.stderr, before.stdout[-3000:]

    module = b / "src" / "medrobust" / "attacks" / "construct.py"
    module.write_text(module.read_text() + "\n# an edit\n")
    after = snakemake(b, b, "-n")
    assert after.returncode == 0, after.stderr[-3000:]
    assert planned(after.stdout) == {"construct_nonrobust": 1}, after.stdout[-3000:]
    assert "Params have changed since last execution" in after.stdout

    # the copy's .venv would still import the original's src/: refused before any job, in one line
    stale = snakemake(b, a, "-n")
    lines = [line for line in stale.stderr.splitlines() if line.startswith("medrobust:")]
    assert stale.returncode != 0 and "Traceback" not in stale.stderr, stale.stderr[-2000:]
    assert len(lines) == 1 and str(a / "src" / "medrobust") in lines[0] and str(b / "src" / "medrobust") in lines[0]

    # run.sh sees the same from the copied .venv's scripts, and remakes it (not its own here)
    probe = "source ./run.sh && venv_elsewhere"
    moved = subprocess.run(["bash", "-c", probe], cwd=b, capture_output=True, text=True, timeout=60)
    assert moved.returncode == 0 and moved.stdout.strip() == f"{a.resolve()}/.venv/bin/python", moved
    home = subprocess.run(["bash", "-c", probe], cwd=a, capture_output=True, text=True, timeout=60)
    assert home.returncode != 0 and not home.stdout.strip(), home


def test_no_job_names_the_checkouts_path(tmp_path: Path) -> None:
    """Every input, output, param and command of the demo's jobs is relative to the checkout: an
    absolute path would re-run its job in a moved copy (the verdicts job read the claims by one)."""
    a = tmp_path / "checkout"
    copy_checkout(a)
    env = {**env_with_venv(), "PYTHONPATH": str(a / "src")}
    done = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config.demo.yaml", "-n", "-F", "-p"],
                          cwd=a, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "verdicts" in done.stdout, done.stderr[-3000:]
    jobs = done.stdout[re.search(r"^(local)?rule ", done.stdout, re.M).start():]  # after Snakemake's own header
    leaks = [line for line in jobs.splitlines() if str(a) in line]
    assert not leaks, leaks[:5]
