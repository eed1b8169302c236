"""The package's shape: the tree mirrors workflow/rules/, imports form no cycle, no private
name crosses a module boundary, and functions and files stay short (STYLE.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from medrobust.jobs import codedeps

from conftest import REPO

PACKAGE = REPO / "src" / "medrobust"
RULES = REPO / "workflow" / "rules"
NOT_A_RULE = {"estimate", "doctor"}  # commands for users (planning, checking a machine); no rule runs them


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def _trees() -> dict[str, ast.Module]:
    return {_name(p): ast.parse(p.read_text(), filename=str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(node: ast.Import | ast.ImportFrom, modules: set[str]) -> set[str]:
    """The package modules one import statement loads (its own module, not the parent packages)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        names = [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
    found = {n.removeprefix("medrobust.") for n in names if n.startswith("medrobust.")}
    found = {n for n in found if n in modules}
    # `from medrobust.a import b`: the edge is to a.b when b is a module, else to a
    return {n for n in found if not any(m.startswith(n + ".") for m in found)}


def _graph() -> dict[str, set[str]]:
    trees = _trees()
    return {name: set().union(*(_imported(n, set(trees)) for n in ast.walk(tree)
                                if isinstance(n, (ast.Import, ast.ImportFrom))))
            for name, tree in trees.items()}


def test_no_import_cycle_inside_the_package() -> None:
    """Every import counts, those inside functions too (a cycle deferred is still a cycle)."""
    graph, state, path = _graph(), {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join(path[path.index(nxt):] + [nxt])}"
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert {"jobs.state", "core.io", "core.config", "core.pgd", "train.loop", "cli.main"} <= set(graph)


STAGES = ("data", "train", "attacks", "evaluate", "report")


def test_stages_import_the_core_and_the_jobs_never_each_other() -> None:
    """The layout of docs/design.md: core/ and jobs/ import no stage, jobs/ imports the core and
    not the reverse, a stage imports no other stage (the network, metrics and PGD that several
    stages need live in the core), and every module belongs to one of them (or cli/)."""
    graph = _graph()
    folder = {name: "top" if name == "__init__" else name.split(".")[0] for name in graph}
    crossing = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                      if folder[a] != folder[b] and folder[a] != "cli"
                      and not (folder[b] == "core" or (folder[b] == "jobs" and folder[a] != "core")))
    assert not crossing, crossing
    assert {folder[n] for n in graph} <= {"top", "core", "jobs", "cli", *STAGES}
    assert {n for n in graph if folder[n] == "top"} == {"__init__"}


def test_no_private_name_is_imported_across_modules() -> None:
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(REPO / "tests").glob("*.py"), *(REPO / "bench").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medrobust"):
                offenders += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert not offenders


def test_functions_and_files_stay_short() -> None:
    long_functions, long_files = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > 400:
            long_files.append(path.name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long_functions.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert not long_files and not long_functions


def test_each_rule_file_has_its_command_module() -> None:
    """cli/<name>.py holds exactly the commands that workflow/rules/<name>.smk runs."""
    shared = ("common", "resources", "variants")  # paths and input functions; cluster resources; the main rules again
    assert set(codedeps.COMMAND_MODULES) == {f"cli.{p.stem}" for p in RULES.glob("*.smk") if p.stem not in shared}
    for module in codedeps.COMMAND_MODULES:
        rules = (RULES / f"{module.split('.')[1]}.smk").read_text()
        run = set(re.findall(r"\bmedrobust ([a-z][a-z-]+)", rules)) | _chosen_commands(rules)
        tree = ast.parse(codedeps.module_file(module).read_text())
        defined = {n.name.removeprefix("cmd_").replace("_", "-") for n in tree.body
                   if isinstance(n, ast.FunctionDef) and n.name.startswith("cmd_")}
        assert run == defined - NOT_A_RULE, module


def _chosen_commands(rules: str) -> set[str]:
    """Commands a rule picks per job (`medrobust {params.command}` with `command=<function>`):
    the string constants that function returns (in common.smk, or medrobust.core.hparams where
    it hands the choice on)."""
    common = (RULES / "common.smk").read_text() + "\n" + (PACKAGE / "core" / "hparams.py").read_text()
    found = set()
    for name in re.findall(r"\bcommand=(?:lambda \w+: hparams\.)?(\w+)", rules):
        source = "".join(m.group(0) for m in re.finditer(rf"^def {name}\(.*?(?=^\S)", common, re.S | re.M))
        returned = [r.value for r in ast.walk(ast.parse(source)) if isinstance(r, ast.Return)]
        while any(isinstance(v, ast.IfExp) for v in returned):  # a if cond else b: a and b
            returned = [w for v in returned for w in ((v.body, v.orelse) if isinstance(v, ast.IfExp) else (v,))]
        found |= {v.value for v in returned if isinstance(v, ast.Constant)}
    return found


def test_the_vocabulary_is_defined_once() -> None:
    """Stage names are parsed, and the metrics named, in medrobust.core.stages alone."""
    defining, parsing = [], []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "stages.py" and path.parent.name == "core":
            continue
        text = path.read_text()
        defining += [path.name for name in ("METRICS", "METRIC_LABELS") if re.search(rf"^{name} = ", text, re.M)]
        if re.search(r"_eps\(\\d|split\(\"_eps|startswith\(\"(?:base|robust|nonrobust)", text):
            parsing.append(path.name)
    for path in RULES.glob("*.smk"):
        if re.search(r"startswith\(\"(?:base|robust|nonrobust)", path.read_text()):
            parsing.append(path.name)
    assert not defining and not parsing, (defining, parsing)


def test_no_result_param_is_a_function_of_input() -> None:
    """Snakemake records no param computed from `input` in its metadata, so a change of such a
    param would re-run nothing: only the named-inputs JSON (its files are the rule's inputs) may."""
    text = "\n".join(p.read_text() for p in RULES.glob("*.smk"))
    assert set(re.findall(r"^def (\w+)\(wildcards, input", text, re.M)) == {"named"}
