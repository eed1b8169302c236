# Paths, grids and input functions shared by the rules (no torch in the scheduler).
import functools
import json
import shlex
from datetime import datetime, timezone

from medrobust.core import hparams
from medrobust.core.config import (
    attacked,
    corruption_registry,
    grid_points,
    medmnist_info,
    medmnist_suffix,
    saliency_dataset,
    stages,
)
from medrobust.core.io import write_json
from medrobust.core.stages import model_of, stage_eps
from medrobust.jobs.codedeps import code_digest
from medrobust.jobs.provenance import record
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


def write_provenance():
    """Resolved config, package versions and git commit of this invocation, under results/."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    write_json(f"results/provenance/{stamp}.json", {"config": config, **record(config)})


# ---- data -------------------------------------------------------------------------------


def classes_of(dataset):
    ds = DATASETS[dataset]
    if ds["source"] == "medmnist":
        return len(medmnist_info()[dataset]["label"])
    return ds["synthetic"]["n_classes"] if ds["source"] == "synthetic" else ds["n_classes"]


def n_classes(wildcards):
    return classes_of(wildcards.dataset)


def n_channels(wildcards):
    ds = DATASETS[wildcards.dataset]
    if ds["source"] == "medmnist":
        return medmnist_info()[wildcards.dataset]["n_channels"]
    return ds["synthetic"]["n_channels"] if ds["source"] == "synthetic" else ds["n_channels"]


def source_size(wildcards):
    ds = DATASETS[wildcards.dataset]
    return ds["source_image_size"] if ds["source"] == "npz" else config["source_size"]


def raw_npz(wildcards):
    """The dataset's MedMNIST-format file before resizing."""
    ds = DATASETS[wildcards.dataset]
    if ds["source"] == "npz":
        return ds["path"] if "path" in ds else f"resources/npz/{wildcards.dataset}.npz"
    if ds["source"] == "medmnist":  # medmnist's loader reads the file by its own name
        return f"resources/medmnist/{wildcards.dataset}{medmnist_suffix(config['source_size'])}.npz"
    return f"resources/synthetic/{wildcards.dataset}_{config['source_size']}.npz"


def medmnist_flag(wildcards):
    ds = DATASETS[wildcards.dataset]
    return f"--medmnist {wildcards.dataset}" if ds["source"] == "medmnist" else ""


def synthetic_spec(wildcards):
    return shlex.quote(json.dumps(DATASETS[wildcards.dataset]["synthetic"], sort_keys=True))


def mirror_flag(wildcards):
    return f"--mirror {shlex.quote(config['mirror'])}" if config["mirror"] else ""


def npz_url(wildcards):
    return shlex.quote(DATASETS[wildcards.dataset]["url"])


def npz_md5(wildcards):
    return DATASETS[wildcards.dataset]["md5"]


def prepared(dataset):
    return f"results/{dataset}/data/prepared.npz"


def prepared_npz(wildcards):
    return prepared(wildcards.dataset)


# ---- training ---------------------------------------------------------------------------


def training_set(wildcards):
    """What a stage trains on: the nonrobust-feature set, or the clean prepared set."""
    if model_of(wildcards.stage) == "nonrobust":
        return nonrobust_set(wildcards.dataset, stage_eps(wildcards.stage))
    return prepared(wildcards.dataset)


def nonrobust_set(dataset, eps, rep=0):
    return f"{chain_dir(dataset, rep)}/data/nonrobust_eps{eps}.npz"


# ---- seed replicates (config replicates; rule train_replicate) ----------------------------


def chain_dir(dataset, rep):
    """Where replicate `rep` of a dataset's chain lives: replicate 0 (the grid search and its
    selected models) at results/<dataset>, replicate r >= 1 under results/<dataset>/rep<r>."""
    return f"results/{dataset}" if rep == 0 else f"results/{dataset}/rep{rep}"


def rep_of(wildcards):
    return int(getattr(wildcards, "rep", 0))


def replicate_training_set(wildcards):
    if model_of(wildcards.stage) == "nonrobust":
        return nonrobust_set(wildcards.dataset, stage_eps(wildcards.stage), rep_of(wildcards))
    return prepared(wildcards.dataset)


def replicate_hparams(wildcards, input):
    """Replicate 0's selected hyperparameters (read by the job from selected.json) and this
    replicate's seed."""
    return f"--selected {input.selected} --seed {hparams.replicate_seed(config, rep_of(wildcards))}"


def construction_settings(wildcards):
    """Every setting that changes the nonrobust-feature set, as one shell-quoted JSON (a param)."""
    settings = hparams.construction_settings(config, int(wildcards.eps), rep_of(wildcards))
    return shlex.quote(json.dumps(settings, sort_keys=True))


def train_hparams(wildcards):
    """Every setting that changes a training result, as one shell-quoted JSON (a param)."""
    hp = hparams.train_hparams(config, wildcards.dataset, wildcards.stage, wildcards.variant)
    return f"--hparams {shlex.quote(json.dumps(hp, sort_keys=True))}"


def train_command(wildcards):
    return hparams.train_command(wildcards.stage)


def train_code(wildcards):
    return code(train_command(wildcards))


def selection_criterion(wildcards):
    return hparams.selection_criterion(config, wildcards.stage)


def grid_paths(dataset, stage, name):
    return [f"results/{dataset}/{stage}/{v}/{name}" for v in grid_points(config, dataset, stage)]


def grid_files(name):
    def files(wildcards):
        return grid_paths(wildcards.dataset, wildcards.stage, name)

    return files


# ---- evaluation and outputs -------------------------------------------------------------


def registry_of(wildcards):
    return corruption_registry(config, wildcards.dataset)


def evaluations(dataset, stage, rep=0):
    """The evaluation files of one model (replicate `rep` of a stage), by kind."""
    kinds = ["clean", "corrupted"] + ["autoattack"] * attacked(config, stage)
    files = {kind: f"{chain_dir(dataset, rep)}/{stage}/eval/{kind}_test.json" for kind in kinds}
    if model_of(stage) == "nonrobust":
        files["clean_last"] = f"{chain_dir(dataset, rep)}/{stage}/eval/clean_test_last.json"
    return files


def probabilities(files):
    """The per-image probabilities beside each evaluation file."""
    return {kind: f"{path.removesuffix('.json')}_probs.npz" for kind, path in files.items()}


def bootstrap_file(dataset, stage):
    return f"results/{dataset}/{stage}/bootstrap.npz"


def bootstrap_layout(wildcards):
    """Each replicate's probability files of one stage (a param of bootstrap)."""
    reps = [probabilities(evaluations(wildcards.dataset, wildcards.stage, r)) for r in REPLICATES]
    return shlex.quote(json.dumps(reps, sort_keys=True))


def bootstrap_inputs(wildcards):
    return [f for r in REPLICATES for f in probabilities(evaluations(wildcards.dataset, wildcards.stage, r)).values()]


def summary_layout():
    """Which evaluation files (every replicate's) and bootstrap draws make which rows of the
    summary table (a param of summarize)."""
    layout = [
        {
            "dataset": d,
            "stage": s,
            "n_classes": classes_of(d),
            "replicates": [evaluations(d, s, r) for r in REPLICATES],
            "bootstrap": bootstrap_file(d, s),
        }
        for d in DATASETS
        for s in stages(config)
    ]
    return shlex.quote(json.dumps(layout, sort_keys=True))


def summary_inputs(wildcards):
    files = [f for d in DATASETS for s in stages(config) for r in REPLICATES for f in evaluations(d, s, r).values()]
    return files + [bootstrap_file(d, s) for d in DATASETS for s in stages(config)]


def selections():
    return [
        {"dataset": d, "stage": s, "path": f"results/{d}/{s}/selected.json"} for d in DATASETS for s in stages(config)
    ]


def selection_layout():
    return shlex.quote(json.dumps(selections(), sort_keys=True))


def stage_files(dataset, stage):
    """What the sanity checks of one stage read: its clean evaluation, its selection and, for a
    nonrobust-only stage, the construction statistics of its training set."""
    files = {"clean": evaluations(dataset, stage)["clean"], "selection": f"results/{dataset}/{stage}/selected.json"}
    if model_of(stage) == "nonrobust":
        files["construction"] = f"results/{dataset}/data/nonrobust_eps{stage_eps(stage)}.json"
    return files


def check_layout():
    """Which files the checks of each dataset and stage read (a param of checks)."""
    layout = [
        {"dataset": d, "stage": s, "n_classes": classes_of(d), **stage_files(d, s)}
        for d in DATASETS
        for s in stages(config)
    ]
    return shlex.quote(json.dumps(layout, sort_keys=True))


def check_inputs(wildcards):
    """The files of check_layout, and the training metrics (per-epoch history) its selections name."""
    files = [f for d in DATASETS for s in stages(config) for f in stage_files(d, s).values()]
    histories = [f for d in DATASETS for s in stages(config) for f in grid_paths(d, s, "metrics.json")]
    return files + histories


def corruption_layout():
    """Which clean and corrupted evaluation files make each stage's rows of corruptions.csv."""
    layout = [{"dataset": d, "stage": s, **evaluations(d, s)} for d in DATASETS for s in stages(config)]
    return shlex.quote(json.dumps([{k: e[k] for k in ("dataset", "stage", "clean", "corrupted")} for e in layout]))


def corruption_inputs(wildcards):
    return [evaluations(d, s)[k] for d in DATASETS for s in stages(config) for k in ("clean", "corrupted")]


def dataset_selections(wildcards):
    return [s["path"] for s in selections() if s["dataset"] == wildcards.dataset]


def dataset_selection_layout(wildcards):
    chosen = [{"stage": s["stage"], "path": s["path"]} for s in selections() if s["dataset"] == wildcards.dataset]
    return shlex.quote(json.dumps(chosen))


def review_figures():
    """Per dataset: learning curves of each stage, examples of each nonrobust set, corruptions."""
    names = [f"curves_{d}_{s}" for d in DATASETS for s in stages(config)]
    names += [f"examples_{d}_eps{e}" for d in DATASETS for e in config["eps"]]
    names += [f"corruptions_{d}" for d in DATASETS]
    tables = [f"results/tables/{kind}_{d}.csv" for d in DATASETS for kind in ("selection", "checks")]
    return [f"results/figures/{n}.{ext}" for n in names for ext in ("png", "pdf")] + tables


def saliency_model(stage):
    return f"results/{saliency_dataset(config)}/{stage}/selected/model.pt"


FIGURES = ["fig1_saliency", "fig2_balanced_accuracy", "fig3_auc", "fig4_eps"]
TABLES = ["table1_robustness", "table2_hyperparameters", "table_paper_comparison"]


def verdict_layout():
    """Per dataset, its stages' bootstrap draws and whether it is one of the paper's (a param of verdicts)."""
    layout = [
        {
            "dataset": d,
            "n_classes": classes_of(d),
            "paper": DATASETS[d]["source"] == "medmnist" and d in PAPER_DATASETS,
            "stages": {s: bootstrap_file(d, s) for s in stages(config)},
        }
        for d in DATASETS
    ]
    return shlex.quote(json.dumps(layout, sort_keys=True))


def verdict_settings():
    """The verdicts' margins and the corruption protocols, as flags (docs/verdicts.md)."""
    v, protocol = config["verdicts"], config["evaluation"]["corruptions"]["protocol"]
    flags = (
        f"--chance-margin {v['chance_margin']} --equivalence {v['equivalence']} --broken-fail {v['broken_fail']}"
        f" --broken-hold {v['broken_hold']} --protocol {protocol}"
    )
    return flags + (f" --paper-protocol {v['paper_protocol']}" if v["paper_protocol"] else "")


def verdict_inputs(wildcards):
    return [bootstrap_file(d, s) for d in DATASETS for s in stages(config)]


def eps_compared():
    """Fig. 4's two budgets: main_eps and the largest other one (the paper: 4 and 8)."""
    main = config["evaluation"]["main_eps"]
    others = [e for e in config["eps"] if e != main]
    return f"{main} {max(others)}" if others else f"{main} {main}"


def all_targets():
    figures = [f"results/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")]
    tables = [f"results/tables/{t}.{ext}" for t in TABLES for ext in ("csv", "md", "tex")]
    construction = [f"results/{d}/data/nonrobust_eps{e}.json" for d in DATASETS for e in config["eps"]]
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
    ]
