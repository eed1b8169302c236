# medrobust: "Useful nonrobust features are ubiquitous in biomedical images" (ISBI 2026), end to end.
# This file is the table of contents; the stages live in workflow/rules/.
import os
import sys
from pathlib import Path

from snakemake.utils import min_version, update_config

import medrobust
from medrobust.core.config import check_local_files, load_schema, max_runtime_minutes, typed_overrides, validate
from medrobust.core.paths import variants_to_run
from medrobust.core.errors import ConfigError, DataError
from medrobust.core.stages import STAGE_PATTERN
from medrobust.jobs.codedeps import package_digest
from medrobust.jobs.provenance import write_invocation

min_version("9.0")

# Every file the workflow reads is found from this file's own directory, so that it also runs
# from another working directory (--directory) and as a module of another workflow.
WORKFLOW_DIR = Path(workflow.current_basedir.get_path_or_uri(secret_free=True))

# The jobs run the medrobust that this Python imports: it must be this workflow's own code (a
# copied or moved checkout whose .venv still points at the original's src/ would run that one).
IMPORTED = Path(medrobust.__file__).resolve().parent
if package_digest(IMPORTED) != package_digest(WORKFLOW_DIR / "src" / "medrobust"):
    sys.stderr.write(
        f"medrobust: the medrobust package that Snakemake imports ({IMPORTED}) is not this workflow's "
        f"({WORKFLOW_DIR / 'src' / 'medrobust'}): run ./run.sh here (it remakes .venv), or install "
        f"this checkout (pip install -e {WORKFLOW_DIR})\n"
    )
    sys.exit(2)


report: "workflow/report/workflow.rst"


# config.yaml (the full study) unless a config file was given (--configfile config.demo.yaml):
# Snakemake would otherwise merge the two, and the demo would inherit the paper's datasets.
# `--config key=value` alone still starts from config.yaml (and overrides the key).
if not workflow.overwrite_configfiles:

    configfile: WORKFLOW_DIR / "config.yaml"


# A wrong key or value, or a missing or corrupt local data file: one line naming it, exit 2,
# before any job is scheduled.
try:
    update_config(config, typed_overrides(workflow.config_settings.config))
    validate(config, load_schema(WORKFLOW_DIR / "src" / "medrobust" / "core" / "config.schema.yaml"))
    config["compute"]["max_runtime_minutes"] = max_runtime_minutes(config, os.environ)
    config["compute"]["device"] = config["compute"]["device"] or (
        "cuda" if config["compute"]["gpus_per_job"] else "cpu"
    )
    check_local_files(config)
    VARIANTS = variants_to_run(config)  # run_variants, each checked at every dataset and stage
    # slurm/config.yaml sets each submitted rule's slurm_extra (its warning signal appended to
    # MEDROBUST_SLURM_EXTRA), which would silently replace a site profile's default one
    site = workflow.resource_settings.default_resources or {}
    ours = workflow.resource_settings.overwrite_resources.get("train", {})
    if "slurm_extra" in site and "slurm_extra" in ours and not os.environ.get("MEDROBUST_SLURM_EXTRA"):
        raise ConfigError(
            "default-resources slurm_extra of your profile would be replaced by slurm/config.yaml's: "
            "put those flags in MEDROBUST_SLURM_EXTRA instead (the workflow profile appends its own)"
        )
except (ConfigError, DataError) as e:
    sys.stderr.write(f"medrobust: {e}\n")
    sys.exit(2)

# Jobs run the package's console script (`medrobust ...`). The Python running Snakemake has it
# (the Snakefile imports the package), so its bin directory goes first on the jobs' PATH: the
# README's `.venv/bin/snakemake` works without an activated venv, locally and under SLURM (whose
# jobs inherit this environment). A job's conda env still comes before it (Snakemake activates
# it inside the job's shell); a container keeps its own PATH. envs/medrobust.post-deploy.sh
# installs the package into a conda env from MEDROBUST_WORKFLOW_DIR.
BIN = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != BIN:
    os.environ["PATH"] = os.pathsep.join([BIN, os.environ.get("PATH", "")])
os.environ["MEDROBUST_WORKFLOW_DIR"] = str(WORKFLOW_DIR)


envvars:
    "PATH",
    "MEDROBUST_WORKFLOW_DIR",


# One image for every job under --sdm apptainer (the top-level Containerfile builds it).
if config["container"]:

    container: config["container"]


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"


wildcard_constraints:
    dataset=one_of(DATASETS),
    stage=STAGE_PATTERN,
    eps=one_of(str(e) for e in config["eps"]),
    rep=r"\d+",
    variant=one_of(VARIANTS),


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/nonrobust.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/outputs.smk"
include: "workflow/rules/review.smk"
include: "workflow/rules/variants.smk"


# Run by Snakemake itself, not submitted to the cluster: downloads (compute nodes often have no
# internet) and the rules that take seconds (they would mostly wait in the queue).
localrules:
    download_medmnist,
    download_medmnist_224,
    download_npz,
    select,
    select_variant,
    summarize,
    checks,
    figure_bars,
    figure_bars_published,
    figure_eps,
    table_results,
    table_hyperparameters,
    figure_curves,
    figure_examples,
    figure_corruptions,
    figure_corruptions_published,
    corruption_table,
    dataset_tables,
    provenance,
    verdicts,
    sensitivity,
    figure_sensitivity,


onstart:
    write_invocation(config)


rule all:
    input:
        all_targets(),
    default_target: True
