# medrobust: "Useful nonrobust features are ubiquitous in biomedical images" (ISBI 2026), end to end.
# This file is the table of contents; the stages live in workflow/rules/.
from pathlib import Path

from snakemake.utils import min_version

from medrobust.config import load_schema, validate

min_version("9.0")


report: "workflow/report/workflow.rst"


# config.yaml (the full study) unless a config was given (--configfile config.demo.yaml):
# Snakemake would otherwise merge the two, and the demo would inherit the paper's datasets.
if not config:

    configfile: Path(workflow.basedir) / "config.yaml"


validate(config, load_schema(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"))


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


onstart:
    write_provenance()


rule all:
    input:
        all_targets(),
    default_target: True
