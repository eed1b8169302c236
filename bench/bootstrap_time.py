"""The bootstrap job (medrobust bootstrap: every replicate's clean, last-epoch, MedMNIST-C and
AutoAttack probabilities of one stage under the bootstrap's draws) on input of a real test set's
size, and the Monte-Carlo error of the interval ends it leads to.

    python bench/bootstrap_time.py [--dataset pathmnist] [--replicates 3] [--draws 1000]

Probability files are made up (random, 60-90% correct) in a temporary folder with the test
set's size and class balance, 11 corruptions x 5 severities (PathMNIST's registry), AutoAttack
on every test image; then `stage_draws` runs as the job runs it, and the largest Monte-Carlo
error of any interval end of the stage (`intervals.estimate`) is printed in points.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from medrobust.core.io import write_npz
from medrobust.report.intervals import estimate, stage_draws
from medrobust.report.simulate import TEST_SETS, labels_of


def probabilities(rng: np.random.Generator, labels: np.ndarray, n_classes: int, skill: float) -> np.ndarray:
    logits = rng.normal(0, 1, (*np.shape(labels), n_classes)).astype(np.float32)
    np.put_along_axis(logits, labels[..., None], np.take_along_axis(logits, labels[..., None], -1) + skill, -1)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def replicate_files(root: Path, rng: np.random.Generator, labels: np.ndarray, n_classes: int,
                    corruptions: int) -> dict[str, str]:
    root.mkdir(parents=True)
    stack = np.broadcast_to(labels, (corruptions, 5, len(labels)))
    write_npz(root / "clean.npz", {"labels": labels, "probs": probabilities(rng, labels, n_classes, 2.5)})
    write_npz(root / "last.npz", {"labels": labels, "probs": probabilities(rng, labels, n_classes, 2.5)})
    write_npz(root / "corrupted.npz", {"labels": labels, "probs": probabilities(rng, stack, n_classes, 1.0),
                                       "corruptions": np.array([f"c{i}" for i in range(corruptions)])})
    write_npz(root / "aa.npz", {"labels": labels, "index": np.arange(len(labels)),
                                "probs": probabilities(rng, labels, n_classes, 0.5),
                                "clean_probs": probabilities(rng, labels, n_classes, 2.5)})
    return {"clean": str(root / "clean.npz"), "clean_last": str(root / "last.npz"),
            "corrupted": str(root / "corrupted.npz"), "autoattack": str(root / "aa.npz")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="pathmnist", choices=sorted(TEST_SETS))
    p.add_argument("--replicates", type=int, default=3)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--corruptions", type=int, default=11)
    a = p.parse_args()
    labels = labels_of(TEST_SETS[a.dataset])
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        files = [replicate_files(Path(tmp) / str(r), rng, labels, len(TEST_SETS[a.dataset]), a.corruptions)
                 for r in range(a.replicates)]
        t0 = time.perf_counter()
        arrays = stage_draws(files, a.draws, seed=0)
        seconds = time.perf_counter() - t0
    keys = [k for k in arrays if k.count("/") == 1 and not k.startswith("autoattack/correct")
            and not k.startswith("autoattack/images")]
    mc = max(estimate(arrays, k, 0.95).mc_error for k in keys)
    print(f"{a.dataset}: {len(labels)} test images, {a.replicates} replicates, {a.corruptions} corruptions x 5 "
          f"severities, {a.draws} draws: {seconds:.1f} s; largest Monte-Carlo error of an interval end "
          f"{100 * mc:.3f} points")


if __name__ == "__main__":
    main()
