#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) inside the new envs/medrobust.yaml environment, from a copy of
# this file under .snakemake/conda/ and from the run's working directory, so neither this file's
# location nor the current directory is the workflow's: the Snakefile exports its own directory
# as MEDROBUST_WORKFLOW_DIR. Installs the medrobust package from there (editable, without
# touching the pins), and tells Wand where the environment's ImageMagick is (MAGICK_HOME, set on
# every activation of the environment).
set -euo pipefail
root=${MEDROBUST_WORKFLOW_DIR:?"is not set: run this through the workflow's Snakefile (snakemake --sdm conda)"}
[ -f "$root/pyproject.toml" ] || { echo "medrobust.post-deploy.sh: no pyproject.toml in $root" >&2; exit 1; }
prefix=${CONDA_PREFIX:?"is not set: run this inside the activated conda environment"}
python -m pip install --no-deps -e "$root"
mkdir -p "$prefix/etc/conda/activate.d"
echo "export MAGICK_HOME=\"$prefix\"" > "$prefix/etc/conda/activate.d/medrobust-magick.sh"
