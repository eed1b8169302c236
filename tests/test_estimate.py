"""The compute estimate agrees with the real DAG, and the constants it shares with other modules
agree with their sources (medmnistc's registry)."""

from pathlib import Path

import pytest

from medrobust.cli.main import main
from medrobust.core import config as cfg_mod
from medrobust.core import estimate
from medrobust.data import corrupt

from test_workflow import planned

GPU_RULES = ("train", "construct_nonrobust", "evaluate_clean", "evaluate_clean_last",
             "evaluate_corrupted", "autoattack", "evaluate_clean_published", "evaluate_corrupted_published")


@pytest.mark.parametrize("name", ["config.yaml", "config.quick.yaml"])
def test_estimated_jobs_are_the_dags_gpu_jobs(name: str, tmp_path: Path) -> None:
    from conftest import REPO

    jobs = planned(tmp_path, "--configfile", str(REPO / name))
    rows = estimate.study(cfg_mod.load(REPO / name))
    assert sum(r["gpu_jobs"] for r in rows) == sum(jobs.get(rule, 0) for rule in GPU_RULES)
    assert all(r["gpu_hours"] > 0 for r in rows)
    config = cfg_mod.load(REPO / name)
    points = sum(len(cfg_mod.grid_points(config, d, s)) for d in config["datasets"] for s in cfg_mod.stages(config))
    assert jobs["train"] == points + len(rows) * (config["replicates"] - 1)  # the grid, then each replicate r >= 1


def test_estimate_scales_with_the_grid_and_the_epochs() -> None:
    from conftest import REPO

    config = cfg_mod.load(REPO / "config.quick.yaml")
    before = {(r["dataset"], r["stage"]): r["gpu_hours"] for r in estimate.study(config)}
    config["grids"]["base"]["small"]["epochs"] = [120]  # twice the epochs of the small datasets' base models
    after = {(r["dataset"], r["stage"]): r["gpu_hours"] for r in estimate.study(config)}
    grew = {k for k in before if after[k] != before[k]}
    assert grew == {("pneumoniamnist", "base"), ("breastmnist", "base")}
    config["compute"]["train_images_per_second"] *= 2
    assert sum(r["gpu_hours"] for r in estimate.study(config)) < sum(after.values())


def test_estimate_command_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import REPO

    assert main(["estimate", str(REPO / "config.quick.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["dataset", "stage", "GPU", "jobs", "GPU-hours", "of", "which", "replicates"]
    assert "pathmnist" in out and out.count("\n") > 25


def test_shared_constants_agree_with_medmnistc() -> None:
    for key, n in estimate.N_CORRUPTIONS.items():
        assert len(corrupt.corruption_names(key)) == n, key
    sizes = {key: max(corrupt.min_apply_size(key, name, s) for name in corrupt.corruption_names(key)
                      for s in corrupt.SEVERITIES)
             for key in estimate.N_CORRUPTIONS}
    assert {k for k, v in sizes.items() if v > 32} == set(cfg_mod.REGISTRIES_WITH_MARKS)
    assert max(sizes.values()) == cfg_mod.MARKS_MIN_APPLY_SIZE


@pytest.mark.parametrize("name, dataset", [("config.yaml", "pathmnist"), ("config.demo.yaml", "synthetic")])
def test_weights_bytes_are_a_real_models(name: str, dataset: str) -> None:
    """The disk estimate's model size: the WRN's float tensors (weights, BatchNorm statistics),
    twice (best and last epoch), as core/network.py builds it."""
    from conftest import REPO
    from medrobust.core.network import build

    config = cfg_mod.load(REPO / name)
    n_classes, channels = cfg_mod.classes_and_channels(config, dataset)
    model = build(**config["model"], n_classes=n_classes, n_channels=channels, mean=[0.5] * channels,
                  std=[0.25] * channels)
    floats = sum(t.numel() for k, t in model.state_dict().items() if t.is_floating_point() and k not in ("mean", "std"))
    assert estimate.weights_bytes(config, dataset) == 2 * 4 * floats
