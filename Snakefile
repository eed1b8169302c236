# medrobust: "Useful nonrobust features are ubiquitous in biomedical images" (ISBI 2026), end to end.
# This file is the table of contents; the stages live in workflow/rules/.
import sys
from pathlib import Path

from snakemake.utils import min_version

from medrobust.config import check_local_files, load_schema, validate
from medrobust.errors import ConfigError, DataError

min_version("9.0")


report: "workflow/report/workflow.rst"


# config.yaml (the full study) unless a config was given (--configfile config.demo.yaml):
# Snakemake would otherwise merge the two, and the demo would inherit the paper's datasets.
if not config:

    configfile: Path(workflow.basedir) / "config.yaml"


# A wrong key or value, or a missing or corrupt local data file: one line naming it, exit 2,
# before any job is scheduled.
try:
    validate(config, load_schema(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"))
    check_local_files(config)
except (ConfigError, DataError) as e:
    sys.stderr.write(f"medrobust: {e}\n")
    sys.exit(2)


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset=one_of(DATASETS),
    stage=r"base|(nonrobust|robust)_eps\d+",
    eps=one_of(str(e) for e in config["eps"]),
    variant=r"lr[0-9.e+-]+_bs\d+_ep\d+_aug[01]",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/nonrobust.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/outputs.smk"
include: "workflow/rules/review.smk"


onstart:
    write_provenance()


rule all:
    input:
        all_targets(),
    default_target: True
