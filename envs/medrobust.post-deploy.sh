#!/usr/bin/env bash
# Run by Snakemake after creating envs/medrobust.yaml, from the workflow's working directory
# (the repository root): installs the medrobust package itself, without touching the pins.
set -euo pipefail
pip install --no-deps -e "${SNAKEMAKE_REPO:-.}"
