"""The config turned into each job's settings: what a training run, a construction and a
replicate use. Pure functions of the validated config; the rules pass their results to the
commands as JSON params (so a change of any of them re-runs exactly its jobs), and the tests
check that every key is one the command accepts."""

from __future__ import annotations

from typing import Any

from medrobust.core.config import grid_points, horizontal_flips
from medrobust.core.numerics import derive_seed
from medrobust.core.stages import model_of, stage_eps


def replicate_seed(config: dict[str, Any], rep: int) -> int:
    """The master seed of replicate `rep`: the configured seed for replicate 0."""
    return config["seed"] if rep == 0 else derive_seed(config["seed"], rep)


def construction_settings(config: dict[str, Any], eps: int, rep: int) -> dict[str, Any]:
    """Every setting that changes a nonrobust-feature set (medrobust construct --settings)."""
    nr = config["nonrobust"]
    return {"eps": eps / 255, "steps": nr["steps"], "step_size_factor": nr["step_size_factor"],
            "targets": nr["targets"], "random_start": nr["random_start"], "seed": replicate_seed(config, rep),
            "precision": nr["precision"]}


def train_hparams(config: dict[str, Any], dataset: str, stage: str, point: str) -> dict[str, Any]:
    """Every setting that changes a training result (medrobust train --hparams): the grid
    point's, the training and model sections', and the stage's (TRADES for robust stages)."""
    p = grid_points(config, dataset, stage)[point]
    t, m = config["training"], config["model"]
    hp = {"lr": p.lr, "batch_size": p.batch_size, "epochs": p.epochs, "augment": p.augment,
          "seed": config["seed"], "momentum": t["momentum"], "nesterov": t["nesterov"],
          "weight_decay": t["weight_decay"], "label_smoothing": t["label_smoothing"], "ema_decay": t["ema_decay"],
          "crop_padding": t["augmentation"]["crop_padding"], "hflip": horizontal_flips(config, dataset),
          "precision": t["precision"], "channels_last": t["channels_last"], "depth": m["depth"], "width": m["width"],
          "activation": m["activation"]}
    if model_of(stage) == "robust":
        r = config["robust"]
        hp |= {"method": "trades", "eps": stage_eps(stage) / 255, "beta": r["beta"], "attack_steps": r["steps"],
               "step_size_factor": r["step_size_factor"], "val_attack_steps": r["val_attack_steps"],
               "val_max_images": r["val_max_images"], "patience": r["patience"], "reference": r["reference"]}
    return hp


def kept_epoch(config: dict[str, Any], stage: str) -> str:
    """The epoch whose weights a stage's models keep (core.stages.EPOCHS), which their selection
    reads and their evaluations use: a base model its last (the paper's schedule), a robust model
    its best under attack (early stopping on adversarial validation, Section 3.2), a nonrobust-only
    model `nonrobust.keep_epoch` (the best clean validation epoch by default: not stated)."""
    model = model_of(stage)
    return {"base": "last", "robust": "best", "nonrobust": config["nonrobust"]["keep_epoch"]}[model]


def train_command(stage: str) -> str:
    """Robust stages train with TRADES, the others with cross-entropy."""
    return "train-trades" if model_of(stage) == "robust" else "train"


def selection_criterion(config: dict[str, Any], stage: str) -> str:
    """The validation number a grid point is selected by: robust models by balanced accuracy
    under attack (Section 3.2; robust.select_by), the others by clean balanced accuracy."""
    robust = model_of(stage) == "robust" and config["robust"]["select_by"] == "robust"
    return "val_robust_balanced_accuracy" if robust else "val_balanced_accuracy"


def defaults(stage: str = "base", **given: Any) -> dict[str, Any]:
    """Every setting of a training run of `stage` at the schema's defaults (a one-point grid on
    a synthetic dataset), `given` replacing any of them: for the tests and benches that train
    outside the workflow, which thereby take their defaults from the schema like the workflow."""
    from medrobust.core.config import validate
    from medrobust.core.stages import stage_eps as eps_of

    grid = {"lr": [given.get("lr", 0.1)], "batch_size": [given.get("batch_size", 128)],
            "epochs": [given.get("epochs", 1)], "augment": [given.get("augment", False)]}
    eps = sorted({4, eps_of(stage)} if model_of(stage) != "base" else {4})  # 4: the schema's main_eps
    config = validate({"datasets": {"d": {"source": "synthetic", "grid": "g"}}, "eps": eps,
                       "grids": {family: {"g": grid} for family in ("base", "nonrobust", "robust")}})
    (point,) = grid_points(config, "d", stage)
    return {**train_hparams(config, "d", stage, point), **given}


def construction_defaults(**given: Any) -> dict[str, Any]:
    """Every construction setting at the schema's defaults (eps 4/255, replicate 0), `given`
    replacing any of them (for tests and benches, as `defaults`)."""
    from medrobust.core.config import validate

    config = validate({"datasets": {"d": {"source": "synthetic", "grid": "g"}},
                       "grids": {f: {"g": {"lr": [0.1], "batch_size": [8], "epochs": [1]}}
                                 for f in ("base", "nonrobust", "robust")}})
    return {**construction_settings(config, 4, 0), **given}
