"""The README and the docs/ pages stay true: every relative link resolves, every page is
reachable from the README, the README stays short, and the commands and config keys they name
exist (run.sh's branches, `medrobust`'s subcommands, the config schema's keys)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
IMAGES = DOCS / "img"  # pictures made from a run's results; a missing one is skipped, not failed
PAGES = [README, *sorted(DOCS.glob("*.md"))]
# The pages the README's "Documentation" list promises.
EXPECTED_PAGES = {"clusters.md", "software.md", "own-data.md", "method.md", "design.md", "benchmarks.md",
                  "verdicts.md", "variants.md"}
MAX_README_LINES = 220

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code (where links are links)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def code(text: str) -> list[str]:
    """Every fenced block's content and every inline code span."""
    blocks = [m[0] for m in FENCE.finditer(text)]
    return blocks + [m[2] for m in INLINE_CODE.finditer(FENCE.sub("", text))]


def links(page: Path) -> list[str]:
    text = prose(page.read_text())
    return LINK.findall(text) + REFERENCE_LINK.findall(text)


def slugs(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, each space a
    hyphen, repeated headings numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", FENCE.sub("", page.read_text()), re.M):
        text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        if n:
            seen[f"{slug}-{n}"] = 1
    return set(seen)


def local_target(page: Path, link: str) -> tuple[Path, str] | None:
    """(file, anchor) of a relative link; None for a URL (https:, mailto:, ...)."""
    if SCHEME.match(link) or link.startswith("//"):
        return None
    path, _, anchor = link.partition("#")
    return (page if not path else (page.parent / path).resolve()), anchor


def test_the_docs_pages_exist() -> None:
    assert EXPECTED_PAGES <= {p.name for p in PAGES[1:]}, sorted(EXPECTED_PAGES - {p.name for p in PAGES[1:]})


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link (and image) names an existing file inside the repository, and an
    anchor into a Markdown page names one of its headings. Pictures under docs/img are made
    from a run's results and may not be there yet: skipped."""
    bad, missing_images = [], []
    for link in links(page):
        found = local_target(page, link)
        if found is None:
            continue
        target, anchor = found
        if not target.is_relative_to(REPO):
            bad.append(f"{link}: outside the repository")
        elif not target.exists():
            (missing_images if target.is_relative_to(IMAGES) else bad).append(link)
        elif anchor and target.suffix == ".md" and anchor not in slugs(target):
            bad.append(f"{link}: no heading '{anchor}' in {page_id(target)}")
    assert not bad, f"{page_id(page)}: broken links {bad}"
    if missing_images:
        pytest.skip(f"not made yet: {missing_images}")


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {found[0] for link in links(README) if (found := local_target(README, link))}
    unlinked = [page_id(p) for p in PAGES[1:] if p.resolve() not in linked]
    assert not unlinked, f"README.md links none of {unlinked}"


def test_the_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines: move the details to docs/"


def run_sh_commands() -> set[str]:
    """The words run.sh's top-level `case "${1:-}"` accepts."""
    text = (REPO / "run.sh").read_text()
    block = re.search(r'^case "\$\{1:-\}" in\n(.*?)^esac', text, re.S | re.M)[1]
    branches = re.findall(r"^    ([^\s()]+)\)", block, re.M)
    return {word for branch in branches for word in branch.split("|") if word != "*"}


def medrobust_commands() -> set[str]:
    from medrobust.cli.main import parser

    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_the_parsers_of_the_commands_are_found() -> None:
    assert {"demo", "test"} <= run_sh_commands()
    assert {"estimate", "doctor", "train", "train-trades"} <= medrobust_commands()


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_run_sh_command_is_a_real_one(page: Path) -> None:
    named = set(re.findall(r"(?<![\w/.-])\./run\.sh[ \t]+([A-Za-z][\w-]*)", page.read_text()))
    assert named <= run_sh_commands(), f"{page_id(page)}: ./run.sh has no {sorted(named - run_sh_commands())}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_medrobust_command_is_a_real_one(page: Path) -> None:
    """`medrobust <command>` (or .venv/bin/medrobust ...) in code; Python's `from medrobust import`
    and Snakemake's `module medrobust:` are not commands."""
    named = set()
    for span in code(page.read_text()):
        for m in re.finditer(r"(?:^|(?<=[\s(/]))medrobust[ \t]+([a-z][\w-]*)", span, re.M):
            before = span[:m.start()].rsplit("\n", 1)[-1].split()
            if not (before and before[-1] in ("from", "import", "module", "use", "cimport")):
                named.add(m[1])
    assert named <= medrobust_commands(), f"{page_id(page)}: medrobust has no {sorted(named - medrobust_commands())}"


# `key.subkey` (optionally `key.subkey: value`), `<name>` standing for any name of a mapping
CONFIG_PATH = re.compile(r"([a-z][a-z0-9_]*(?:\.(?:[a-z][a-z0-9_]*|<[a-z_]+>))+)(?::[ \t].*)?")
FILE_SUFFIXES = {"pt", "json", "csv", "npz", "yaml", "yml", "py", "md", "png", "pdf", "html", "tex", "sh", "smk",
                 "rst", "lock", "txt", "sif", "tar", "log", "toml", "cff", "gz", "npy", "parts"}


def schema() -> dict:
    return yaml.safe_load((REPO / "src" / "medrobust" / "core" / "config.schema.yaml").read_text())


def deref(root: dict, node: dict) -> dict:
    """node, or what its local `$ref` (#/$defs/...) points to."""
    for _ in range(20):
        ref = node.get("$ref") if isinstance(node, dict) else None
        if not (isinstance(ref, str) and ref.startswith("#/")):
            break
        node = root
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def child(root: dict, node: dict, key: str) -> dict | None:
    """The schema of node[key]; `<...>` only matches a mapping of arbitrary names."""
    candidates = [deref(root, node)]
    for combinator in ("allOf", "anyOf", "oneOf"):
        candidates += [deref(root, n) for n in candidates[0].get(combinator, [])]
    for n in candidates:
        if key.startswith("<"):  # any name: a mapping of names
            if isinstance(n.get("additionalProperties"), dict):
                return n["additionalProperties"]
            if len(n.get("patternProperties", {})) == 1:
                return next(iter(n["patternProperties"].values()))
            continue
        if key in n.get("properties", {}):
            return n["properties"][key]
        for pattern, sub in n.get("patternProperties", {}).items():
            if re.search(pattern, key):
                return sub
        if isinstance(n.get("additionalProperties"), dict):
            return n["additionalProperties"]
    return None


def config_paths(page: Path, top: set[str]) -> set[str]:
    found = set()
    for span in code(page.read_text()):
        m = CONFIG_PATH.fullmatch(span.strip())
        if m and "\n" not in span.strip():
            path = m[1].split(".")
            if path[0] in top and path[-1] not in FILE_SUFFIXES:
                found.add(m[1])
    return found


def test_every_config_key_in_the_docs_is_in_the_schema() -> None:
    """`training.label_smoothing`, `datasets.<name>.hflip`, `robust.patience: N`: each code span
    that is a dotted path starting with a top-level key of the schema (file names aside) names a
    key of src/medrobust/core/config.schema.yaml."""
    root = schema()
    top = set(root["properties"])
    checked, unknown = set(), []
    for page in PAGES:
        for dotted in sorted(config_paths(page, top)):
            node: dict | None = root["properties"][dotted.split(".")[0]]
            for key in dotted.split(".")[1:]:
                node = child(root, node, key) if node is not None else None
            checked.add(dotted)
            if node is None:
                unknown.append(f"{page_id(page)}: {dotted}")
    assert not unknown, f"not in the config schema: {unknown}"
    assert len(checked) >= 10, sorted(checked)  # the pattern still finds the docs' keys
