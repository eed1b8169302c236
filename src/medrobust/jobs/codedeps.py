"""Which package modules a `medrobust <command>` runs, derived from its imports (no hand lists).

A command is a function `cmd_<name>` of a command module (COMMAND_MODULES: cli/<rule file>.py,
one per file of workflow/rules/). Its code is: its own module and the dispatcher (cli/main.py),
the package modules imported at the top of every command module (the dispatcher loads them all
to build its parser), inside the command's function and inside the same-module functions it
calls (and by the dispatcher's `main`), and then, transitively, every package module those
import anywhere (top level or inside functions: a conservative closure), with the `__init__.py`
of every subpackage on the way (Python runs it on import). The other command modules' files
are not part of it: only their argument parsers run, never their commands, so editing one
command's code re-runs only that command's jobs.

Modules are named by their dotted path inside the package ("core.pgd"); a subpackage by its
own name ("attacks", its `__init__.py`) and the package itself by "__init__".

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
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/medrobust
DISPATCHER = "cli.main"
COMMAND_MODULES = ("cli.data", "cli.train", "cli.nonrobust", "cli.evaluate", "cli.outputs", "cli.review")


def module_file(name: str, package_dir: Path = PACKAGE_DIR) -> Path:
    """The source file of a package module ("a.b" -> a/b.py or a/b/__init__.py; "__init__")."""
    if name == "__init__":
        return Path(package_dir) / "__init__.py"
    path = Path(package_dir, *name.split("."))
    return path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"


def _module_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    """Package modules named by one import statement ('medrobust.a.b' -> 'a.b'; for
    `from medrobust.a import b`, 'a.b' when b is a module, else 'a')."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        names = [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
    return [n[len(PACKAGE) + 1:] for n in names if n.startswith(f"{PACKAGE}.")]


def _imports(nodes: list[ast.AST] | ast.AST) -> set[str]:
    found: set[str] = set()
    for root in nodes if isinstance(nodes, list) else [nodes]:
        for node in ast.walk(root):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.update(_module_names(node))
    return found


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


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
        tree = _parse(module_file(module, package_dir))
        if any(isinstance(n, ast.FunctionDef) and n.name == fn for n in tree.body):
            return module
    raise ValueError(f"no command '{command}' ({fn} in {', '.join(COMMAND_MODULES)})")


def _with_parents(names: set[str], package_dir: Path) -> set[str]:
    """The names that are package modules, with the subpackages they sit in."""
    found = {n for n in names if module_file(n, package_dir).exists()}
    return found | {n.rsplit(".", i)[0] for n in found for i in range(1, n.count(".") + 1)}


def command_modules(command: str, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Names of the package modules that `medrobust <command>` imports, sorted."""
    package_dir = Path(package_dir)
    home = _command_module(command, package_dir)
    home_tree, cli_tree = _parse(module_file(home, package_dir)), _parse(module_file(DISPATCHER, package_dir))
    read = (*COMMAND_MODULES, DISPATCHER)
    loaded = set().union(*(_top_level_imports(_parse(module_file(m, package_dir))) for m in read))
    todo = (loaded | _function_imports(home_tree, command_function(command))
            | _function_imports(cli_tree, "main")) - set(COMMAND_MODULES)
    done = {"__init__"} | _with_parents({home, DISPATCHER}, package_dir)  # read above, not whole
    todo = _with_parents(todo, package_dir) - done
    while todo:
        module = todo.pop()
        done.add(module)
        imported = _imports(_parse(module_file(module, package_dir))) - set(COMMAND_MODULES)
        todo |= _with_parents(imported, package_dir) - done
    return sorted(done)


def command_files(command: str, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The source files of `command_modules` (the code inputs of the command's rules), and the
    package's data files (YAML at its top) whose quoted name one of them holds (claims.yaml):
    editing the paper's claims re-runs the verdicts, and no absolute path enters a rule."""
    modules = [module_file(m, package_dir) for m in command_modules(command, package_dir)]
    sources = "\n".join(path.read_text() for path in modules)
    data = [path for path in sorted(Path(package_dir).glob("*.yaml")) if f'"{path.name}"' in sources]
    return modules + data


def code_digest(command: str, package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 over the paths (inside the package) and contents of the command's modules."""
    return _digest(command_files(command, package_dir), package_dir)


def package_digest(package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 over the paths and contents of every file of the package that Python or the
    package reads (modules and data files; caches excluded): equal for two copies of one tree."""
    return _digest([path for path in sorted(Path(package_dir).rglob("*")) if path.is_file()
                    and "__pycache__" not in path.parts and path.suffix in {".py", ".yaml", ".typed"}], package_dir)


def _digest(files: list[Path], package_dir: Path) -> str:
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(package_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
