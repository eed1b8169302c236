"""Commands of workflow/rules/review.smk: curves, examples, corruption-table, figure-corruptions,
dataset-tables (what a reviewer looks at beyond the paper's figures)."""

from __future__ import annotations

import argparse
from typing import Any

from medrobust.cli.args import add_figure_outputs, add_inputs_arg, log, stage_inputs
from medrobust.core.io import read_json

EXAMPLES_SHOWN = 6  # training images in a nonrobust-feature set's figure


def cmd_curves(a: argparse.Namespace) -> None:
    from medrobust.core.paths import point_of_file
    from medrobust.report.diagnostics import curves_figure, stage_title
    from medrobust.train.history import read_history

    histories = {point_of_file(p): read_history(p) for p in a.histories}
    curves_figure(histories, read_json(a.selection), a.n_classes, stage_title(a.dataset, a.stage),
                  out_png=a.out_png, out_pdf=a.out_pdf)
    log.info("wrote %s and %s (%d grid points)", a.out_png, a.out_pdf, len(histories))


def cmd_examples(a: argparse.Namespace) -> None:
    import numpy as np

    from medrobust.core.io import read_npz
    from medrobust.core.numerics import as_float
    from medrobust.report.diagnostics import examples_figure, pick_examples
    from medrobust.report.tables import dataset_label

    built = read_npz(a.nonrobust, ("train_images", "train_labels", "train_source_index", "train_original_labels"))
    clean = read_npz(a.data, ("train_images",))["train_images"]
    labels, targets = built["train_original_labels"].reshape(-1), built["train_labels"].reshape(-1)
    pick = pick_examples(labels, targets, EXAMPLES_SHOWN, a.seed)
    original = as_float(clean[built["train_source_index"][pick]])
    examples_figure(original, built["train_images"][pick].astype(np.float32), labels[pick], targets[pick], a.eps,
                    dataset_label(a.dataset), out_png=a.out_png, out_pdf=a.out_pdf)
    log.info("wrote %s and %s (training images %s)", a.out_png, a.out_pdf, built["train_source_index"][pick].tolist())


def cmd_corruption_table(a: argparse.Namespace) -> None:
    from medrobust.report.breakdown import stage_cells, write_cells

    cells = []
    for e in stage_inputs(a):
        first = e["replicates"][0]
        cells += stage_cells(e["dataset"], e["stage"], {kind: read_json(path) for kind, path in first.items()})
    write_cells(cells, a.out)
    log.info("wrote %s (%d rows)", a.out, len(cells))


def cmd_figure_corruptions(a: argparse.Namespace) -> None:
    from medrobust.report.breakdown import read_cells
    from medrobust.report.diagnostics import corruptions_figure

    corruptions_figure(read_cells(a.table), a.dataset, a.eps, a.n_classes, a.protocol, out_png=a.out_png,
                       out_pdf=a.out_pdf)
    log.info("wrote %s and %s", a.out_png, a.out_pdf)


def cmd_dataset_tables(a: argparse.Namespace) -> None:
    from medrobust.report.breakdown import SELECTION_COLUMNS, dataset_checks, selection_rows, write_rows

    selections = {e["stage"]: read_json(e["selection"]) for e in stage_inputs(a)}
    write_rows(selection_rows(selections), SELECTION_COLUMNS, a.out_selection)
    columns, checks = dataset_checks(a.checks, a.dataset)
    write_rows(checks, columns, a.out_checks)
    log.info("wrote %s and %s (%d checks, %d flagged)", a.out_selection, a.out_checks, len(checks),
             sum(c.get("flag") == "true" for c in checks))


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("curves", help="learning curves of a stage's grid points, the selected one highlighted")
    s.add_argument("--histories", nargs="+", required=True, help="each grid point's history.csv")
    s.add_argument("--selection", required=True, help="the stage's selected.json")
    s.add_argument("--dataset", required=True)
    s.add_argument("--stage", required=True)
    s.add_argument("--n-classes", type=int, required=True, help="for the chance line")
    add_figure_outputs(s)
    s.set_defaults(func=cmd_curves)

    s = sub.add_parser("examples", help="training images, their adversarial versions, perturbations, new labels")
    s.add_argument("--data", required=True, help="the prepared npz (original training images)")
    s.add_argument("--nonrobust", required=True, help="the nonrobust-feature set (medrobust construct)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--eps", type=int, required=True, help="of the set, in units of 1/255")
    s.add_argument("--seed", type=int, required=True)
    add_figure_outputs(s)
    s.set_defaults(func=cmd_examples)

    s = sub.add_parser("corruption-table", help="metrics per corruption and severity of every selected model (CSV)")
    add_inputs_arg(s, "replicate 0's clean and corrupted evaluations of each stage")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_corruption_table)

    s = sub.add_parser("figure-corruptions", help="one dataset's balanced accuracy per corruption and severity")
    s.add_argument("--table", required=True, help="the corruption table (medrobust corruption-table)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--eps", type=int, required=True, help="the budget whose models are compared per corruption")
    s.add_argument("--n-classes", type=int, required=True, help="for the chance line")
    s.add_argument("--protocol", choices=("applied", "published"), default="applied", help="which MedMNIST-C")
    add_figure_outputs(s)
    s.set_defaults(func=cmd_figure_corruptions)

    s = sub.add_parser("dataset-tables", help="one dataset's selection table (every grid point) and its sanity checks")
    s.add_argument("--dataset", required=True)
    add_inputs_arg(s, "the stages' selected.json")
    s.add_argument("--checks", required=True, help="the study's checks.csv (medrobust checks)")
    s.add_argument("--out-selection", required=True)
    s.add_argument("--out-checks", required=True)
    s.set_defaults(func=cmd_dataset_tables)
