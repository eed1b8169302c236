"""The workflow's files are snakefmt-clean (the pinned snakefmt, pyproject.toml's settings)."""

import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_snakefmt_check() -> None:
    snakefmt = Path(sys.executable).parent / "snakefmt"
    pinned = re.search(r"^snakefmt==(\S+)$", (REPO / "requirements.lock").read_text(), re.M)[1]
    version = subprocess.run([str(snakefmt), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.split()[-1] == pinned, version
    files = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    done = subprocess.run([str(snakefmt), "--diff", *map(str, files)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    check = subprocess.run([str(snakefmt), "--check", *map(str, files)], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
    assert check.returncode == 0, f"run: snakefmt Snakefile workflow/rules\n{done.stdout[-4000:]}{check.stderr[-2000:]}"
