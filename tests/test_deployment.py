"""The workflow run the ways its users run it: the README's command from a shell without the
venv on PATH, `--config key=value` without a config file, from another working directory, and
as a Snakemake module of another workflow (snakedeploy's layout), each with the real snakemake."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO, env_with_venv

SMALL = {
    "datasets": {"synthetic": {"source": "synthetic", "grid": "tiny", "synthetic": {
        "n_classes": 4, "n_channels": 1, "n_train": 200, "n_val": 50, "n_test": 50, "seed": 0}}},
    "grids": {stage: {"tiny": {"lr": [0.1], "batch_size": [64], "epochs": [1]}}
              for stage in ("base", "nonrobust", "robust")},
}
PREPARED = ["results/synthetic/data/prepared.npz", "results/synthetic/data/prepared.json"]


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env or env_with_venv(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


def test_jobs_find_the_entry_point_without_the_venv_on_path(tmp_path: Path) -> None:
    """The venv's snakemake by its path, PATH without any `medrobust`, from another directory:
    the jobs still run the package's console script (the Snakefile puts the interpreter's bin
    directory first)."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(d for d in env["PATH"].split(os.pathsep) if d and not (Path(d) / "medrobust").exists())
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(SMALL))
    snakemake = str(Path(sys.executable).parent / "snakemake")
    run([snakemake, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path / "wd"), "--configfile",
         str(tmp_path / "cfg.yaml"), "--cores", "2", *PREPARED], cwd=tmp_path, env=env)
    stats = json.loads((tmp_path / "wd" / PREPARED[1]).read_text())
    assert stats["image_size"] == 32


def test_config_on_the_command_line_alone_starts_from_config_yaml(tmp_path: Path) -> None:
    out = run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n",
               "--config", "seed=1"], cwd=tmp_path)
    full = run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n"], cwd=tmp_path)
    assert job_counts(out) == job_counts(full) and job_counts(out)["train"] == 738  # the full study (config.yaml): 688 grid points, 50 replicates
    assert "config.yaml is extended by additional config specified via the command line" in out


def outer_workflow(root: Path) -> Path:
    """What `snakedeploy deploy-workflow` writes: workflow/Snakefile declaring this workflow as a
    module with the user's config/config.yaml (here the demo's), in a directory of its own."""
    (root / "workflow").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "config" / "config.yaml").write_text((REPO / "config.demo.yaml").read_text())
    (root / "workflow" / "Snakefile").write_text(f'''\
configfile: "config/config.yaml"


module medrobust:
    snakefile:
        "{REPO / 'Snakefile'}"
    config:
        config


use rule * from medrobust
''')
    return root


def test_workflow_as_a_snakemake_module(tmp_path: Path) -> None:
    """The demo through the module: the same DAG as the workflow's own, and a small target run
    for real (schema, rules, code inputs and report captions found from the workflow's own
    directory, not the outer one)."""
    outer = outer_workflow(tmp_path / "deploy")
    direct = run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path / "direct"),
                  "--configfile", str(REPO / "config.demo.yaml"), "-n"], cwd=tmp_path)
    via_module = run([sys.executable, "-m", "snakemake", "-n"], cwd=outer)
    assert job_counts(via_module) == job_counts(direct) and job_counts(direct)["train"] == 10  # 4 grid points, 6 replicates
    run([sys.executable, "-m", "snakemake", "--cores", "2", *PREPARED], cwd=outer)
    stats = json.loads((outer / PREPARED[1]).read_text())
    assert stats["image_size"] == 32 and (outer / "logs" / "synthetic" / "data" / "prepare.log").exists()
