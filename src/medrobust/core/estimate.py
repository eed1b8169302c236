"""What a configured study costs before anything is submitted: jobs and GPU-hours per stage,
from the grid and the dataset sizes, at the throughputs under `compute` in the config (images
per second of one GPU; measure them on your GPU with bench/train_throughput.py and
bench/pgd_throughput.py). The same model sets each cluster job's runtime request.

Work counted per job, in images through the network (one step = forward + backward):
- standard training: epochs x (train steps + val forwards);
- TRADES: epochs x (train x (attack steps + 2) steps + attacked val images x val steps);
- construction: train images x PGD steps;
- clean / corrupted evaluation: test forwards (x corruptions x 5 severities);
- AutoAttack, worst case (no point flips): per image 100 APGD-CE steps, 100 per target for
  APGD-T and for FAB-T (twice: FAB needs two gradients), and 5000 Square forwards.

MedMNIST-C as published (`published`) adds no training: CPU time to corrupt the 224 px test
split (CORRUPT_224_SECONDS, measured), its disk, and two more evaluations of every model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from medrobust.core import hparams, paths
from medrobust.core.config import (
    PUBLISHED_SIZE,
    attacked,
    classes_and_channels,
    corruption_registry,
    grid_points,
    medmnist_info,
    saliency_dataset,
    stages,
)
from medrobust.core.io import check_npz_splits
from medrobust.core.stages import model_of, stage_eps

SEVERITIES = 5
# medmnistc registry sizes (medrobust.data.corrupt.corruption_names; a test keeps them in step)
N_CORRUPTIONS = {"pathmnist": 11, "bloodmnist": 11, "dermamnist": 15, "retinamnist": 8, "tissuemnist": 8,
                 "octmnist": 6, "breastmnist": 7, "chestmnist": 13, "pneumoniamnist": 13, "organamnist": 13,
                 "organcmnist": 13, "organsmnist": 13, "generic": 13}
# CPU seconds to corrupt one 224 px test image with every corruption of its registry at every
# severity, one core (bench/protocol_strength.py, 24 synthetic images per registry; docs/method.md)
CORRUPT_224_SECONDS = {"pathmnist": 0.42, "pneumoniamnist": 0.11, "octmnist": 0.30, "organsmnist": 0.13,
                       "breastmnist": 0.25}
CORRUPT_224_DEFAULT = 0.42  # another registry: the slowest measured


@dataclass(frozen=True)
class Sizes:
    n_train: int
    n_val: int
    n_test: int
    n_classes: int


def dataset_sizes(config: dict[str, Any], name: str) -> Sizes:
    """Split sizes and classes of a configured dataset, without reading it where possible
    (every job's resources ask: a file's array headers are read once per path)."""
    ds = config["datasets"][name]
    if ds["source"] == "npz" and "path" in ds:
        n = _npz_splits(ds["path"])
    elif ds["source"] == "medmnist":
        n = medmnist_info()[name]["n_samples"]
    elif ds["source"] == "synthetic":
        n = {split: ds["synthetic"][f"n_{split}"] for split in ("train", "val", "test")}
    else:  # a file still to download: a stated guess
        n = {"train": 10_000, "val": 1_000, "test": 1_000}
    return Sizes(n["train"], n["val"], n["test"], classes_and_channels(config, name)[0])


_npz_splits = functools.cache(check_npz_splits)  # (a DataError naming the file if it is missing or corrupt)


def train_seconds(config: dict[str, Any], name: str, stage: str, point: str) -> float:
    """One training run, from the settings its job gets (medrobust.core.hparams)."""
    c, z = config["compute"], dataset_sizes(config, name)
    hp = hparams.train_hparams(config, name, stage, point)
    if hp.get("method") == "trades":
        val = hp["val_max_images"] or z.n_val
        steps = hp["epochs"] * (z.n_train * (hp["attack_steps"] + 2) + val * (hp["val_attack_steps"] + 1))
        return steps / c["train_images_per_second"]
    return hp["epochs"] * (z.n_train / c["train_images_per_second"] + z.n_val / c["forward_images_per_second"])


def construct_seconds(config: dict[str, Any], name: str) -> float:
    steps = hparams.construction_settings(config, config["eps"][0], 0)["steps"]
    return dataset_sizes(config, name).n_train * steps / config["compute"]["train_images_per_second"]


def evaluate_seconds(config: dict[str, Any], name: str, kind: str) -> float:
    """One evaluation of a kind (clean, corrupted, autoattack; a published protocol's the same)."""
    c, z, kind = config["compute"], dataset_sizes(config, name), kind.removesuffix("_published")
    if kind == "clean":
        return z.n_test / c["forward_images_per_second"]
    if kind == "corrupted":
        return z.n_test * N_CORRUPTIONS[corruption_registry(config, name)] * SEVERITIES / c["forward_images_per_second"]
    aa = config["evaluation"]["autoattack"]
    n = min(aa["n_images"] or z.n_test, z.n_test)
    targets = min(9, z.n_classes - 1)
    steps = 100 + 100 * targets + 2 * 100 * targets
    return n * (steps / c["train_images_per_second"] + 5000 / c["forward_images_per_second"])


def saliency_seconds(config: dict[str, Any]) -> float:
    """Fig. 1: both models predict the test split and PGD runs against the base model on it."""
    c, z = config["compute"], dataset_sizes(config, saliency_dataset(config))
    steps = config["evaluation"]["saliency"]["steps"]
    return z.n_test * (2 / c["forward_images_per_second"] + (steps + 1) / c["train_images_per_second"])


def _chain_seconds(config: dict[str, Any], name: str, stage: str) -> tuple[int, float]:
    """Jobs and GPU-seconds of one stage's evaluations (and, for a nonrobust-only stage, its
    construction and its last epoch's evaluation), without training."""
    jobs, seconds = 2, evaluate_seconds(config, name, "clean") + evaluate_seconds(config, name, "corrupted")
    if model_of(stage) == "nonrobust":
        jobs, seconds = jobs + 2, seconds + construct_seconds(config, name) + evaluate_seconds(config, name, "clean")
    if attacked(config, stage):
        jobs, seconds = jobs + 1, seconds + evaluate_seconds(config, name, "autoattack")
    if paths.published_source(config, name):
        jobs, seconds = jobs + 2, seconds + evaluate_seconds(config, name, "clean") + evaluate_seconds(
            config, name, "corrupted")
    return jobs, seconds


def published_cost(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Per dataset with a 224 px test split: the published protocol's CPU-hours (corrupting
    it) and disk in GB: the download (deleted once its test split is extracted: the whole
    release, uncompressed), the test split at 224 px, the corrupted set at image_size."""
    rows = []
    for name in (d for d in config["datasets"] if paths.published_source(config, d)):
        z, channels = dataset_sizes(config, name), classes_and_channels(config, name)[1]
        registry, small = corruption_registry(config, name), config["image_size"] ** 2 * channels
        big = PUBLISHED_SIZE**2 * channels
        download = (z.n_train + z.n_val + z.n_test) * big if config["datasets"][name]["source"] == "medmnist" else 0
        rows.append({"dataset": name, "cpu_hours": z.n_test * CORRUPT_224_SECONDS.get(registry, CORRUPT_224_DEFAULT) / 3600,
                     "download_gb": download / 1e9, "test_gb": z.n_test * big / 1e9,
                     "corrupted_gb": z.n_test * small * N_CORRUPTIONS[registry] * SEVERITIES / 1e9})
    return rows


def study(config: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per dataset and stage: jobs and GPU-hours of training, construction, evaluation,
    seed replicates included (each replicate r >= 1: one training run at the selected point,
    counted at the grid's longest, and the same construction and evaluations)."""
    rows, extra = [], config["replicates"] - 1
    for name in config["datasets"]:
        for stage in stages(config):
            points = grid_points(config, name, stage)
            train = [train_seconds(config, name, stage, v) for v in points]
            jobs, seconds = _chain_seconds(config, name, stage)
            rep_jobs, rep_seconds = extra * (jobs + 1), extra * (seconds + max(train))
            rows.append({"dataset": name, "stage": stage, "gpu_jobs": len(points) + jobs + rep_jobs,
                         "gpu_hours": (sum(train) + seconds + rep_seconds) / 3600,
                         "replicate_gpu_hours": rep_seconds / 3600})
    return rows


def weights_bytes(config: dict[str, Any], name: str) -> int:
    """One trained model's file: the best and the last epoch's float32 weights and BatchNorm
    statistics of the configured WRN (core/network.py), counted from its layers."""
    m, (n_classes, channels) = config["model"], classes_and_channels(config, name)
    widths = [16, 16 * m["width"], 32 * m["width"], 64 * m["width"]]
    count = 9 * channels * widths[0] + 4 * widths[3] + (widths[3] + 1) * n_classes
    for g in range(3):
        for i in range((m["depth"] - 4) // 6):
            c_in, c_out = widths[g] if i == 0 else widths[g + 1], widths[g + 1]
            count += 4 * c_in + 9 * c_in * c_out + 4 * c_out + 9 * c_out * c_out + c_in * c_out * (c_in != c_out)
    return 2 * 4 * count


def _result_bytes(config: dict[str, Any], name: str, kind: str) -> int:
    """A test evaluation's per-image probabilities (float32), or a nonrobust set (float32 images)."""
    z, channels, size = dataset_sizes(config, name), classes_and_channels(config, name)[1], config["image_size"]
    if kind == "set":
        return z.n_train * channels * size * size * 4
    per_image = {"corrupted": N_CORRUPTIONS[corruption_registry(config, name)] * SEVERITIES, "autoattack": 2}
    return z.n_test * z.n_classes * 4 * per_image.get(kind.removesuffix("_published"), 1)


def variant_cost(config: dict[str, Any], name: str) -> dict[str, Any]:
    """What running a named variant adds to the study (medrobust.core.paths decides what it
    moves): per dataset and paired replicate 1..k-1, a training run of every moved model (at its
    grid's longest point), a construction of every moved set and every moved evaluation."""
    v, jobs, seconds, size = paths.Variant.of(config, name), 0, 0.0, 0
    for d in config["datasets"]:
        for stage, rep in ((s, r) for s in stages(config) for r in range(1, config["replicates"])):
            if paths.run_dir(d, stage, rep, v) != paths.run_dir(d, stage, rep):
                jobs, size = jobs + 1, size + weights_bytes(v.config, d)
                seconds += max(train_seconds(v.config, d, stage, p) for p in grid_points(v.config, d, stage))
            eps = stage_eps(stage) if model_of(stage) == "nonrobust" else None
            if eps and paths.nonrobust_set(d, eps, rep, v) != paths.nonrobust_set(d, eps, rep):
                jobs, seconds, size = jobs + 1, seconds + construct_seconds(v.config, d), size + _result_bytes(config, d, "set")
            for kind in paths.evaluation_kinds(config, d, stage):
                if paths.evaluation(d, stage, rep, kind, v) != paths.evaluation(d, stage, rep, kind):
                    base = kind.removesuffix("_last")
                    jobs, seconds = jobs + 1, seconds + evaluate_seconds(config, d, base)
                    size += _result_bytes(config, d, base)
    return {"variant": name, "gpu_jobs": jobs, "gpu_hours": seconds / 3600, "disk_gb": size / 1e9}


def runtime_minutes(config: dict[str, Any], seconds: float) -> int:
    """A job's wall-time request: the estimate times the safety factor, at least the minimum."""
    c = config["compute"]
    return max(c["min_runtime_minutes"], int(seconds * c["runtime_safety_factor"] / 60) + 1)


def pieces(minutes: int, cap: int) -> int:
    """How many jobs of at most `cap` minutes a request of `minutes` takes."""
    return max(1, -(-minutes // cap))


def render(rows: list[dict[str, Any]], config: dict[str, Any]) -> str:
    c = config["compute"]
    lines = [f"{'dataset':<16}{'stage':<18}{'GPU jobs':>9}{'GPU-hours':>11}{'of which replicates':>21}"]
    lines += [f"{r['dataset']:<16}{r['stage']:<18}{r['gpu_jobs']:>9}{r['gpu_hours']:>11.2f}"
              f"{r['replicate_gpu_hours']:>21.2f}" for r in rows]
    total_jobs, total_hours = sum(r["gpu_jobs"] for r in rows), sum(r["gpu_hours"] for r in rows)
    replicates = sum(r["replicate_gpu_hours"] for r in rows)
    lines.append(f"{'total':<34}{total_jobs:>9}{total_hours:>11.2f}{replicates:>21.2f}")
    lines.append(f"({config['replicates']} seed replicate(s) of the whole chain: config key replicates; each one "
                 "beyond the first trains every stage once more at its selected point, counted at the grid's longest)")
    lines.append(f"(at {c['train_images_per_second']:g} training and {c['forward_images_per_second']:g} forward "
                 "images/s per GPU: config key compute; plus a few CPU jobs per dataset: download, prepare, "
                 "corruptions, selection, figures and tables)")
    if config["variants"]:
        lines.append(f"\n{'variant (config key variants)':<34}{'GPU jobs':>9}{'GPU-hours':>11}{'disk GB':>9}")
        for r in (variant_cost(config, name) for name in config["variants"]):
            running = " (in run_variants)" if r["variant"] in config["run_variants"] else ""
            lines.append(f"{r['variant']:<34}{r['gpu_jobs']:>9}{r['gpu_hours']:>11.2f}{r['disk_gb']:>9.2f}{running}")
        lines.append(f"(each added to the study when run: replicates 1..{config['replicates'] - 1} of what it moves, "
                     "its models counted at the grid's longest point; disk: models, nonrobust sets, probabilities)")
    lines += _render_published(published_cost(config))
    patience = config["robust"]["patience"]
    lines.append("TRADES runs: the full schedule of every grid point, as the paper (robust.patience 0)" if not patience
                 else f"TRADES runs counted at their full schedule: an upper bound, since robust.patience {patience} "
                      "stops a run early once its robust validation accuracy stalls (a deviation from the paper)")
    return "\n".join(lines)


def _render_published(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [f"\n{'MedMNIST-C as published':<24}{'CPU-hours':>10}{'download GB':>13}{'test split GB':>15}"
             f"{'corrupted GB':>14}"]
    lines += [f"{r['dataset']:<24}{r['cpu_hours']:>10.2f}{r['download_gb']:>13.2f}{r['test_gb']:>15.2f}"
              f"{r['corrupted_gb']:>14.3f}" for r in rows]
    total = {k: sum(r[k] for r in rows) for k in ("cpu_hours", "download_gb", "test_gb", "corrupted_gb")}
    lines.append(f"{'total':<24}{total['cpu_hours']:>10.2f}{total['download_gb']:>13.2f}{total['test_gb']:>15.2f}"
                 f"{total['corrupted_gb']:>14.3f}")
    lines.append("(evaluation.corruptions.published: no training; its two evaluations of every model are in the GPU "
                 "rows above; the download is deleted once its test split is extracted)")
    return lines
