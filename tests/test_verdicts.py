"""The verdicts on constructed results: every kind of claim can come out holds, does not hold and
inconclusive, stated numbers follow the replicate rule, and the tables and readings say so."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medrobust.report import verdict_tables as vt
from medrobust.report.tables import load_paper_values
from medrobust.report.verdicts import (FAILS, HOLDS, NOT_JUDGED, NOT_RUN, UNSURE, RunResults, above, at_most,
                                       claim_verdicts, combined, judge, load_claims, reading, stated,
                                       stated_verdicts, tolerance, within)

DRAWS = 400
CLAIMS = load_claims()


def _draws(mean: float, spread: float, k: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """One condition/metric's bootstrap arrays: k replicates around `mean`, image spread `spread`."""
    rng = np.random.default_rng(seed)
    points = np.full(k, mean)
    return {"draws": points[:, None] + rng.normal(0, spread, (k, DRAWS)), "point": points}


def _stage(**values: tuple[float, float]) -> dict[str, np.ndarray]:
    """{'clean/balanced_accuracy': (mean, spread), ...} -> a stage's bootstrap arrays."""
    out = {}
    for i, (name, (mean, spread)) in enumerate(values.items()):
        key = name.replace("__", "/")
        d = _draws(mean, spread, seed=i)
        out[key], out[f"{key}/point"] = d["draws"], d["point"]
    return out


def _run(stages: dict[str, dict[str, np.ndarray]], dataset: str = "synthetic", paper: bool = False,
         eps: tuple[int, ...] = (4, 8)) -> RunResults:
    return RunResults(dataset, 4, paper, stages, 4, eps)


def _one(name: str, run: RunResults, metric: str = "balanced_accuracy") -> list[str]:
    return [v.verdict for v in claim_verdicts(name, CLAIMS[name], run) if v.metric == metric]


def test_rules_on_intervals() -> None:
    assert above(0.3, 0.4, 0.25) == HOLDS and above(0.1, 0.25, 0.25) == FAILS and above(0.2, 0.3, 0.25) == UNSURE
    assert above(0.25, 0.25, 0.25) == FAILS  # a constant predictor: exactly at chance is not above it
    assert at_most(0.0, 0.005, 0.01) == HOLDS and at_most(0.02, 0.05, 0.01) == FAILS
    assert at_most(0.0, 0.03, 0.01) == UNSURE
    assert within(0.6, 0.7, 0.57, 0.74) == HOLDS and within(0.8, 0.9, 0.57, 0.74) == FAILS
    assert within(0.5, 0.6, 0.57, 0.74) == UNSURE and above(math.nan, math.nan, 0) == UNSURE


@pytest.mark.parametrize(("mean", "spread", "expected"), [(0.60, 0.02, HOLDS), (0.20, 0.01, FAILS),
                                                          (0.26, 0.05, UNSURE)])
def test_above_chance_claim(mean: float, spread: float, expected: str) -> None:
    """C1 at each eps (chance 1/4): the nonrobust-only models of both budgets."""
    stages = {f"nonrobust_eps{e}": _stage(clean__balanced_accuracy=(mean, spread)) for e in (4, 8)}
    assert _one("C1", _run(stages)) == [expected, expected]


@pytest.mark.parametrize(("gaps", "expected"), [((0.10, 0.20), [HOLDS, HOLDS]), ((0.10, -0.20), [HOLDS, FAILS]),
                                                ((0.0, 0.20), [UNSURE, HOLDS])])
def test_ordering_claim_is_judged_on_paired_differences(gaps: tuple[float, float], expected: list[str]) -> None:
    """C2 base > robust > nonrobust: each adjacent pair on the paired bootstrap difference. The
    same image draws for all three (one seed): shared noise cancels, so a 0-gap is inconclusive."""
    base = 0.8
    stages = {"base": _stage(clean__balanced_accuracy=(base, 0.03)),
              "robust_eps4": _stage(clean__balanced_accuracy=(base - gaps[0], 0.03)),
              "nonrobust_eps4": _stage(clean__balanced_accuracy=(base - gaps[0] - gaps[1], 0.03))}
    # make the pairs' noise partly independent, as two models' errors on the same images are
    for i, st in enumerate(("robust_eps4", "nonrobust_eps4")):
        stages[st]["clean/balanced_accuracy"] = stages[st]["clean/balanced_accuracy"] + np.random.default_rng(
            10 + i).normal(0, 0.02, (1, DRAWS))
    assert _one("C2", _run(stages)) == expected


@pytest.mark.parametrize(("value", "expected"), [(0.0, HOLDS), (0.30, FAILS), (0.012, UNSURE)])
def test_at_most_claim(value: float, expected: str) -> None:
    stages = {st: _stage(autoattack__balanced_accuracy=(value, 0.005)) for st in ("base", "nonrobust_eps4")}
    assert _one("C5", _run(stages)) == [expected, expected]


@pytest.mark.parametrize(("value", "expected"), [(0.65, HOLDS), (0.30, FAILS), (0.575, UNSURE)])
def test_range_claim_on_the_papers_datasets_only(value: float, expected: str) -> None:
    stages = {"robust_eps4": _stage(autoattack__balanced_accuracy=(value, 0.01))}
    assert _one("C6", _run(stages, "pathmnist", paper=True)) == [expected]
    assert _one("C6", _run(stages, "synthetic")) == []  # a number of the paper's datasets only


@pytest.mark.parametrize(("robust", "expected"), [(0.80, HOLDS), (0.95, FAILS), (0.885, UNSURE)])
def test_gap_claim(robust: float, expected: str) -> None:
    """C8a: base minus robust within [1.5, 12.5] points (base 90%)."""
    stages = {"base": _stage(clean__balanced_accuracy=(0.90, 0.02)),
              "robust_eps4": _stage(clean__balanced_accuracy=(robust, 0.02))}
    stages["robust_eps4"]["clean/balanced_accuracy"] = stages["base"]["clean/balanced_accuracy"] - 0.90 + robust \
        + np.random.default_rng(3).normal(0, 0.004, (1, DRAWS))
    assert _one("C8a", _run(stages, "octmnist", paper=True)) == [expected]


def test_eps_comparison_and_exceptions() -> None:
    """C7a compares the main eps with the larger one (not run with one eps); C3 is not judged on
    PneumoniaMNIST, which the paper names as its exception."""
    stages = {"robust_eps4": _stage(clean__balanced_accuracy=(0.8, 0.01)),
              "robust_eps8": _stage(clean__balanced_accuracy=(0.7, 0.01))}
    assert _one("C7a", _run(stages)) == [HOLDS]
    assert _one("C7a", _run(stages, eps=(4,))) == [NOT_RUN]
    assert _one("C7a", _run({"robust_eps4": stages["robust_eps4"]})) == [NOT_RUN]
    corrupted = {"base": _stage(corrupted__balanced_accuracy=(0.3, 0.01)),
                 "robust_eps4": _stage(corrupted__balanced_accuracy=(0.6, 0.01))}
    assert _one("C3", _run(corrupted, "pneumoniamnist", paper=True)) == [NOT_JUDGED]
    assert _one("C3", _run(corrupted, "breastmnist", paper=True)) == [HOLDS]


def test_auc_is_judged_separately() -> None:
    """A model that ranks well but predicts one class: C1 fails on balanced accuracy (exactly
    chance), holds on AUC."""
    stages = {f"nonrobust_eps{e}": _stage(clean__balanced_accuracy=(0.25, 0.0), clean__auc=(0.87, 0.02))
              for e in (4, 8)}
    run = _run(stages)
    assert _one("C1", run) == [FAILS, FAILS] and _one("C1", run, "auc") == [HOLDS, HOLDS]
    assert "C1 (balanced accuracy) does not hold" in reading("synthetic", claim_verdicts("C1", CLAIMS["C1"], run))


def test_stated_value_rule() -> None:
    """|mean - P| <= t(k-1) s sqrt(1 + 1/k) + 1 point; beyond it 'does not hold' only with k >= 3."""
    assert tolerance(math.nan, 1) == pytest.approx(0.01)
    assert tolerance(0.02, 3) == pytest.approx(4.302653 * 0.02 * math.sqrt(4 / 3) + 0.01, rel=1e-5)
    assert stated(0.765, 0.0, 1, 0.7608, bound=False)[0] == HOLDS
    assert stated(0.70, math.nan, 1, 0.7608, bound=False)[0] == UNSURE  # k = 1 never fails
    assert stated(0.70, 0.001, 2, 0.7608, bound=False)[0] == UNSURE  # neither does k = 2 (tol 2.6 points)
    assert stated(0.70, 0.005, 3, 0.7608, bound=False)[0] == FAILS
    assert stated(0.74, 0.02, 3, 0.7608, bound=False)[0] == HOLDS  # within the replicate spread
    assert stated(0.0, 0.0, 3, 0.0004, bound=True)[0] == HOLDS and stated(0.05, 0.0, 3, 0.0004, bound=True)[0] == FAILS


def test_stated_numbers_from_paper_values() -> None:
    """PathMNIST's robust model, clean: the paper states 76.08%; three replicates at 70% with a
    small spread do not reproduce it."""
    rng = np.random.default_rng(0)
    points = 0.70 + rng.normal(0, 0.004, 3)
    arrays = {"clean/balanced_accuracy": points[:, None] + rng.normal(0, 0.01, (3, DRAWS)),
              "clean/balanced_accuracy/point": points}
    run = RunResults("pathmnist", 9, True, {"robust_eps4": arrays}, 4, (4,))
    mine = [v for v in stated_verdicts(load_paper_values(), run) if v.subject == "robust eps4 clean"]
    assert [v.verdict for v in mine] == [FAILS] and mine[0].n_replicates == 3
    others = [v.verdict for v in stated_verdicts(load_paper_values(), run) if v.subject != "robust eps4 clean"]
    assert others and set(others) == {NOT_RUN}  # the stages this run lacks
    assert stated_verdicts(load_paper_values(), RunResults("synthetic", 4, False, {}, 4, (4,))) == []


def test_tables_and_readings() -> None:
    stages = {"base": _stage(clean__balanced_accuracy=(0.9, 0.01), clean__auc=(0.95, 0.01)),
              "robust_eps4": _stage(clean__balanced_accuracy=(0.8, 0.01), clean__auc=(0.9, 0.01)),
              "nonrobust_eps4": _stage(clean__balanced_accuracy=(0.5, 0.01), clean__auc=(0.8, 0.01))}
    verdicts = judge(_run(stages, eps=(4,)), CLAIMS, load_paper_values())
    table = vt.overview_table(verdicts, CLAIMS)
    rows = {r[0]: r for r in table.rows}
    assert rows["C1"][2] == "✓ / ✓" and rows["C2"][2] == "✓ / ✓" and rows["C7a"][2] == "· / ·"
    assert "C6" not in rows  # the paper's datasets only
    assert rows["Reading"][2].startswith("reproduced (all 4 checks hold); not run: C3")
    line = reading("synthetic", verdicts)
    assert line.startswith("synthetic: reproduced (all 4 checks hold); not run: C3 (balanced accuracy)")
    assert combined([v for v in verdicts if v.claim == "C2"]) == HOLDS
    stages["robust_eps4"] = _stage(clean__balanced_accuracy=(0.95, 0.01), clean__auc=(0.9, 0.01))
    worse = judge(_run(stages, eps=(4,)), CLAIMS, load_paper_values())
    assert reading("synthetic", worse).startswith("synthetic: partly reproduced: C2 (balanced accuracy) does not hold")
    text = vt.markdown(verdicts, CLAIMS)
    assert text.startswith("# Does the paper hold?") and "false alarms" in text
