"""The config turned into each job's settings (medrobust.core.hparams): every key is one the
command accepts, for every stage and grid point of the shipped configs, and the values follow
the config."""

from __future__ import annotations

import pytest

from medrobust.attacks.construct import ConstructionConfig
from medrobust.core import hparams
from medrobust.core.config import grid_points, load, stages
from medrobust.train.loop import TrainConfig

from conftest import REPO


@pytest.mark.parametrize("name", ["config.yaml", "config.demo.yaml", "config.quick.yaml"])
def test_every_job_setting_is_accepted_by_its_command(name: str) -> None:
    config = load(REPO / name)
    for dataset in config["datasets"]:
        for stage in stages(config):
            for label, point in grid_points(config, dataset, stage).items():
                hp = hparams.train_hparams(config, dataset, stage, label)
                cfg = TrainConfig.from_dict(hp)  # raises on an unknown key
                assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.augment) == \
                    (point.lr, point.batch_size, point.epochs, point.augment)
                assert (cfg.method == "trades") == stage.startswith("robust")
                assert hparams.train_command(stage) == ("train-trades" if cfg.method == "trades" else "train")
        for eps in config["eps"]:
            for rep in range(config["replicates"]):
                settings = hparams.construction_settings(config, eps, rep)
                assert ConstructionConfig.from_dict(settings).eps == eps / 255
                assert settings["seed"] == hparams.replicate_seed(config, rep)


def test_replicate_seeds_are_the_configured_seed_then_derived_and_distinct() -> None:
    config = load(REPO / "config.demo.yaml")
    seeds = [hparams.replicate_seed(config, r) for r in range(5)]
    assert seeds[0] == config["seed"] and len(set(seeds)) == 5
    config["seed"] = 1
    assert hparams.replicate_seed(config, 1) != seeds[1]


def test_robust_models_are_selected_under_attack_unless_the_config_says_clean() -> None:
    config = load(REPO / "config.yaml")
    assert hparams.selection_criterion(config, "robust_eps4") == "val_robust_balanced_accuracy"
    for stage in ("nonrobust_eps8", "base"):
        assert hparams.selection_criterion(config, stage) == "val_balanced_accuracy"
    config["robust"]["select_by"] = "clean"
    assert hparams.selection_criterion(config, "robust_eps4") == "val_balanced_accuracy"
