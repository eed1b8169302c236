"""Data stage: fetch (via medmnist's own download code), load, check, and resize once."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import medmnist
import numpy as np
from medmnist.dataset import MedMNIST

from medrobust.core.config import medmnist_suffix
from medrobust.core.errors import DataError, DownloadError
from medrobust.core.io import SPLITS, check_split, read_npz, write_npz


def medmnist_source(flag: str, size: int, mirror: str | None) -> tuple[str, str, str]:
    """(file name, URL, md5) of a MedMNIST release; a mirror replaces the host, never the md5."""
    if flag not in medmnist.INFO:
        raise DataError(f"'{flag}' is not a MedMNIST dataset (known: {', '.join(sorted(medmnist.INFO))})")
    suffix = medmnist_suffix(size)
    filename = f"{flag}{suffix}.npz"
    info = medmnist.INFO[flag]
    url = info[f"url{suffix}"] if mirror is None else f"{mirror.rstrip('/')}/{filename}"
    return filename, url, info[f"MD5{suffix}"]


def fetch(url: str, md5: str, dest: str | Path) -> None:
    """Download `url` to `dest` through medmnist's `MedMNIST.download` (torchvision's
    `download_url` with md5 check), in a private temporary folder, so `dest` appears only
    complete and verified. medmnist hides the cause behind a bare `except`; we recover it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        loader = MedMNIST.__new__(MedMNIST)  # only the attributes download() reads
        loader.flag, loader.size_flag, loader.root = dest.stem, "", tmp
        loader.info = {"url": url, "MD5": md5}
        try:
            loader.download()
        except RuntimeError as e:
            cause = e.__context__ or e
            reason = "md5 mismatch or empty file" if "corrupted" in str(cause) else f"{type(cause).__name__}: {cause}"
            raise DownloadError(f"downloading {dest.name} from {url} failed ({reason}); "
                                f"expected md5 {md5}; nothing was written to {dest}") from None
        shutil.move(str(Path(tmp) / dest.name), str(dest))


@dataclass(frozen=True)
class Source:
    """Where a dataset's MedMNIST-format file is and what it must contain."""
    path: Path
    n_classes: int
    n_channels: int
    image_size: int
    medmnist_flag: str | None = None  # load through medmnist's own dataset class


def _load_medmnist_split(src: Source, split: str) -> tuple[np.ndarray, np.ndarray]:
    cls = getattr(medmnist, medmnist.INFO[src.medmnist_flag]["python_class"])
    if not src.path.exists():
        raise DataError(f"{src.path}: file not found")
    try:
        ds = cls(split=split, root=str(src.path.parent), size=src.image_size, download=False)
        images, labels = np.asarray(ds.imgs), np.asarray(ds.labels)
        len(ds)  # medmnist asserts the official sample count here
    except AssertionError:
        want = medmnist.INFO[src.medmnist_flag]["n_samples"][split]
        raise DataError(f"{src.path} [{split}]: {len(images)} images, but MedMNIST's {src.medmnist_flag} has {want}") from None
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, zipfile.BadZipFile) as e:
        raise DataError(f"{src.path}: cannot be read by medmnist ({type(e).__name__}: {e})") from None
    return images, labels


def load_splits(src: Source, splits: tuple[str, ...] = SPLITS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """These splits (default: all) as (images uint8 (N,H,W[,3]), labels int64 (N,)), checked
    against `src`; only their arrays are read."""
    out = {}
    if src.medmnist_flag is None:
        arrays = read_npz(src.path, tuple(f"{s}_{k}" for s in splits for k in ("images", "labels")))
    for split in splits:
        if src.medmnist_flag is None:
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        else:
            images, labels = _load_medmnist_split(src, split)
        labels = check_split(src.path, split, images, labels, src.n_classes, src.n_channels, src.image_size)
        out[split] = (images, labels)
    missing = sorted(set(range(src.n_classes)) - set(np.unique(out["train"][1]).tolist())) if "train" in out else []
    if missing:
        raise DataError(f"{src.path} [train]: classes {missing} have no training images")
    return out


def resize(images: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
    """Antialiased bilinear resize of uint8 (N,H,W[,C]) images to (N,size,size[,C]) uint8."""
    import torch
    import torch.nn.functional as F

    if images.shape[1] == size:
        return images.copy()
    grey = images.ndim == 3
    out = []
    for start in range(0, len(images), chunk):
        x = torch.from_numpy(images[start:start + chunk]).float()
        x = x[:, None] if grey else x.permute(0, 3, 1, 2)
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        y = y[:, 0] if grey else y.permute(0, 2, 3, 1)
        out.append(y.round().clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros((0, size, size) + images.shape[3:], np.uint8)


def prepare(src: Source, dest: str | Path, size: int) -> dict[str, object]:
    """Write the dataset resized to `size` px as a MedMNIST-format npz; return its statistics."""
    splits = load_splits(src)
    arrays, stats = {}, {"n_classes": src.n_classes, "n_channels": src.n_channels,
                         "source": str(src.path), "source_image_size": src.image_size, "image_size": size}
    for split, (images, labels) in splits.items():
        arrays[f"{split}_images"] = resize(images, size)
        arrays[f"{split}_labels"] = labels.astype(np.uint8 if src.n_classes <= 256 else np.int64)[:, None]
        stats[f"{split}_class_counts"] = np.bincount(labels, minlength=src.n_classes).tolist()
    write_npz(dest, arrays)
    return stats


def published_test(src: Source, prepared_path: str | Path, size: int) -> tuple[dict[str, np.ndarray],
                                                                               dict[str, np.ndarray], dict[str, object]]:
    """The published MedMNIST-C protocol's test split (`src`: the 224 px file; only its test
    arrays are read): (the split as it is, its images shrunk to `size` as `prepare` shrinks,
    statistics). Its labels must be the prepared test split's, in order (the same images); the
    statistics say how far its shrunk images are from the prepared ones."""
    images, labels = load_splits(src, ("test",))["test"]
    ours = read_npz(prepared_path, ("test_images", "test_labels"))
    if len(labels) != len(ours["test_labels"]) or not np.array_equal(labels, ours["test_labels"].reshape(-1)):
        raise DataError(f"{src.path} [test]: its {len(labels)} labels are not those of {prepared_path}'s test split "
                        f"({len(ours['test_labels'])}, in order): not the same test images")
    small = resize(images, size)
    change = np.abs(small.astype(np.int16) - ours["test_images"].astype(np.int16))
    stored = labels.astype(np.uint8 if src.n_classes <= 256 else np.int64)[:, None]
    stats = {"source": str(src.path), "source_image_size": src.image_size, "image_size": size, "n": len(labels),
             "class_counts": np.bincount(labels, minlength=src.n_classes).tolist(),
             "mean_abs_change_vs_prepared": float(change.mean()),
             "share_of_pixels_changed_vs_prepared": float((change > 0).mean())}
    return {"test_images": images, "test_labels": stored}, {"test_images": small, "test_labels": stored}, stats
