"""Which package modules a `medrobust <command>` runs, derived from its imports (no hand lists).

A command is a function `cmd_<name>` of a command module (COMMAND_MODULES). Its code is:
its own module and the dispatcher (cli.py), the package modules imported at the top of every
command module (the dispatcher loads them all to build its parser), inside the command's
function and inside the same-module functions it calls (and by the dispatcher's `main`), and
then, transitively, every package module those import anywhere (top level or inside functions:
a conservative closure). The other command modules' files are not part of it: only their
argument parsers run, never their commands, so editing one command's code re-runs only that
command's jobs.

The rules use `command_files` as code inputs (editing a module re-runs exactly the jobs whose
command imports it) and resumable states store `code_digest` (a state written by other code
is never continued). Torch-free and import-free: modules are parsed, not imported.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "medrobust"
PACKAGE_DIR = Path(__file__).resolve().parent
DISPATCHER = "cli"
COMMAND_MODULES = ("cli", "cli_outputs")


def _module_name(node: ast.Import | ast.ImportFrom) -> list[str]:
    """Package modules named by one import statement ('medrobust.x' -> 'x'; `from medrobust import x`)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif node.module == PACKAGE:
        names = [f"{PACKAGE}.{a.name}" for a in node.names]
    else:
        names = [node.module or ""]
    return [n.split(".")[1] for n in names if n.startswith(f"{PACKAGE}.")]


def _imports(nodes: list[ast.AST] | ast.AST) -> set[str]:
    found: set[str] = set()
    for root in nodes if isinstance(nodes, list) else [nodes]:
        for node in ast.walk(root):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.update(_module_name(node))
    return found


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _existing(package_dir: Path, names: set[str]) -> set[str]:
    return {n for n in names if (package_dir / f"{n}.py").exists() or (package_dir / n / "__init__.py").exists()}


def _function_imports(tree: ast.Module, name: str) -> set[str]:
    """Imports inside function `name` and inside the module's functions it calls, transitively
    (calls only: a function passed as a value, like argparse's `func=cmd_x`, is not followed)."""
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    todo, seen, found = [name], set(), set()
    while todo:
        fn = functions[todo.pop()]
        seen.add(fn.name)
        found |= _imports(fn)
        called = {n.func.id for n in ast.walk(fn)
                  if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in functions}
        todo += sorted(called - seen)
    return found


def _top_level_imports(tree: ast.Module) -> set[str]:
    return _imports([n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))])


def command_function(command: str) -> str:
    return "cmd_" + command.replace("-", "_")


def _command_module(command: str, package_dir: Path) -> str:
    fn = command_function(command)
    for module in COMMAND_MODULES:
        tree = _parse(package_dir / f"{module}.py")
        if any(isinstance(n, ast.FunctionDef) and n.name == fn for n in tree.body):
            return module
    raise ValueError(f"no command '{command}' ({fn} in {', '.join(COMMAND_MODULES)})")


def command_modules(command: str, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Names of the package modules that `medrobust <command>` imports, sorted."""
    package_dir = Path(package_dir)
    home = _command_module(command, package_dir)
    home_tree, cli_tree = _parse(package_dir / f"{home}.py"), _parse(package_dir / f"{DISPATCHER}.py")
    loaded = set().union(*(_top_level_imports(_parse(package_dir / f"{m}.py")) for m in COMMAND_MODULES))
    todo = (loaded | _function_imports(home_tree, command_function(command))
            | _function_imports(cli_tree, "main")) - set(COMMAND_MODULES)
    done = {"__init__", home, DISPATCHER}
    todo = _existing(package_dir, todo)
    while todo:
        module = todo.pop()
        done.add(module)
        todo |= _existing(package_dir, _imports(_parse(package_dir / f"{module}.py"))) - done - set(COMMAND_MODULES)
    return sorted(done)


def command_files(command: str, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The source files of `command_modules` (the code inputs of the command's rules)."""
    return [Path(package_dir) / f"{m}.py" for m in command_modules(command, package_dir)]


def code_digest(command: str, package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 over the names and contents of the command's modules."""
    h = hashlib.sha256()
    for path in command_files(command, package_dir):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
