# Paths, grids and input functions shared by the rules (no torch in the scheduler).
import functools
import json
import shlex

from medrobust.core import hparams, paths
from medrobust.core.config import (
    PUBLISHED_SIZE,
    classes_and_channels,
    corruption_registry,
    grid_points,
    saliency_dataset,
    source_size,
    stages,
)
from medrobust.core.paths import BOOTSTRAP, DATA, EVAL, NONROBUST, RUN, SELECTION, TRAINED, key
from medrobust.core.stages import model_of, stage_eps
from medrobust.jobs.codedeps import code_digest
from medrobust.report.verdicts import PAPER_DATASETS

ENV = "../../envs/medrobust.yaml"
PACKAGE = WORKFLOW_DIR / "src" / "medrobust"
DATASETS = config["datasets"]
REPLICATES = range(config["replicates"])


def one_of(names):
    """A wildcard regex matching exactly these names (and nothing when there are none)."""
    return "|".join(sorted(names)) or "(?!x)x"


def with_source(*sources):
    return [name for name, ds in DATASETS.items() if ds["source"] in sources]


@functools.cache
def code(command):
    """A digest of the package modules `medrobust <command>` imports (medrobust.jobs.codedeps), as a
    param: editing one re-runs exactly the jobs whose command imports it. It holds no path (a
    file input would record the checkout's absolute path), so a moved or copied checkout re-runs
    nothing."""
    return code_digest(command, PACKAGE)


# ---- data -------------------------------------------------------------------------------


def n_classes(wildcards):
    return classes_and_channels(config, wildcards.dataset)[0]


def n_channels(wildcards):
    return classes_and_channels(config, wildcards.dataset)[1]


def source_size_of(wildcards):
    return source_size(config, wildcards.dataset)


def raw_npz(wildcards):
    return paths.source(config, wildcards.dataset)


def medmnist_flag(wildcards):
    ds = DATASETS[wildcards.dataset]
    return f"--medmnist {wildcards.dataset}" if ds["source"] == "medmnist" else ""


def dataset_setting(key, quote=True):
    """A param: the dataset's entry `key` (synthetic spec, URL, md5) of the config."""

    def value(wildcards):
        text = DATASETS[wildcards.dataset][key]
        return shlex.quote(json.dumps(text, sort_keys=True) if isinstance(text, dict) else text) if quote else text

    return value


def prepared_npz(wildcards):
    return paths.prepared(wildcards.dataset)


# the datasets with a 224 px test split, evaluated on MedMNIST-C as published too
PUBLISHED_DATASETS = [d for d in DATASETS if paths.published_source(config, d)]


def published_source_of(wildcards):
    return paths.published_source(config, wildcards.dataset)


# ---- training (medrobust.core.paths: the grid, then every replicate at the selected point) ----


SELECTED = RUN.replace("{rep}", "0")  # replicate 0: the grid's winner (rule select)


def rep_of(wildcards):
    """The replicate of a job; a grid point trains with replicate 0's seed and data."""
    run = getattr(wildcards, "run", f"rep{getattr(wildcards, 'rep', 0)}")
    return 0 if paths.point_of(run) else int(run.removeprefix("rep"))


def variant_of(wildcards):
    """The variant of a job of variants.smk (its {variant}); None for the main run's jobs. Every
    input function below reads its files through it: a variant's own where it moved them
    (medrobust.core.paths), else the main run's."""
    name = getattr(wildcards, "variant", None)
    return VARIANTS[name] if name else None


def config_of(wildcards):
    """The resolved config a job runs under: its variant's, or the main run's."""
    v = variant_of(wildcards)
    return v.config if v else config


def model_file(stage=None):
    """The model a job reads: replicate rep_of's of its stage (or of `stage`)."""

    def model(wildcards):
        v, rep = variant_of(wildcards), rep_of(wildcards)
        return f"{paths.run_dir(wildcards.dataset, stage or wildcards.stage, rep, v)}/model.pt"

    return model


def training_set(wildcards):
    """What a run trains on: its replicate's nonrobust-feature set, or the clean prepared set."""
    if model_of(wildcards.stage) == "nonrobust":
        eps = stage_eps(wildcards.stage)
        return paths.nonrobust_set(wildcards.dataset, eps, rep_of(wildcards), variant_of(wildcards))
    return paths.prepared(wildcards.dataset)


def selection_of(wildcards):
    return paths.selection(wildcards.dataset, wildcards.stage, variant_of(wildcards))


def train_inputs(wildcards):
    """A run's training and validation sets; a replicate's, the selection it trains again."""
    files = {"train": training_set(wildcards), "val": paths.prepared(wildcards.dataset)}
    if paths.point_of(wildcards.run) is None:
        files["selected"] = selection_of(wildcards)
    return files


def train_settings(wildcards):
    """A grid point's every training setting, as one shell-quoted JSON; a replicate's: the
    selected point's (read by the job from selected.json) with the replicate's seed, and a
    variant's changes to it (paths.overlay). Not a function of `input`: Snakemake records no
    such param, so a change would re-run nothing."""
    point, v = paths.point_of(wildcards.run), variant_of(wildcards)
    if point is None:
        flags = f"--selected {selection_of(wildcards)} --seed {hparams.replicate_seed(config, rep_of(wildcards))}"
        changes = paths.overlay(v, wildcards.dataset, wildcards.stage) if v else {}
        return flags + (f" --overlay {shlex.quote(json.dumps(changes, sort_keys=True))}" if changes else "")
    hp = hparams.train_hparams(config, wildcards.dataset, wildcards.stage, point)
    return f"--hparams {shlex.quote(json.dumps(hp, sort_keys=True))}"


def construction_settings(wildcards):
    """Every setting that changes the nonrobust-feature set, as one shell-quoted JSON (a param)."""
    settings = hparams.construction_settings(config_of(wildcards), int(wildcards.eps), rep_of(wildcards))
    return shlex.quote(json.dumps(settings, sort_keys=True))


def kept_epoch(stage=None):
    """The epoch whose weights a stage's models (or `stage`'s) keep (selection and evaluation)."""

    def epoch(wildcards):
        return hparams.kept_epoch(config_of(wildcards), stage or wildcards.stage)

    return epoch


def selection_criterion(wildcards):
    return hparams.selection_criterion(config_of(wildcards), wildcards.stage)


def grid_paths(dataset, stage, name):
    return [f"{paths.point_dir(dataset, stage, p)}/{name}" for p in grid_points(config, dataset, stage)]


def grid_files(name):
    def files(wildcards):
        return grid_paths(wildcards.dataset, wildcards.stage, name)

    return files


# ---- evaluation and outputs: named inputs (paths.key), which the commands read back ----------


def evaluation_out(kind):
    """The output pattern of one kind of evaluation (wildcards dataset, rep, stage)."""
    return EVAL.replace("{kind}", kind)


def probabilities_out(kind):
    return paths.probabilities(evaluation_out(kind))


def evaluations(dataset, stage, rep):
    """The evaluation files of one model (replicate `rep` of a stage), by kind."""
    return {
        kind: paths.evaluation(dataset, stage, rep, kind) for kind in paths.evaluation_kinds(config, dataset, stage)
    }


def every_stage():
    return [(d, s) for d in DATASETS for s in stages(config)]


def named_evaluations(pairs, probs=False):
    """Each replicate's evaluation files (or their probabilities) of these (dataset, stage)s."""
    return {
        key(d, s, r, kind): paths.probabilities(path) if probs else path
        for d, s in pairs
        for r in REPLICATES
        for kind, path in evaluations(d, s, r).items()
    }


def named(wildcards, input):
    """A rule's named inputs as one shell-quoted JSON {name: path} (medrobust.core.paths.gather)."""
    return shlex.quote(json.dumps(dict(input.items())))


def bootstraps(pairs):
    return {key(d, s, None, "bootstrap"): paths.bootstrap(d, s) for d, s in pairs}


def selections(pairs):
    return {key(d, s, None, "selection"): paths.selection(d, s) for d, s in pairs}


def variant_evaluations(v, pairs):
    """A variant's evaluation probabilities of these (dataset, stage)s, replicates 1..k-1, named
    0..k-2 (its bootstrap draws hold them in that order; replicate 0 has no twin)."""
    return {
        key(d, s, r - 1, kind): paths.probabilities(paths.evaluation(d, s, r, kind, v))
        for d, s in pairs
        for r in REPLICATES[1:]
        for kind in evaluations(d, s, r)
    }


def moved_stages(v):
    """The (dataset, stage)s whose test numbers a variant moves (any evaluation of theirs)."""
    return [
        (d, s)
        for d, s in every_stage()
        if any(paths.evaluation(d, s, 1, k, v) != f for k, f in evaluations(d, s, 1).items())
    ]


def sensitivity_inputs(wildcards):
    """Bootstrap draws: the main run's of every stage (main/<dataset>/<stage>: the verdicts read
    them all) and each variant's of the stages it moves (<variant>/<dataset>/<stage>)."""
    files = {f"main/{d}/{s}": paths.bootstrap(d, s) for d, s in every_stage()}
    for name, v in VARIANTS.items():
        for d, s in moved_stages(v):
            files[f"{name}/{d}/{s}"] = paths.in_variant(BOOTSTRAP).format(variant=name, dataset=d, stage=s)
    return files


def n_classes_all():
    return shlex.quote(json.dumps({d: classes_and_channels(config, d)[0] for d in DATASETS}))


def summary_inputs(wildcards):
    return named_evaluations(every_stage()) | bootstraps(every_stage())


def check_inputs(wildcards):
    """Each stage's selection, replicate 0's clean evaluation and (nonrobust-only) the statistics
    of its training set; the grid's training metrics, which the selections name, unnamed."""
    files = selections(every_stage())
    for d, s in every_stage():
        files[key(d, s, 0, "clean")] = paths.evaluation(d, s, 0, "clean")
        if model_of(s) == "nonrobust":
            built = paths.nonrobust_set(d, stage_eps(s), 0)
            files[key(d, s, 0, "construction")] = built.removesuffix(".npz") + ".json"
    return files


def corruption_inputs(wildcards):
    """Replicate 0's clean and corrupted evaluations of each stage, under each protocol."""
    kinds = ("clean", "corrupted", "clean_published", "corrupted_published")
    return {key(d, s, 0, k): path for d, s in every_stage() for k, path in evaluations(d, s, 0).items() if k in kinds}


def review_figures():
    """Per dataset: learning curves of each stage, examples of each nonrobust set, corruptions."""
    names = [f"curves_{d}_{s}" for d in DATASETS for s in stages(config)]
    names += [f"examples_{d}_eps{e}" for d in DATASETS for e in config["eps"]]
    names += [f"corruptions_{d}" for d in DATASETS] + [f"corruptions_{d}_published" for d in PUBLISHED_DATASETS]
    tables = [f"results/tables/{kind}_{d}.csv" for d in DATASETS for kind in ("selection", "checks")]
    return [f"results/figures/{n}.{ext}" for n in names for ext in ("png", "pdf")] + tables


def saliency_model(stage):
    return f"{paths.run_dir(saliency_dataset(config), stage, 0)}/model.pt"


FIGURES = ["fig1_saliency", "fig2_balanced_accuracy", "fig3_auc", "fig4_eps"]
TABLES = ["table1_robustness", "table2_hyperparameters", "table_paper_comparison"]


def paper_datasets():
    """The datasets judged against the paper's numbers: its own, from MedMNIST."""
    return " ".join(d for d in DATASETS if DATASETS[d]["source"] == "medmnist" and d in PAPER_DATASETS)


def verdict_settings():
    """The verdicts' margins and the paper's corruption protocol, as flags (docs/verdicts.md)."""
    v = config["verdicts"]
    flags = (
        f"--chance-margin {v['chance_margin']} --equivalence {v['equivalence']} --broken-fail {v['broken_fail']}"
        f" --broken-hold {v['broken_hold']}"
    )
    flags += f" --paper-datasets {paper_datasets()}" if paper_datasets() else ""
    return flags + (f" --paper-protocol {v['paper_protocol']}" if v["paper_protocol"] else "")


def eps_compared():
    """Fig. 4's two budgets: main_eps and the largest other one (the paper: 4 and 8)."""
    main = config["evaluation"]["main_eps"]
    others = [e for e in config["eps"] if e != main]
    return f"{main} {max(others)}" if others else f"{main} {main}"


def all_targets():
    published = [f"{f}_published" for f in FIGURES if f.startswith(("fig2", "fig3"))] if PUBLISHED_DATASETS else []
    figures = [f"results/figures/{f}.{ext}" for f in FIGURES + published for ext in ("png", "pdf")]
    tables = [f"results/tables/{t}.{ext}" for t in TABLES for ext in ("csv", "md", "tex")]
    construction = [
        paths.nonrobust_set(d, e, 0).removesuffix(".npz") + ".json" for d in DATASETS for e in config["eps"]
    ]
    provenance = ["results/report/provenance.csv", "results/report/config.yaml"]
    summary = ["results/summary/metrics.csv", "results/summary/checks.csv", "results/summary/verdicts.md"]
    return [
        *summary,
        *figures,
        *tables,
        *construction,
        *provenance,
        *review_figures(),
        "results/summary/corruptions.csv",
        *(["results/summary/sensitivity.csv"] if VARIANTS else []),
        *(f"results/figures/sensitivity_{v}.{ext}" for v in VARIANTS for ext in ("png", "pdf")),
    ]
