"""`medrobust` commands after training: corrupted test sets, MedMNIST-C and AutoAttack
evaluation, the summary table, sanity checks, figures and tables (registered by medrobust.cli)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from medrobust.io import read_json, write_json, write_npz

log = logging.getLogger("medrobust")


def cmd_corrupt(a: argparse.Namespace) -> None:
    import numpy as np

    from medrobust.corrupt import corrupt_all
    from medrobust.data import Source, load_splits
    from medrobust.provenance import record

    src = Source(Path(a.source), a.n_classes, a.n_channels, a.source_size, a.medmnist)
    images, labels = load_splits(src)["test"]
    sets = corrupt_all(images, a.registry, a.apply_size, a.size, a.seed)
    write_npz(a.out, {"labels": labels.astype(np.int64), **{f"corruption/{k}": v for k, v in sets.items()}})
    write_json(a.stats, {"registry": a.registry, "apply_size": a.apply_size, "size": a.size, "n": len(labels),
                         "corruptions": sorted(sets), "source": a.source, "provenance": record()})
    log.info("wrote %s: %d corruptions x 5 severities of %d test images (applied at %d px)",
             a.out, len(sets), len(labels), a.apply_size)


def cmd_evaluate_corrupted(a: argparse.Namespace) -> None:
    import torch

    from medrobust.evaluate import evaluate_corrupted
    from medrobust.provenance import record
    from medrobust.runtime import pick_device

    torch.set_num_threads(a.threads)
    result = evaluate_corrupted(a.model, a.data, pick_device(a.device), a.batch_size)
    write_json(a.out, {"model": a.model, "data": a.data, **result, "provenance": record()})
    log.info("%s on %s: mean %s", a.model, a.data, result["mean"])


def cmd_autoattack(a: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from medrobust import autoattack
    from medrobust.evaluate import load_model, load_split, predict
    from medrobust.metrics import classification_metrics
    from medrobust.provenance import record
    from medrobust.runtime import as_float, fingerprint, pick_device, sigterm_flag, state_lock

    torch.set_num_threads(a.threads)
    device = pick_device(a.device)
    model, ckpt = load_model(a.model, device)
    n_classes = ckpt["model_args"]["n_classes"]
    x, y = load_split(a.data, a.split, device, n_classes)
    idx = np.arange(len(y))
    if 0 < a.n_images < len(y):  # a fixed random subset, the same for every model
        idx = np.sort(np.random.default_rng(a.seed).choice(len(y), a.n_images, replace=False))
    x, y = as_float(x[idx]), y[idx]
    aa = autoattack.build(model, n_classes, a.eps / 255, a.seed, device)
    # pyautoattack reseeds every batch: the batch size changes the random restarts, hence results
    settings = {"eps": a.eps, "seed": a.seed, "n_images": a.n_images, "split": a.split, "batch_size": a.batch_size,
                "attacks": aa.attacks_to_run}
    log.info("AutoAttack (%s) at eps %d/255 on %d images of %s", ", ".join(aa.attacks_to_run), a.eps, len(y), a.model)
    with state_lock(a.state):
        tag = fingerprint("autoattack", settings, a.model, a.data)
        progress = autoattack.run(aa, x, y, Path(a.state), tag, a.batch_size, sigterm_flag())
        probs = predict(model, progress.x_adv, a.batch_size, "fp32")
        metrics = {**classification_metrics(y.cpu().numpy(), probs), "n": len(y)}
        linf = (progress.x_adv - x).abs().amax().item() * 255
        write_json(a.out, {"model": a.model, "data": a.data, **settings,
                           "n_target_classes": autoattack.attack_plan(n_classes)[1],
                           "robust_accuracy_after": progress.done, "linf_max_255": linf, "code": tag["code"],
                           "metrics": metrics, "provenance": record(settings)})
        Path(a.state).unlink(missing_ok=True)
    log.info("under AutoAttack: %s (max L-inf %.4f/255)", metrics, linf)


def cmd_saliency(a: argparse.Namespace) -> None:
    import torch

    from medrobust.evaluate import load_model, load_split
    from medrobust.figures import saliency_figure
    from medrobust.runtime import as_float, pick_device
    from medrobust.saliency import example

    torch.set_num_threads(a.threads)
    device = pick_device(a.device)
    loaded = {label: load_model(path, device) for label, path in (("Robust", a.robust), ("Standard", a.standard))}
    models = {label: model for label, (model, _) in loaded.items()}
    x, y = load_split(a.data, "test", device, loaded["Standard"][1]["model_args"]["n_classes"])
    ex = example(models, "Standard", "Robust", as_float(x), y, a.eps / 255, a.steps, a.index, a.seed)
    saliency_figure(ex.images, ex.maps, out_png=a.out_png, out_pdf=a.out_pdf,
                    row_titles=(f"Original (class {ex.label})", f"Adversarial ({a.eps}/255)"),
                    predictions={k: (str(v[0]), str(v[1])) for k, v in ex.predictions.items()})
    write_json(a.out_json, {"index": ex.index, "label": ex.label, "choice": ex.choice, "predictions": ex.predictions,
                            "eps": a.eps, "steps": a.steps, "standard": a.standard, "robust": a.robust})
    log.info("saliency of test image %d (label %d; %s): %s", ex.index, ex.label, ex.choice, ex.predictions)


def cmd_summarize(a: argparse.Namespace) -> None:
    from medrobust.summary import stage_rows
    from medrobust.tables import write_summary

    rows = []
    for entry in json.loads(a.layout):
        files = {k: read_json(entry[k]) if entry.get(k) else None for k in ("clean", "corrupted", "autoattack")}
        rows += stage_rows(entry["dataset"], entry["stage"], entry["n_classes"], files["clean"],
                           files["corrupted"], files["autoattack"])
    write_summary(rows, a.out)
    log.info("wrote %s (%d rows)", a.out, len(rows))


def cmd_checks(a: argparse.Namespace) -> None:
    from medrobust.checks import gather, write_checks
    from medrobust.tables import read_summary

    checks = gather(json.loads(a.layout), read_summary(a.summary))
    write_checks(checks, a.out)
    for c in checks:
        if c.flag:
            log.warning("%s %s: %s expected %s, measured %s", c.dataset, c.stage, c.check, c.expected, c.measured)
    log.info("wrote %s (%d checks, %d flagged)", a.out, len(checks), sum(c.flag for c in checks))


def cmd_figure(a: argparse.Namespace) -> None:
    from medrobust.figures import bar_figure, eps_figure
    from medrobust.tables import read_summary

    summary = read_summary(a.summary)
    if a.kind == "bars":
        bar_figure(summary, a.metric, a.eps[0], out_png=a.out_png, out_pdf=a.out_pdf)
    else:
        eps_figure(summary, tuple(a.eps), out_png=a.out_png, out_pdf=a.out_pdf, metric=a.metric)
    log.info("wrote %s and %s", a.out_png, a.out_pdf)


def cmd_curves(a: argparse.Namespace) -> None:
    from medrobust.diagnostics import curves_figure, stage_title
    from medrobust.history import read_history

    histories = {Path(p).parent.name: read_history(p) for p in a.histories}
    curves_figure(histories, read_json(a.selection), a.n_classes, stage_title(a.dataset, a.stage),
                  out_png=a.out_png, out_pdf=a.out_pdf)
    log.info("wrote %s and %s (%d grid points)", a.out_png, a.out_pdf, len(histories))


def cmd_examples(a: argparse.Namespace) -> None:
    import numpy as np

    from medrobust.diagnostics import examples_figure, pick_examples
    from medrobust.io import read_npz
    from medrobust.tables import dataset_label

    built = read_npz(a.nonrobust, ("train_images", "train_labels", "train_source_index", "train_original_labels"))
    clean = read_npz(a.data, ("train_images",))["train_images"]
    labels, targets = built["train_original_labels"].reshape(-1), built["train_labels"].reshape(-1)
    pick = pick_examples(labels, targets, a.n, a.seed)
    original = clean[built["train_source_index"][pick]].astype(np.float32) / 255
    examples_figure(original, built["train_images"][pick].astype(np.float32), labels[pick], targets[pick], a.eps,
                    dataset_label(a.dataset), out_png=a.out_png, out_pdf=a.out_pdf)
    log.info("wrote %s and %s (training images %s)", a.out_png, a.out_pdf, built["train_source_index"][pick].tolist())


def cmd_corruption_table(a: argparse.Namespace) -> None:
    from medrobust.breakdown import stage_cells, write_cells

    cells = []
    for entry in json.loads(a.layout):
        cells += stage_cells(entry["dataset"], entry["stage"], read_json(entry["clean"]), read_json(entry["corrupted"]))
    write_cells(cells, a.out)
    log.info("wrote %s (%d rows)", a.out, len(cells))


def cmd_figure_corruptions(a: argparse.Namespace) -> None:
    from medrobust.breakdown import read_cells
    from medrobust.diagnostics import corruptions_figure

    corruptions_figure(read_cells(a.table), a.dataset, a.eps, a.n_classes, out_png=a.out_png, out_pdf=a.out_pdf)
    log.info("wrote %s and %s", a.out_png, a.out_pdf)


def cmd_dataset_tables(a: argparse.Namespace) -> None:
    from medrobust.breakdown import SELECTION_COLUMNS, dataset_checks, selection_rows, write_rows

    selections = {e["stage"]: read_json(e["path"]) for e in json.loads(a.selections)}
    write_rows(selection_rows(selections), SELECTION_COLUMNS, a.out_selection)
    columns, checks = dataset_checks(a.checks, a.dataset)
    write_rows(checks, columns, a.out_checks)
    log.info("wrote %s and %s (%d checks, %d flagged)", a.out_selection, a.out_checks, len(checks),
             sum(c.get("flag") == "true" for c in checks))


def cmd_table(a: argparse.Namespace) -> None:
    from medrobust import tables

    if a.kind == "hyperparameters":
        selections = [{**read_json(e["path"]), "dataset": e["dataset"], "stage": e["stage"]}
                      for e in json.loads(a.selections)]
        table = tables.hyperparameter_table(selections)
    elif a.kind == "robustness":
        table = tables.robustness_table(tables.read_summary(a.summary))
    else:
        table = tables.paper_comparison_table(tables.read_summary(a.summary), tables.load_paper_values())
    tables.write_table(table, out_csv=a.out_csv, out_md=a.out_md, out_tex=a.out_tex)
    log.info("wrote %s (%d rows)", a.out_md, len(table.rows))


def cmd_provenance(a: argparse.Namespace) -> None:
    import csv

    import yaml

    from medrobust.io import atomic_path
    from medrobust.provenance import record

    now = record()
    rows = [{"file": "(this report)", **_flat(now)}]
    rows += [{"file": f, **_flat(read_json(f).get("provenance", {}))} for f in a.files]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(a.out_csv) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_path(a.out_config) as tmp:
        tmp.write_text(yaml.safe_dump(json.loads(a.config), sort_keys=False))
    log.info("wrote %s (%d files) and %s", a.out_csv, len(rows) - 1, a.out_config)


def _flat(rec: dict[str, Any]) -> dict[str, Any]:
    git, versions = rec.get("git", {}), rec.get("versions", {})
    return {"created": rec.get("created"), "commit": git.get("commit"), "dirty": git.get("dirty"),
            "host": rec.get("host"), **versions}


def cmd_estimate(a: argparse.Namespace) -> None:
    from medrobust.config import load
    from medrobust.estimate import render, study

    config = load(a.config)
    print(render(study(config), config))


def add_commands(sub: Any) -> None:
    _evaluation_commands(sub)
    _output_commands(sub)
    _review_commands(sub)


def _common(s: argparse.ArgumentParser) -> None:
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int, default=2)


def _evaluation_commands(sub: Any) -> None:
    s = sub.add_parser("corrupt", help="MedMNIST-C corrupted test set (every corruption x 5 severities)")
    s.add_argument("--source", required=True, help="the dataset's MedMNIST-format npz at source resolution")
    s.add_argument("--medmnist", help="load through medmnist's dataset class for this flag")
    s.add_argument("--n-classes", type=int, required=True)
    s.add_argument("--n-channels", type=int, choices=(1, 3), required=True)
    s.add_argument("--source-size", type=int, required=True)
    s.add_argument("--size", type=int, required=True, help="working resolution of the models")
    s.add_argument("--registry", required=True, help="medmnistc registry key (a MedMNIST flag, or 'generic')")
    s.add_argument("--apply-size", type=int, required=True, help="resolution the corruptions are applied at")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--stats", required=True)
    s.set_defaults(func=cmd_corrupt)

    s = sub.add_parser("evaluate-corrupted", help="metrics on every corruption and severity, and their mean")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True, help="the corrupted test set (medrobust corrupt)")
    s.add_argument("--batch-size", type=int, default=1024)
    s.add_argument("--out", required=True)
    _common(s)
    s.set_defaults(func=cmd_evaluate_corrupted)

    s = sub.add_parser("autoattack", help="AutoAttack (L-inf) metrics; resumes from --state")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--split", default="test", choices=("val", "test"))
    s.add_argument("--eps", type=int, required=True, help="in units of 1/255")
    s.add_argument("--n-images", type=int, default=0, help="a seeded random subset; 0 means the whole split")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int, default=500)
    s.add_argument("--state", required=True)
    s.add_argument("--out", required=True)
    _common(s)
    s.set_defaults(func=cmd_autoattack)

    s = sub.add_parser("saliency", help="Fig. 1: saliency maps of the robust and standard model")
    s.add_argument("--standard", required=True, help="the base model")
    s.add_argument("--robust", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--eps", type=int, required=True, help="of the adversarial example, in units of 1/255")
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--index", type=int, help="test image; default: the first one both models get right whose "
                   "adversarial version flips the standard model only (else: flips it)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out-png", required=True)
    s.add_argument("--out-pdf", required=True)
    s.add_argument("--out-json", required=True)
    _common(s)
    s.set_defaults(func=cmd_saliency)


def _output_commands(sub: Any) -> None:
    s = sub.add_parser("summarize", help="the summary table (CSV) from the evaluation files")
    s.add_argument("--layout", required=True,
                   help="JSON list of {dataset, stage, n_classes, clean, corrupted, autoattack} (file paths)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_summarize)

    s = sub.add_parser("checks", help="sanity checks of every selected model and construction (flags, not failures)")
    s.add_argument("--layout", required=True,
                   help="JSON list of {dataset, stage, n_classes, clean, selection[, construction]} (file paths)")
    s.add_argument("--summary", required=True, help="the summary table (medrobust summarize)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_checks)

    s = sub.add_parser("figure", help="Fig. 2/3 (bars) or Fig. 4 (eps) from the summary table")
    s.add_argument("--kind", choices=("bars", "eps"), required=True)
    s.add_argument("--summary", required=True)
    s.add_argument("--metric", choices=("balanced_accuracy", "auc"), default="balanced_accuracy")
    s.add_argument("--eps", type=int, nargs="+", required=True, help="bars: the eps shown; eps: the two compared")
    s.add_argument("--out-png", required=True)
    s.add_argument("--out-pdf", required=True)
    s.set_defaults(func=cmd_figure)

    s = sub.add_parser("estimate", help="jobs and GPU-hours per stage of a configured study (submits nothing)")
    s.add_argument("config", help="a config file, e.g. config.yaml or config.quick.yaml")
    s.set_defaults(func=cmd_estimate)

    s = sub.add_parser("provenance", help="who made each result: commit, versions, time (for the report)")
    s.add_argument("--files", nargs="+", required=True, help="result JSON files with a provenance block")
    s.add_argument("--config", required=True, help="the resolved configuration, as JSON")
    s.add_argument("--out-csv", required=True)
    s.add_argument("--out-config", required=True)
    s.set_defaults(func=cmd_provenance)

    s = sub.add_parser("table", help="Table 1, Table 2 or the paper-vs-reproduction table")
    s.add_argument("--kind", choices=("robustness", "hyperparameters", "paper"), required=True)
    s.add_argument("--summary", help="the summary table (robustness, paper)")
    s.add_argument("--selections", help="JSON list of {dataset, stage, path} (hyperparameters)")
    for ext in ("csv", "md", "tex"):
        s.add_argument(f"--out-{ext}", required=True)
    s.set_defaults(func=cmd_table)


def _figure_outputs(s: argparse.ArgumentParser) -> None:
    s.add_argument("--out-png", required=True)
    s.add_argument("--out-pdf", required=True)


def _review_commands(sub: Any) -> None:
    s = sub.add_parser("curves", help="learning curves of a stage's grid points, the selected one highlighted")
    s.add_argument("--histories", nargs="+", required=True, help="each grid point's history.csv")
    s.add_argument("--selection", required=True, help="the stage's selected.json")
    s.add_argument("--dataset", required=True)
    s.add_argument("--stage", required=True)
    s.add_argument("--n-classes", type=int, required=True, help="for the chance line")
    _figure_outputs(s)
    s.set_defaults(func=cmd_curves)

    s = sub.add_parser("examples", help="training images, their adversarial versions, perturbations, new labels")
    s.add_argument("--data", required=True, help="the prepared npz (original training images)")
    s.add_argument("--nonrobust", required=True, help="the nonrobust-feature set (medrobust construct)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--eps", type=int, required=True, help="of the set, in units of 1/255")
    s.add_argument("--n", type=int, default=6, help="images shown")
    s.add_argument("--seed", type=int, default=0)
    _figure_outputs(s)
    s.set_defaults(func=cmd_examples)

    s = sub.add_parser("corruption-table", help="metrics per corruption and severity of every selected model (CSV)")
    s.add_argument("--layout", required=True, help="JSON list of {dataset, stage, clean, corrupted} (file paths)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_corruption_table)

    s = sub.add_parser("figure-corruptions", help="one dataset's balanced accuracy per corruption and severity")
    s.add_argument("--table", required=True, help="the corruption table (medrobust corruption-table)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--eps", type=int, required=True, help="the budget whose models are compared per corruption")
    s.add_argument("--n-classes", type=int, required=True, help="for the chance line")
    _figure_outputs(s)
    s.set_defaults(func=cmd_figure_corruptions)

    s = sub.add_parser("dataset-tables", help="one dataset's selection table (every grid point) and its sanity checks")
    s.add_argument("--dataset", required=True)
    s.add_argument("--selections", required=True, help="JSON list of {stage, path} (the stages' selected.json)")
    s.add_argument("--checks", required=True, help="the study's checks.csv (medrobust checks)")
    s.add_argument("--out-selection", required=True)
    s.add_argument("--out-checks", required=True)
    s.set_defaults(func=cmd_dataset_tables)
