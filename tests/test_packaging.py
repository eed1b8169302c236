"""The environment is what the pins say, and the README's two commands are the real ones."""

import re
import tomllib

import yaml

from conftest import REPO


def _pins(lines: list[str]) -> dict[str, str]:
    """{normalised name: version} of exact pins (PEP 503 names: PyYAML == pyyaml)."""
    pins = (re.match(r"([A-Za-z0-9_.-]+)==([^,;\s]+)", s).groups() for s in lines)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}


def test_conda_env_pins_equal_pyproject_pins() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "envs" / "medrobust.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip) == _pins(project["dependencies"])


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
    assert "./run.sh test" in (REPO / ".ci" / "run").read_text()
