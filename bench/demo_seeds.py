"""The demo's verdicts over config seeds: does the headline hang on one seed?

    python bench/demo_seeds.py [--seeds 0 1 2 3 4] [--out /tmp/demo_seeds]

Runs the demo (config.demo.yaml with `seed: s`, everything else as is) once per seed, each in its
own working directory under --out (about 13 minutes each on 2 cores), then prints, per seed,
every nonrobust-only replicate's clean balanced accuracy (against chance + 15 points) and, per
claim, the verdict symbols and the smallest distance of a deciding interval end from its
threshold (in points; the target: at least 3).
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def run(seed: int, root: Path) -> Path:
    work = root / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((REPO / "config.demo.yaml").read_text())
    cfg["seed"] = seed
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
                    "--configfile", str(work / "config.yaml"), "--cores", "2", "--quiet"], check=True)
    return work


def margins(work: Path) -> dict[str, float]:
    """claim -> the smallest distance (points) of an interval end from the threshold it is judged by."""
    out: dict[str, float] = {}
    for r in csv.DictReader(open(work / "results/summary/verdicts.csv")):
        if not r["ci_low"] or r["verdict"] in ("not run", "not judged"):
            continue
        low, high = 100 * float(r["ci_low"]), 100 * float(r["ci_high"])
        thresholds = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", r["reference"])][:2]
        if not thresholds:
            continue
        gap = min(abs(end - t) for end in (low, high) for t in thresholds)
        out[r["claim"]] = min(out.get(r["claim"], np.inf), gap)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--out", type=Path, default=Path("/tmp/demo_seeds"))
    a = p.parse_args()
    print("| seed | nonrobust-only clean balanced accuracy per replicate (%) | verdicts (claim: symbols, margin pp) |")
    print("|---|---|---|")
    for seed in a.seeds:
        work = run(seed, a.out)
        draws = np.load(work / "results/synthetic/bootstrap/nonrobust_eps4.npz")
        nonrobust = ", ".join(f"{100 * v:.1f}" for v in draws["clean/balanced_accuracy/point"])
        overview = {r["Claim"]: r["synthetic"] for r in csv.DictReader(open(work / "results/summary/verdicts_overview.csv"))}
        gaps = margins(work)
        cells = "; ".join(f"{c} {v} ({gaps[c]:.1f})" if c in gaps else f"{c} {v}" for c, v in overview.items()
                          if c != "Reading" and not v.startswith("·"))
        print(f"| {seed} | {nonrobust} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
