"""The verdicts as tables: the claims x datasets overview (✓ / ✗ / ?), the stated numbers with
their intervals (the paper comparison), every verdict with its evidence, and the Markdown page
that opens with one reading per dataset (medrobust.report.verdicts)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from medrobust.report.tables import Table, dataset_label, to_markdown
from medrobust.report.verdicts import (FAILS, METRIC_LABELS, METRICS, SYMBOLS, Verdict, combined, reading)

EVIDENCE = ("Dataset", "Claim", "Metric", "Compared", "Verdict", "Estimate (%)", "95% interval (%)", "Reference (%)",
            "Rule", "Detectable (pp)", "Replicates")


def _pct(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else 100.0 * x


def _interval(v: Verdict) -> str:
    if v.low is None or v.high is None or math.isnan(v.low) or math.isnan(v.high):
        return ""
    return f"[{100 * v.low:.2f}, {100 * v.high:.2f}]"


def evidence_row(v: Verdict) -> tuple[Any, ...]:
    return (dataset_label(v.dataset), v.claim, METRIC_LABELS[v.metric], v.subject, v.verdict, _pct(v.value),
            _interval(v), v.reference, v.rule, _pct(v.detectable), v.n_replicates)


def evidence_table(verdicts: Sequence[Verdict]) -> Table:
    return Table("Every verdict with its evidence: the estimate (mean over seed replicates, or a paired "
                 "difference), its 95% bootstrap interval (test images and replicates), what it is compared "
                 "with, the rule, and about the smallest difference the check resolves.",
                 EVIDENCE, tuple(evidence_row(v) for v in verdicts))


def stated_table(verdicts: Sequence[Verdict]) -> Table:
    """The paper's stated numbers beside the reproduction (the paper comparison)."""
    rows = [evidence_row(v) for v in verdicts if v.claim == "stated"]
    return Table("Numbers stated in the paper (paper_values.yaml) beside this reproduction, with 95% intervals; "
                 "reproduced when the mean lies within the tolerance of the rule (docs/verdicts.md).",
                 EVIDENCE, tuple(rows))


def _cell(verdicts: Sequence[Verdict], claim: str, dataset: str) -> str:
    mine = [v for v in verdicts if v.claim == claim and v.dataset == dataset]
    if not mine:
        return ""
    parts = []
    for m in METRICS:
        of_metric = [v for v in mine if v.metric == m]
        parts.append(SYMBOLS[combined(of_metric)] if of_metric else "n/a")
    return " / ".join(parts)


def overview_table(verdicts: Sequence[Verdict], claims: dict[str, dict[str, Any]]) -> Table:
    """Claims (and the stated numbers) x datasets; each cell 'balanced accuracy / AUC'."""
    datasets = list(dict.fromkeys(v.dataset for v in verdicts))
    names = [*claims, "stated"]
    texts = {**{n: c["text"] for n, c in claims.items()}, "stated": "the numbers the paper states (paper_values.yaml)"}
    rows = [(n, texts[n], *(_cell(verdicts, n, d) for d in datasets)) for n in names
            if any(v.claim == n for v in verdicts)]
    # the one-line reading of each dataset, last (what does not hold, what is inconclusive)
    rows.append(("Reading", "the dataset's verdict", *(reading(d, verdicts).split(": ", 1)[1] for d in datasets)))
    return Table("The paper's claims on this run: balanced accuracy / AUC; ✓ holds, ✗ does not hold, "
                 "? inconclusive, · not run, – not judged (the paper's own exception), n/a not stated for "
                 "that metric, empty: not applicable to the dataset.",
                 ("Claim", "Statement", *(dataset_label(d) for d in datasets)), tuple(rows))


def readings(verdicts: Sequence[Verdict]) -> list[str]:
    return [reading(d, verdicts) for d in dict.fromkeys(v.dataset for v in verdicts)]


def false_alarm_note(verdicts: Sequence[Verdict]) -> str:
    judged = [v for v in verdicts if v.detectable is not None]
    failed = sum(v.verdict == FAILS for v in verdicts)
    return (f"{len(judged)} judged checks at 95%: about {len(judged) / 20:.1f} false alarms are expected by chance "
            f"even when every claim holds ({failed} do not hold here). Each check's 'Detectable' column is about "
            "the smallest true difference from its reference that it resolves (half its interval; for a stated "
            "number, its tolerance): a smaller one reads as inconclusive.")


def markdown(verdicts: Sequence[Verdict], claims: dict[str, dict[str, Any]]) -> str:
    lines = ["# Does the paper hold?", "", *[f"- {r}" for r in readings(verdicts)], "",
             to_markdown(overview_table(verdicts, claims)), false_alarm_note(verdicts), "",
             "## The claims", ""]
    lines += [f"- **{n}** {c['text']}: \"{c['quote']}\" ({c['source']})" for n, c in claims.items()]
    lines += ["", "## Stated numbers", "", to_markdown(stated_table(verdicts)), "## Evidence", "",
              to_markdown(evidence_table(verdicts)), "Rules: docs/verdicts.md."]
    return "\n".join(lines) + "\n"
