"""Atomic file writes, and JSON, CSV and MedMNIST-format npz reading with errors that name the file."""

from __future__ import annotations

import csv
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from medrobust.core.errors import DataError

SPLITS = ("train", "val", "test")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds.

    A killed job therefore never leaves a half-written declared output behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part" + path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def float_cell(x: float | None) -> str | None:
    """A float as the shortest text that reads back as the same float (repr); None stays empty."""
    return None if x is None else repr(float(x))


def write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A CSV file, header then rows (None written as empty), replaced atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def read_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows (as dicts) of a CSV file; a missing file is a DataError naming it."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or ()), list(reader)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an uncompressed npz atomically (np.savez appends .npz to names without it)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


@contextmanager
def _npz_errors(path: Path) -> Iterator[None]:
    """Turn a missing or unreadable npz file into a DataError naming it."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        yield
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable npz file ({type(e).__name__}: {e})") from None


def npz_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """The shape of every array in an npz file, read from the array headers alone (fast for
    any size), with every failure a DataError naming the file."""
    path, shapes = Path(path), {}
    with _npz_errors(path), zipfile.ZipFile(path) as z:
        for member in z.namelist():
            with z.open(member) as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, _ = read_header(f)
            shapes[member.removesuffix(".npy")] = shape
    return shapes


def check_npz_splits(path: str | Path, splits: tuple[str, ...] = SPLITS) -> dict[str, int]:
    """Images and labels of these splits in a MedMNIST-format npz: present together and of equal
    length; returns each split's length (headers only: the file is not loaded)."""
    shapes, sizes = npz_shapes(path), {}
    for split in splits:
        images, labels = shapes.get(f"{split}_images"), shapes.get(f"{split}_labels")
        if images is None or labels is None:
            raise DataError(f"{path}: missing arrays {split}_images/{split}_labels (has {sorted(shapes)})")
        if not images or not labels or images[0] != labels[0]:
            raise DataError(f"{path} [{split}]: {labels[0] if labels else 0} labels for "
                            f"{images[0] if images else 0} images")
        sizes[split] = images[0]
    return sizes


def read_npz(path: str | Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Load the named arrays fully, turning every failure into a DataError that names the file."""
    path = Path(path)
    with _npz_errors(path), np.load(path, allow_pickle=False) as f:
        missing = [k for k in keys if k not in f.files]
        if missing:
            raise DataError(f"{path}: missing arrays {missing} (has {sorted(f.files)})")
        return {k: f[k] for k in keys}


def check_split(path: str | Path, split: str, images: np.ndarray, labels: np.ndarray,
                n_classes: int, n_channels: int, image_size: int) -> np.ndarray:
    """Check one MedMNIST split against the declared format; return labels as int64 (N,)."""
    where = f"{path} [{split}]"
    grey = images.ndim == 3 and n_channels == 1
    rgb = images.ndim == 4 and images.shape[-1] == 3 and n_channels == 3
    if not (grey or rgb) or images.shape[1:3] != (image_size, image_size):
        want = (image_size, image_size) + ((3,) if n_channels == 3 else ())
        raise DataError(f"{where}: images have shape {images.shape}, expected (N, {', '.join(map(str, want))})")
    if images.dtype != np.uint8:
        raise DataError(f"{where}: images are {images.dtype}, expected uint8")
    return check_labels(where, labels, len(images), n_classes)


def check_labels(where: str, labels: np.ndarray, n_images: int, n_classes: int) -> np.ndarray:
    """Labels as int64 (N,), checked: one per image, each in 0..n_classes-1."""
    labels = np.asarray(labels)
    if labels.shape not in {(n_images,), (n_images, 1)}:
        raise DataError(f"{where}: {labels.shape[0] if labels.ndim else 0} labels for {n_images} images "
                        f"(labels {labels.shape})")
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{where}: labels span {labels.min()}..{labels.max()}, expected 0..{n_classes - 1} "
                        f"({n_classes} classes)")
    return labels
