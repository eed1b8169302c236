"""Write envs/medrobust.yaml from requirements.lock: conda-forge's Python 3.11 and ImageMagick,
and every pin of the lock through pip (tests/test_packaging.py checks that the two agree).

    python envs/make_conda_env.py
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = """\
# Conda environment for Snakemake's --sdm conda (optional: run.sh's .venv is the default).
# GENERATED from requirements.lock by envs/make_conda_env.py; edit the lock, then re-run it.
# conda-forge gives Python 3.11 and ImageMagick (MagickWand, for MedMNIST-C through Wand);
# pip gives exactly the lock's pins. medrobust.post-deploy.sh then installs the package from
# the workflow's own directory and points Wand at the environment's ImageMagick.
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python=3.11
  - imagemagick
  - pip
  - pip:
"""


def lock_pins(lock: Path = ROOT / "requirements.lock") -> list[str]:
    return [s for s in lock.read_text().splitlines() if s.strip() and not s.startswith("#")]


def render(pins: list[str]) -> str:
    return HEADER + "".join(f"      - {pin}\n" for pin in pins)


if __name__ == "__main__":
    (ROOT / "envs" / "medrobust.yaml").write_text(render(lock_pins()))
