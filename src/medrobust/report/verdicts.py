"""Verdicts: every claim of the paper (claims.yaml) and every number it states (paper_values.yaml)
judged on a run's results, per dataset and metric: holds (reproduced, for a stated number),
does not hold, inconclusive, consistent (a stated number or range the data can neither confirm
nor refute), borderline (within two Monte-Carlo errors of its threshold), not run (a result it
needs is missing), or not judged (the paper's own exception, or a MedMNIST-C protocol the paper
does not state). The rules are medrobust.report.rules; every check carries the one-sided p-value
of its failing side, and "does not hold" is Holm-adjusted within each family (`finalize`): the
claims of one dataset and metric, and the stated numbers of one dataset.

A number under corruptions is judged under each MedMNIST-C protocol the dataset was evaluated on
(PROTOCOLS: applied, and published where a 224 px test split exists), each verdict carrying its
protocol. The published protocol's verdicts are a second reading of the same claims, so they form
families of their own (as variants stand outside the families): adding them changes no applied
verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import numpy as np
import yaml

from medrobust.core.stages import stage_label, stage_name
from medrobust.report import rules
from medrobust.report.intervals import Estimate, difference, estimate
from medrobust.report.rules import BORDERLINE, CONSISTENT, FAILS, HOLDS, REPRODUCED, UNSURE, Outcome

NOT_RUN, NOT_JUDGED = "not run", "not judged"
SYMBOLS = {HOLDS: "✓", REPRODUCED: "✓", FAILS: "✗", UNSURE: "?", CONSISTENT: "≈", BORDERLINE: "~", NOT_RUN: "·",
           NOT_JUDGED: "–"}
KINDS = ("above", "order", "best", "broken", "gap", "shown")
PAPER_DATASETS = ("pathmnist", "pneumoniamnist", "octmnist", "organsmnist", "breastmnist")
# the corrupted condition of each MedMNIST-C protocol (evaluation kinds; docs/method.md)
PROTOCOLS = {"corrupted": "applied", "corrupted_published": "published"}


@dataclass(frozen=True)
class Settings:
    """The verdicts' config (schema: verdicts): margins as fractions, the paper's protocol."""
    chance_margin: float  # m: "well above chance" is above chance + m
    equivalence: float  # D: a stated number is reproduced within +-D
    broken_fail: float  # C5 does not hold when a lower bound exceeds this
    broken_hold: float  # C5 holds when every upper bound is at most this
    paper_protocol: str | None  # the protocol taken as the paper's; None: not stated, not judged
    level: float


@dataclass(frozen=True)
class Verdict:
    """One judged check on one dataset and metric, with its evidence (fractions, not percent)."""
    dataset: str
    claim: str  # C1 .. C8b, or "stated"
    metric: str
    subject: str  # what was compared, e.g. "nonrobust eps4 clean" or "base - robust clean"
    verdict: str
    value: float | None = None  # the estimate (a mean, or a paired difference)
    low: float | None = None
    high: float | None = None
    reference: str = ""  # the threshold, range or paper value
    rule: str = ""
    detectable: float | None = None  # about the smallest true difference the check resolves
    n_replicates: int | None = None
    p: float | None = None  # one-sided p-value of the failing side
    p_adjusted: float | None = None  # Holm, within the family
    method: str = ""  # how the interval was made
    mc_error: float | None = None  # Monte-Carlo error of the interval ends
    note: str = ""  # why a verdict was withheld
    protocol: str = ""  # the MedMNIST-C protocol of a number under corruptions (PROTOCOLS), else ""

    @property
    def name(self) -> str:
        """The claim, marked when it is read under the published protocol (a second reading)."""
        return f"{self.claim} [published]" if self.protocol == "published" else self.claim

    @property
    def family(self) -> tuple[str, ...]:
        own = (self.dataset, "stated") if self.claim == "stated" else (self.dataset, self.metric)
        return own + (self.protocol,) * (self.protocol == "published")


@dataclass(frozen=True)
class RunResults:
    """What the verdicts read of one dataset: each stage's bootstrap draws (intervals.stage_draws)."""
    dataset: str
    n_classes: int
    paper: bool  # one of the paper's five MedMNIST datasets (source medmnist)
    draws: Mapping[str, Mapping[str, np.ndarray]]
    main_eps: int
    eps: tuple[int, ...]
    settings: Settings


def load_claims(text: str | None = None) -> dict[str, dict[str, Any]]:
    """The packaged claims.yaml (or `text`), checked for shape."""
    text = text or resources.files("medrobust").joinpath("claims.yaml").read_text()
    claims = yaml.safe_load(text)["claims"]
    for name, c in claims.items():
        if c.get("kind") not in KINDS or not {"text", "quote", "source", "models", "condition", "metrics"} <= set(c):
            raise ValueError(f"claims.yaml: {name} needs text, quote, source, models, condition, metrics and a "
                             f"kind of {KINDS}")
    return claims


def stage(model: str, eps: int | None) -> str:
    return stage_name(model, eps)


def _label(st: str) -> str:
    return stage_label(st)


def method_of(e: Estimate) -> str:
    scale = " on the logit scale" if e.scale is not None else ""
    if e.k > 1:
        return f"t({e.df:.1f}){scale}: seeds ({e.k} replicates) + test images (bootstrap)"
    return f"normal{scale}: test images only (1 replicate)"


def _eps_list(spec: Any, run: RunResults) -> list[int] | None:
    """The eps a claim is judged at; None when the run has none to compare."""
    others = sorted(e for e in run.eps if e != run.main_eps)
    if spec == "main":
        return [run.main_eps]
    if spec == "larger":
        return [others[-1]] if others else None
    if spec == "compared":
        return [run.main_eps, others[-1]] if others else None
    raise ValueError(f"claims.yaml: unknown eps {spec!r}")


def _threshold(claim: dict[str, Any], metric: str, run: RunResults) -> float:
    chance = 0.5 if metric == "auc" else 1.0 / run.n_classes
    return chance + (run.settings.chance_margin if claim.get("margin") else 0.0)


def _from(run: RunResults, name: str, metric: str, subject: str, e: Estimate | None, outcome: Outcome | None,
          reference: str, rule: str, mc_error: float | None = None) -> Verdict:
    """A verdict row from an estimate and its rule's outcome (None: not judged, shown);
    `mc_error` of the interval the rule decided on, when it is not e's."""
    if e is None:
        return Verdict(run.dataset, name, metric, subject, NOT_RUN, reference=reference, rule=rule)
    verdict = NOT_JUDGED if outcome is None else outcome.verdict
    mc = e.mc_error if mc_error is None else mc_error
    if outcome is not None and verdict != NOT_JUDGED and rules.borderline(outcome, mc):
        verdict = BORDERLINE
    return Verdict(run.dataset, name, metric, subject, verdict, e.mean, e.low, e.high, reference, rule,
                   e.half_width, e.k, None if outcome is None else outcome.p, None, method_of(e), e.mc_error,
                   "" if outcome is None else outcome.note)


def _estimate(run: RunResults, st: str, condition: str, metric: str) -> Estimate | None:
    arrays = run.draws.get(st)
    key = f"{condition}/{metric}"
    return estimate(arrays, key, run.settings.level) if arrays is not None and key in arrays else None


def _difference(run: RunResults, sa: str, sb: str, key: str) -> Estimate | None:
    da, db = run.draws.get(sa), run.draws.get(sb)
    if da is None or db is None or key not in da or key not in db:
        return None
    return difference(da, db, key, key, run.settings.level)


def _broken(run: RunResults, name: str, st: str, condition: str, judged: bool) -> Verdict:
    arrays, s = run.draws.get(st), run.settings
    subject = f"{_label(st)} {condition}"
    reference = f"holds <= {100 * s.broken_hold:g}, fails > {100 * s.broken_fail:g}"
    if arrays is None or "autoattack/correct" not in arrays:
        return Verdict(run.dataset, name, "balanced_accuracy", subject, NOT_RUN, reference=reference)
    outcome, low, high = rules.broken(arrays["autoattack/correct"], arrays["autoattack/images"], s.broken_fail,
                                      s.broken_hold, s.level)
    points = arrays["autoattack/balanced_accuracy/point"]
    return Verdict(run.dataset, name, "balanced_accuracy", subject, outcome.verdict if judged else NOT_JUDGED,
                   float(np.mean(points)), low, high, reference, "exact bounds of every replicate", high,
                   len(points), outcome.p, None, "Clopper-Pearson per class, Bonferroni over classes", 0.0)


def _pairs(claim: dict[str, Any], eps: list[int]) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    models = claim["models"]
    if claim["kind"] in ("order", "gap") and models[0] == models[-1]:
        return [((models[0], eps[0]), (models[0], eps[1]))]
    if claim["kind"] == "best":
        return [((models[0], eps[0]), (m, eps[0])) for m in models[1:]]
    return [((m, eps[0]), (n, eps[0])) for m, n in zip(models, models[1:])]


def _pair(run: RunResults, name: str, claim: dict[str, Any], metric: str, a: tuple[str, int],
          b: tuple[str, int], judged: bool) -> Verdict:
    sa, sb = stage(*a), stage(*b)
    subject = f"{_label(sa)} - {_label(sb)} {claim['condition']}"
    e = _difference(run, sa, sb, f"{claim['condition']}/{metric}")
    if claim["kind"] == "gap":
        lo, hi, d = float(claim["low"]), float(claim["high"]), run.settings.equivalence
        out = rules.gap(e, lo, hi, d) if e and judged else None
        return _from(run, name, metric, subject, e, out, f"[{100 * lo:g}, {100 * hi:g}] +- {100 * d:g}",
                     "paired difference outside the range fails; else consistent")
    return _from(run, name, metric, subject, e, rules.order(e) if e and judged else None, "0",
                 "paired difference above 0")


def _single(run: RunResults, name: str, claim: dict[str, Any], metric: str, st: str, judged: bool) -> Verdict:
    e = _estimate(run, st, claim["condition"], metric)
    subject = f"{_label(st)} {claim['condition']}"
    if claim["kind"] == "shown":
        return _from(run, name, metric, subject, e, None, claim["text"], "shown, not judged")
    t = _threshold(claim, metric, run)
    return _from(run, name, metric, subject, e, rules.above(e, t) if e and judged else None, f"{100 * t:g}",
                 "interval above")


def _not_judged_because(claim: dict[str, Any], run: RunResults) -> str:
    if run.dataset in claim.get("not_judged", {}):
        return claim["not_judged"][run.dataset]
    protocol = PROTOCOLS.get(claim["condition"])
    if claim.get("protocol") and run.settings.paper_protocol != protocol:
        return protocol_note(run.settings, protocol)
    return ""


def protocol_note(s: Settings, protocol: str | None) -> str:
    return (f"depends on the MedMNIST-C protocol, which the paper does not state (this number: {protocol}; "
            f"taken as the paper's: {s.paper_protocol or 'none'})")


def conditions(condition: str, run: RunResults) -> list[str]:
    """The conditions a claim's (or stated number's) condition is judged under: a corrupted one
    under each protocol this dataset was evaluated on (applied always: not run when missing)."""
    if condition != "corrupted":
        return [condition]
    found = {key.split("/", 1)[0] for arrays in run.draws.values() for key in arrays}
    return ["corrupted"] + [c for c in PROTOCOLS if c != "corrupted" and c in found]


def _applies(claim: dict[str, Any], run: RunResults) -> bool:
    datasets = claim.get("datasets", "all")
    if datasets == "all":
        return True
    return run.paper if datasets == "paper" else run.dataset in datasets


def claim_verdicts(name: str, claim: dict[str, Any], run: RunResults) -> list[Verdict]:
    """The verdicts of one claim on one dataset (none where it does not apply), under each
    MedMNIST-C protocol where it is stated under corruptions."""
    if not _applies(claim, run):
        return []
    out = []
    for condition in conditions(claim["condition"], run):
        protocol = PROTOCOLS.get(condition, "")
        out += [replace(v, protocol=protocol) for v in _claim_verdicts(name, {**claim, "condition": condition}, run)]
    return out


def _claim_verdicts(name: str, claim: dict[str, Any], run: RunResults) -> list[Verdict]:
    eps = _eps_list(claim.get("eps", "main"), run)
    why = _not_judged_because(claim, run)
    out = []
    for metric in claim["metrics"]:
        if eps is None:
            out.append(Verdict(run.dataset, name, metric, "a second eps", NOT_RUN))
        elif claim["kind"] == "broken":
            out += [_broken(run, name, stage(m, eps[0]), claim["condition"], not why) for m in claim["models"]]
        elif claim["kind"] in ("order", "best", "gap"):
            out += [_pair(run, name, claim, metric, a, b, not why) for a, b in _pairs(claim, eps)]
        else:
            out += [_single(run, name, claim, metric, stage(m, e), not why) for m in claim["models"] for e in eps]
    return [replace(v, reference=why) if why and v.verdict == NOT_JUDGED else v for v in out]


def stated_verdicts(paper_values: dict[str, Any], run: RunResults) -> list[Verdict]:
    """Each number paper_values.yaml states for this dataset (the paper's datasets only)."""
    if not run.paper:
        return []
    metric, eps, s, out = paper_values["metric"], paper_values["eps"], run.settings, []
    for model, stated in paper_values["values"].get(run.dataset, {}).items():
        for condition, entry in ((c, e) for named, e in stated.items() for c in conditions(named, run)):
            st, protocol = stage(model, eps), PROTOCOLS.get(condition, "")
            subject = f"{_label(st)} {condition}"
            value = float(entry["value"]) / 100
            reference = f"{100 * value:g} ({entry['source']})"
            e = _estimate(run, st, condition, metric)
            if e is None:
                out.append(Verdict(run.dataset, "stated", metric, subject, NOT_RUN, reference=reference,
                                   protocol=protocol))
                continue
            outcome, d = rules.stated(e, value, s.equivalence)
            rule = (f"mean - paper {100 * d.mean:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]; reproduced "
                    f"within +-{100 * s.equivalence:g}" if not math.isnan(d.se) else "needs 2 replicates")
            v = _from(run, "stated", metric, subject, e, outcome, reference, rule, mc_error=d.mc_error)
            v = replace(v, detectable=outcome.resolves, method=f"prediction interval t({max(e.k - 1, 1)}) "
                        "of one more run: seeds only (the test images are the paper's)")
            if protocol and s.paper_protocol != protocol:
                v = replace(v, verdict=NOT_JUDGED, note=protocol_note(s, protocol), p=None)
            out.append(replace(v, protocol=protocol))
    return out


def finalize(verdicts: Sequence[Verdict], level: float) -> list[Verdict]:
    """Holm's adjustment within each family; a "does not hold" whose adjusted p-value exceeds
    (1 - level) / 2 becomes inconclusive (consistent, for a stated number or a range)."""
    alpha = (1 - level) / 2
    out = list(verdicts)
    families: dict[tuple[str, str], list[int]] = {}
    for i, v in enumerate(out):
        if v.p is not None and not math.isnan(v.p) and v.verdict not in (NOT_RUN, NOT_JUDGED):
            families.setdefault(v.family, []).append(i)
    for members in families.values():
        for i, adjusted in zip(members, rules.holm([out[i].p for i in members])):
            v = replace(out[i], p_adjusted=adjusted)
            if v.verdict == FAILS and adjusted > alpha:
                weaker = CONSISTENT if v.claim == "stated" or v.rule.startswith("paired difference outside") else UNSURE
                v = replace(v, verdict=weaker, note=f"fails alone (p = {v.p:.3g}), not after Holm's adjustment "
                                                    f"within its {len(members)} checks (p = {adjusted:.3g})")
            out[i] = v
    return out


def judge(run: RunResults, claims: dict[str, dict[str, Any]], paper_values: dict[str, Any]) -> list[Verdict]:
    out = [v for name, c in claims.items() for v in claim_verdicts(name, c, run)]
    return finalize(out + stated_verdicts(paper_values, run), run.settings.level)
