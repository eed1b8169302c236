"""Where every result lives: one scheme for the rules, the report and the tests.

    resources/<source>/<dataset>...npz           the source file (`source`): downloaded or synthesized
    results/<dataset>/data/                      prepared.npz, corrupted_test.npz (shared by all runs);
                                                 published_*.npz: MedMNIST-C as published (224 px)
    results/<dataset>/grid/<point>/<stage>/      one grid point's training (replicate 0's seed)
    results/<dataset>/grid/<stage>/selected.json the grid point chosen on validation
    results/<dataset>/rep<r>/<stage>/            replicate r's model (replicate 0: the grid's winner)
    results/<dataset>/rep<r>/<stage>/eval/       its test evaluations (<kind>.json, <kind>_probs.npz)
    results/<dataset>/rep<r>/data/               replicate r's nonrobust-feature sets (from its base model)
    results/<dataset>/bootstrap/<stage>.npz      bootstrap draws over the replicates of a stage

A variant (a name and its resolved config) lives under results/variants/<name>/ only where its
settings of a step or of anything upstream of it differ from the main run's; every other step
is the main run's own file, so a variant re-runs exactly what it changes.

A training run is `TRAINED`: its {run} a grid point (`grid/<point>`) or a replicate r >= 1
(`rep<r>`; replicate 0 is the grid's winner, copied by the selection), so one rule trains both.
The templates hold Snakemake wildcards ({dataset}, {stage}, {run}, {rep}, {eps}, {kind});
the functions fill them. `key` names one file in a rule's named inputs and `gather` reads them
back, so a command reads exactly what its rule hands it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrobust.core import hparams
from medrobust.core.config import (
    POINT_PATTERN,
    PUBLISHED_SIZE,
    attacked,
    grid_points,
    medmnist_suffix,
    stages,
    variant_config,
)
from medrobust.core.errors import ConfigError
from medrobust.core.stages import model_of, stage_eps

RESULTS = "results"
VARIANT_ROOT = RESULTS + "/variants/{variant}"
DATA = RESULTS + "/{dataset}/data"
GRID = RESULTS + "/{dataset}/grid/{stage}"
SELECTION = GRID + "/selected.json"
TRAINED = RESULTS + "/{dataset}/{run}/{stage}"
GRID_RUN = "grid/{point}"
RUN_PATTERN = rf"grid/{POINT_PATTERN}|rep[1-9]\d*"  # the {run} of a training run
RUN = RESULTS + "/{dataset}/rep{rep}/{stage}"
EVAL = RUN + "/eval/{kind}.json"
NONROBUST = RESULTS + "/{dataset}/rep{rep}/data/nonrobust_eps{eps}"
BOOTSTRAP = RESULTS + "/{dataset}/bootstrap/{stage}.npz"
# the evaluation settings each kind of test evaluation depends on (beside its model's)
EVALUATION_SETTINGS = {"corrupted": "corruptions", "corrupted_published": "corruptions", "autoattack": "autoattack"}
# MedMNIST-C as published (224 px): the extracted test split, its clean images at image_size
# (the protocol's own baseline) and its corrupted set
PUBLISHED = {"test": DATA + "/published_test_224.npz", "clean": DATA + "/published_clean.npz",
             "corrupted": DATA + "/corrupted_published.npz"}


@dataclass(frozen=True, eq=False)
class Variant:
    """A named reading of the study: its resolved config beside the main run's."""

    name: str
    config: dict[str, Any]
    main: dict[str, Any]

    @classmethod
    def of(cls, config: dict[str, Any], name: str) -> Variant:
        """The variant `name` of a validated config (its `variants`)."""
        return cls(name, variant_config(config, name), config)


def source_pattern(config: dict[str, Any], kind: str, size: int | None = None) -> str:
    """Where a source of this kind (synthetic, medmnist, npz: a download) is put, with the
    wildcard {dataset}: a MedMNIST release under medmnist's own file name (its loader reads it);
    `size`: that release (default: source_size)."""
    size = size or config["source_size"]
    return {"synthetic": f"resources/synthetic/{{dataset}}_{size}.npz",
            "medmnist": f"resources/medmnist/{{dataset}}{medmnist_suffix(size)}.npz",
            "npz": "resources/npz/{dataset}.npz"}[kind]


def source(config: dict[str, Any], dataset: str) -> str:
    """A dataset's MedMNIST-format file before resizing (a user's own npz: its path)."""
    ds = config["datasets"][dataset]
    return ds.get("path") or source_pattern(config, ds["source"]).format(dataset=dataset)


def published_source(config: dict[str, Any], dataset: str) -> str | None:
    """The 224 px file whose test split makes a dataset's published MedMNIST-C protocol: the
    MedMNIST release (downloaded, md5-checked) or datasets.<name>.path_224. None where the
    protocol is off or there is no such file (the dataset keeps the applied protocol only)."""
    ds = config["datasets"][dataset]
    if not config["evaluation"]["corruptions"]["published"]:
        return None
    if ds["source"] == "medmnist":
        return source_pattern(config, "medmnist", PUBLISHED_SIZE).format(dataset=dataset)
    return ds.get("path_224")


def prepared(dataset: str) -> str:
    return DATA.format(dataset=dataset) + "/prepared.npz"


def corrupted(dataset: str) -> str:
    return DATA.format(dataset=dataset) + "/corrupted_test.npz"


def point_dir(dataset: str, stage: str, point: str) -> str:
    return TRAINED.format(dataset=dataset, run=GRID_RUN.format(point=point), stage=stage)


def point_of(run: str) -> str | None:
    """The grid point a training run is (`grid/<point>`), None for a replicate (`rep<r>`)."""
    return run.removeprefix("grid/") if run.startswith("grid/") else None


def point_of_file(path: str | Path) -> str:
    """The grid point whose training wrote `path` (a file of `point_dir`)."""
    return Path(path).parent.parent.name


def selection(dataset: str, stage: str, variant: Variant | None = None) -> str:
    """A stage's selected grid point; a variant's own only where it selects by another criterion
    (over the main run's grid: a variant never trains a grid of its own)."""
    root = _moved(variant, lambda c: hparams.selection_criterion(c, stage))
    return SELECTION.format(dataset=dataset, stage=stage).replace(RESULTS, root, 1)


def bootstrap(dataset: str, stage: str) -> str:
    return BOOTSTRAP.format(dataset=dataset, stage=stage)


def model_settings(config: dict[str, Any], dataset: str, stage: str) -> dict[str, Any]:
    """Every setting a stage's models depend on, upstream included: the grid (each point's
    hyperparameters), the selection criterion and, for a nonrobust-only stage, the construction
    of its training set and the base models it is built from. Not the epoch a model keeps: every
    run saves its best and its last, and a variant keeps the main run's selected point, so the
    kept epoch moves only what reads the weights (evaluations, constructions)."""
    grid = {p: hparams.train_hparams(config, dataset, stage, p) for p in grid_points(config, dataset, stage)}
    own = {"grid": grid, "select": hparams.selection_criterion(config, stage)}
    return {**own, "set": set_settings(config, dataset, stage_eps(stage))} if model_of(stage) == "nonrobust" else own


def set_settings(config: dict[str, Any], dataset: str, eps: int) -> dict[str, Any]:
    """Every setting a nonrobust-feature set depends on: its construction and its base models'
    (and which of their epochs it is built from)."""
    return {"construct": hparams.construction_settings(config, eps, 0), "base": model_settings(config, dataset, "base"),
            "epoch": hparams.kept_epoch(config, "base")}


def _moved(variant: Variant | None, settings: Callable[[dict[str, Any]], Any]) -> str:
    """The root of a result: the variant's where `settings` of its config differ from the main run's."""
    if variant is None or settings(variant.config) == settings(variant.main):
        return RESULTS
    return VARIANT_ROOT.format(variant=variant.name)


def overlay(variant: Variant, dataset: str, stage: str) -> dict[str, Any]:
    """The training settings a variant changes at every grid point of a stage (the grids compared
    point by point, in order): its models train the main run's selected point again with them.
    A variant that changes the grid itself (other learning rates, say) would need a grid search
    of its own, and is refused."""
    def grid(c: dict[str, Any]) -> list[dict[str, Any]]:
        return [hparams.train_hparams(c, dataset, stage, p) for p in grid_points(c, dataset, stage)]

    main, other = grid(variant.main), grid(variant.config)
    changes = [{k: v for k, v in o.items() if m.get(k) != v} for m, o in zip(main, other)]
    if len(main) != len(other) or any(c != changes[0] for c in changes):
        raise ConfigError(f"config key variants.{variant.name}.settings: it changes the {stage} grid of {dataset} "
                          "point by point; a variant trains the main run's selected point again, with the same "
                          "changes at every point (no grid search of its own)")
    return changes[0]


def variants_to_run(config: dict[str, Any]) -> dict[str, Variant]:
    """The variants of `run_variants`, each checked at every dataset and stage (`overlay`)."""
    runs = {name: Variant.of(config, name) for name in config["run_variants"]}
    for v in runs.values():
        for dataset in config["datasets"]:
            for stage in stages(config):
                overlay(v, dataset, stage)
    return runs


def in_variant(pattern: str) -> str:
    """A result's pattern under a variant's root (the wildcard {variant})."""
    return pattern.replace(RESULTS, VARIANT_ROOT, 1)


def run_dir(dataset: str, stage: str, rep: int, variant: Variant | None = None) -> str:
    """Replicate `rep`'s model directory of a stage; a variant's only where its models differ."""
    root = _moved(variant, lambda c: model_settings(c, dataset, stage))
    return RUN.format(dataset=dataset, rep=rep, stage=stage).replace(RESULTS, root, 1)


def nonrobust_set(dataset: str, eps: int, rep: int, variant: Variant | None = None) -> str:
    """Replicate `rep`'s nonrobust-feature set at eps (its statistics: the same path, .json)."""
    root = _moved(variant, lambda c: set_settings(c, dataset, eps))
    return NONROBUST.format(dataset=dataset, rep=rep, eps=eps).replace(RESULTS, root, 1) + ".npz"


def evaluation(dataset: str, stage: str, rep: int, kind: str, variant: Variant | None = None) -> str:
    """One test evaluation (JSON; its probabilities beside it) of replicate `rep` of a stage: a
    variant's where its model, the epoch it keeps (`<kind>_last`: always the last), or the
    evaluation settings of its kind differ from the main run's."""
    section = EVALUATION_SETTINGS.get(kind.removesuffix("_last"))

    def settings(c: dict[str, Any]) -> Any:
        epoch = "last" if kind.endswith("_last") else hparams.kept_epoch(c, stage)
        return model_settings(c, dataset, stage), epoch, section and c["evaluation"][section]

    root = _moved(variant, settings)
    return EVAL.format(dataset=dataset, rep=rep, stage=stage, kind=kind).replace(RESULTS, root, 1)


def evaluation_kinds(config: dict[str, Any], dataset: str, stage: str) -> list[str]:
    """The test evaluations of a stage's every model: clean, corrupted, AutoAttack where the
    stage is attacked, a nonrobust-only model's last epoch, and where the dataset has a 224 px
    test split, the published protocol's clean and corrupted sets."""
    published = ["clean_published", "corrupted_published"] * (published_source(config, dataset) is not None)
    return (["clean", "corrupted"] + ["autoattack"] * attacked(config, stage)
            + ["clean_last"] * (model_of(stage) == "nonrobust") + published)


def probabilities(evaluation_file: str) -> str:
    """The per-image probabilities beside an evaluation file."""
    return evaluation_file.removesuffix(".json") + "_probs.npz"


def key(dataset: str, stage: str, rep: int | None, kind: str) -> str:
    """The name of one file in a rule's named inputs: `<dataset>/<stage>/<rep>/<kind>`, rep `-`
    for a stage's own files (its selection, its bootstrap draws)."""
    return f"{dataset}/{stage}/{'-' if rep is None else rep}/{kind}"


def gather(inputs: Mapping[str, str]) -> list[dict[str, Any]]:
    """A rule's named inputs (`key` -> path) by stage, in their order: {dataset, stage,
    replicates: [{kind: path}, ...] (by replicate), kind: path (a stage's own files)}. Inputs
    with other names (e.g. `summary`) are not a stage's."""
    stages: dict[tuple[str, str], dict[str, Any]] = {}
    for name, path in inputs.items():
        if name.count("/") != 3:
            continue
        dataset, stage, rep, kind = name.split("/")
        entry = stages.setdefault((dataset, stage), {"dataset": dataset, "stage": stage, "replicates": []})
        if rep == "-":
            entry[kind] = path
            continue
        reps = entry["replicates"]
        reps += [{} for _ in range(int(rep) + 1 - len(reps))]
        reps[int(rep)][kind] = path
    return list(stages.values())
