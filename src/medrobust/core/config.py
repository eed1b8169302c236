"""Study configuration: schema validation with defaults, and the training grids.

Torch-free on purpose: the Snakefile imports this module into the scheduler.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from medrobust.core.errors import ConfigError, DataError
from medrobust.core.stages import MODELS, model_of, stage_eps, stage_names

SCHEMA_PATH = Path(__file__).resolve().parent / "config.schema.yaml"


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _with_defaults(validator_class: type) -> type:
    """A validator that also fills in the schema's defaults (the jsonschema FAQ recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as f:
        return yaml.safe_load(f)


def _message(error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        keys = ", ".join(_key(path + [u]) for u in unknown)
        hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"unknown config key {keys}{hint}"
    if error.validator == "not" and "enum" in error.validator_value:  # variants' settings: propertyNames
        return (f"config key {_key(path)}: a variant cannot change {error.instance!r} (it keeps the main run's "
                f"{', '.join(error.validator_value['enum'][:-2])}, so that the two are paired)")
    return f"config key {_key(path)}: {error.message}"


def validate(config: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate `config` in place, fill defaults, and return it; raise ConfigError naming the key."""
    schema = schema or load_schema()
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    for name, ds in (config.get("datasets") or {}).items():
        if isinstance(ds, dict) and ds.get("source") == "synthetic":
            ds.setdefault("synthetic", {})
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_message(e) for e in errors))
    _check_cross_references(config)
    for name in config["run_variants"]:
        if name not in config["variants"]:
            raise ConfigError(f"config key run_variants: no variant '{name}' (defined: {', '.join(config['variants'])})")
    for name in config["variants"]:
        variant_config(config, name, schema)
    if config["run_variants"] and config["replicates"] < 2:  # replicate 0 is the main run's grid winner
        raise ConfigError("config key run_variants: a variant is paired with the main run on replicates 1 to "
                          "replicates - 1, so it needs replicates: 2 or more")
    return config


def merged(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overlay`'s values: nested mappings merged key by key, anything else replaced."""
    return {**base, **{k: merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                       for k, v in overlay.items()}}


def variant_config(config: dict[str, Any], name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A named variant's config: the main run's with the variant's settings, validated (a
    ConfigError names the variant and the key); one that changes nothing is refused."""
    main = {k: v for k, v in config.items() if k not in ("variants", "run_variants")}
    settings = config["variants"][name]["settings"]
    try:
        resolved = validate(copy.deepcopy(merged(main, settings)), schema)
    except ConfigError as e:
        raise ConfigError(f"variant {name} (config key variants.{name}.settings): {e}") from None
    if {k: resolved[k] for k in main} == main:
        raise ConfigError(f"config key variants.{name}.settings: it changes nothing (every value is the main run's)")
    return resolved


def _check_cross_references(config: dict[str, Any]) -> None:
    """What JSON-Schema cannot say: grid names exist, each source has the keys it needs."""
    problems = []
    if (config["model"]["depth"] - 4) % 6:
        problems.append(f"config key model.depth: {config['model']['depth']} is not 6n+4 (10, 16, 22, 28, ...)")
    for name, ds in config["datasets"].items():
        for family in MODELS:
            key = "robust_grid" if family == "robust" and "robust_grid" in ds else "grid"
            if ds[key] not in config["grids"][family]:
                known = ", ".join(sorted(config["grids"][family]))
                problems.append(f"config key datasets.{name}.{key}: no grid '{ds[key]}' under grids.{family} (known: {known})")
        problems += _source_problems(name, ds)
    problems += _evaluation_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


# Smallest apply_size at which the registries with stain_deposit and bubble can place their
# marks (medrobust.data.corrupt.min_apply_size; a test keeps the two in step).
MARKS_MIN_APPLY_SIZE = 52
REGISTRIES_WITH_MARKS = ("pathmnist", "bloodmnist")


def _evaluation_problems(config: dict[str, Any]) -> list[str]:
    ev, problems = config["evaluation"], []
    size = ev["corruptions"]["apply_size"]
    for name in config["datasets"]:
        registry = corruption_registry(config, name)
        if registry in REGISTRIES_WITH_MARKS and size < MARKS_MIN_APPLY_SIZE:
            problems.append(f"config key evaluation.corruptions.apply_size: {size} px is too small for "
                            f"{name}'s stain_deposit and bubble corruptions (at least {MARKS_MIN_APPLY_SIZE})")
    if ev["main_eps"] not in config["eps"]:
        problems.append(f"config key evaluation.main_eps: {ev['main_eps']} is not one of eps {config['eps']}")
    if ev["saliency"]["dataset"] is not None and ev["saliency"]["dataset"] not in config["datasets"]:
        problems.append(f"config key evaluation.saliency.dataset: '{ev['saliency']['dataset']}' is not a configured dataset")
    return problems


MAX_RUNTIME_ENV = "MEDROBUST_MAX_RUNTIME_MINUTES"


def max_runtime_minutes(config: dict[str, Any], environ: dict[str, str]) -> int:
    """The partition's time limit: MEDROBUST_MAX_RUNTIME_MINUTES if set (a site setting, like the
    partition), else compute.max_runtime_minutes. A ConfigError names the variable."""
    value = environ.get(MAX_RUNTIME_ENV, "").strip()
    if not value:
        return int(config["compute"]["max_runtime_minutes"])
    if not value.isdigit() or int(value) < 2:
        raise ConfigError(f"{MAX_RUNTIME_ENV}: {value!r} is not a whole number of minutes (at least 2)")
    return int(value)


def corruption_registry(config: dict[str, Any], name: str) -> str:
    """medmnistc registry of a dataset's corruptions: as configured, else its own (MedMNIST) or 'generic'."""
    ds = config["datasets"][name]
    return ds.get("corruptions") or (name if ds["source"] == "medmnist" else "generic")


def attacked(config: dict[str, Any], stage: str) -> bool:
    """Whether AutoAttack evaluates a stage (Table 1: base and the main_eps models; all_eps: every one)."""
    ev = config["evaluation"]
    return stage == "base" or ev["autoattack"]["all_eps"] or stage_eps(stage) == ev["main_eps"]


LATERALITY_WORDS = ("left", "right")


def encodes_laterality(label_names: list[str]) -> bool:
    """Whether class names tell left from right (OrganSMNIST's femur-left, kidney-right, ...)."""
    words = [w for name in label_names for w in name.lower().replace("-", " ").replace("_", " ").split()]
    return any(w in LATERALITY_WORDS for w in words)


def typed_overrides(raw: Any) -> Any:
    """`--config` values as YAML means them. Snakemake reads a nested value (`nonrobust={steps:
    50}`) with YAML's base loader, which keeps every scalar a string ('50', 'null', 'true'), and
    the schema would then reject a number it was given; each string is read again with the
    safe loader (a string that is no other YAML scalar stays as it is)."""
    if isinstance(raw, Mapping):
        return {k: typed_overrides(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [typed_overrides(v) for v in raw]
    if isinstance(raw, str):
        try:
            return yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            return raw
    return raw


def medmnist_suffix(size: int) -> str:
    """How medmnist names a release's file: breastmnist.npz at 28 px, breastmnist_64.npz at 64."""
    return "" if size == 28 else f"_{size}"


@functools.cache
def medmnist_info() -> dict[str, Any]:
    """medmnist's INFO table, read from its info module alone: `import medmnist` runs the
    package's __init__, which imports torch and torchvision (seconds, and memory, in the
    scheduler and on a login node)."""
    spec = importlib.util.find_spec("medmnist")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the medmnist package is not installed")
    path = Path(spec.submodule_search_locations[0]) / "info.py"
    module_spec = importlib.util.spec_from_file_location("medrobust._medmnist_info", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return dict(module.INFO)


def classes_and_channels(config: dict[str, Any], name: str) -> tuple[int, int]:
    """A configured dataset's classes and channels: MedMNIST's INFO, the synthetic spec, or the
    npz entry's own keys (no file is read)."""
    ds = config["datasets"][name]
    if ds["source"] == "medmnist":
        info = medmnist_info()[name]
        return len(info["label"]), info["n_channels"]
    given = ds["synthetic"] if ds["source"] == "synthetic" else ds
    return given["n_classes"], given["n_channels"]


def source_size(config: dict[str, Any], name: str) -> int:
    """The side of a dataset's images before resizing: an npz entry's own, else `source_size`."""
    ds = config["datasets"][name]
    return ds["source_image_size"] if ds["source"] == "npz" else config["source_size"]


def horizontal_flips(config: dict[str, Any], name: str) -> bool:
    """Whether augmentation may flip this dataset's images: `datasets.<name>.hflip` if set; else
    training.augmentation.hflip, except for MedMNIST datasets whose labels encode laterality
    (a flip would turn a left organ into a right one, silently mislabelling it)."""
    ds = config["datasets"][name]
    if ds.get("hflip") is not None:
        return bool(ds["hflip"])
    if not config["training"]["augmentation"]["hflip"]:
        return False
    if ds["source"] == "medmnist":
        return not encodes_laterality(list(medmnist_info()[name]["label"].values()))
    return True


def saliency_dataset(config: dict[str, Any]) -> str:
    """Fig. 1's dataset: as configured, else OrganSMNIST (the paper's), else the first one."""
    chosen = config["evaluation"]["saliency"]["dataset"]
    return chosen or ("organsmnist" if "organsmnist" in config["datasets"] else next(iter(config["datasets"])))


def _source_problems(name: str, ds: dict[str, Any]) -> list[str]:
    where = f"config key datasets.{name}"
    extra = {"npz": {"path", "url", "md5", "n_classes", "n_channels", "source_image_size", "path_224"},
             "synthetic": {"synthetic", "path_224"}, "medmnist": set()}[ds["source"]]
    given = set(ds) - {"source", "grid", "robust_grid", "corruptions", "hflip"}
    problems = [f"{where}.{k}: not used with source '{ds['source']}'" for k in sorted(given - extra)]
    if ds["source"] == "medmnist":
        if name not in medmnist_info():
            problems.append(f"{where}: '{name}' is not a MedMNIST dataset (source: medmnist)")
    if ds["source"] == "npz":
        for k in ("n_classes", "n_channels", "source_image_size"):
            if k not in ds:
                problems.append(f"{where}.{k}: required with source 'npz'")
        if ("path" in ds) == ("url" in ds):
            problems.append(f"{where}: give exactly one of path or url (with md5) for source 'npz'")
        if ("url" in ds) != ("md5" in ds):
            problems.append(f"{where}.md5: url and md5 go together")
    return problems


def check_local_files(config: dict[str, Any]) -> None:
    """Every dataset file given by path exists and is a readable MedMNIST-format npz whose
    splits (path_224: its test split) have as many labels as images (headers only); else a
    DataError naming it."""
    from medrobust.core.io import SPLITS, check_npz_splits

    for name, ds in config["datasets"].items():
        for key, splits in (("path", SPLITS), ("path_224", ("test",))):
            if key in ds:
                try:
                    check_npz_splits(ds[key], splits)
                except DataError as e:
                    raise DataError(f"datasets.{name}.{key}: {e}") from None


# MedMNIST-C as published: medmnistc's DatasetManager corrupts the 224 px release
PUBLISHED_SIZE = 224


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a YAML config file."""
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return validate(config)


POINT_PATTERN = r"lr[0-9.e+-]+_bs\d+_ep\d+_aug[01]"  # GridPoint.name's form (a wildcard constraint)


@dataclass(frozen=True)
class GridPoint:
    lr: float
    batch_size: int
    epochs: int
    augment: bool

    @property
    def name(self) -> str:
        """The wildcard value naming this point in output paths, e.g. lr0.1_bs128_ep200_aug0."""
        return f"lr{self.lr:g}_bs{self.batch_size}_ep{self.epochs}_aug{int(self.augment)}"


def stages(config: dict[str, Any]) -> list[str]:
    """The run's model stages (medrobust.core.stages.stage_names of its eps)."""
    return stage_names(config["eps"])


def grid_points(config: dict[str, Any], dataset: str, stage: str) -> dict[str, GridPoint]:
    """Every point of the dataset's grid for a stage, by name, in a stable order."""
    family = model_of(stage)
    ds = config["datasets"][dataset]
    grid = config["grids"][family][ds.get("robust_grid", ds["grid"]) if family == "robust" else ds["grid"]]
    points = [GridPoint(float(lr), int(bs), int(ep), bool(aug))
              for lr, bs, ep, aug in itertools.product(grid["lr"], grid["batch_size"], grid["epochs"], grid["augment"])]
    return {p.name: p for p in points}
