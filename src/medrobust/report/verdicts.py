"""Verdicts: every claim of the paper (claims.yaml) and every number it states (paper_values.yaml)
judged on a run's results, per dataset and metric: holds, does not hold, inconclusive, not run
(a result it needs is missing), or not judged (the paper's own exception). docs/verdicts.md
states and justifies the rules; in short, with [lo, hi] the 95% interval (bootstrap over test
images and seed replicates, medrobust.report.intervals) of a value or of a paired difference:

- above t:        holds if lo > t; does not hold if hi <= t; else inconclusive
- at most t:      holds if hi <= t; does not hold if lo > t; else inconclusive
- a > b:          "above 0" on the paired difference a - b
- within [L, H]:  holds if L <= lo and hi <= H; does not hold if hi < L or lo > H; else inconclusive
- stated value P: reproduced if |mean - P| <= tol, tol = t(k-1) s sqrt(1 + 1/k) + 1 point (s the
                  spread over k replicates; with k = 1, tol = 1 point); beyond tol it does not
                  hold only with k >= 3, else inconclusive; "at most P": mean - P <= tol.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import yaml

from medrobust.report.intervals import Estimate, difference, estimate

HOLDS, FAILS, UNSURE, NOT_RUN, NOT_JUDGED = "holds", "does not hold", "inconclusive", "not run", "not judged"
SYMBOLS = {HOLDS: "✓", FAILS: "✗", UNSURE: "?", NOT_RUN: "·", NOT_JUDGED: "–"}
KINDS = ("above", "order", "at_most", "between", "gap")
METRICS = ("balanced_accuracy", "auc")
METRIC_LABELS = {"balanced_accuracy": "balanced accuracy", "auc": "AUC"}
PAPER_DATASETS = ("pathmnist", "pneumoniamnist", "octmnist", "organsmnist", "breastmnist")
ALLOWANCE = 0.01  # one point for implementation differences (stated values)


@dataclass(frozen=True)
class Verdict:
    """One judged claim on one dataset and metric, with its evidence (fractions, not percent)."""
    dataset: str
    claim: str  # C1 .. C8b, or "stated"
    metric: str
    subject: str  # what was compared, e.g. "nonrobust eps4" or "base - robust (eps 4)"
    verdict: str
    value: float | None = None  # the estimate (a mean, or a paired difference)
    low: float | None = None
    high: float | None = None
    reference: str = ""  # the threshold, range or paper value
    rule: str = ""
    detectable: float | None = None  # about the smallest true difference the check resolves
    n_replicates: int | None = None


@dataclass(frozen=True)
class RunResults:
    """What the verdicts read of one dataset: each stage's bootstrap draws (intervals.stage_draws)."""
    dataset: str
    n_classes: int
    paper: bool  # one of the paper's five MedMNIST datasets (source medmnist)
    draws: Mapping[str, Mapping[str, np.ndarray]]
    main_eps: int
    eps: tuple[int, ...]
    seed: int = 0
    level: float = 0.95


def load_claims(text: str | None = None) -> dict[str, dict[str, Any]]:
    """The packaged claims.yaml (or `text`), checked for shape."""
    text = text or resources.files("medrobust").joinpath("claims.yaml").read_text()
    claims = yaml.safe_load(text)["claims"]
    for name, c in claims.items():
        if c.get("kind") not in KINDS or not {"text", "quote", "source", "models", "condition", "metrics"} <= set(c):
            raise ValueError(f"claims.yaml: {name} needs text, quote, source, models, condition, metrics and a "
                             f"kind of {KINDS}")
    return claims


# ---- the rules (pure) ------------------------------------------------------------------------

def above(low: float, high: float, t: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return UNSURE
    return HOLDS if low > t else FAILS if high <= t else UNSURE


def at_most(low: float, high: float, t: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return UNSURE
    return HOLDS if high <= t else FAILS if low > t else UNSURE


def within(low: float, high: float, lo: float, hi: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return UNSURE
    return HOLDS if lo <= low and high <= hi else FAILS if high < lo or low > hi else UNSURE


def tolerance(sd: float, k: int) -> float:
    """How far a reproduction's mean may lie from a stated value: the 95% prediction interval of
    one more run (the paper's) from k replicates, plus ALLOWANCE; ALLOWANCE alone for k = 1."""
    if k < 2 or math.isnan(sd):
        return ALLOWANCE
    from scipy.stats import t

    return float(t.ppf(0.975, k - 1)) * sd * math.sqrt(1 + 1 / k) + ALLOWANCE


def stated(mean: float, sd: float, k: int, value: float, bound: bool) -> tuple[str, float]:
    """(verdict, tolerance) of a stated value (bound: the paper states an upper bound)."""
    tol = tolerance(sd, k)
    off = mean - value if bound else abs(mean - value)
    if math.isnan(mean):
        return UNSURE, tol
    if off <= tol:
        return HOLDS, tol
    return (FAILS if k >= 3 else UNSURE), tol


# ---- claims on one dataset ---------------------------------------------------------------------

def stage(model: str, eps: int | None) -> str:
    return "base" if model == "base" else f"{model}_eps{eps}"


def _eps_list(spec: Any, run: RunResults) -> list[int] | None:
    """The eps a claim is judged at; None when the run has none to compare."""
    others = sorted(e for e in run.eps if e != run.main_eps)
    if spec == "main":
        return [run.main_eps]
    if spec == "all":
        return list(run.eps)
    if spec == "larger":
        return [others[-1]] if others else None
    if spec == "compared":
        return [run.main_eps, others[-1]] if others else None
    raise ValueError(f"claims.yaml: unknown eps {spec!r}")


def _threshold(claim: dict[str, Any], metric: str, run: RunResults) -> float:
    t = claim["threshold"]
    if t == "chance":
        return 0.5 if metric == "auc" else 1.0 / run.n_classes
    return float(t[metric]) if isinstance(t, dict) else float(t)


def _estimate(run: RunResults, st: str, condition: str, metric: str) -> Estimate | None:
    arrays = run.draws.get(st)
    key = f"{condition}/{metric}"
    return estimate(arrays, key, run.seed, run.level) if arrays is not None and key in arrays else None


def _verdict(run: RunResults, name: str, metric: str, subject: str, e: Estimate | None, judged: str,
             reference: str, rule: str) -> Verdict:
    if e is None:
        return Verdict(run.dataset, name, metric, subject, NOT_RUN, reference=reference, rule=rule)
    return Verdict(run.dataset, name, metric, subject, judged, e.mean, e.low, e.high, reference, rule,
                   e.half_width, e.k)


def _single(name: str, claim: dict[str, Any], run: RunResults, metric: str, model: str, eps: int) -> Verdict:
    st = stage(model, eps)
    e = _estimate(run, st, claim["condition"], metric)
    subject = f"{st.replace('_eps', ' eps')} {claim['condition']}"
    if claim["kind"] == "between":
        lo, hi = float(claim["low"]), float(claim["high"])
        judged = within(e.low, e.high, lo, hi) if e else NOT_RUN
        return _verdict(run, name, metric, subject, e, judged, f"[{100 * lo:g}, {100 * hi:g}]", "interval within")
    t = _threshold(claim, metric, run)
    rule = {"above": "interval above", "at_most": "interval at most"}[claim["kind"]]
    judged = (above if claim["kind"] == "above" else at_most)(e.low, e.high, t) if e else NOT_RUN
    return _verdict(run, name, metric, subject, e, judged, f"{100 * t:g}", rule)


def _pair(name: str, claim: dict[str, Any], run: RunResults, metric: str, a: tuple[str, int],
          b: tuple[str, int]) -> Verdict:
    sa, sb = stage(*a), stage(*b)
    key = f"{claim['condition']}/{metric}"
    subject = f"{sa.replace('_eps', ' eps')} - {sb.replace('_eps', ' eps')} {claim['condition']}"
    da, db = run.draws.get(sa), run.draws.get(sb)
    if da is None or db is None or key not in da or key not in db:
        return Verdict(run.dataset, name, metric, subject, NOT_RUN)
    e = difference(da, db, key, key, run.seed, run.level)
    if claim["kind"] == "gap":
        lo, hi = float(claim["low"]), float(claim["high"])
        return _verdict(run, name, metric, subject, e, within(e.low, e.high, lo, hi),
                        f"[{100 * lo:g}, {100 * hi:g}]", "paired difference within")
    return _verdict(run, name, metric, subject, e, above(e.low, e.high, 0.0), "0", "paired difference above")


def claim_verdicts(name: str, claim: dict[str, Any], run: RunResults) -> list[Verdict]:
    """The verdicts of one claim on one dataset (none where it does not apply)."""
    if claim.get("datasets", "all") == "paper" and not run.paper:
        return []
    eps = _eps_list(claim.get("eps", "main"), run)
    if claim["kind"] in ("order", "gap") and claim["models"][0] == claim["models"][-1] and eps:
        pairs = [[(claim["models"][0], eps[0]), (claim["models"][0], eps[1])]]
    else:
        pairs = None
    out = []
    for metric in claim["metrics"]:
        if eps is None:
            out.append(Verdict(run.dataset, name, metric, "a second eps", NOT_RUN))
        elif run.dataset in claim.get("not_judged", {}):
            out.append(Verdict(run.dataset, name, metric, claim["text"], NOT_JUDGED,
                               reference=claim["not_judged"][run.dataset]))
        elif claim["kind"] in ("order", "gap"):
            models = claim["models"]
            steps = pairs or [[(m, eps[0]), (n, eps[0])] for m, n in zip(models, models[1:])]
            out += [_pair(name, claim, run, metric, a, b) for a, b in steps]
        else:
            out += [_single(name, claim, run, metric, m, e) for m in claim["models"] for e in eps]
    return out


def stated_verdicts(paper_values: dict[str, Any], run: RunResults) -> list[Verdict]:
    """Each number paper_values.yaml states for this dataset (the paper's datasets only)."""
    if not run.paper:
        return []
    metric, eps, out = paper_values["metric"], paper_values["eps"], []
    for model, conditions in paper_values["values"].get(run.dataset, {}).items():
        for condition, entry in conditions.items():
            st = stage(model, eps)
            subject = f"{st.replace('_eps', ' eps')} {condition}"
            e = _estimate(run, st, condition, metric)
            bound = "at_most" in entry
            value = float(entry["at_most" if bound else "value"]) / 100
            reference = f"{'≤ ' if bound else ''}{100 * value:g} ({entry['source']})"
            if e is None:
                out.append(Verdict(run.dataset, "stated", metric, subject, NOT_RUN, reference=reference))
                continue
            judged, tol = stated(e.mean, e.sd, e.k, value, bound)
            out.append(Verdict(run.dataset, "stated", metric, subject, judged, e.mean, e.low, e.high, reference,
                               f"|mean - paper| <= {100 * tol:.2f}" if not bound else
                               f"mean - bound <= {100 * tol:.2f}", tol, e.k))
    return out


def judge(run: RunResults, claims: dict[str, dict[str, Any]], paper_values: dict[str, Any]) -> list[Verdict]:
    out = [v for name, c in claims.items() for v in claim_verdicts(name, c, run)]
    return out + stated_verdicts(paper_values, run)


def combined(verdicts: Sequence[Verdict]) -> str:
    """One verdict of several (a claim's pairs or eps): any failure fails; all holding hold."""
    seen = {v.verdict for v in verdicts}
    for v in (FAILS, UNSURE, NOT_RUN, NOT_JUDGED):
        if v in seen and (v != NOT_JUDGED or seen == {NOT_JUDGED}):
            return v if v != NOT_RUN or seen == {NOT_RUN} else UNSURE
    return HOLDS


def reading(dataset: str, verdicts: Sequence[Verdict]) -> str:
    """The line of one dataset: reproduced, partly reproduced (naming what does not hold and what
    is inconclusive) or not reproduced, and which checks were not run."""
    groups: dict[tuple[str, str], list[Verdict]] = {}
    for v in verdicts:
        if v.dataset == dataset and v.verdict != NOT_JUDGED:
            groups.setdefault((v.claim, v.metric), []).append(v)
    judged = {key: combined(vs) for key, vs in groups.items()}
    missing = [f"{c} ({METRIC_LABELS[m]})" for (c, m), v in judged.items() if v == NOT_RUN]
    ran = {key: v for key, v in judged.items() if v != NOT_RUN}
    tail = f"; not run: {', '.join(missing)}" if missing else ""
    if not ran:
        return f"{dataset}: not run"
    if all(v == HOLDS for v in ran.values()):
        return f"{dataset}: reproduced (all {len(ran)} checks hold){tail}"
    bad = [f"{c} ({METRIC_LABELS[m]}) {v}" for (c, m), v in ran.items() if v != HOLDS]
    word = "not reproduced" if not any(v == HOLDS for v in ran.values()) else "partly reproduced"
    return f"{dataset}: {word}: " + "; ".join(bad) + tail


COLUMNS = ("dataset", "claim", "metric", "subject", "verdict", "value", "ci_low", "ci_high", "reference", "rule",
           "detectable", "n_replicates")


def write_verdicts(verdicts: Sequence[Verdict], path: str) -> None:
    """results/summary/verdicts.csv: one row per verdict, values as fractions (repr)."""
    from medrobust.io import float_cell as number
    from medrobust.io import write_csv

    write_csv(path, COLUMNS, ([v.dataset, v.claim, v.metric, v.subject, v.verdict, number(v.value), number(v.low),
                               number(v.high), v.reference, v.rule, number(v.detectable), v.n_replicates]
                              for v in verdicts))
