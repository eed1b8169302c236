"""Download (through medmnist's own code, from local files) and prepare, including failures."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from medrobust.core.errors import DataError, DownloadError
from medrobust.core.io import read_npz, write_npz
from medrobust.data.prepare import Source, fetch, load_splits, medmnist_source, prepare
from medrobust.data.synthetic import SyntheticSpec, generate

from conftest import breastmnist_like, corrupt


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_fetch_verifies_md5_and_writes_whole_file(small_npz: Path, tmp_path: Path, http_dir) -> None:
    served, base = http_dir
    (served / "small.npz").write_bytes(small_npz.read_bytes())
    dest = tmp_path / "res" / "mine.npz"
    fetch(f"{base}/small.npz", md5(small_npz), dest)
    assert dest.read_bytes() == small_npz.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["mine.npz"]  # no temporary left


def test_fetch_wrong_md5_names_file_and_url_and_writes_nothing(small_npz: Path, tmp_path: Path, http_dir) -> None:
    served, base = http_dir
    (served / "small.npz").write_bytes(small_npz.read_bytes())
    dest = tmp_path / "res" / "mine.npz"
    with pytest.raises(DownloadError) as e:
        fetch(f"{base}/small.npz", "0" * 32, dest)
    msg = str(e.value)
    assert "mine.npz" in msg and f"{base}/small.npz" in msg and "md5 mismatch" in msg
    assert list(dest.parent.iterdir()) == []


def test_fetch_missing_url_names_file_and_url(tmp_path: Path, http_dir) -> None:
    _, base = http_dir
    url = f"{base}/nowhere/pathmnist_64.npz"
    with pytest.raises(DownloadError, match=f"pathmnist_64.npz from {url} failed .*404"):
        fetch(url, "0" * 32, tmp_path / "out" / "pathmnist_64.npz")
    assert list((tmp_path / "out").iterdir()) == []


def test_medmnist_source_uses_info_and_mirror() -> None:
    name, url, digest = medmnist_source("pathmnist", 64, None)
    assert name == "pathmnist_64.npz" and "zenodo" in url and len(digest) == 32
    name, url, digest2 = medmnist_source("pathmnist", 64, "http://mirror.example/mm/")
    assert url == "http://mirror.example/mm/pathmnist_64.npz" and digest2 == digest
    with pytest.raises(DataError, match="not a MedMNIST dataset"):
        medmnist_source("cifar10", 64, None)


def test_medmnist_mirror_with_wrong_file_fails_on_md5(small_npz: Path, tmp_path: Path, http_dir) -> None:
    served, base = http_dir
    (served / "breastmnist_64.npz").write_bytes(small_npz.read_bytes())
    _, url, digest = medmnist_source("breastmnist", 64, base)
    with pytest.raises(DownloadError, match="md5 mismatch"):
        fetch(url, digest, tmp_path / "res" / "breastmnist_64.npz")
    assert not (tmp_path / "res" / "breastmnist_64.npz").exists()


def test_prepare_through_medmnist_dataset_class(tmp_path: Path) -> None:
    raw = breastmnist_like(tmp_path)
    stats = prepare(Source(raw, 2, 1, 64, medmnist_flag="breastmnist"), tmp_path / "p.npz", 32)
    out = read_npz(tmp_path / "p.npz", ("train_images", "train_labels", "val_images", "test_images"))
    assert out["train_images"].shape == (546, 32, 32) and out["train_images"].dtype == np.uint8
    assert out["test_images"].shape == (156, 32, 32) and out["train_labels"].shape == (546, 1)
    assert sum(stats["train_class_counts"]) == 546


def test_medmnist_sample_count_mismatch_is_named(tmp_path: Path) -> None:
    raw = breastmnist_like(tmp_path, n_train=500)
    with pytest.raises(DataError, match=r"breastmnist_64.npz \[train\]: 500 images, but MedMNIST's breastmnist has 546"):
        load_splits(Source(raw, 2, 1, 64, medmnist_flag="breastmnist"))


@pytest.mark.parametrize("flag", [None, "breastmnist"])
def test_corrupt_or_missing_file_is_named(tmp_path: Path, flag) -> None:
    raw = breastmnist_like(tmp_path)
    corrupt(raw)
    with pytest.raises(DataError, match="breastmnist_64.npz"):
        load_splits(Source(raw, 2, 1, 64, medmnist_flag=flag))
    with pytest.raises(DataError, match="not found"):
        load_splits(Source(tmp_path / "gone" / "breastmnist_64.npz", 2, 1, 64, medmnist_flag=flag))


@pytest.mark.parametrize("src_kw, words", [
    (dict(n_classes=4, n_channels=3, image_size=64), "expected (N, 64, 64, 3)"),
    (dict(n_classes=4, n_channels=1, image_size=28), "expected (N, 28, 28)"),
    (dict(n_classes=3, n_channels=1, image_size=64), "labels span 0..3, expected 0..2"),
])
def test_mismatch_with_declared_format_is_named(small_npz: Path, src_kw, words: str) -> None:
    with pytest.raises(DataError) as e:
        load_splits(Source(small_npz, **src_kw))
    assert str(small_npz) in str(e.value) and words in str(e.value)


def test_bring_your_own_rgb_npz(tmp_path: Path) -> None:
    raw = tmp_path / "mine.npz"
    write_npz(raw, generate(SyntheticSpec(n_classes=3, n_channels=3, n_train=40, n_val=10, n_test=10, image_size=48)))
    prepare(Source(raw, 3, 3, 48), tmp_path / "p.npz", 32)
    out = read_npz(tmp_path / "p.npz", ("train_images", "val_images"))
    assert out["train_images"].shape == (40, 32, 32, 3) and out["val_images"].shape == (10, 32, 32, 3)


@pytest.mark.parametrize("size", [28, 64, 128, 224])
def test_every_medmnist_release_placed_by_hand_is_prepared(size: int, tmp_path: Path) -> None:
    """Every source_size the schema allows: a BreastMNIST-shaped file of that release, placed in
    resources/medmnist/ under medmnist's own name, is read by medmnist's loader and resized to
    32 px by the workflow, with no download."""
    from medrobust.core import paths
    from medrobust.core.config import load

    from test_workflow import snakemake, write_config

    cfg = write_config(tmp_path / "c.yaml", {
        "datasets": {"breastmnist": {"source": "medmnist", "grid": "g"}}, "source_size": size,
        "grids": {f: {"g": {"lr": [0.1], "batch_size": [8], "epochs": [1]}} for f in ("base", "nonrobust", "robust")}})
    rng = np.random.default_rng(size)
    release = {f"{split}_{kind}": (rng.integers(0, 256, (n, size, size), dtype=np.uint8) if kind == "images"
                                   else rng.integers(0, 2, (n, 1)))
               for split, n in (("train", 546), ("val", 78), ("test", 156)) for kind in ("images", "labels")}
    write_npz(tmp_path / paths.source(load(cfg), "breastmnist"), release)
    done = snakemake(tmp_path, "--configfile", cfg, "--cores", "1", paths.prepared("breastmnist"), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "download_medmnist" not in done.stderr
    out = read_npz(tmp_path / paths.prepared("breastmnist"), ("train_images", "test_images"))
    assert out["train_images"].shape == (546, 32, 32) and out["test_images"].shape == (156, 32, 32)
