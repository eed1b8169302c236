"""The verdicts' error rates, simulated with the pipeline's own bootstrap, intervals and rules
(medrobust.report.simulate, medrobust.report.calibration; the full tables: bench/verdict_rules.py
and docs/verdicts.md): the intervals cover where the scheme before did not, a perfect
reproduction of the paper is (almost) never failed, and planted defects are caught where the
test set resolves them."""

from __future__ import annotations

import pytest

from medrobust.report import calibration
from medrobust.report.simulate import TEST_SETS, measure
from medrobust.report.verdicts import Settings

SETTINGS = Settings(chance_margin=0.05, equivalence=0.02, broken_fail=0.01, broken_hold=0.10,
                    paper_protocol="applied", level=0.95)


@pytest.mark.parametrize(("k", "floor"), [(2, 0.85), (3, 0.90)])
def test_intervals_cover_when_seeds_dominate(k: int, floor: float) -> None:
    """BreastMNIST's 156 images, seed spread 10x the image spread (45 points: a nearly flat
    distribution of a replicate's value over seeds), true value 0.5: the scheme before
    (replicates resampled, percentiles) under-covers; this one covers at k = 3 (at k = 2, two
    draws from so flat a distribution leave it at about 0.89: docs/verdicts.md)."""
    rates = measure(TEST_SETS["breastmnist"], k, 10.0, 0.0, 300, seed=k, target=0.5)
    assert rates["cover_old"] < 0.85
    assert rates["cover"] >= floor and rates["cover_diff"] >= 0.90
    assert rates["order_fail_at_boundary"] <= 0.025 + 0.02 and rates["above_fail_at_boundary"] <= 0.025 + 0.02


def test_values_near_the_ends_cover_on_the_logit_scale() -> None:
    """BreastMNIST, seed spread 4x the image spread, true value 0.90: a replicate's value is
    skewed against 1, and a symmetric interval on three of them under-covered (0.85-0.87 in the
    bench); on the logit scale it covers."""
    rates = measure(TEST_SETS["breastmnist"], 3, 4.0, 0.0, 300, seed=7, target=0.90)
    assert rates["cover_plain"] < 0.90 <= 0.93 <= rates["cover"] + 0.01


@pytest.mark.parametrize("dataset", sorted(TEST_SETS))
def test_a_perfect_reproduction_is_not_failed(dataset: str) -> None:
    """True values the paper's stated numbers (k = 3; seed spreads 1 point, 5 for nonrobust-only):
    no check reads "does not hold" in more than 5% of simulated runs."""
    shares = calibration.fail_shares(dataset, 3, 200, 0, SETTINGS)
    assert len(shares) > 10
    worst = max(shares.items(), key=lambda item: item[1])
    assert worst[1] <= 0.05, worst


# the replicate count and the datasets whose test sets resolve each defect (bench/verdict_rules.py
# --study: at least 0.8). A chance-level nonrobust-only model needs k = 5: at k = 3 the t quantile
# of about 2 degrees of freedom and Holm over the family's dozen checks leave it at 0.74-0.77
# even on PathMNIST and OrganSMNIST (docs/verdicts.md)
RESOLVED = {("nonrobust at chance", 5): ("pathmnist", "organsmnist"),
            ("robust 10 points below base under corruptions", 3): ("pathmnist",),
            ("base keeps 5% under AutoAttack", 3): ("pneumoniamnist", "octmnist", "pathmnist", "organsmnist")}


@pytest.mark.parametrize(("defect", "k", "dataset"), [(d, k, s) for (d, k), sets in RESOLVED.items() for s in sets])
def test_a_planted_defect_is_caught(defect: str, k: int, dataset: str) -> None:
    claim, subject = calibration.DEFECTS[defect]
    shares = calibration.fail_shares(dataset, k, 200, 1, SETTINGS, defect)
    assert shares[claim, subject] >= 0.8


def test_the_truth_is_the_papers_where_it_states_one() -> None:
    t = calibration.truths("pathmnist")
    assert t["robust", "autoattack"] == pytest.approx(0.5745) and t["base", "clean"] == pytest.approx(0.8855)
    assert t["nonrobust", "corrupted"] == pytest.approx(0.20)  # assumed: the paper gives bars only
