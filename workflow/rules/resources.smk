# Cluster resources of every job (memory, wall time, GPUs, retries): what SLURM is asked for.
import os

from medrobust.core.estimate import pieces
from snakemake.iocontainers import Wildcards

# ---- cluster resources (snakemake --profile slurm); a local run ignores them -----------------
# A retried job (the profile's `retries`, or the rule's below) asks for more: memory doubles once
# and wall time grows with the attempt (1, 2, ...), so a job killed for running out of either
# gets more on its next try; neither ever passes the partition's limit.

GPUS = config["compute"]["gpus_per_job"]


class Untracked:
    """A param that changes no result (only speed, rounding or where a job runs): Snakemake's
    params trigger records builtin values only, so changing it re-runs nothing (tested), while
    the command line still gets its text."""

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text


# What a GPU job requires (cuda: stop, saying why, without a usable GPU), and how many jobs share
# one GPU of a local multi-GPU machine.
DEVICE = Untracked(f"--device {config['compute']['device']} --jobs-per-gpu {config['compute']['jobs_per_gpu']}")
# Wall time (min) of the CPU rules that run on compute nodes (synthesize, prepare, corrupt_test).
CPU_JOB_MINUTES = 240
MAX_MINUTES = config["compute"]["max_runtime_minutes"]  # MEDROBUST_MAX_RUNTIME_MINUTES applied (Snakefile)


def _memory(wildcards, attempt, images, side):
    """A base plus a share proportional to the data a job holds (`images` of `side` px)."""
    c = config["compute"]
    megabytes = images * side**2 * n_channels(wildcards) / 1e6
    return int(c["mem_mb"] + c["mem_per_dataset_mb"] * megabytes) * min(attempt, 2)


def mem_mb(wildcards, attempt):
    """Memory of a job on this dataset: a base plus a share proportional to its size."""
    from medrobust.core.estimate import dataset_sizes

    z = dataset_sizes(config, wildcards.dataset)
    return _memory(wildcards, attempt, z.n_train + z.n_val + z.n_test, source_size_of(wildcards))


def published_mem_mb(wildcards, attempt):
    """The published protocol's jobs hold the 224 px test split (and its corrupted copies)."""
    from medrobust.core.estimate import dataset_sizes

    return _memory(wildcards, attempt, dataset_sizes(config, wildcards.dataset).n_test, PUBLISHED_SIZE)


def saliency_mem_mb(wildcards, attempt):
    """Fig. 1's job reads the test split of its dataset (no dataset wildcard in its output)."""
    return mem_mb(Wildcards(fromdict={"dataset": saliency_dataset(config)}), attempt)


def requested_minutes(kind, wildcards):
    """A job's wall time before the cap: its estimated GPU time times the safety factor
    (medrobust.core.estimate); the CPU jobs a fixed CPU_JOB_MINUTES."""
    from medrobust.core import estimate

    if kind == "cpu":
        return CPU_JOB_MINUTES
    if kind == "train":
        # a replicate trains at a selection made at run time: the grid's longest point
        point = paths.point_of(wildcards.run)
        points = [point] if point else grid_points(config, wildcards.dataset, wildcards.stage)
        seconds = max(estimate.train_seconds(config, wildcards.dataset, wildcards.stage, p) for p in points)
    elif kind == "construct":
        seconds = estimate.construct_seconds(config, wildcards.dataset)
    elif kind == "saliency":
        seconds = estimate.saliency_seconds(config)
    else:
        seconds = estimate.evaluate_seconds(config, wildcards.dataset, kind)
    return estimate.runtime_minutes(config, seconds)


def runtime(kind):
    """Wall time (min) of a job's attempt: its request times the attempt, at most MAX_MINUTES.
    A job that needs longer runs in pieces (SIGTERM before the limit, state saved, resubmitted)."""

    def minutes(wildcards, attempt):
        return min(MAX_MINUTES, requested_minutes(kind, wildcards) * attempt)

    return minutes


def jobs_of_kind(kind):
    """The wildcards of every job of this kind in the configured study."""
    if kind == "saliency":
        return [Wildcards()]
    if kind == "train":
        return [
            Wildcards(fromdict={"dataset": d, "stage": s, "run": paths.GRID_RUN.format(point=p)})
            for d in DATASETS
            for s in stages(config)
            for p in grid_points(config, d, s)
        ]
    return [Wildcards(fromdict={"dataset": d}) for d in DATASETS]


def retries(kind):
    """Resubmissions of a cluster job: one per piece of its longest request under MAX_MINUTES,
    plus one for a real failure. None on a local run (the command line's --retries): Snakemake
    parses the workflow before it knows the executor, so slurm/config.yaml says it is in use.
    None inside a submitted job too (its environment has the same variable), which would
    otherwise restart the job within its own allocation until the time limit kills it."""
    if os.environ.get("MEDROBUST_PROFILE") != "slurm" or not workflow.is_main_process:
        return None
    longest = max([requested_minutes(kind, w) for w in jobs_of_kind(kind)], default=0)
    return pieces(longest, MAX_MINUTES) + 1
