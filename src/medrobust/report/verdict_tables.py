"""The verdicts as tables: the claims x datasets overview (✓ / ✗ / ?), the stated numbers with
their intervals (the paper comparison), every verdict with its evidence, replicate 0 against the
others, and the Markdown page that opens with one reading per dataset
(medrobust.report.verdicts)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medrobust.core.stages import METRIC_LABELS, METRICS
from medrobust.report.tables import Table, dataset_label, to_markdown
from medrobust.report.verdicts import (BORDERLINE, CONSISTENT, FAILS, HOLDS, NOT_JUDGED,
                                       NOT_RUN, REPRODUCED, SYMBOLS, UNSURE, Verdict)

EVIDENCE = ("Dataset", "Claim", "Metric", "Compared", "Verdict", "Estimate (%)", "95% interval (%)", "Reference (%)",
            "Rule", "Detectable (pp)", "Replicates", "p", "Holm p", "Note")
COLUMNS = ("dataset", "claim", "metric", "subject", "verdict", "value", "ci_low", "ci_high", "reference", "rule",
           "detectable", "n_replicates", "p", "p_holm", "method", "mc_error", "note", "protocol")


def _pct(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else 100.0 * x


def _interval(v: Verdict) -> str:
    if v.low is None or v.high is None or math.isnan(v.low) or math.isnan(v.high):
        return ""
    return f"[{100 * v.low:.2f}, {100 * v.high:.2f}]"


def _p(x: float | None) -> str:
    return "" if x is None or math.isnan(x) else f"{x:.3g}"


def evidence_row(v: Verdict) -> tuple[Any, ...]:
    return (dataset_label(v.dataset), v.name, METRIC_LABELS[v.metric], v.subject, v.verdict, _pct(v.value),
            _interval(v), v.reference, v.rule, _pct(v.detectable), v.n_replicates, _p(v.p), _p(v.p_adjusted), v.note)


def evidence_table(verdicts: Sequence[Verdict]) -> Table:
    return Table("Every verdict with its evidence: the estimate (mean over seed replicates, or a paired "
                 "difference), its 95% interval (seeds and test images), what it is compared with, the rule, "
                 "about the smallest difference the check resolves, and the one-sided p-value of its failing "
                 "side, raw and Holm-adjusted within its family.",
                 EVIDENCE, tuple(evidence_row(v) for v in verdicts))


def stated_table(verdicts: Sequence[Verdict]) -> Table:
    """The paper's stated numbers beside the reproduction (the paper comparison)."""
    rows = [evidence_row(v) for v in verdicts if v.claim == "stated"]
    return Table("Numbers stated in the paper (paper_values.yaml) beside this reproduction (mean over replicates, "
                 "95% interval); reproduced when mean - paper, with the paper's own seed variance, lies within "
                 "the equivalence margin; 'Detectable' is the +-X the data resolve (docs/verdicts.md).",
                 EVIDENCE, tuple(rows))


def combined(verdicts: Sequence[Verdict]) -> str:
    """One verdict of several (a claim's pairs, models or eps): any failure fails, then any
    inconclusive, borderline or consistent one; all holding hold; not run only when none ran."""
    seen = {v.verdict for v in verdicts}
    judged = seen - {NOT_RUN, NOT_JUDGED}
    if not judged:
        return NOT_JUDGED if NOT_JUDGED in seen else NOT_RUN
    for v in (FAILS, UNSURE, BORDERLINE, CONSISTENT):
        if v in judged:
            return v
    if NOT_RUN in seen:
        return UNSURE
    return REPRODUCED if judged == {REPRODUCED} else HOLDS


def _cell(verdicts: Sequence[Verdict], claim: str, dataset: str) -> str:
    mine = [v for v in verdicts if v.name == claim and v.dataset == dataset]
    if not mine:
        return ""
    parts = []
    for m in METRICS:
        of_metric = [v for v in mine if v.metric == m]
        parts.append(SYMBOLS[combined(of_metric)] if of_metric else "n/a")
    return " / ".join(parts)


def reading(dataset: str, verdicts: Sequence[Verdict]) -> str:
    """The line of one dataset: reproduced, partly reproduced (naming what does not hold, what is
    inconclusive or borderline) or not reproduced, over the claims that can hold (ranges that can
    only be refuted, shown values and the stated numbers are summed up after)."""
    groups: dict[tuple[str, str], list[Verdict]] = {}
    for v in verdicts:
        if v.dataset == dataset and v.claim != "stated":
            groups.setdefault((v.name, v.metric), []).append(v)
    judged = {key: combined(vs) for key, vs in groups.items()}
    missing = [f"{c} ({METRIC_LABELS[m]})" for (c, m), v in judged.items() if v == NOT_RUN]
    ran = {key: v for key, v in judged.items() if v not in (NOT_RUN, NOT_JUDGED, CONSISTENT)}
    tail = f"; not run: {', '.join(missing)}" if missing else ""
    refuted = [f"{c}" for (c, _), v in judged.items() if v == CONSISTENT]
    tail += f"; consistent: {', '.join(refuted)}" if refuted else ""
    stated = [v.verdict for v in verdicts if v.dataset == dataset and v.claim == "stated"]
    if stated:
        counts = {w: stated.count(w) for w in (REPRODUCED, CONSISTENT, FAILS, UNSURE, BORDERLINE, NOT_JUDGED)}
        tail += "; stated numbers: " + ", ".join(f"{n} {w}" for w, n in counts.items() if n)
    if not ran:
        return f"{dataset}: not run{tail}"
    if all(v == HOLDS for v in ran.values()):
        return f"{dataset}: reproduced (all {len(ran)} checks hold){tail}"
    bad = [f"{c} ({METRIC_LABELS[m]}) {v}" for (c, m), v in ran.items() if v != HOLDS]
    word = "not reproduced" if not any(v == HOLDS for v in ran.values()) else "partly reproduced"
    return f"{dataset}: {word}: " + "; ".join(bad) + tail


def overview_table(verdicts: Sequence[Verdict], claims: dict[str, dict[str, Any]]) -> Table:
    """Claims (and the stated numbers) x datasets; each cell 'balanced accuracy / AUC'."""
    datasets = list(dict.fromkeys(v.dataset for v in verdicts))
    texts = {**{n: c["text"] for n, c in claims.items()}, "stated": "the numbers the paper states (paper_values.yaml)"}
    texts |= {f"{n} [published]": f"{t}, on MedMNIST-C as published (224 px)" for n, t in texts.items()}
    names = [n for n in texts if any(v.name == n for v in verdicts)]
    rows = [(n, texts[n], *(_cell(verdicts, n, d) for d in datasets)) for n in names]
    # the one-line reading of each dataset, last (what does not hold, what is inconclusive)
    rows.append(("Reading", "the dataset's verdict", *(reading(d, verdicts).split(": ", 1)[1] for d in datasets)))
    return Table("The paper's claims on this run: balanced accuracy / AUC; ✓ holds (reproduced), ✗ does not hold, "
                 "? inconclusive, ≈ consistent (a range or stated number neither confirmed nor refuted), "
                 "~ borderline (within two Monte-Carlo errors of its threshold), · not run, – not judged (the "
                 "paper's own exception, or a protocol it does not state), n/a not stated for that metric, empty: "
                 "not applicable to the dataset.",
                 ("Claim", "Statement", *(dataset_label(d) for d in datasets)), tuple(rows))


def readings(verdicts: Sequence[Verdict]) -> list[str]:
    return [reading(d, verdicts) for d in dict.fromkeys(v.dataset for v in verdicts)]


def winner_table(draws: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]]) -> Table:
    """Replicate 0 (the grid search's winner, selected on validation) minus the mean of the others
    (trained at its hyperparameters with other seeds), per dataset, stage and clean metric."""
    rows = []
    for dataset, stages in draws.items():
        for st, arrays in stages.items():
            for m in METRICS:
                points = arrays.get(f"clean/{m}/point")
                if points is None or len(points) < 2:
                    continue
                rows.append((dataset_label(dataset), st.replace("_eps", " eps"), METRIC_LABELS[m], 100 * points[0],
                             100 * float(np.mean(points[1:])), 100 * (points[0] - float(np.mean(points[1:]))),
                             100 * float(np.std(points[1:], ddof=1)) if len(points) > 2 else None))
    return Table("Replicate 0 is the grid search's winner, chosen on validation; replicates 1..k-1 are trained at "
                 "its hyperparameters with other seeds. A positive difference on the clean test set is the "
                 "optimism of selection (or chance: compare with the others' spread).",
                 ("Dataset", "Stage", "Metric", "Replicate 0 (%)", "Others' mean (%)", "Difference (pp)",
                  "Others' spread (pp)"), tuple(rows))


def about(verdicts: Sequence[Verdict], settings: Any, k: int) -> str:
    """How the verdicts were made, in one paragraph."""
    families = {v.family for v in verdicts if v.p_adjusted is not None}
    protocols = sorted({v.protocol for v in verdicts if v.protocol})
    return (f"{k} seed replicate(s); MedMNIST-C protocols: {', '.join(protocols) or 'none'} (taken as the "
            f"paper's: {settings.paper_protocol or 'none, the paper does not state it'}; a claim read under the "
            f"published protocol is marked [published]). \"Does not hold\" is decided after Holm's adjustment "
            f"within {len(families)} families (the claims of one dataset and metric; the stated numbers of one "
            "dataset; each again for the published protocol's readings) at one-sided 2.5%; docs/verdicts.md "
            "gives each rule's error rates, measured by simulation.")


def landing(verdicts: Sequence[Verdict], settings: Any, k: int) -> str:
    """What the report's landing page shows under the workflow description (reStructuredText,
    included by workflow/report/workflow.rst): each dataset's reading, and how it was judged."""
    lines = ["**Does the paper hold?**", "", *[f"- {r}" for r in readings(verdicts)], "", about(verdicts, settings, k)]
    return "\n".join(line.replace("*", "\\*") if line.startswith("- ") else line for line in lines) + "\n"


def header(verdicts: Sequence[Verdict], settings: Any, k: int) -> list[str]:
    """The lines above the overview: the readings, then how they were made."""
    return [*[f"- {r}" for r in readings(verdicts)], "", about(verdicts, settings, k), ""]


def markdown(verdicts: Sequence[Verdict], claims: dict[str, dict[str, Any]], settings: Any, k: int,
             winners: Table) -> str:
    lines = ["# Does the paper hold?", "", *header(verdicts, settings, k),
             to_markdown(overview_table(verdicts, claims)), "## The claims", ""]
    lines += [f"- **{n}** {c['text']}: \"{c['quote']}\" ({c['source']})" for n, c in claims.items()]
    lines += ["", "## Stated numbers", "", to_markdown(stated_table(verdicts)),
              "## Replicate 0 against the others", "", to_markdown(winners), "## Evidence", "",
              to_markdown(evidence_table(verdicts)), "Rules: docs/verdicts.md."]
    return "\n".join(lines) + "\n"


def write_verdicts(verdicts: Sequence[Verdict], path: str) -> None:
    """results/summary/verdicts.csv: one row per verdict, values as fractions (repr)."""
    from medrobust.core.io import float_cell as number
    from medrobust.core.io import write_csv

    write_csv(path, COLUMNS, ([v.dataset, v.claim, v.metric, v.subject, v.verdict, number(v.value), number(v.low),
                               number(v.high), v.reference, v.rule, number(v.detectable), v.n_replicates,
                               number(v.p), number(v.p_adjusted), v.method, number(v.mc_error), v.note, v.protocol]
                              for v in verdicts))
