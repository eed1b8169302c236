"""Compare the result files of two runs of the same targets (a local run and a run elsewhere:
SLURM, a container), ignoring what differs from run to run (provenance, times, host)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

VOLATILE = re.compile(r"provenance|created|host|seconds|per_second")  # JSON keys that differ run to run


def comparable(path: Path) -> Any:
    if path.suffix == ".npz":
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    return strip(json.loads(path.read_text()))


def strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if not VOLATILE.search(k)}
    return [strip(v) for v in value] if isinstance(value, list) else value


def assert_same_results(local: Path, remote: Path, targets: list[str]) -> list[Path]:
    """Every .json and .npz under local/results (provenance aside) equals remote's; returns them."""
    files = sorted(p.relative_to(local) for p in (local / "results").rglob("*")
                   if p.suffix in (".json", ".npz") and "provenance" not in p.parts)
    assert {str(t) for t in targets} <= {str(f) for f in files}
    print(f"{len(files)} result files equal")
    for rel in files:
        a, b = comparable(local / rel), comparable(remote / rel)
        if rel.suffix == ".npz":
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), rel
        else:
            assert a == b, rel
    return files
