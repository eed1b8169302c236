"""Result tables: the long-format summary of test metrics, and the paper's tables made from it.

The summary CSV has one row per dataset x model x eps x condition x metric; read_summary checks
it and names the file and line of any fault. Combinations may be absent; an absent or NaN value
is missing, and every table and figure shows it as missing, never as zero. Each table is a
`Table` of cells (a float is a percentage, None a missing value, "" not applicable) that
`write_table` renders as CSV, Markdown and LaTeX.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from medrobust.core.errors import DataError
from medrobust.core.io import atomic_path, float_cell, read_csv, write_csv
from medrobust.core.stages import METRICS, parse_stage

COLUMNS = ("dataset", "model", "eps", "condition", "metric", "value", "n_classes", "n", "ci_low", "ci_high", "sd",
           "n_replicates")
OPTIONAL = ("n", "ci_low", "ci_high", "sd", "n_replicates")
MODELS = ("base", "robust", "nonrobust")
# autoattack_clean: the clean images AutoAttack ran on (a seeded subset), at its precision
# clean_last_epoch: a model that kept another epoch (nonrobust-only: the best on validation), at its last
# clean_published / corrupted_published: MedMNIST-C as published (224 px test images, shrunk), its
# own clean baseline and its corruptions; corrupted: the corruptions applied to the 64 px images
CONDITIONS = ("clean", "corrupted", "autoattack", "autoattack_clean", "clean_last_epoch", "clean_published",
              "corrupted_published")
MODEL_LABELS = {"base": "All features", "robust": "Robust features", "nonrobust": "Nonrobust features only"}
CONDITION_LABELS = {"clean": "In-distribution", "corrupted": "Mean OOD (MedMNIST-C applied at 64 px)",
                    "autoattack": "AutoAttack", "autoattack_clean": "Clean (AutoAttack's images)",
                    "clean_last_epoch": "In-distribution, last epoch",
                    "clean_published": "In-distribution (224 px test images)",
                    "corrupted_published": "Mean OOD (MedMNIST-C as published, 224 px)"}
DATASET_LABELS = {"pathmnist": "PathMNIST", "pneumoniamnist": "PneumoniaMNIST", "octmnist": "OctMNIST",
                  "organsmnist": "OrganSMNIST", "breastmnist": "BreastMNIST"}
GRID_KEYS = {"lr": "Learning rate", "batch_size": "Batch size", "epochs": "Max epochs", "augment": "Augmentation"}
FIXED_KEYS = ("method", "depth", "width", "activation", "momentum", "nesterov", "weight_decay",
              "label_smoothing", "ema_decay")
TRADES_KEYS = ("eps", "beta", "attack_steps", "patience")  # only meaningful for adversarial training

Key = tuple[str, str, int | None, str, str]
Cell = str | int | float | None


@dataclass(frozen=True)
class Row:
    """One test metric of one selected model; eps (in 1/255) is None for base models."""
    dataset: str
    model: str
    eps: int | None
    condition: str
    metric: str
    value: float
    n_classes: int
    n: int | None = None  # test images behind the value
    ci_low: float | None = None  # bootstrap interval over test images and replicates (report.intervals)
    ci_high: float | None = None
    sd: float | None = None  # spread over seed replicates (None or NaN for one replicate)
    n_replicates: int | None = None


def _parse_row(record: dict[str, str | None], where: str) -> Row:
    cell = {k: (record.get(k) or "").strip() for k in COLUMNS}
    try:
        row = Row(cell["dataset"], cell["model"], int(cell["eps"]) if cell["eps"] else None, cell["condition"],
                  cell["metric"], float(cell["value"]), int(cell["n_classes"]), int(cell["n"]) if cell["n"] else None,
                  *(float(cell[k]) if cell[k] else None for k in ("ci_low", "ci_high", "sd")),
                  int(cell["n_replicates"]) if cell["n_replicates"] else None)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None
    problems = [f"{name} {got!r} is not one of {allowed}" for name, got, allowed in
                (("model", row.model, MODELS), ("condition", row.condition, CONDITIONS),
                 ("metric", row.metric, METRICS)) if got not in allowed]
    if not row.dataset:
        problems.append("empty dataset")
    if (row.eps is None) != (row.model == "base"):
        problems.append("eps must be empty for base models and set for the others")
    if not (0.0 <= row.value <= 1.0 or math.isnan(row.value)):
        problems.append(f"value {row.value} outside [0, 1]")
    if row.n_classes < 2:
        problems.append(f"n_classes {row.n_classes} < 2")
    if problems:
        raise DataError(f"{where}: {'; '.join(problems)}")
    return row


def read_summary(path: str | Path) -> list[Row]:
    """Read and check a summary CSV (columns COLUMNS, in any order)."""
    path = Path(path)
    columns, records = read_csv(path)
    missing = sorted(set(COLUMNS) - set(columns) - set(OPTIONAL))
    if missing:
        raise DataError(f"{path}: missing columns {missing} (has {columns})")
    rows = [_parse_row(record, f"{path}, line {line}") for line, record in enumerate(records, start=2)]
    Results.of(rows, str(path))  # raises on duplicate rows or conflicting n_classes
    return rows


def write_summary(rows: Iterable[Row], path: str | Path) -> None:
    # repr: the shortest text that reads back as the same float
    write_csv(path, COLUMNS, ([r.dataset, r.model, r.eps, r.condition, r.metric, repr(r.value), r.n_classes, r.n,
                               float_cell(r.ci_low), float_cell(r.ci_high), float_cell(r.sd), r.n_replicates] for r in rows))


@dataclass(frozen=True)
class Results:
    """The summary indexed for look-ups; datasets keep the order of their first row."""
    values: dict[Key, float]
    datasets: tuple[str, ...]
    n_classes: dict[str, int]
    n: dict[Key, int]  # images behind each value, where the summary says
    ci: dict[Key, tuple[float, float]] = dataclasses.field(default_factory=dict)  # where the summary has them
    sd: dict[Key, float] = dataclasses.field(default_factory=dict)
    n_replicates: dict[Key, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, rows: Iterable[Row], where: str = "summary") -> Results:
        values: dict[Key, float] = {}
        n_classes: dict[str, int] = {}
        n: dict[Key, int] = {}
        ci: dict[Key, tuple[float, float]] = {}
        sd: dict[Key, float] = {}
        k: dict[Key, int] = {}
        for r in rows:
            key = (r.dataset, r.model, r.eps, r.condition, r.metric)
            if key in values:
                raise DataError(f"{where}: more than one row for {key}")
            if n_classes.setdefault(r.dataset, r.n_classes) != r.n_classes:
                raise DataError(f"{where}: {r.dataset} has rows with n_classes {n_classes[r.dataset]} and {r.n_classes}")
            values[key] = r.value
            if r.n is not None:
                n[key] = r.n
            if r.ci_low is not None and r.ci_high is not None and not math.isnan(r.ci_low):
                ci[key] = (r.ci_low, r.ci_high)
            if r.sd is not None and not math.isnan(r.sd):
                sd[key] = r.sd
            if r.n_replicates is not None:
                k[key] = r.n_replicates
        defined = {key: v for key, v in values.items() if not math.isnan(v)}
        return cls(defined, tuple(n_classes), n_classes, n, ci, sd, k)

    def interval(self, dataset: str, model: str, eps: int | None, condition: str,
                 metric: str) -> tuple[float, float] | None:
        return self.ci.get((dataset, model, None if model == "base" else eps, condition, metric))

    def get(self, dataset: str, model: str, eps: int | None, condition: str, metric: str) -> float | None:
        """The value in [0, 1], or None where missing; eps is ignored for base models."""
        return self.values.get((dataset, model, None if model == "base" else eps, condition, metric))

    def eps_values(self, dataset: str) -> tuple[int, ...]:
        return tuple(sorted({k[2] for k in self.values if k[0] == dataset and k[2] is not None}))

    def chance(self, dataset: str, metric: str) -> float:
        """Balanced accuracy of guessing is 1/C; AUC of an uninformative score is 1/2."""
        return 0.5 if metric == "auc" else 1.0 / self.n_classes[dataset]


def dataset_label(name: str) -> str:
    return DATASET_LABELS.get(name, name)


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


@dataclass(frozen=True)
class Table:
    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


def _text(cell: Cell, missing: str) -> str:
    if cell is None:
        return missing
    return f"{cell:.2f}" if isinstance(cell, float) else str(cell)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numeric_columns(table: Table) -> list[bool]:
    """Columns with at least one cell, all of whose cells read as numbers (right-aligned)."""
    texts = [[_text(c, "") for c in row] for row in table.rows]
    columns = [[row[i] for row in texts if row[i]] for i in range(len(table.columns))]
    return [bool(cells) and all(_is_number(c) for c in cells) for cells in columns]


def to_csv(table: Table, path: str | Path) -> None:
    write_csv(path, table.columns, ([_text(c, "") for c in row] for row in table.rows))


def to_markdown(table: Table) -> str:
    """A compact pipe table. Written here, not by pandas: tabulate pads every cell to its
    column's width, which would change every published table file."""
    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |"

    align = ["---:" if n else "---" for n in _numeric_columns(table)]
    body = [line(_text(c, "—") for c in row) for row in table.rows]
    return "\n".join([f"Table: {table.caption}", "", line(table.columns), line(align), *body]) + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
          "ε": r"$\varepsilon$", "≤": r"$\leq$", "∈": r"$\in$", "Δ": r"$\Delta$", "−": "$-$", "—": "--"}


def _latex(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs tabular (\\usepackage{booktabs}) to \\input inside a table environment (pandas)."""
    spec = "".join("r" if n else "l" for n in _numeric_columns(table))
    cells = pd.DataFrame([[_latex(_text(c, "—")) for c in row] for row in table.rows],
                         columns=[_latex(c) for c in table.columns], dtype=object)
    body = cells.to_latex(index=False, column_format=spec, escape=False)
    return f"% {_latex(table.caption)}\n{body}"


def write_table(table: Table, *, out_csv: str | Path, out_md: str | Path, out_tex: str | Path) -> None:
    """The table as CSV (missing: empty), Markdown and LaTeX (missing: an em dash)."""
    to_csv(table, out_csv)
    for path, text in ((out_md, to_markdown(table)), (out_tex, to_latex(table))):
        with atomic_path(path) as tmp:
            tmp.write_text(text)


def interval_text(res: Results, key: Key) -> str:
    """'[71.20, 80.05]' (percent), or '' where the summary has no interval."""
    ci = res.ci.get(key)
    return "" if ci is None or math.isnan(ci[0]) else f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"


def robustness_table(summary: Sequence[Row]) -> Table:
    """Table 1 (App. A.2), for every model type and eps: clean vs AutoAttack balanced accuracy on
    the same images (AutoAttack's, at its precision), with their number, 95% intervals and the
    seed replicates behind each mean."""
    res = Results.of(summary)
    rows = []
    for d in res.datasets:
        variants = [("base", None)] + [(m, e) for m in ("robust", "nonrobust") for e in res.eps_values(d)]
        for model, eps in variants:
            keys = [(d, model, eps, c, "balanced_accuracy") for c in ("autoattack_clean", "autoattack")]
            cells = [c for k in keys for c in (_percent(res.values.get(k)), interval_text(res, k))]
            rows.append((dataset_label(d), MODEL_LABELS[model], "" if eps is None else eps, res.n.get(keys[1]),
                         res.n_replicates.get(keys[1]), *cells))
    return Table("Clean and AutoAttack balanced accuracy (%) of every model on the same test images (eps of training "
                 "in 1/255): the mean over seed replicates and its 95% interval; the clean number on the whole "
                 "test split is in Fig. 2 and the summary.",
                 ("Dataset", "Model", "ε (/255)", "Images", "Replicates", "Clean balanced accuracy (%)",
                  "Clean 95% interval", "AutoAttack balanced accuracy (%)", "AutoAttack 95% interval"), tuple(rows))


def _stage_label(stage: str) -> str:
    try:
        model, eps = parse_stage(stage)
    except ValueError:
        return stage
    return MODEL_LABELS[model] + (f" (ε={eps}/255)" if eps else "")


def _hparam_text(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "eps" and isinstance(value, float):
        return f"{round(value * 255)}/255"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _distinct(values: Iterable[Any]) -> list[Any]:
    """Largest first, as in the paper's Table 2; None (a key a candidate lacks) left out."""
    return sorted({v for v in values if v is not None}, key=lambda v: (isinstance(v, str), v), reverse=True)


def _values_text(key: str, values: Iterable[Any]) -> str | None:
    """'{0.4, 0.3}'; None if no candidate has the key."""
    distinct = _distinct(values)
    return "{" + ", ".join(_hparam_text(key, v) for v in distinct) + "}" if distinct else None


def _setting_text(key: str, values: list[Any]) -> str:
    """'key=value' for a setting shared by all candidates, 'key∈{...}' for one that varies."""
    distinct = _distinct(values)
    return f"{key}={_hparam_text(key, distinct[0])}" if len(distinct) == 1 else f"{key}∈{_values_text(key, distinct)}"


def _kept_text(epochs: dict[str, Any] | None) -> str | None:
    """'3 of 10 (best val_balanced_accuracy; best clean validation: 3)'; None for older selections."""
    if not epochs:
        return None
    how = "last" if epochs["kept_by"] == "last epoch" else f"best {epochs['kept_by']}"
    return f"{epochs['kept']} of {epochs['of']} ({how}; best clean validation: {epochs['best_val_balanced_accuracy']})"


def _selection_row(sel: dict[str, Any]) -> tuple[Cell, ...]:
    where = f"selection {sel.get('dataset')}/{sel.get('stage')}"
    try:
        candidates, criterion = sel["candidates"], sel["criterion"]
        chosen = next((c for c in candidates if c["point"] == sel["selected"]), None)
        if chosen is None:
            raise ValueError(f"{where}: selected grid point {sel['selected']!r} is not among its candidates")
        hparams = [c["hparams"] for c in candidates]
        grid = [_values_text(k, (h.get(k) for h in hparams)) for k in GRID_KEYS]
        picked = [_hparam_text(k, chosen["hparams"][k]) if k in chosen["hparams"] else None for k in GRID_KEYS]
        keys = FIXED_KEYS + (TRADES_KEYS if chosen["hparams"].get("method") == "trades" else ())
        other = [_setting_text(k, [h.get(k) for h in hparams]) for k in keys if any(k in h for h in hparams)]
        val = chosen["val"].get(criterion)
        return (dataset_label(sel["dataset"]), _stage_label(sel["stage"]), len(candidates), *grid, *picked,
                criterion, None if val is None or math.isnan(val) else 100.0 * val, _kept_text(chosen.get("epochs")),
                "; ".join(other))
    except KeyError as e:
        raise ValueError(f"{where}: missing key {e}") from None


def hyperparameter_table(selections: Sequence[dict[str, Any]]) -> Table:
    """Table 2 (App. B), as run: the grid searched per dataset and stage, and what validation chose."""
    columns = ("Dataset", "Stage", "Runs", *(f"{v} grid" for v in GRID_KEYS.values()),
               *(f"Selected {v.lower()}" for v in GRID_KEYS.values()), "Criterion", "Validation (%)",
               "Kept epoch", "Other settings")
    return Table("Hyperparameter grids searched and the configuration selected on the validation split.",
                 columns, tuple(_selection_row(s) for s in selections))


def load_paper_values(path: str | Path | None = None) -> dict[str, Any]:
    """The paper's stated numbers (default: the packaged paper_values.yaml), checked for shape."""
    text = Path(path).read_text() if path else resources.files("medrobust").joinpath("paper_values.yaml").read_text()
    pv = yaml.safe_load(text)
    if not isinstance(pv, dict) or {"eps", "metric", "values"} - set(pv) or pv["metric"] not in METRICS:
        raise ValueError(f"{path or 'paper_values.yaml'}: needs eps, metric (one of {METRICS}) and values")
    for dataset, models in pv["values"].items():
        for model, conditions in models.items():
            for condition, entry in conditions.items():
                where = f"{dataset}/{model}/{condition}"
                if model not in MODELS or condition not in CONDITIONS:
                    raise ValueError(f"paper values: unknown model or condition in {where}")
                if "value" not in entry or "source" not in entry:
                    raise ValueError(f"paper values: {where} needs a value and a source")
    return pv

