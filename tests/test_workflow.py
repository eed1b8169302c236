"""The real snakemake on the real rules: lint, the full study's DAG, the demo end to end,
incremental re-runs, and a bring-your-own dataset downloaded over HTTP."""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medrobust.io import write_npz
from medrobust.synthetic import SyntheticSpec, generate

from conftest import REPO, env_with_venv


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env_with_venv(), timeout=1200)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def planned(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs a dry run would execute, by rule."""
    out = snakemake(workdir, "-n", *args).stdout
    if "Nothing to be done" in out:
        return {}
    table = out[out.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


def write_config(path: Path, cfg: dict) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_lint_is_clean(tmp_path: Path) -> None:
    done = snakemake(REPO, "--lint")
    assert "Congratulations" in done.stdout + done.stderr


def test_full_study_dag_without_network(tmp_path: Path) -> None:
    jobs = planned(tmp_path)  # config.yaml, the default
    # per dataset: 32 base runs; for each eps (4, 8) a construction, 32 nonrobust-only runs and
    # the reduced robust grid (12 PathMNIST, 32 PneumoniaMNIST, 12 OctMNIST, 16 OrganSMNIST, 32 BreastMNIST)
    robust = 12 + 32 + 12 + 16 + 32
    assert jobs == {"download_medmnist": 5, "prepare": 5, "train": 5 * (32 + 2 * 32) + 2 * robust,
                    "construct_nonrobust": 5 * 2, "select": 5 * 5, "evaluate_clean": 5 * 5, "all": 1}
    assert not (tmp_path / "resources").exists()


@pytest.mark.slow
def test_demo_end_to_end_and_incremental_reruns(tmp_path: Path) -> None:
    demo = str(REPO / "config.demo.yaml")
    snakemake(tmp_path, "--configfile", demo, "--cores", "2")
    res = tmp_path / "results" / "synthetic"
    choice = json.loads((res / "base" / "selected.json").read_text())
    vals = {c["variant"]: c["val"]["val_balanced_accuracy"] for c in choice["candidates"]}
    assert set(vals) == {"lr0.1_bs64_ep10_aug0", "lr0.05_bs64_ep10_aug0"}
    assert vals[choice["selected"]] == max(vals.values())
    test = json.loads((res / "base" / "eval" / "clean_test.json").read_text())
    assert test["metrics"]["n"] == 600
    assert test["metrics"]["balanced_accuracy"] > 0.9  # chance is 0.25; measured 1.00 (shapes alone: 0.81)

    built = json.loads((res / "data" / "nonrobust_eps4.json").read_text())
    assert built["target_hit_rate"] > 0.95 and built["linf_max_255"] <= 4 + 1e-4  # measured 1.00 and 4.00001
    assert built["n_used"] == 3000 * built["fraction_used"] and built["targets_equal_labels"] == 0
    nonrobust = json.loads((res / "nonrobust_eps4" / "eval" / "clean_test.json").read_text())["metrics"]
    # trained only on relabelled adversarial images, tested on clean ones with their true labels:
    # measured balanced accuracy 0.43 (chance 0.25) and AUC 0.95 (chance 0.5)
    assert nonrobust["balanced_accuracy"] > 0.33 and nonrobust["auc"] > 0.85

    robust_choice = json.loads((res / "robust_eps4" / "selected.json").read_text())
    assert robust_choice["criterion"] == "val_robust_balanced_accuracy"
    clean, attacked = _clean_and_pgd_accuracy(res, ("base", "robust_eps4"))
    # measured: base clean 1.00, PGD-20 0.00; robust clean 0.79, PGD-20 0.79 (shapes alone: 0.81)
    assert attacked["robust_eps4"] > attacked["base"] + 0.4
    assert clean["robust_eps4"] < clean["base"] - 0.05
    assert test["provenance"]["versions"]["medmnist"] == "3.0.1"
    runs = list((tmp_path / "results" / "provenance").glob("*.json"))
    assert runs and json.loads(runs[0].read_text())["config"]["datasets"]["synthetic"]["grid"] == "demo"
    assert not list(res.rglob("state.pt"))

    # nothing changed: nothing to do
    assert planned(tmp_path, "--configfile", demo) == {}
    cfg = yaml.safe_load(open(demo))
    # a setting that does not change results re-runs nothing
    cfg["training"]["checkpoint_every"] = 3
    assert planned(tmp_path, "--configfile", write_config(tmp_path / "c1.yaml", cfg)) == {}
    # a construction setting: the nonrobust set and its models, not the base models
    cfg["nonrobust"]["steps"] = 50
    assert planned(tmp_path, "--configfile", write_config(tmp_path / "c2.yaml", cfg)) == \
        {"construct_nonrobust": 1, "train": 2, "select": 1, "evaluate_clean": 1, "all": 1}
    # one more value in the nonrobust grid: only its job, then selection and evaluation
    cfg["nonrobust"]["steps"] = 100
    cfg["grids"]["nonrobust"]["demo"]["lr"].append(0.05)
    assert planned(tmp_path, "--configfile", write_config(tmp_path / "c3.yaml", cfg)) == \
        {"train": 2, "select": 1, "evaluate_clean": 1, "all": 1}
    # TRADES' beta: the robust models only
    cfg["grids"]["nonrobust"]["demo"]["lr"].pop()
    cfg["robust"]["beta"] = 6
    assert planned(tmp_path, "--configfile", write_config(tmp_path / "c4.yaml", cfg)) == \
        {"train": 1, "select": 1, "evaluate_clean": 1, "all": 1}
    # a training setting: every training job and what depends on them, not the data stage
    cfg["training"]["label_smoothing"] = 0.2
    assert planned(tmp_path, "--configfile", write_config(tmp_path / "c5.yaml", cfg)) == \
        {"train": 2 + 2 + 1, "select": 3, "construct_nonrobust": 1, "evaluate_clean": 3, "all": 1}


def _clean_and_pgd_accuracy(res: Path, stages: tuple[str, ...]) -> tuple[dict, dict]:
    """Test-set accuracy of each stage's selected model, clean and under PGD-20 at 4/255."""
    import torch

    from medrobust.attacks import PGDConfig, default_step_size, pgd
    from medrobust.evaluate import load_model, load_split, predict

    x, y = load_split(res / "data" / "prepared.npz", "test", torch.device("cpu"))
    x = x.float() / 255
    clean, attacked = {}, {}
    for stage in stages:
        model, _ = load_model(res / stage / "selected" / "model.pt", torch.device("cpu"))
        adv = pgd(model, x, y, PGDConfig(4 / 255, 20, default_step_size(4 / 255, 20)))
        clean[stage] = float((predict(model, x, 600, "fp32").argmax(1) == y.numpy()).mean())
        attacked[stage] = float((predict(model, adv, 600, "fp32").argmax(1) == y.numpy()).mean())
    return clean, attacked


@pytest.mark.slow
def test_bring_your_own_dataset_from_a_url(tmp_path: Path, http_dir) -> None:
    served, base = http_dir
    write_npz(served / "mine.npz", generate(SyntheticSpec(n_classes=3, n_channels=3, n_train=200, n_val=60,
                                                          n_test=60, image_size=48, seed=5)))
    digest = hashlib.md5((served / "mine.npz").read_bytes()).hexdigest()
    cfg = {
        "datasets": {"mine": {"source": "npz", "grid": "tiny", "url": f"{base}/mine.npz", "md5": digest,
                              "n_classes": 3, "n_channels": 3, "source_image_size": 48}},
        "model": {"depth": 10, "width": 1},
        "training": {"precision": "fp32"},
        "threads": {"train": 1},
        "eps": [8],
        "nonrobust": {"steps": 5, "targets": "deterministic"},
        "robust": {"steps": 2, "val_attack_steps": 2},
        "grids": {"base": {"tiny": {"lr": [0.1], "batch_size": [50], "epochs": [2]}},
                  "nonrobust": {"tiny": {"lr": [0.1], "batch_size": [50], "epochs": [1], "augment": [True]}},
                  "robust": {"tiny": {"lr": [0.1], "batch_size": [50], "epochs": [2]}}},
    }
    snakemake(tmp_path, "--configfile", write_config(tmp_path / "byo.yaml", cfg), "--cores", "2")
    stats = json.loads((tmp_path / "results/mine/data/prepared.json").read_text())
    assert stats["train_class_counts"] == [67, 67, 66] and stats["image_size"] == 32
    assert (tmp_path / "results/mine/base/eval/clean_test.json").exists()
    built = json.loads((tmp_path / "results/mine/data/nonrobust_eps8.json").read_text())
    assert built["config"]["targets"] == "deterministic" and built["linf_max_255"] <= 8 + 1e-4
    assert (tmp_path / "results/mine/nonrobust_eps8/eval/clean_test.json").exists()
    robust = json.loads((tmp_path / "results/mine/robust_eps8/selected.json").read_text())
    assert robust["criterion"] == "val_robust_balanced_accuracy"
    assert robust["candidates"][0]["hparams"]["eps"] == 8 / 255
    assert (tmp_path / "results/mine/robust_eps8/eval/clean_test.json").exists()

    # the same file with a wrong md5: the download job fails, naming file and URL, leaving nothing
    cfg["datasets"]["mine"]["md5"] = "0" * 32
    (tmp_path / "resources/npz/mine.npz").unlink()
    done = snakemake(tmp_path, "--configfile", write_config(tmp_path / "bad.yaml", cfg), "--cores", "1", check=False)
    log = (tmp_path / "logs/mine/data/download.log").read_text()
    assert done.returncode != 0 and f"mine.npz from {base}/mine.npz failed (md5 mismatch" in log
    assert not (tmp_path / "resources/npz/mine.npz").exists()
