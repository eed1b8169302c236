"""`snakemake --profile slurm` against a real single-node SLURM cluster on localhost
(tests/slurm_cluster.py): every job goes through sbatch, GPU jobs get the fake GPU, the
profile's environment overrides reach sbatch, and the results equal a local run's."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from medrobust.core import paths

from conftest import REPO, env_with_venv, slice_config
from same_results import assert_same_results
from slurm_cluster import ACCOUNT, GPU_TYPE, PARTITIONS, local_slurm, sacct, slurm_installed

# Fixed, so that a run finds (and stops) the daemons of an earlier run that was killed.
CLUSTER_DIR = Path(tempfile.gettempdir()) / "medrobust-slurm"
TARGETS = [paths.evaluation("synthetic", "base", 0, "clean"), paths.nonrobust_set("synthetic", 4, 0)]
# The profile's GPU rules (they get MEDROBUST_GPU_MODEL; the same as the rules declaring `gpu=`).
GPU_RULES = ast.literal_eval(re.search(r"GPU_RULES = (\[.*?\])", (REPO / "slurm/config.yaml").read_text(), re.S)[1])
# --verbose logs each sbatch call. Poll within seconds, not the profile's 30 s+; the 10 attempts stay 10 s apart at worst.
FAST_POLLING = ["--verbose", "--slurm-init-seconds-before-status-checks", "2", "--max-status-checks-per-second", "1",
                "--slurm-status-attempts", "10", "--slurm-keep-successful-logs"]
CONFIG = slice_config({"base": {"tiny": {"lr": [0.1, 0.05], "batch_size": [64], "epochs": [2]}},
                       "nonrobust": {"tiny": {"lr": [0.1], "batch_size": [64], "epochs": [1]}},
                       "robust": {"tiny": {"lr": [0.1], "batch_size": [64], "epochs": [1]}}},
                      nonrobust={"steps": 5})


def snakemake(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """Start snakemake from the repository root, its output going to log."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=REPO, env=env, text=True,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen[str], log: Path, timeout: float) -> str:
    """The output of a snakemake run, which must succeed within timeout seconds."""
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    out = log.read_text()
    assert proc.returncode == 0, f"{' '.join(proc.args)} failed ({proc.returncode}):\n{out[-6000:]}"
    return out


def rules_with_gpus() -> set[str]:
    """Rules whose resources include `gpu=` (the workflow's GPU rules)."""
    found, derived = set(), []
    for f in (REPO / "workflow" / "rules").glob("*.smk"):
        text = f.read_text()
        for block in re.split(r"^rule ", text, flags=re.M)[1:]:
            if re.search(r"^\s+gpu=", block, re.M):
                found.add(block.split(":", 1)[0])
        derived += _derived(text)  # inherits the resources
    for _ in derived:  # a derived rule may derive from a derived one
        found |= {new for old, new in derived if old in found}
    return found


def _derived(text: str) -> list[tuple[str, str]]:
    """(rule, derived rule) of each `use rule ... as ... with:` of a rule file."""
    return re.findall(r"^use rule (\w+) as (\w+) with:", text, re.M)


def test_profile_gpu_rules_are_the_workflows() -> None:
    assert set(GPU_RULES) == rules_with_gpus()


def jobs_of(output: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Snakemake's job blocks: jobid -> (rule, resources), for jobs that are not local rules."""
    jobs, rule = {}, None
    for line in output.splitlines():
        if m := re.match(r"^(local)?rule (\w+):$", line):
            rule = None if m[1] else m[2]
        elif rule and (m := re.match(r"^\s+jobid: (\d+)$", line)):
            jobid = m[1]
        elif rule and (m := re.match(r"^\s+resources: (.*)$", line)):
            jobs[jobid] = (rule, dict(kv.split("=", 1) for kv in m[1].split(", ") if "=" in kv))
    return jobs


def sbatch_calls(output: str) -> dict[str, int]:
    """From --verbose output: each sbatch call's --comment (rule_<rule>[_wildcards_<...>],
    unique within a run) -> the GPUs it asked for (--gpus=[<model>:]<n>)."""
    calls = {}
    for call in re.findall(r"sbatch call: (sbatch .*)", output):
        args = shlex.split(call.split(" --wrap=")[0])
        gpus = [re.fullmatch(r"--gpus=(?:[\w.]+:)?(\d+)", a) for a in args]
        calls[args[args.index("--comment") + 1]] = sum(int(m[1]) for m in gpus if m)
    return calls


def test_profile_takes_site_settings_from_the_environment(tmp_path: Path) -> None:
    """The documented override: MEDROBUST_* variables set partition, account and GPU model;
    unset ones leave the key out (the cluster's defaults)."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    args = [*TARGETS, "-n", "--profile", "slurm", "--configfile", str(cfg), "-d", str(tmp_path / "wd")]
    clean = {k: v for k, v in env_with_venv().items() if not k.startswith("MEDROBUST_")}
    log = tmp_path / "dry.log"
    unset = jobs_of(finish(snakemake(args, clean, log), log, timeout=120))
    assert unset and all(not {"slurm_partition", "slurm_account", "gpu_model"} & res.keys()
                         for _, res in unset.values())
    site = {"MEDROBUST_PARTITION": "p1", "MEDROBUST_ACCOUNT": "a1", "MEDROBUST_GPU_MODEL": "m1"}
    jobs = jobs_of(finish(snakemake(args, {**clean, **site}, log), log, timeout=120))
    assert all(res["slurm_partition"] == "p1" and res["slurm_account"] == "a1" for _, res in jobs.values())
    assert {rule for rule, res in jobs.values() if res.get("gpu_model") == "m1"} == \
        {rule for rule, _ in jobs.values()} & set(GPU_RULES)


def test_profile_under_a_site_profile(tmp_path: Path) -> None:
    """--profile <site> --workflow-profile slurm: the site profile's account and partition stay
    (this profile replaces it key by key and sets no default-resources of its own), and every
    submitted job still gets a wall time from its rule."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "config.yaml").write_text(yaml.safe_dump({
        "executor": "slurm", "default-resources": {"slurm_account": "siteacct", "slurm_partition": "sitepart"}}))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    args = [*TARGETS, "-n", "--profile", str(site), "--workflow-profile", "slurm", "--configfile", str(cfg),
            "-d", str(tmp_path / "wd")]
    clean = {k: v for k, v in env_with_venv().items() if not k.startswith("MEDROBUST_")}
    log = tmp_path / "dry.log"
    out = finish(snakemake(args, clean, log), log, timeout=120)
    assert "workflow specific profile slurm" in out
    jobs = jobs_of(out)
    assert jobs and all(res["slurm_account"] == "siteacct" and res["slurm_partition"] == "sitepart"
                        for _, res in jobs.values())
    assert all("runtime" in res for rule, res in jobs.values() if rule not in local_rules())


# Resources of one job at its first and second attempt, as Snakemake evaluates them for a retry
# (the workflow loaded through Snakemake's API in a subprocess: it changes the working directory).
RESOURCES_BY_ATTEMPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.iocontainers import InputFiles, Wildcards
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

repo, workdir, rule, wildcards = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
with SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(ResourceSettings(), ConfigSettings(configfiles=[repo / sys.argv[5]]),
                            snakefile=repo / "Snakefile", workdir=workdir)._workflow
    resources = [workflow.get_rule(rule).expand_resources(Wildcards(fromdict=wildcards), InputFiles(), attempt)
                 for attempt in (1, 2, 3)]
    retries = workflow.get_rule(rule)._restart_times  # the rule's own (None: the command line's)
print(json.dumps({"retries": retries, "attempts": [{k: r[k] for k in ("mem_mb", "runtime")} for r in resources]}))
"""


def resources_by_attempt(tmp_path: Path, rule: str, wildcards: dict[str, str], config: str = "config.demo.yaml",
                         **env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", RESOURCES_BY_ATTEMPT, str(REPO), str(tmp_path), rule,
                           json.dumps(wildcards), config], capture_output=True, text=True, timeout=120,
                          env={**env_with_venv(), **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("rule, wildcards", [
    ("train", {"dataset": "synthetic", "stage": "base", "run": "grid/lr0.1_bs64_ep20_aug0"}),
    ("prepare", {"dataset": "synthetic"}),
    ("autoattack", {"dataset": "synthetic", "stage": "robust_eps4"}),
])
def test_a_retried_job_asks_for_more_memory_and_time(tmp_path: Path, rule: str, wildcards: dict[str, str]) -> None:
    found = resources_by_attempt(tmp_path, rule, wildcards)
    first, second, third = found["attempts"]
    assert first["mem_mb"] > 0 and first["runtime"] > 0
    assert second == {"mem_mb": 2 * first["mem_mb"], "runtime": 2 * first["runtime"]}
    assert third == {"mem_mb": 2 * first["mem_mb"], "runtime": 3 * first["runtime"]}  # memory: at most twice
    assert found["retries"] is None  # a local run: the command line's --retries


def test_no_request_passes_the_partition_limit_and_long_jobs_get_their_pieces(tmp_path: Path) -> None:
    """The full study's longest training (PathMNIST TRADES, ~3 days at the estimate) under a
    10-hour limit from the environment: every attempt asks for at most 600 minutes, and under the
    profile the rule is retried once per piece, plus one."""
    wildcards = {"dataset": "pathmnist", "stage": "robust_eps4", "run": "grid/lr0.4_bs1024_ep200_aug0"}
    limit = {"MEDROBUST_MAX_RUNTIME_MINUTES": "600"}
    local = resources_by_attempt(tmp_path, "train", wildcards, "config.yaml", **limit)
    assert [a["runtime"] for a in local["attempts"]] == [600, 600, 600] and local["retries"] is None
    cluster = resources_by_attempt(tmp_path, "train", wildcards, "config.yaml", **limit, MEDROBUST_PROFILE="slurm")
    from medrobust.core.config import grid_points, load, stages
    from medrobust.core import estimate

    config = load(REPO / "config.yaml")
    longest = max(estimate.runtime_minutes(config, estimate.train_seconds(config, d, s, v))
                  for d in config["datasets"] for s in stages(config) for v in grid_points(config, d, s))
    assert longest > 600 and cluster["retries"] == -(-longest // 600) + 1
    bad = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config.demo.yaml", "-d",
                          str(tmp_path / "wd")], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**env_with_venv(), "MEDROBUST_MAX_RUNTIME_MINUTES": "1 day"})
    assert bad.returncode != 0 and "MEDROBUST_MAX_RUNTIME_MINUTES: '1 day' is not a whole number" in bad.stderr


def test_the_warning_signal_is_appended_to_the_sites_own_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    args = [*TARGETS, "-n", "--profile", "slurm", "--configfile", str(cfg), "-d", str(tmp_path / "wd")]
    clean = {k: v for k, v in env_with_venv().items() if not k.startswith("MEDROBUST_")}
    log = tmp_path / "dry.log"
    site = {"MEDROBUST_SLURM_EXTRA": "--qos=long --mail-type=FAIL", "MEDROBUST_SIGNAL_SECONDS": "120"}
    jobs = jobs_of(finish(snakemake(args, {**clean, **site}, log), log, timeout=120))
    submitted = [res for rule, res in jobs.values() if rule not in local_rules()]
    assert submitted and all(res["slurm_extra"] == "--qos=long --mail-type=FAIL --signal=TERM@120" for res in submitted)
    # a site profile's own default slurm_extra would be replaced: refused, saying where it goes
    proc = snakemake([*args, "--default-resources", "slurm_extra='--qos=long'"], clean, log)
    proc.wait(timeout=120)
    assert proc.returncode != 0 and "put those flags in MEDROBUST_SLURM_EXTRA" in log.read_text()


def cluster_command(page: Path) -> str:
    """A page's command for the full study on a cluster, as written there (comment and the
    example's site variables aside): the first `--profile slurm` line of the first bash block
    under its "## Running on a cluster"."""
    section = re.split(r"^## Running on a cluster[ \t]*$", page.read_text(), maxsplit=1, flags=re.M)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    line = next(s for s in block.splitlines() if "--profile slurm" in s)
    return line.split("#", 1)[0].strip()


def readme_cluster_command() -> str:
    """The README's command for the full study on a cluster: `.venv/bin/snakemake --profile slurm`."""
    return cluster_command(REPO / "README.md")


def test_the_readme_and_the_cluster_page_give_the_tested_command() -> None:
    """What test_workflow_on_a_real_slurm_cluster runs is what the README tells a user to copy,
    and docs/clusters.md, which explains it, shows the same command."""
    assert readme_cluster_command() == ".venv/bin/snakemake --profile slurm"
    assert cluster_command(REPO / "docs" / "clusters.md") == readme_cluster_command()


def env_without_venv() -> dict[str, str]:
    """os.environ as a new user's shell has it: no activated venv, so no `medrobust` on PATH
    (run.sh and the tests put the venv first)."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(d for d in env.get("PATH", "").split(os.pathsep)
                                  if d and not (Path(d) / "medrobust").exists())
    return env


def local_rules() -> set[str]:
    block = re.search(r"^localrules:\n((?:    \w+,\n)+)", (REPO / "Snakefile").read_text(), re.M)[1]
    return set(re.findall(r"\w+", block))


# What only a compute node should run: the network (forward passes, training) and the attacks.
HEAVY_MODULES = ("core.network", "core.pgd", "train.loop", "train.trades", "attacks", "evaluate.saliency", "evaluate.clean",
                 "evaluate.corrupted", "data.corrupt")


def rule_commands() -> dict[str, list[str]]:
    """Each rule's `medrobust <command>`s, from its shell command."""
    found, derived = {}, []
    for f in (REPO / "workflow" / "rules").glob("*.smk"):
        text = f.read_text()
        for block in re.split(r"^rule ", text, flags=re.M)[1:]:
            found[block.split(":", 1)[0]] = re.findall(r'"medrobust ([\w-]+)', block)
        derived += _derived(text)  # the same shell command
    for _ in derived:
        found |= {new: found[old] for old, new in derived if old in found}
    return found


def test_local_rules_are_downloads_and_seconds_long_steps() -> None:
    """Local rules run where Snakemake runs (a login node): none may load the network or attack
    it, so a later rule that does cannot slip in as a local one."""
    commands = rule_commands()
    assert local_rules() <= commands.keys() and not local_rules() & rules_with_gpus()
    for rule in local_rules():
        from medrobust.jobs.codedeps import command_modules

        heavy = [m for c in commands[rule] for m in command_modules(c) if m.startswith(HEAVY_MODULES)]
        assert not heavy, f"local rule {rule} runs {heavy}: submit it (remove it from localrules)"
    assert "figure_saliency" not in local_rules() and "figure_saliency" in rules_with_gpus()


def test_profile_lists_every_submitted_rule() -> None:
    """slurm/config.yaml gives each submitted rule its warning signal: it must know them all."""
    listed = re.search(r'SUBMITTED_RULES = GPU_RULES \+ (\[.*?\])', (REPO / "slurm/config.yaml").read_text(), re.S)[1]
    assert set(GPU_RULES) | set(ast.literal_eval(listed)) == rule_commands().keys() - local_rules()


@pytest.mark.slurm
@pytest.mark.slow
def test_workflow_on_a_real_slurm_cluster(tmp_path: Path) -> None:
    """The README's cluster command, verbatim, from a shell without the venv on PATH (plus the
    test's config, targets, working directory and fast polling)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: starts munged, MariaDB and the SLURM daemons on localhost")
    if not slurm_installed() and not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and apt-get is unavailable to install it")
    command = readme_cluster_command()
    assert command == ".venv/bin/snakemake --profile slurm", command
    if not (REPO / ".venv" / "bin" / "snakemake").exists():
        pytest.skip("the README's command runs .venv/bin/snakemake: set up .venv with ./run.sh first")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    common = [*TARGETS, "--configfile", str(cfg)]  # targets first: --configfile takes several values
    start = time.monotonic()
    logs = {run: tmp_path / f"{run}.log" for run in ("local", "slurm")}
    local = snakemake([*common, "--cores", "2", "-d", str(tmp_path / "local")], env_with_venv(), logs["local"])

    site = {"MEDROBUST_PARTITION": PARTITIONS[1], "MEDROBUST_ACCOUNT": ACCOUNT, "MEDROBUST_GPU_MODEL": GPU_TYPE}
    try:
        with local_slurm(CLUSTER_DIR, {**env_without_venv(), **site}) as env:
            assert shutil.which("medrobust", path=env["PATH"]) is None, env["PATH"]
            print(f"\ncluster up: {time.monotonic() - start:.0f} s")
            args = [*common, "-d", str(tmp_path / "slurm"), *FAST_POLLING]
            with logs["slurm"].open("w") as log:
                slurm = subprocess.Popen(f"{command} {shlex.join(args)}", shell=True, cwd=REPO, env=env, text=True,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            out = finish(slurm, logs["slurm"], timeout=900)
            print(f"slurm run done: {time.monotonic() - start:.0f} s")
            rows = sacct(env, re.search(r"SLURM run ID: (\S+)", out)[1])
    except BaseException:
        local.kill()
        raise
    finish(local, logs["local"], timeout=600)  # ran meanwhile
    print(f"local run done: {time.monotonic() - start:.0f} s")
    print("\n".join("|".join(r.values()) for r in rows))

    planned = int(re.search(r"^total\s+(\d+)$", out, re.M)[1])
    ran_here = re.findall(r"^localrule (\w+):$", out, re.M)  # local rules: run by Snakemake itself
    assert "select" in ran_here and set(ran_here) <= local_rules(), ran_here
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", out)
    calls = sbatch_calls(out)
    assert planned - len(ran_here) == len(submitted) == len(calls) == len(rows), (planned, submitted, calls, rows)
    assert not {c.split("_wildcards_")[0].removeprefix("rule_") for c in calls} & local_rules()
    assert sorted(r["JobIDRaw"] for r in rows) == sorted(submitted)
    for row in rows:
        gpus = calls[row["Comment"]]
        assert row["State"] == "COMPLETED", row
        assert (row["Partition"], row["Account"]) == (PARTITIONS[1], ACCOUNT), row
        assert ("gres/gpu=" in row["AllocTRES"]) == (gpus > 0), (row, gpus)
        if gpus:
            assert f"gres/gpu:{GPU_TYPE}={gpus}" in row["AllocTRES"], row
    gpu_rules = {c.split("_wildcards_")[0].removeprefix("rule_") for c, gpus in calls.items() if gpus}
    assert gpu_rules and len(gpu_rules) < len({c.split("_wildcards_")[0] for c in calls})
    assert gpu_rules <= set(GPU_RULES)
    assert_same_results(tmp_path / "local", tmp_path / "slurm", TARGETS)
