"""What every figure shares: the models' colours and writing a Figure as PNG and PDF, each
atomically and without a creation date (the same inputs give the same files)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from medrobust.core.io import atomic_path

COLORS = {"base": "tab:blue", "robust": "tab:green", "nonrobust": "tab:red"}


def save_figure(fig: Figure, out_png: str | Path, out_pdf: str | Path) -> None:
    for path, fmt in ((out_png, "png"), (out_pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=200, bbox_inches="tight",
                        metadata={"CreationDate": None} if fmt == "pdf" else None)
