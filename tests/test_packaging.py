"""The environment is what the pins say, and the README's two commands are the real ones."""

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import yaml

from medrobust.core import paths

from conftest import REPO, env_with_venv


def _pins(lines: list[str]) -> dict[str, str]:
    """{normalised name: version} of exact pins (PEP 503 names: PyYAML == pyyaml)."""
    pins = (re.match(r"([A-Za-z0-9_.-]+)==([^,;\s]+)", s).groups() for s in lines)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}


def test_conda_env_pins_equal_the_lock() -> None:
    """envs/medrobust.yaml is envs/make_conda_env.py's output: conda-forge's Python 3.11 and
    ImageMagick, and through pip exactly the lock's pins (which hold pyproject's, below)."""
    spec = importlib.util.spec_from_file_location("make_conda_env", REPO / "envs" / "make_conda_env.py")
    make_conda_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_conda_env)
    text = (REPO / "envs" / "medrobust.yaml").read_text()
    assert text == make_conda_env.render(make_conda_env.lock_pins()), "re-run: python envs/make_conda_env.py"
    env = yaml.safe_load(text)
    assert env["channels"][0] == "conda-forge"
    assert {"python=3.11", "imagemagick", "pip"} <= {d for d in env["dependencies"] if isinstance(d, str)}
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    lock = [s for s in (REPO / "requirements.lock").read_text().splitlines() if s and not s.startswith("#")]
    assert pip == lock and _pins(pip) == _pins(lock)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert _pins(project["dependencies"]).items() <= _pins(pip).items()


def test_conda_post_deploy_installs_the_package_from_the_workflow_dir(tmp_path: Path) -> None:
    """The post-deploy step as Snakemake runs it: a copy of the script under .snakemake/conda/,
    run from another working directory inside the new environment (here a venv standing in for
    the conda env, which cannot be created without the conda channels). It installs medrobust
    from the workflow's directory (the Snakefile's MEDROBUST_WORKFLOW_DIR), with real pip, and
    sets MAGICK_HOME on activation."""
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    copy = tmp_path / "work" / ".snakemake" / "conda" / "0123abcd.post-deploy.sh"
    copy.parent.mkdir(parents=True)
    shutil.copy2(REPO / "envs" / "medrobust.post-deploy.sh", copy)
    env = {**os.environ, "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}", "CONDA_PREFIX": str(env_dir)}
    env.pop("MEDROBUST_WORKFLOW_DIR", None)
    run = functools.partial(subprocess.run, ["bash", str(copy)], cwd=tmp_path / "work", capture_output=True,
                            text=True, timeout=600)
    missing = run(env=env)
    assert missing.returncode != 0 and "MEDROBUST_WORKFLOW_DIR" in missing.stderr
    done = run(env={**env, "MEDROBUST_WORKFLOW_DIR": str(REPO)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    where = subprocess.run([str(env_dir / "bin" / "python"), "-c",
                            "import importlib.util; print(importlib.util.find_spec('medrobust').origin)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert Path(where) == REPO / "src" / "medrobust" / "__init__.py"
    assert (env_dir / "bin" / "medrobust").exists()
    hook = (env_dir / "etc" / "conda" / "activate.d" / "medrobust-magick.sh").read_text()
    assert hook.strip() == f'export MAGICK_HOME="{env_dir}"'


def test_lock_agrees_with_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = [s for s in (REPO / "requirements.lock").read_text().splitlines() if s and not s.startswith("#")]
    locked = _pins(lock)
    for name, version in _pins(project["dependencies"]).items():
        assert locked[name] == version, name


def test_torchvision_really_imports() -> None:
    import torch
    import torchvision

    assert torchvision.__version__.startswith("0.28.0") and torch.__version__.startswith("2.13.0")
    assert torchvision.ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5).tolist() == [0]


def test_readme_opens_with_the_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert blocks[0].strip().splitlines() == ["./run.sh demo", "./run.sh test"]
    # on the first screen, with what they give right after them
    first_screen = "\n".join(text.splitlines()[:30])
    assert "```bash\n./run.sh demo\n./run.sh test\n```" in first_screen, first_screen
    assert "results/report.html" in first_screen and "minutes" in first_screen
    assert "./run.sh test" in (REPO / ".ci" / "run").read_text()


def test_license_and_citation_agree_with_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["license"] == "MIT" and cff["version"] == project["version"]
    paper = next(r for r in cff["references"] if "arXiv:2604.22579" in str(r["identifiers"]))
    assert paper["title"] == "Useful nonrobust features are ubiquitous in biomedical images" and paper["authors"]
    assert f"## [{project['version']}]" in (REPO / "CHANGELOG.md").read_text()


def test_run_sh_finds_magickwand_without_root(tmp_path: Path) -> None:
    """run.sh's check, with the linker cache saying no: an ImageMagick of one's own through
    MAGICK_HOME, or a cluster module's through LD_LIBRARY_PATH, is found; nothing is not."""
    lib = tmp_path / "magick" / "lib"
    lib.mkdir(parents=True)
    (lib / "libMagickWand-7.Q16HDRI.so.10").touch()
    function = 'source <(sed -n "/^magickwand_found()/,/^}/p" run.sh); '
    check = "set -euo pipefail; ldconfig() { return 1; }; " + function + "magickwand_found"
    env = {k: v for k, v in os.environ.items() if k not in ("MAGICK_HOME", "LD_LIBRARY_PATH")}

    def found(script: str = check, **extra: str) -> bool:
        done = subprocess.run(["bash", "-c", script], cwd=REPO, env={**env, **extra}, timeout=30,
                              capture_output=True, text=True)
        assert done.returncode in (0, 1) and not done.stderr, done.stderr  # run.sh's `set -u` included
        return done.returncode == 0

    assert not found()
    assert found(MAGICK_HOME=str(tmp_path / "magick"))
    assert found(LD_LIBRARY_PATH=f"/nonexistent:{lib}")
    # a user's PATH without /sbin (Debian's ldconfig) still finds the system's library
    if Path("/sbin/ldconfig").exists() and "libMagickWand" in subprocess.run(
            ["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout:
        assert found("set -euo pipefail; " + function + "magickwand_found", PATH="/usr/bin:/bin")


def test_the_wheel_holds_every_data_file_the_package_reads(tmp_path: Path) -> None:
    """A non-editable install reads the claims, the stated numbers and the schema from the wheel."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    tree = tmp_path / "tree"  # the files a clone has (no build/ or egg-info left by an editable install)
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, tree / rel)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(tree)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("medrobust-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = REPO / "src" / "medrobust"
    data = {f"medrobust/{p.relative_to(package).as_posix()}" for p in package.rglob("*.yaml")}
    assert data >= {"medrobust/claims.yaml", "medrobust/paper_values.yaml", "medrobust/core/config.schema.yaml"}
    assert data <= names, data - names
    # installed from the wheel (not editable), the package runs a demo slice from this checkout's
    # workflow: its jobs' `medrobust` imports the installed copy (PYTHONPATH comes first)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**env_with_venv(), "PYTHONPATH": str(site)}
    cfg = tmp_path / "slice.yaml"
    cfg.write_text(yaml.safe_dump({"datasets": {"synthetic": {"source": "synthetic", "grid": "g", "synthetic": {
        "n_classes": 3, "n_train": 60, "n_val": 20, "n_test": 20}}}, "grids": {f: {"g": {
            "lr": [0.1], "batch_size": [20], "epochs": [1]}} for f in ("base", "nonrobust", "robust")}}))
    where = subprocess.run([sys.executable, "-c", "import medrobust; print(medrobust.__file__)"], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path / "wd"),
                           "--configfile", str(cfg), "--cores", "1", paths.prepared("synthetic")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "wd" / paths.prepared("synthetic")).stat().st_size > 0
