"""How much of each demo perturbation rewrites the synthetic set's texture (the planted nonrobust cue).

    python bench/texture_alignment.py WORKDIR

WORKDIR is a finished demo run's directory (the one holding results/). For every constructed
nonrobust-feature set under it, projects each image's perturbation (constructed minus prepared
training image) onto the class textures at every phase, and prints the share of images whose
best-matching texture is the target class's (1 if the attack wrote the target's texture; 1/C at
chance), the same for the original class, the mean share of the perturbation's energy in that
best texture, and the mean |perturbation|.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from medrobust.data.synthetic import TILE_CELLS, class_textures, texture_image


def alignment(adv: np.ndarray, clean: np.ndarray, targets: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    n, size = len(adv), adv.shape[1]
    textures = class_textures(int(max(targets.max(), labels.max())) + 1, seed)
    basis = np.stack([[texture_image(t, size, (i, j)).ravel() for i in range(TILE_CELLS) for j in range(TILE_CELLS)]
                      for t in textures]).astype(np.float32)
    basis /= np.linalg.norm(basis, axis=-1, keepdims=True)
    delta = (adv - clean).reshape(n, -1)
    proj = np.einsum("nd,cpd->ncp", delta, basis).max(2)  # best phase per class
    energy = (delta ** 2).sum(1)
    moved = energy > 0
    return {"to_target": float((proj.argmax(1) == targets).mean()), "to_original": float((proj.argmax(1) == labels).mean()),
            "energy_share": float((proj.max(1)[moved] ** 2 / energy[moved]).mean()),
            "mean_abs_255": float(255 * np.abs(delta).mean())}


def main() -> None:
    import yaml

    work = Path(sys.argv[1])
    seed = yaml.safe_load((work / "config.yaml").read_text())["datasets"]["synthetic"]["synthetic"]["seed"]
    clean = np.load(work / "results/synthetic/data/prepared.npz")["train_images"].astype(np.float32) / 255
    for f in sorted(work.glob("results/synthetic/**/nonrobust_eps*.npz")):
        d = np.load(f)
        r = alignment(d["train_images"].astype(np.float32), clean[d["train_source_index"]], d["train_labels"][:, 0],
                      d["train_original_labels"], seed)
        print(f.relative_to(work), " ".join(f"{k} {v:.3f}" for k, v in r.items()))


if __name__ == "__main__":
    main()
