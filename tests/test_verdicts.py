"""The verdicts on constructed results: every kind of claim can come out holds, does not hold and
inconclusive; seed-based verdicts need three replicates; stated numbers read reproduced, does
not hold or consistent; C5 uses exact bounds; protocol-dependent numbers are shown, not judged;
Holm's adjustment and the Monte-Carlo borderline; the tables and readings say so."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medrobust.report import rules
from medrobust.report import verdict_tables as vt
from medrobust.report.intervals import combine
from medrobust.report.tables import load_paper_values
from medrobust.report.verdicts import (BORDERLINE, CONSISTENT, FAILS, HOLDS, NOT_JUDGED, NOT_RUN, REPRODUCED, UNSURE,
                                       RunResults, Settings, claim_verdicts, finalize, judge, load_claims,
                                       stated_verdicts)

DRAWS = 400
CLAIMS = load_claims()
SETTINGS = Settings(chance_margin=0.05, equivalence=0.02, broken_fail=0.01, broken_hold=0.10,
                    paper_protocol=None, level=0.95)


def _arrays(mean: float, images: float, seeds: float = 0.005, k: int = 3, seed: int = 0) -> tuple[np.ndarray, ...]:
    """k replicate values around `mean` (seed spread), and their draws: shared image noise."""
    rng = np.random.default_rng(seed)
    points = mean + seeds * np.linspace(-1, 1, k) if k > 1 else np.array([mean])
    return points[:, None] + rng.normal(0, images, (1, DRAWS)), points


def _stage(k: int = 3, seeds: float = 0.005, **values: tuple[float, float]) -> dict[str, np.ndarray]:
    """{'clean__balanced_accuracy': (mean, image spread), ...} -> a stage's bootstrap arrays."""
    out = {}
    for name, (mean, spread) in values.items():
        key = name.replace("__", "/")
        out[key], out[f"{key}/point"] = _arrays(mean, spread, seeds, k=k, seed=len(out))
        out[f"{key.split('/')[0]}/n"] = np.full(k, 1000)  # the test set's size (the logit scale's floor)
    return out


def _run(stages: dict, dataset: str = "synthetic", paper: bool = False, eps: tuple[int, ...] = (4, 8),
         settings: Settings = SETTINGS) -> RunResults:
    return RunResults(dataset, 4, paper, stages, 4, eps, settings)


def _one(name: str, run: RunResults, metric: str = "balanced_accuracy") -> list[str]:
    return [v.verdict for v in claim_verdicts(name, CLAIMS[name], run) if v.metric == metric]


@pytest.mark.parametrize(("mean", "expected"), [(0.45, HOLDS), (0.25, FAILS), (0.31, UNSURE)])
def test_well_above_chance(mean: float, expected: str) -> None:
    """C1 at the main eps: above chance (1/4) plus the 5-point margin."""
    stages = {"nonrobust_eps4": _stage(clean__balanced_accuracy=(mean, 0.005))}
    assert _one("C1", _run(stages)) == [expected]


def test_seed_based_verdicts_need_three_replicates() -> None:
    """With two replicates no verdict rests on the seed spread: failing and an ordering's
    holding read inconclusive and say why; holding above a threshold may."""
    draws, points = _arrays(0.25, 0.001, seeds=0.0005, k=2)
    at_chance = {"nonrobust_eps4": {"clean/balanced_accuracy": draws, "clean/balanced_accuracy/point": points,
                                    "clean/n": np.full(2, 400)}}
    v = claim_verdicts("C1", CLAIMS["C1"], _run(at_chance))[0]
    assert v.verdict == UNSURE and "needs k >= 3" in v.note
    above = {"nonrobust_eps4": _stage(k=1, clean__balanced_accuracy=(0.6, 0.01))}
    assert _one("C1", _run(above)) == [HOLDS]
    ordered = {"base": _stage(k=2, clean__balanced_accuracy=(0.9, 0.005)),
               "robust_eps4": _stage(k=2, clean__balanced_accuracy=(0.5, 0.005)),
               "nonrobust_eps4": _stage(k=2, clean__balanced_accuracy=(0.3, 0.005))}
    assert _one("C2", _run(ordered)) == [UNSURE, UNSURE]


@pytest.mark.parametrize(("gaps", "expected"), [((0.10, 0.20), [HOLDS, HOLDS]), ((0.10, -0.20), [HOLDS, FAILS]),
                                                ((0.0, 0.20), [UNSURE, HOLDS])])
def test_ordering_claim_is_judged_on_paired_differences(gaps: tuple[float, float], expected: list[str]) -> None:
    base = 0.8
    stages = {"base": _stage(clean__balanced_accuracy=(base, 0.03)),
              "robust_eps4": _stage(clean__balanced_accuracy=(base - gaps[0], 0.03)),
              "nonrobust_eps4": _stage(clean__balanced_accuracy=(base - gaps[0] - gaps[1], 0.03))}
    for i, st in enumerate(("robust_eps4", "nonrobust_eps4")):  # partly independent errors
        stages[st]["clean/balanced_accuracy"] = stages[st]["clean/balanced_accuracy"] + np.random.default_rng(
            10 + i).normal(0, 0.01, (1, DRAWS))
    assert _one("C2", _run(stages)) == expected


def test_robust_best_under_corruptions_and_the_exception_shown() -> None:
    """C3: robust above base and above nonrobust-only; PneumoniaMNIST's values estimated and
    shown, not judged, with its nonrobust-only result (C3x)."""
    corrupted = {"base": _stage(corrupted__balanced_accuracy=(0.3, 0.01)),
                 "robust_eps4": _stage(corrupted__balanced_accuracy=(0.6, 0.01)),
                 "nonrobust_eps4": _stage(corrupted__balanced_accuracy=(0.7, 0.01))}
    assert _one("C3", _run(corrupted, "breastmnist", paper=True)) == [HOLDS, FAILS]
    shown = claim_verdicts("C3", CLAIMS["C3"], _run(corrupted, "pneumoniamnist", paper=True))
    assert [v.verdict for v in shown if v.metric == "balanced_accuracy"] == [NOT_JUDGED, NOT_JUDGED]
    assert shown[0].value == pytest.approx(0.3) and "exception" in shown[0].reference
    x = claim_verdicts("C3x", CLAIMS["C3x"], _run(corrupted, "pneumoniamnist", paper=True))
    assert x[0].verdict == NOT_JUDGED and x[0].value == pytest.approx(0.7)
    assert claim_verdicts("C3x", CLAIMS["C3x"], _run(corrupted, "breastmnist", paper=True)) == []


def test_broken_by_autoattack_exact_bounds() -> None:
    """C5 with Clopper-Pearson bounds: no survivor holds on every test size, BreastMNIST's one
    survivor (App. A.2) holds, 5% survivors fail where the test set resolves it."""
    def verdict(counts: tuple[int, ...], survivors: list[int], k: int = 3) -> str:
        correct = np.tile(survivors, (k, 1))
        return rules.broken(correct, np.tile(counts, (k, 1)), 0.01, 0.10, 0.95)[0].verdict
    for counts in [(42, 114), (234, 390), (250,) * 4, (1338, 847, 339, 634, 1035, 592, 741, 421, 1233)]:
        assert verdict(counts, [0] * len(counts)) == HOLDS
    assert verdict((42, 114), [1, 0], k=1) == HOLDS and verdict((42, 114), [0, 1], k=1) == HOLDS
    assert verdict((250,) * 4, [13] * 4) == FAILS and verdict((42, 114), [2, 6]) == UNSURE
    zero = {st: {"autoattack/correct": np.zeros((3, 4), int), "autoattack/images": np.full((3, 4), 100),
                 "autoattack/balanced_accuracy/point": np.zeros(3)} for st in ("base", "nonrobust_eps4")}
    assert _one("C5", _run(zero)) == [HOLDS, HOLDS] and _one("C5", _run(zero), "auc") == []


@pytest.mark.parametrize(("robust", "expected"), [(0.80, CONSISTENT), (0.98, FAILS), (0.60, FAILS)])
def test_gap_claim_only_refutes(robust: float, expected: str) -> None:
    """C8a: base minus robust within [1.5, 12.5] points widened by 2: can only fail or be consistent."""
    stages = {"base": _stage(clean__balanced_accuracy=(0.90, 0.02)),
              "robust_eps4": _stage(clean__balanced_accuracy=(robust, 0.02))}
    stages["robust_eps4"]["clean/balanced_accuracy"] = stages["base"]["clean/balanced_accuracy"] - 0.90 + robust \
        + np.random.default_rng(3).normal(0, 0.004, (1, DRAWS))
    assert _one("C8a", _run(stages, "octmnist", paper=True)) == [expected]


def test_protocol_dependent_numbers_are_shown_not_judged() -> None:
    """C8b and the stated OOD numbers depend on the MedMNIST-C protocol: not judged unless the
    config names this run's protocol as the paper's; C3 and C4 stay judged."""
    stages = {"base": _stage(seeds=0.001, corrupted__balanced_accuracy=(0.2489, 0.01)),
              "robust_eps4": _stage(seeds=0.001, corrupted__balanced_accuracy=(0.4578, 0.01))}
    run = _run(stages, "pathmnist", paper=True)
    c8b = claim_verdicts("C8b", CLAIMS["C8b"], run)
    assert [v.verdict for v in c8b] == [NOT_JUDGED] and "does not state" in c8b[0].reference
    assert c8b[0].value == pytest.approx(0.2089)
    ood = [v for v in stated_verdicts(load_paper_values(), run) if v.subject.endswith("corrupted")]
    assert {v.verdict for v in ood} == {NOT_JUDGED} and all(v.value is not None for v in ood)
    judged = _run(stages, "pathmnist", paper=True, settings=Settings(**{**SETTINGS.__dict__, "paper_protocol": "applied"}))
    assert [v.verdict for v in claim_verdicts("C8b", CLAIMS["C8b"], judged)] == [CONSISTENT]
    assert {v.verdict for v in stated_verdicts(load_paper_values(), judged) if v.subject.endswith("corrupted")} \
        == {REPRODUCED}


def test_each_protocol_is_judged_on_its_own_and_moves_no_other_verdict() -> None:
    """With MedMNIST-C as published evaluated too, every number under corruptions is read under
    both protocols, each verdict carrying its own; C8b and the stated OOD numbers are judged only
    under the protocol named as the paper's; the applied verdicts (and their Holm adjustment)
    are those of a run without the published protocol."""
    applied = {"base": {"corrupted__balanced_accuracy": (0.2489, 0.01)},
               "robust_eps4": {"corrupted__balanced_accuracy": (0.4578, 0.01)},
               "nonrobust_eps4": {"corrupted__balanced_accuracy": (0.20, 0.01)}}
    published = {"base": (0.60, 0.01), "robust_eps4": (0.58, 0.01), "nonrobust_eps4": (0.40, 0.01)}
    alone = {st: _stage(seeds=0.001, **v) for st, v in applied.items()}
    both = {st: _stage(seeds=0.001, **v, corrupted_published__balanced_accuracy=published[st])
            for st, v in applied.items()}
    settings = Settings(**{**SETTINGS.__dict__, "paper_protocol": "published"})
    one, two = (judge(_run(s, "pathmnist", paper=True, settings=settings), CLAIMS, load_paper_values())
                for s in (alone, both))
    assert [v for v in two if v.protocol != "published"] == one
    c3 = {v.subject: v.verdict for v in two if v.name == "C3 [published]" and v.metric == "balanced_accuracy"}
    assert c3 == {"robust eps4 - base corrupted_published": FAILS,
                  "robust eps4 - nonrobust eps4 corrupted_published": HOLDS}
    c8b = [v for v in two if v.claim == "C8b"]
    assert [(v.protocol, v.verdict == NOT_JUDGED) for v in c8b] == [("applied", True), ("published", False)]
    assert {v.family for v in two if v.protocol == "published"} == {
        ("pathmnist", m, "published") for m in ("balanced_accuracy", "auc", "stated")}
    ood = {v.protocol: v.verdict for v in two if v.claim == "stated" and v.subject.startswith("base")
           and "corrupted" in v.subject}
    assert ood["applied"] == NOT_JUDGED and ood["published"] != NOT_JUDGED


def test_stated_value_rule() -> None:
    """Reproduced within +-D with the paper's seed variance; does not hold when the prediction
    interval excludes P (k >= 3); else consistent. A noisier reproduction never reproduces more
    easily."""
    def outcome(mean: float, spread: float, k: int, paper: float) -> rules.Outcome:
        draws, points = _arrays(mean, 0.01, seeds=spread, k=k)
        return rules.stated(combine(points, draws, 0.95), paper, 0.02)[0]
    assert outcome(0.7610, 0.001, 3, 0.7608).verdict == REPRODUCED
    assert outcome(0.70, 0.001, 3, 0.7608).verdict == FAILS
    assert outcome(0.70, 0.001, 2, 0.7608).verdict == CONSISTENT  # k = 2 cannot fail
    assert outcome(0.70, 0.0, 1, 0.7608).verdict == UNSURE  # k = 1: no seed variance to judge by
    wide = outcome(0.7610, 0.05, 3, 0.7608)
    assert wide.verdict == CONSISTENT and wide.resolves > 0.2
    spreads = [0.0, 0.002, 0.005, 0.01, 0.03, 0.1]
    reproduced = [outcome(0.765, s, 3, 0.7608).verdict == REPRODUCED for s in spreads]
    assert reproduced == sorted(reproduced, reverse=True)  # once lost with spread, never regained


def test_holm_and_borderline() -> None:
    assert rules.holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)
    near = rules.Outcome(HOLDS, 0.5, margin=0.0005)
    assert rules.borderline(near, mc_error=0.0003) and not rules.borderline(near, mc_error=0.0002)
    # two checks that fail alone at p = 0.02: after Holm (2 x 0.02 > 0.025) neither fails
    vs = [v for name in ("C1", "C4") for v in claim_verdicts(name, CLAIMS[name], _run(
        {"nonrobust_eps4": _stage(clean__balanced_accuracy=(0.2625, 0.001), corrupted__balanced_accuracy=(0.2375, 0.0))}))]
    vs = [v.__class__(**{**v.__dict__, "verdict": FAILS, "p": 0.02}) for v in vs if v.metric == "balanced_accuracy"]
    done = finalize(vs, 0.95)
    assert [v.verdict for v in done] == [UNSURE, UNSURE] and all(v.p_adjusted == pytest.approx(0.04) for v in done)
    assert "Holm" in done[0].note


def test_stated_numbers_from_paper_values() -> None:
    """PathMNIST's robust model, clean: the paper states 76.08%; three replicates at 70% with a
    small spread do not reproduce it; the stages this run lacks are not run."""
    draws, points = _arrays(0.70, 0.01, seeds=0.004)
    run = RunResults("pathmnist", 9, True, {"robust_eps4": {"clean/balanced_accuracy": draws,
                                                              "clean/balanced_accuracy/point": points,
                                                              "clean/n": np.full(3, 7180)}}, 4, (4,),
                     SETTINGS)
    mine = [v for v in stated_verdicts(load_paper_values(), run) if v.subject == "robust eps4 clean"]
    assert [v.verdict for v in mine] == [FAILS] and mine[0].n_replicates == 3 and mine[0].p < 0.01
    others = {v.verdict for v in stated_verdicts(load_paper_values(), run) if v.subject != "robust eps4 clean"}
    assert others == {NOT_RUN}
    assert stated_verdicts(load_paper_values(), _run({}, eps=(4,))) == []


def test_tables_and_readings() -> None:
    stages = {"base": _stage(clean__balanced_accuracy=(0.9, 0.01), clean__auc=(0.95, 0.01)),
              "robust_eps4": _stage(clean__balanced_accuracy=(0.8, 0.01), clean__auc=(0.9, 0.01)),
              "nonrobust_eps4": _stage(clean__balanced_accuracy=(0.5, 0.01), clean__auc=(0.8, 0.01))}
    verdicts = judge(_run(stages, eps=(4,)), CLAIMS, load_paper_values())
    rows = {r[0]: r for r in vt.overview_table(verdicts, CLAIMS).rows}
    assert rows["C1"][2] == "✓ / ✓" and rows["C2"][2] == "✓ / ✓" and rows["C7a"][2] == "· / ·"
    assert "C8a" not in rows and "C3x" not in rows  # the paper's datasets only
    line = vt.reading("synthetic", verdicts)
    assert line.startswith("synthetic: reproduced (all 4 checks hold); not run: C3 (balanced accuracy)")
    assert vt.combined([v for v in verdicts if v.claim == "C2"]) == HOLDS
    assert vt.combined([v.__class__(**{**v.__dict__, "verdict": BORDERLINE}) for v in verdicts[:1]]) == BORDERLINE
    stages["robust_eps4"] = _stage(clean__balanced_accuracy=(0.95, 0.01), clean__auc=(0.9, 0.01))
    worse = judge(_run(stages, eps=(4,)), CLAIMS, load_paper_values())
    assert vt.reading("synthetic", worse).startswith("synthetic: partly reproduced: C2 (balanced accuracy) does "
                                                     "not hold")
    text = vt.markdown(verdicts, CLAIMS, SETTINGS, 3, vt.winner_table({"synthetic": stages}))
    assert text.startswith("# Does the paper hold?") and "Holm" in text and "false alarms are expected" not in text
    assert "Replicate 0 against the others" in text and "MedMNIST-C protocols: applied (" in text


def test_new_columns_and_settings_are_documented() -> None:
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    docs = (repo / "docs/verdicts.md").read_text()
    caption = (repo / "workflow/report/verdicts_all.rst").read_text()
    for column in ("p", "p_holm", "method", "mc_error", "note"):
        assert column in vt.COLUMNS and f"``{column}``" in caption, column
    for column in ("p_holm", "mc_error", "note"):
        assert f"`{column}`" in docs, column
    for key in ("chance_margin", "equivalence", "broken_fail", "broken_hold", "paper_protocol"):
        assert f"verdicts.{key}" in docs, key
