"""The verdict rules measured by simulation, through the pipeline's own bootstrap, intervals and
rules (medrobust.report.simulate.measure): per test set (the paper's five sizes and class
balances), seed setting and replicate count k, the coverage of the 95% intervals (this scheme,
the scheme before it, and two other choices of degrees of freedom: plain Satterthwaite and
k - 1), the rate of "does
not hold" when the truth sits on a rule's boundary (nominal: at most 2.5% one-sided), and power.

    python bench/verdict_rules.py [--sims 2000] [--jobs 2] [--out rates.csv]
    python bench/verdict_rules.py --from-csv rates.csv   # the summary tables again
    python bench/verdict_rules.py --study [--sims 500] [--k 3]

--study instead simulates whole runs of the paper's five datasets through the verdicts
(medrobust.report.calibration): with the paper's stated numbers as the truth, the largest share
of "does not hold" of any check per dataset (a perfect reproduction should almost never fail),
and per planted defect the share that reads "does not hold".

Seed settings: the seed spread of a replicate's value is 0, 1, 4 or 10 times its spread over
test images, or "mixture": ratio 1 with 30% of replicates collapsed to one class (balanced
accuracy exactly chance; the demo's nonrobust-only failure). True values 0.75 in the main grid
(0.50 for the mixture, whose collapsed third caps it), then 0.10, 0.50 and 0.90 on two test
sets (the positions grid). Every rate is printed with its
largest Monte-Carlo standard error, sqrt(r (1 - r) / sims). 33 minutes on 2 cores (measured).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import time
from multiprocessing import Pool

# one BLAS thread per process: the processes already fill the cores, and OpenBLAS's own threads on
# top of them made the bootstrap's matrix products 8 times slower (measured on 2 cores)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from medrobust.report.simulate import RATES, TEST_SETS, measure

SEEDS = {"0x": (0.0, 0.0), "1x": (1.0, 0.0), "4x": (4.0, 0.0), "10x": (10.0, 0.0), "mixture": (1.0, 0.3)}
KS = (1, 2, 3, 5)
SHOWN = {"cover": "coverage", "cover_plain": "plain scale", "cover_old": "before", "cover_satterthwaite": "Satterthwaite",
         "cover_k_minus_1": "t(k-1)",
         "cover_diff": "coverage a-b", "cover_diff_old": "before a-b", "above_fail_at_boundary": "above: ✗ at boundary",
         "order_fail_at_boundary": "a>b: ✗ at 0", "stated_fail_at_truth": "stated: ✗ at P",
         "stated_reproduced_at_margin": "stated: ✓ at P+-D", "above_fail_power": "above: ✗ at -5pp",
         "order_fail_power": "a>b: ✗ at -5pp", "order_hold_power": "a>b: ✓ at +5pp",
         "stated_reproduced_power": "stated: ✓ at P", "broken_fail_at_boundary": "C5: ✗ at 1%",
         "broken_fail_power": "C5: ✗ at 5%", "broken_hold_power": "C5: ✓ at 0%"}


def cell(args: tuple[str, str, int, float, int, int]) -> dict[str, object]:
    dataset, seeds, k, target, sims, seed = args
    ratio, collapse = SEEDS[seeds]
    t0 = time.perf_counter()
    rates = measure(TEST_SETS[dataset], k, ratio, collapse, sims, seed, target=target)
    return {"dataset": dataset, "n": sum(TEST_SETS[dataset]), "seeds": seeds, "k": k, "target": target,
            **rates, "seconds": round(time.perf_counter() - t0, 1)}


def cells(sims: int) -> list[tuple[str, str, int, float, int, int]]:
    main = [(d, s, k, 0.5 if s == "mixture" else 0.75) for d, s, k in itertools.product(TEST_SETS, SEEDS, KS)]
    positions = [(d, "4x", k, t) for d, k, t in itertools.product(("breastmnist", "pathmnist"), (3, 5),
                                                                     (0.10, 0.50, 0.90))]
    return [(*c, sims, i) for i, c in enumerate(main + positions)]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(rows: list[dict[str, object]], sims: int) -> str:
    head = ["dataset", "n", "seeds", "k", "truth", *SHOWN.values()]
    lines = [_row(head), "|" + "---|" * len(head)]
    for r in rows:
        lines.append(_row([str(r["dataset"]), str(r["n"]), str(r["seeds"]), str(r["k"]),
                           f"{float(r['target']):.2f}", *(f"{float(r[k]):.3f}" for k in SHOWN)]))
    def mc(r: float) -> float:
        return math.sqrt(r * (1 - r) / sims)

    lines.append(f"\n{sims} simulations per cell; Monte-Carlo standard error of a rate r: sqrt(r(1-r)/{sims}): "
                 f"{mc(0.5):.4f} at most, {mc(0.95):.4f} at r = 0.95, {mc(0.025):.4f} at r = 0.025.")
    return "\n".join(lines)


COVERAGE = ("cover", "cover_diff", "cover_plain", "cover_old", "cover_diff_old", "cover_satterthwaite", "cover_k_minus_1")
AT_BOUNDARY = ("above_fail_at_boundary", "order_fail_at_boundary", "stated_fail_at_truth",
               "stated_reproduced_at_margin", "broken_fail_at_boundary")
POWER = ("above_fail_power", "order_fail_power", "order_hold_power", "stated_reproduced_power",
         "broken_fail_power", "broken_hold_power")


def summary(rows: list[dict[str, object]]) -> str:
    """Per k: every coverage as its smallest value over test sets, seed ratios 0-10 and true values
    (the collapse mixture apart), the largest rate of a wrong verdict at each rule's boundary, then each
    power per test set at seed ratio 1 (main grid)."""
    def extreme(rate: str, of: list[dict[str, object]], pick=min) -> str:
        return f"{pick(float(r[rate]) for r in of):.3f}"

    head = ["k", *(SHOWN[c] + " (min)" for c in COVERAGE), "coverage: mixture (min)",
            *(SHOWN[b] + " (max)" for b in AT_BOUNDARY)]
    lines = [_row(head), "|" + "---|" * len(head)]
    for k in KS:
        of = [r for r in rows if int(r["k"]) == k and r["seeds"] != "mixture"]
        mixture = [r for r in rows if int(r["k"]) == k and r["seeds"] == "mixture"]
        lines.append(_row([str(k), *(extreme(c, of) for c in COVERAGE), extreme("cover", mixture),
                           *(extreme(b, of + mixture, max) for b in AT_BOUNDARY)]))
    head = ["test set", "k", *(SHOWN[w] for w in POWER)]
    lines += ["", _row(head), "|" + "---|" * len(head)]
    for d, k in itertools.product(TEST_SETS, KS):
        of = [r for r in rows if r["dataset"] == d and int(r["k"]) == k and r["seeds"] == "1x"]
        lines.append(_row([f"{d} ({sum(TEST_SETS[d])})", str(k), *(extreme(w, of) for w in POWER)]))
    return "\n".join(lines)


def study_cell(args: tuple[str, str | None, int, int]) -> tuple[str, str | None, dict]:
    from medrobust.report.calibration import fail_shares
    from medrobust.report.verdicts import Settings

    dataset, defect, k, sims = args
    settings = Settings(0.05, 0.02, 0.01, 0.10, "applied", 0.95)  # config.yaml's; OOD judged
    return dataset, defect, fail_shares(dataset, k, sims, 0 if defect is None else 1, settings, defect)


def study(sims: int, k: int, jobs: int) -> None:
    from medrobust.report.calibration import DEFECTS

    work = [(d, defect, k, sims) for d in TEST_SETS for defect in (None, *DEFECTS)]
    with Pool(jobs) as pool:
        done = pool.map(study_cell, work, chunksize=1)
    print(f"| dataset | perfect: largest share of ✗ (check) | {' | '.join(DEFECTS)} |")
    print("|---|---|" + "---|" * len(DEFECTS))
    for d in TEST_SETS:
        perfect = next(sh for ds, defect, sh in done if ds == d and defect is None)
        worst = max(perfect.items(), key=lambda item: item[1])
        cells = [f"{next(sh for ds, df, sh in done if ds == d and df == defect).get(DEFECTS[defect], 0):.3f}"
                 for defect in DEFECTS]
        print(f"| {d} | {worst[1]:.3f} ({worst[0][0]} {worst[0][1]}) | {' | '.join(cells)} |")
    print(f"\nk = {k}, {sims} simulated runs per cell; Holm within each family as in the pipeline.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sims", type=int, default=2000, help="simulations per cell")
    p.add_argument("--jobs", type=int, default=2, help="processes")
    p.add_argument("--out", default=None, help="also write every rate as CSV")
    p.add_argument("--study", action="store_true", help="whole simulated runs: a perfect reproduction, defects")
    p.add_argument("--k", type=int, default=3, help="replicates (--study)")
    p.add_argument("--from-csv", help="print the tables of an earlier run's --out file instead of simulating")
    a = p.parse_args()
    if a.study:
        study(a.sims, a.k, a.jobs)
        return
    if a.from_csv:
        with open(a.from_csv, newline="") as f:
            print(summary(list(csv.DictReader(f))))
        return
    t0 = time.perf_counter()
    with Pool(a.jobs) as pool:
        rows = pool.map(cell, cells(a.sims), chunksize=1)
    print(table(rows, a.sims))
    print("\n" + summary(rows))
    print(f"\n{len(rows)} cells in {time.perf_counter() - t0:.0f} s with {a.jobs} processes")
    if a.out:
        with open(a.out, "w", newline="") as f:
            writer = csv.DictWriter(f, ["dataset", "n", "seeds", "k", "target", *RATES, "seconds"])
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
