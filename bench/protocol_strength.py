"""How strong each MedMNIST-C protocol is once the image is at 32 px, and what the published
protocol costs (evaluation.corruptions in config.yaml; docs/method.md, "Two MedMNIST-C protocols").

For each of the paper's five registries, `--n` synthetic test images are drawn at 224 px (the
planted-feature generator, grey or RGB as the dataset; real MedMNIST images are not reachable
here, so the numbers are a property of the corruptions and sizes, not of the anatomy), and:

* applied:   224 -> 64 (MedMNIST's 64 px release is itself a shrink) -> corrupt at 64 -> 32,
             against the clean 64 -> 32 image (what prepared.npz holds);
* published: corrupt at 224 (MedMNIST-C as published) -> 32, against the clean 224 -> 32 image
             (the protocol's own baseline, evaluated as clean_published).

Strength is the mean absolute pixel change at 32 px, in grey levels (0-255), per corruption and
severity; the same images and the pipeline's per-image seeds serve both protocols. Also printed:
how far the two clean baselines are apart, and the seconds per 1,000 images of each protocol
(every corruption x 5 severities, one process), measured in this run.

    python bench/protocol_strength.py --n 24 --out docs/protocol_strength.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from medrobust.data.corrupt import SEVERITIES, corrupt, corruption_names
from medrobust.data.prepare import resize
from medrobust.data.synthetic import SyntheticSpec, generate

REGISTRIES = {"pathmnist": 3, "pneumoniamnist": 1, "octmnist": 1, "organsmnist": 1, "breastmnist": 1}


def images_224(n: int, channels: int, seed: int) -> np.ndarray:
    spec = SyntheticSpec(n_classes=4, n_channels=channels, n_train=4, n_val=4, n_test=n, seed=seed, image_size=224)
    return generate(spec)["test_images"]


def change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def measure(registry: str, x224: np.ndarray, seed: int) -> tuple[list[tuple[str, int, float, float]], dict[str, float]]:
    """Rows (corruption, severity, applied change, published change) and each protocol's seconds."""
    x64 = resize(x224, 64)
    clean = {"applied": resize(x64, 32), "published": resize(x224, 32)}
    seconds = {"applied": 0.0, "published": 0.0}
    rows = []
    for name in corruption_names(registry):
        for severity in SEVERITIES:
            out = {}
            for protocol, source, size in (("applied", x64, 64), ("published", x224, 224)):
                start = time.perf_counter()
                out[protocol] = change(corrupt(source, registry, name, severity, size, 32, seed), clean[protocol])
                seconds[protocol] += time.perf_counter() - start
            rows.append((name, severity, out["applied"], out["published"]))
    return rows, {**seconds, "baselines": change(clean["applied"], clean["published"])}


def report(results: dict[str, tuple[list, dict]], n: int) -> str:
    lines = [f"Mean |corrupted - clean| at 32 px (grey levels, 0-255), {n} synthetic images per registry; "
             "each protocol against its own clean baseline. a = applied (corrupt at 64 px), p = published "
             "(corrupt at 224 px). Severity 1 / 3 / 5.", ""]
    lines += ["| registry | corruption | a: 1 / 3 / 5 | p: 1 / 3 / 5 | p / a at 5 |", "|---|---|---|---|---|"]
    for registry, (rows, _) in results.items():
        by = {(r[0], r[1]): r for r in rows}
        for name in dict.fromkeys(r[0] for r in rows):
            a = " / ".join(f"{by[name, s][2]:.2f}" for s in (1, 3, 5))
            p = " / ".join(f"{by[name, s][3]:.2f}" for s in (1, 3, 5))
            ratio = by[name, 5][3] / by[name, 5][2] if by[name, 5][2] else float("nan")
            lines.append(f"| {registry} | {name} | {a} | {p} | {ratio:.2f} |")
    lines += ["", "| registry | mean change, applied | mean change, published | clean 224->32 vs 64->32 | "
              "s per 1,000 images, applied | s per 1,000 images, published |", "|---|---|---|---|---|---|"]
    for registry, (rows, sec) in results.items():
        lines.append(f"| {registry} | {np.mean([r[2] for r in rows]):.2f} | {np.mean([r[3] for r in rows]):.2f} | "
                     f"{sec['baselines']:.2f} | {1000 * sec['applied'] / n:.0f} | {1000 * sec['published'] / n:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=24, help="images per registry")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--registries", nargs="*", default=list(REGISTRIES))
    p.add_argument("--out", help="also write the tables (markdown) here")
    a = p.parse_args()
    results = {r: measure(r, images_224(a.n, REGISTRIES[r], a.seed), a.seed) for r in a.registries}
    text = report(results, a.n)
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
