"""Commands of workflow/rules/outputs.smk: saliency (Fig. 1), summarize, checks, figure, table,
provenance; and, run by no rule, estimate (the study's jobs and GPU-hours, for planning) and
doctor (what this machine offers the GPU jobs, and whether they would run on its GPUs)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from medrobust.cli.args import (
    add_device_args,
    add_figure_outputs,
    add_inputs_arg,
    add_n_classes_arg,
    job_device,
    log,
    parse_json,
    stage_inputs,
)
from medrobust.core.io import read_json, write_json
from medrobust.core.stages import EPOCHS


def cmd_saliency(a: argparse.Namespace) -> None:
    from medrobust.core.network import load_model
    from medrobust.core.numerics import as_float
    from medrobust.core.splits import load_split
    from medrobust.evaluate.saliency import example
    from medrobust.report.figures import saliency_figure

    device = job_device(a)
    loaded = {label: load_model(path, device, weights)
              for label, path, weights in (("Robust", a.robust, a.robust_weights),
                                           ("Standard", a.standard, a.standard_weights))}
    models = {label: model for label, (model, _) in loaded.items()}
    x, y = load_split(a.data, "test", device, loaded["Standard"][1]["model_args"]["n_classes"])
    ex = example(models, "Standard", "Robust", as_float(x), y, a.eps / 255, a.steps, a.index, a.seed)
    saliency_figure(ex.images, ex.maps, out_png=a.out_png, out_pdf=a.out_pdf,
                    row_titles=(f"Original (class {ex.label})", f"Adversarial ({a.eps}/255)"),
                    predictions={k: (str(v[0]), str(v[1])) for k, v in ex.predictions.items()})
    write_json(a.out_json, {"index": ex.index, "label": ex.label, "choice": ex.choice, "predictions": ex.predictions,
                            "eps": a.eps, "steps": a.steps, "standard": a.standard, "robust": a.robust})
    log.info("saliency of test image %d (label %d; %s): %s", ex.index, ex.label, ex.choice, ex.predictions)


def cmd_bootstrap(a: argparse.Namespace) -> None:
    from medrobust.report.intervals import stage_draws, write_draws

    (entry,) = stage_inputs(a)
    replicates = entry["replicates"]
    arrays = stage_draws(replicates, a.draws, a.seed)
    write_draws(arrays, a.out)
    log.info("wrote %s: %d draws of %s over %d replicates", a.out, a.draws,
             ", ".join(sorted(k for k in arrays if k.count("/") == 1 and not k.endswith("/n"))), len(replicates))


def cmd_summarize(a: argparse.Namespace) -> None:
    from medrobust.core.io import npz_shapes, read_npz
    from medrobust.report.summary import stage_rows
    from medrobust.report.tables import write_summary

    rows, n_classes = [], parse_json(a.n_classes, "--n-classes")
    for entry in stage_inputs(a):
        replicates = [{k: read_json(path) for k, path in files.items()} for files in entry["replicates"]]
        draws = read_npz(entry["bootstrap"], tuple(npz_shapes(entry["bootstrap"])))
        rows += stage_rows(entry["dataset"], entry["stage"], n_classes[entry["dataset"]], replicates, draws, a.level)
    write_summary(rows, a.out)
    log.info("wrote %s (%d rows)", a.out, len(rows))


def cmd_sensitivity(a: argparse.Namespace) -> None:
    from medrobust.report.sensitivity import draws_by_run, rows, verdict_rows, write

    runs = draws_by_run(parse_json(a.inputs, "--inputs"))
    table = rows(runs, a.level)
    verdicts = verdict_rows(runs, judging(a)[1], table)
    write(table, verdicts, a.out, a.out_verdicts, a.out_md, a.level)
    log.info("wrote %s, %s and %s: %d numbers (%d differ), %d verdicts (%d change)", a.out, a.out_verdicts, a.out_md,
             len(table), sum(r["reading"] == "differs" for r in table), len(verdicts),
             sum(r["change"] != "same" for r in verdicts))


def cmd_figure_sensitivity(a: argparse.Namespace) -> None:
    from medrobust.report.diagnostics import sensitivity_figure
    from medrobust.report.sensitivity import read

    sensitivity_figure(read(a.table), a.variant, a.main_eps, out_png=a.out_png, out_pdf=a.out_pdf)
    log.info("wrote %s and %s", a.out_png, a.out_pdf)


def cmd_checks(a: argparse.Namespace) -> None:
    from medrobust.report.checks import every_check, write_checks
    from medrobust.report.tables import read_summary

    n_classes = parse_json(a.n_classes, "--n-classes")
    stages = [{**e, **e["replicates"][0], "n_classes": n_classes[e["dataset"]]} for e in stage_inputs(a)]
    checks = every_check(stages, read_summary(a.summary))
    write_checks(checks, a.out)
    for c in checks:
        if c.flag:
            log.warning("%s %s: %s expected %s, measured %s", c.dataset, c.stage, c.check, c.expected, c.measured)
    log.info("wrote %s (%d checks, %d flagged)", a.out, len(checks), sum(c.flag for c in checks))


def cmd_figure(a: argparse.Namespace) -> None:
    from medrobust.report.figures import bar_figure, eps_figure
    from medrobust.report.tables import read_summary

    summary = read_summary(a.summary)
    if a.kind == "bars":
        bar_figure(summary, a.metric, a.eps[0], a.protocol, out_png=a.out_png, out_pdf=a.out_pdf)
    else:
        eps_figure(summary, tuple(a.eps), out_png=a.out_png, out_pdf=a.out_pdf, metric=a.metric)
    log.info("wrote %s and %s", a.out_png, a.out_pdf)


def cmd_table(a: argparse.Namespace) -> None:
    from medrobust.report import tables

    if a.kind == "hyperparameters":
        selections = [{**read_json(e["selection"]), "dataset": e["dataset"], "stage": e["stage"]}
                      for e in stage_inputs(a)]
        table = tables.hyperparameter_table(selections)
    else:
        table = tables.robustness_table(tables.read_summary(a.summary))
    tables.write_table(table, out_csv=a.out_csv, out_md=a.out_md, out_tex=a.out_tex)
    log.info("wrote %s (%d rows)", a.out_md, len(table.rows))


def judging(a: argparse.Namespace) -> tuple[Any, Any]:
    """The verdicts' settings, and a dataset's draws -> the RunResults judged with them."""
    from medrobust.report.verdicts import RunResults, Settings

    settings = Settings(a.chance_margin, a.equivalence, a.broken_fail, a.broken_hold, a.paper_protocol,
                        a.level)
    n_classes = parse_json(a.n_classes, "--n-classes")

    def run_of(dataset: str, draws: dict[str, Any]) -> RunResults:
        return RunResults(dataset, n_classes[dataset], dataset in a.paper_datasets, draws, a.main_eps, tuple(a.eps),
                          settings)

    return settings, run_of


def cmd_verdicts(a: argparse.Namespace) -> None:
    from medrobust.core.io import atomic_path, npz_shapes, read_npz
    from medrobust.report import verdict_tables as vt
    from medrobust.report.tables import load_paper_values, to_csv, write_table
    from medrobust.report.verdicts import judge, load_claims

    claims, paper, verdicts, every = load_claims(), load_paper_values(), [], {}
    for e in stage_inputs(a):
        every.setdefault(e["dataset"], {})[e["stage"]] = read_npz(e["bootstrap"], tuple(npz_shapes(e["bootstrap"])))
    k = max(len(d["clean/balanced_accuracy/point"]) for draws in every.values() for d in draws.values())
    settings, run_of = judging(a)
    for dataset, draws in every.items():
        verdicts += judge(run_of(dataset, draws), claims, paper)
    vt.write_verdicts(verdicts, a.out_csv)
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(vt.markdown(verdicts, claims, settings, k, vt.winner_table(every)))
    with atomic_path(a.out_landing) as tmp:
        tmp.write_text(vt.landing(verdicts, settings, k))
    to_csv(vt.overview_table(verdicts, claims), a.out_overview)
    write_table(vt.stated_table(verdicts), out_csv=a.out_stated_csv, out_md=a.out_stated_md,
                out_tex=a.out_stated_tex)
    for line in vt.readings(verdicts):
        log.info("%s", line)


def cmd_provenance(a: argparse.Namespace) -> None:
    import yaml

    from medrobust.core.io import atomic_path, write_csv
    from medrobust.jobs.provenance import record

    now = record()
    rows = [{"file": "(this report)", **_flat(now)}]
    rows += [{"file": f, **_flat(read_json(f).get("provenance", {}))} for f in a.files]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    write_csv(a.out_csv, columns, ([r.get(c) for c in columns] for r in rows))
    with atomic_path(a.out_config) as tmp:
        tmp.write_text(yaml.safe_dump(json.loads(a.config), sort_keys=False))
    log.info("wrote %s (%d files) and %s", a.out_csv, len(rows) - 1, a.out_config)


def _flat(rec: dict[str, Any]) -> dict[str, Any]:
    git, versions, device = rec.get("git", {}), rec.get("versions", {}), rec.get("device", {})
    return {"created": rec.get("created"), "commit": git.get("commit"), "dirty": git.get("dirty"),
            "host": rec.get("host"), "gpus": ", ".join(device.get("gpus") or []), "driver": device.get("driver"),
            **versions}


def cmd_estimate(a: argparse.Namespace) -> None:
    from medrobust.core.config import load
    from medrobust.core.estimate import render, study

    config = load(a.config)
    print(render(study(config), config))


def cmd_doctor(a: argparse.Namespace) -> None:
    """What the GPU jobs would find on this machine, and whether they would run on its GPUs."""
    from medrobust.jobs.device import describe, probe, verdict

    report = probe()
    print("\n".join([*describe(report), f"ImageMagick (MagickWand, for MedMNIST-C): {_magick()}", verdict(report)]))


def _magick() -> str:
    try:
        import wand.image  # noqa: F401  (loads the MagickWand library, which the corruptions need)
        import wand.version
    except (ImportError, OSError) as e:
        return f"not loadable ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}): " \
               "medrobust corrupt cannot run here"
    return f"loadable ({wand.version.MAGICK_VERSION})"


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("saliency", help="Fig. 1: saliency maps of the robust and standard model")
    s.add_argument("--standard", required=True, help="the base model")
    s.add_argument("--robust", required=True)
    for which in ("standard", "robust"):
        s.add_argument(f"--{which}-weights", choices=EPOCHS, required=True, help=f"the {which} model's epoch")
    s.add_argument("--data", required=True)
    s.add_argument("--eps", type=int, required=True, help="of the adversarial example, in units of 1/255")
    s.add_argument("--steps", type=int, required=True)
    s.add_argument("--index", type=int, help="test image; default: the first one both models get right whose "
                   "adversarial version flips the standard model only (else: flips it)")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out-png", required=True)
    s.add_argument("--out-pdf", required=True)
    s.add_argument("--out-json", required=True)
    add_device_args(s)
    s.set_defaults(func=cmd_saliency)

    _add_result_parsers(sub)


def _add_result_parsers(sub: Any) -> None:
    """The summary, its intervals and the verdicts."""
    s = sub.add_parser("bootstrap", help="bootstrap draws of one stage's test metrics (every replicate)")
    add_inputs_arg(s, "each replicate's probability files of one stage")
    s.add_argument("--draws", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_bootstrap)

    s = sub.add_parser("summarize", help="the summary table (CSV) from the evaluation files and bootstrap draws")
    add_inputs_arg(s, "every replicate's evaluation files and the bootstrap draws of each stage")
    add_n_classes_arg(s)
    s.add_argument("--level", type=float, required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_summarize)

    s = sub.add_parser("sensitivity", help="each test number and verdict under the main run and each variant, paired")
    add_inputs_arg(s, "bootstrap draws: main/<dataset>/<stage> (every stage) and <variant>/<dataset>/<stage>")
    _add_judging_args(s)
    s.add_argument("--out", required=True, help="CSV: the numbers")
    s.add_argument("--out-verdicts", required=True, help="CSV: each verdict under the main run and each variant")
    s.add_argument("--out-md", required=True)
    s.set_defaults(func=cmd_sensitivity)

    s = sub.add_parser("figure-sensitivity", help="one variant's paired differences (Fig. 2 and Table 1's numbers)")
    s.add_argument("--table", required=True, help="sensitivity.csv (medrobust sensitivity)")
    s.add_argument("--variant", required=True)
    s.add_argument("--main-eps", type=int, required=True, help="the eps of the models of Fig. 2 and Table 1")
    add_figure_outputs(s)
    s.set_defaults(func=cmd_figure_sensitivity)

    s = sub.add_parser("verdicts", help="every claim and stated number of the paper judged on the results")
    add_inputs_arg(s, "the bootstrap draws of each stage")
    _add_judging_args(s)
    for name in ("csv", "md", "overview", "stated-csv", "stated-md", "stated-tex", "landing"):
        s.add_argument(f"--out-{name}", required=True)
    s.set_defaults(func=cmd_verdicts)

    _add_report_parsers(sub)


def _add_judging_args(s: Any) -> None:
    """What the verdicts are judged with (docs/verdicts.md)."""
    add_n_classes_arg(s)
    s.add_argument("--paper-datasets", nargs="*", default=[], help="the datasets judged against the paper's numbers")
    s.add_argument("--main-eps", type=int, required=True)
    s.add_argument("--eps", type=int, nargs="+", required=True)
    s.add_argument("--level", type=float, required=True)
    s.add_argument("--chance-margin", type=float, required=True, help="'well above chance': above chance + this")
    s.add_argument("--equivalence", type=float, required=True, help="a stated number is reproduced within +-this")
    s.add_argument("--broken-fail", type=float, required=True, help="C5 fails when a lower bound exceeds this")
    s.add_argument("--broken-hold", type=float, required=True, help="C5 holds when every upper bound is <= this")
    s.add_argument("--paper-protocol", default=None, help="the protocol taken as the paper's (absent: none)")


def _add_report_parsers(sub: Any) -> None:
    """Checks, figures, tables, provenance, and the commands no rule runs."""
    s = sub.add_parser("checks", help="sanity checks of every selected model and construction (flags, not failures)")
    add_inputs_arg(s, "each stage's selection, replicate 0's clean evaluation and construction statistics")
    add_n_classes_arg(s)
    s.add_argument("--summary", required=True, help="the summary table (medrobust summarize)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_checks)

    s = sub.add_parser("figure", help="Fig. 2/3 (bars) or Fig. 4 (eps) from the summary table")
    s.add_argument("--kind", choices=("bars", "eps"), required=True)
    s.add_argument("--summary", required=True)
    s.add_argument("--metric", choices=("balanced_accuracy", "auc"), required=True)
    s.add_argument("--eps", type=int, nargs="+", required=True, help="bars: the eps shown; eps: the two compared")
    s.add_argument("--protocol", choices=("applied", "published"), default="applied",
                   help="bars: the MedMNIST-C protocol of the OOD bars")
    s.add_argument("--out-png", required=True)
    s.add_argument("--out-pdf", required=True)
    s.set_defaults(func=cmd_figure)

    s = sub.add_parser("estimate", help="jobs and GPU-hours per stage of a configured study (submits nothing)")
    s.add_argument("config", help="a config file, e.g. config.yaml or config.quick.yaml")
    s.set_defaults(func=cmd_estimate)

    s = sub.add_parser("doctor", help="torch, CUDA, driver, GPUs, MagickWand, container: will GPU jobs run here?")
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("provenance", help="who made each result: commit, versions, time (for the report)")
    s.add_argument("--files", nargs="+", required=True, help="result JSON files with a provenance block")
    s.add_argument("--config", required=True, help="the resolved configuration, as JSON")
    s.add_argument("--out-csv", required=True)
    s.add_argument("--out-config", required=True)
    s.set_defaults(func=cmd_provenance)

    s = sub.add_parser("table", help="Table 1 or Table 2")
    s.add_argument("--kind", choices=("robustness", "hyperparameters"), required=True)
    s.add_argument("--summary", help="the summary table (robustness)")
    s.add_argument("--inputs", help="JSON object {<dataset>/<stage>/-/selection: selected.json} (hyperparameters)")
    for ext in ("csv", "md", "tex"):
        s.add_argument(f"--out-{ext}", required=True)
    s.set_defaults(func=cmd_table)
