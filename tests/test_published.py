"""MedMNIST-C as published (evaluation.corruptions.published): the 224 px test split, read through
medmnist's own loader where it is a MedMNIST release, checked against the prepared test split,
corrupted at 224 px and shrunk, and evaluated beside the applied protocol by the real workflow
(a hand-made 224 px slice: the MedMNIST hosts are unreachable here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from medrobust.core.io import read_npz, write_npz
from medrobust.data.corrupt import corruption_names
from medrobust.data.prepare import resize
from medrobust.data.synthetic import SyntheticSpec, generate

from conftest import REPO, env_with_venv
from test_deployment import run
from test_workflow import planned


def own_data(tmp_path: Path, n_test: int = 40) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """A 64 px MedMNIST-format file and its test split at 224 px (the same images, upsampled)."""
    d = generate(SyntheticSpec(n_classes=4, n_train=200, n_val=50, n_test=n_test, seed=0, image_size=64))
    write_npz(tmp_path / "own_64.npz", d)
    write_npz(tmp_path / "own_224.npz", {"test_images": resize(d["test_images"], 224), "test_labels": d["test_labels"]})
    return tmp_path / "own_64.npz", tmp_path / "own_224.npz", d


def medrobust(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medrobust.cli.main", *args], cwd=cwd, env=env_with_venv(),
                          capture_output=True, text=True, timeout=300)


def test_published_test_split_is_checked_against_the_prepared_one(tmp_path: Path) -> None:
    """The 224 px split is kept as it is and shrunk as prepare shrinks; a file whose labels are
    not the prepared test split's (other images, or another order) is refused in one line."""
    own, big, d = own_data(tmp_path)
    done = medrobust("prepare", "--source", str(own), "--n-classes", "4", "--n-channels", "1", "--source-size", "64",
                     "--size", "32", "--out", "prepared.npz", "--stats", "prepared.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    args = ["published-test", "--n-classes", "4", "--n-channels", "1", "--prepared", "prepared.npz", "--size", "32",
            "--out", "test224.npz", "--clean", "clean.npz", "--stats", "test224.json"]
    done = medrobust(*args, "--source", str(big), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    kept, clean = read_npz(tmp_path / "test224.npz", ("test_images",)), read_npz(tmp_path / "clean.npz", ("test_images",))
    assert np.array_equal(kept["test_images"], resize(d["test_images"], 224))
    assert np.array_equal(clean["test_images"], resize(kept["test_images"], 32))
    stats = json.loads((tmp_path / "test224.json").read_text())
    assert stats["n"] == 40 and 0 < stats["mean_abs_change_vs_prepared"] < 1  # two shrinks, one picture
    shuffled = tmp_path / "shuffled_224.npz"
    write_npz(shuffled, {"test_images": resize(d["test_images"], 224), "test_labels": d["test_labels"][::-1]})
    done = medrobust(*args, "--source", str(shuffled), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "shuffled_224.npz [test]" in done.stderr and "not the same test images" in done.stderr


def test_a_medmnist_224_release_is_read_through_medmnist_test_split_only(tmp_path: Path) -> None:
    """PneumoniaMNIST's 224 px release read by medmnist's own class, test split only (a file
    with no train or val arrays passes; medmnist checks the official 624 test images)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (624, 1)).astype(np.uint8)
    release = tmp_path / "pneumoniamnist_224.npz"
    write_npz(release, {"test_images": rng.integers(0, 256, (624, 224, 224), dtype=np.uint8), "test_labels": labels})
    write_npz(tmp_path / "prepared.npz", {"test_images": np.zeros((624, 32, 32), np.uint8), "test_labels": labels})
    done = medrobust("published-test", "--source", str(release), "--medmnist", "pneumoniamnist", "--n-classes", "2",
                     "--n-channels", "1", "--prepared", "prepared.npz", "--size", "32", "--out", "t.npz",
                     "--clean", "c.npz", "--stats", "t.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_npz(tmp_path / "t.npz", ("test_images",))["test_images"].shape == (624, 224, 224)
    short = tmp_path / "short" / "pneumoniamnist_224.npz"
    short.parent.mkdir()
    write_npz(short, {"test_images": np.zeros((600, 224, 224), np.uint8), "test_labels": labels[:600]})
    done = medrobust("published-test", "--source", str(short), "--medmnist", "pneumoniamnist", "--n-classes", "2",
                     "--n-channels", "1", "--prepared", "prepared.npz", "--size", "32", "--out", "t.npz",
                     "--clean", "c.npz", "--stats", "t.json", cwd=tmp_path)
    assert done.returncode == 2 and "600 images, but MedMNIST's pneumoniamnist has 624" in done.stderr


def test_the_full_study_plans_the_published_protocol_for_each_dataset(tmp_path: Path) -> None:
    """config.yaml: per dataset one md5-checked 224 px download, one extraction, one corruption
    job; every model evaluated under both protocols; the published Figs. 2-3."""
    jobs = planned(tmp_path, "--configfile", str(REPO / "config.yaml"))
    for rule in ("download_medmnist_224", "published_test", "corrupt_published", "figure_corruptions_published"):
        assert jobs[rule] == 5, rule
    assert jobs["evaluate_clean_published"] == jobs["evaluate_corrupted_published"] == jobs["evaluate_clean"] == 75
    assert jobs["figure_bars_published"] == 2 and jobs["train"] == 738  # no training of its own
    off = planned(tmp_path, "--configfile", str(REPO / "config.yaml"), "--config", "evaluation={'corruptions': "
                  "{'published': False}}")
    assert not any("published" in rule or rule.endswith("_224") for rule in off)


def test_own_data_with_a_224_px_test_split_is_evaluated_under_both_protocols(tmp_path: Path) -> None:
    """The real workflow on a slice: your own npz with path_224. The base model is evaluated on
    its clean and corrupted 224 px sets; the corrupted set holds every generic corruption at 5
    severities at 32 px, made at 224 px (the log says so); a dataset without path_224 plans none."""
    own, big, _ = own_data(tmp_path)
    config = {"datasets": {"own": {"source": "npz", "path": str(own), "path_224": str(big), "n_classes": 4,
                                   "n_channels": 1, "source_image_size": 64, "grid": "tiny"}},
              "grids": {s: {"tiny": {"lr": [0.1], "batch_size": [64], "epochs": [1]}}
                        for s in ("base", "nonrobust", "robust")},
              "replicates": 1, "eps": [4], "compute": {"device": "cpu"}, "model": {"depth": 10, "width": 1},
              "training": {"precision": "fp32"}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/own/rep0/base/eval/{kind}_published.json" for kind in ("clean", "corrupted")]
    run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path / "wd"),
         "--configfile", str(tmp_path / "cfg.yaml"), "--cores", "2", *targets], cwd=tmp_path)
    wd = tmp_path / "wd"
    corrupted = read_npz(wd / "results/own/data/corrupted_published.npz",
                         tuple(f"corruption/{n}" for n in corruption_names("generic")))
    assert {a.shape for a in corrupted.values()} == {(5, 40, 32, 32)}
    assert "13 corruptions x 5 severities at 224 px" in (wd / "logs/own/data/corrupt_published.log").read_text()
    clean, ood = (json.loads((wd / t).read_text()) for t in targets)
    assert clean["data"].endswith("published_clean.npz") and clean["metrics"]["n"] == 40
    assert set(ood["by_corruption"]) == set(corruption_names("generic"))
    del config["datasets"]["own"]["path_224"]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    assert not any("published" in rule for rule in planned(wd, "--configfile", str(tmp_path / "cfg.yaml")))


def test_path_224_is_checked_before_any_job(tmp_path: Path) -> None:
    """A missing or split-less path_224 is named in one line; MedMNIST datasets download theirs."""
    import pytest

    from medrobust.core.config import check_local_files, validate
    from medrobust.core.errors import ConfigError, DataError

    own, _, _ = own_data(tmp_path)
    entry = {"source": "npz", "path": str(own), "n_classes": 4, "n_channels": 1, "source_image_size": 64, "grid": "g"}
    grids = {s: {"g": {"lr": [0.1], "batch_size": [64], "epochs": [1]}} for s in ("base", "nonrobust", "robust")}
    with pytest.raises(DataError, match=r"datasets\.own\.path_224: .*missing\.npz"):
        check_local_files(validate({"datasets": {"own": {**entry, "path_224": str(tmp_path / "missing.npz")}},
                                    "grids": grids}))
    with pytest.raises(DataError, match=r"datasets\.own\.path_224: .*missing arrays test_images/test_labels"):
        check_local_files(validate({"datasets": {"own": {**entry, "path_224": str(_no_test(tmp_path))}},
                                    "grids": grids}))
    with pytest.raises(ConfigError, match=r"datasets\.pathmnist\.path_224: not used with source 'medmnist'"):
        validate({"datasets": {"pathmnist": {"source": "medmnist", "grid": "g", "path_224": "x.npz"}}, "grids": grids})


def _no_test(tmp_path: Path) -> Path:
    path = tmp_path / "no_test.npz"
    write_npz(path, {"train_images": np.zeros((2, 224, 224), np.uint8), "train_labels": np.zeros((2, 1), np.uint8)})
    return path
