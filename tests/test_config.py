import copy
import re
import subprocess
import sys

import pytest
import yaml

from medrobust.core.config import grid_points, load, medmnist_info, medmnist_suffix, typed_overrides, validate
from medrobust.core.errors import ConfigError

from conftest import REPO, env_with_venv


@pytest.fixture()
def full() -> dict:
    with open(REPO / "config.yaml") as f:
        return yaml.safe_load(f)


def test_shipped_configs_are_valid() -> None:
    full = load(REPO / "config.yaml")
    demo = load(REPO / "config.demo.yaml")
    quick = load(REPO / "config.quick.yaml")
    assert set(quick["datasets"]) == set(full["datasets"])
    assert all(len(grid_points(quick, d, s)) == 1 for d in quick["datasets"] for s in ("base", "nonrobust_eps4", "robust_eps8"))
    assert set(full["datasets"]) == {"pathmnist", "pneumoniamnist", "octmnist", "organsmnist", "breastmnist"}
    assert full["model"] == {"depth": 16, "width": 8, "activation": "swish"}
    assert len(grid_points(full, "pathmnist", "base")) == 32  # Appendix B: 32 runs per dataset
    assert {p.batch_size for p in grid_points(full, "breastmnist", "base").values()} == {256, 128, 64, 32}
    assert demo["training"]["label_smoothing"] == 0.1  # default filled in
    assert demo["datasets"]["synthetic"]["synthetic"]["n_classes"] == 4


@pytest.mark.parametrize("edit, key", [
    (lambda c: c.update(sed=1), "sed"),
    (lambda c: c["training"].update(lable_smoothing=0.1), "training.lable_smoothing"),
    (lambda c: c["datasets"]["pathmnist"].update(gird="large"), "datasets.pathmnist.gird"),
    (lambda c: c["grids"]["base"]["large"].update(lrs=[0.1]), "grids.base.large.lrs"),
    (lambda c: c["variants"]["ema_0995"]["settings"]["training"].update(ema=0.9), "training.ema"),
])
def test_unknown_keys_are_rejected_by_name(full: dict, edit, key: str) -> None:
    edit(full)
    with pytest.raises(ConfigError, match=f"unknown config key {key}"):
        validate(full)


@pytest.mark.parametrize("edit, key, words", [
    (lambda c: c["training"].update(ema_decay=1.5), "training.ema_decay", "greater than or equal to the maximum"),
    (lambda c: c["grids"]["base"]["large"].update(lr=[-0.1]), "grids.base.large.lr.0", "less than or equal to the minimum"),
    (lambda c: c["grids"]["base"]["small"].update(batch_size=[]), "grids.base.small.batch_size", "should be non-empty"),
    (lambda c: c["training"].update(precision="fp16"), "training.precision", "is not one of"),
    (lambda c: c.update(image_size="32"), "image_size", "is not of type 'integer'"),
    (lambda c: c["model"].update(depth=15), "model.depth", "6n+4"),
    (lambda c: c["datasets"]["pathmnist"].update(grid="huge"), "datasets.pathmnist.grid", "no grid 'huge'"),
    (lambda c: c["datasets"].update(notmnist={"source": "medmnist", "grid": "small"}), "datasets.notmnist", "not a MedMNIST dataset"),
    (lambda c: c["datasets"].update(mine={"source": "npz", "grid": "small", "path": "x.npz"}), "datasets.mine.n_classes", "required"),
    (lambda c: c["datasets"]["pathmnist"].update(path="x.npz"), "datasets.pathmnist.path", "not used with source 'medmnist'"),
    (lambda c: c.update(evaluation={"corruptions": {"apply_size": 32}}), "evaluation.corruptions.apply_size",
     "too small for pathmnist's stain_deposit"),
    (lambda c: c.update(evaluation={"main_eps": 2}), "evaluation.main_eps", "is not one of eps"),
    (lambda c: c.update(evaluation={"saliency": {"dataset": "chestmnist"}}), "evaluation.saliency.dataset", "not a configured"),
    (lambda c: c["datasets"]["octmnist"].update(corruptions="ctmnist"), "datasets.octmnist.corruptions", "is not one of"),
    (lambda c: c.update(compute={"gpus_per_job": -1}), "compute.gpus_per_job", "less than the minimum"),
    # named variants: each is validated as the config it makes, before any job
    (lambda c: c.update(run_variants=["augment_off"]), "run_variants", "no variant 'augment_off'"),
    (lambda c: c["variants"]["ema_0995"]["settings"]["training"].update(ema_decay=2.0),
     "training.ema_decay", "variant ema_0995"),
    (lambda c: c["variants"]["targets_other"]["settings"]["nonrobust"].update(targets="uniform"),
     "variants.targets_other.settings", "changes nothing"),
    (lambda c: c["variants"]["last_epoch"]["settings"].update(seed=3), "variants.last_epoch.settings", "seed"),
    (lambda c: c["variants"]["last_epoch"]["settings"].update(evaluation={"autoattack": {"n_images": 9}}),
     "variants.last_epoch.settings", "evaluation"),  # the corrupted test set is shared
    (lambda c: c.update(run_variants=["last_epoch"], replicates=1), "run_variants", "replicates: 2 or more"),
])
def test_bad_values_are_rejected_by_name(full: dict, edit, key: str, words: str) -> None:
    edit(full)
    with pytest.raises(ConfigError) as e:
        validate(full)
    assert f"config key {key}" in str(e.value) and words in str(e.value)


def _given_values_kept(before, after) -> bool:
    if isinstance(before, dict):
        return all(k in after and _given_values_kept(v, after[k]) for k, v in before.items())
    return before == after


def test_validation_only_adds_defaults(full: dict) -> None:
    before = copy.deepcopy(full)
    after = validate(full)
    assert _given_values_kept(before, after)
    assert after["grids"]["robust"]["small"]["augment"] == [False]  # a default filled in


def test_snakemake_stops_before_any_job_naming_the_key(tmp_path) -> None:
    with open(REPO / "config.demo.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg["training"]["ema_decai"] = 0.9
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                           "--configfile", str(tmp_path / "bad.yaml"), "--cores", "1"],
                          capture_output=True, text=True, env=env_with_venv(), timeout=120)
    assert done.returncode != 0
    assert "unknown config key training.ema_decai" in done.stdout + done.stderr
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()


def test_config_overrides_are_read_as_yaml() -> None:
    # what Snakemake hands over for --config 'nonrobust={steps: 50, random_start: true}' mirror=null
    raw = {"nonrobust": {"steps": "50", "random_start": "true", "targets": "other"}, "mirror": "null", "eps": ["4", "8"]}
    assert typed_overrides(raw) == {"nonrobust": {"steps": 50, "random_start": True, "targets": "other"},
                                    "mirror": None, "eps": [4, 8]}
    assert typed_overrides({"container": "docker://ghcr.io/x/y:1.0", "a": ": no yaml"}) == \
        {"container": "docker://ghcr.io/x/y:1.0", "a": ": no yaml"}


def test_snakemake_reads_nested_config_overrides_as_yaml(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n",
                           "--configfile", str(REPO / "config.demo.yaml"), "--config", "nonrobust={steps: 50}",
                           "mirror=null"], capture_output=True, text=True, env=env_with_venv(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_medmnist_facts_without_torch() -> None:
    """The scheduler reads MedMNIST's INFO (classes, channels, laterality) without importing torch."""
    probe = ("import sys; from medrobust.core.config import medmnist_info, horizontal_flips, load; "
             f"c = load({str(REPO / 'config.yaml')!r}); "
             "print(medmnist_info()['organsmnist']['n_channels'], horizontal_flips(c, 'organsmnist'), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env_with_venv(), timeout=120)
    assert done.stdout.split() == ["1", "False", "False"], done.stderr[-2000:]
    assert set(medmnist_info()) >= {"pathmnist", "pneumoniamnist", "octmnist", "organsmnist", "breastmnist"}


def test_medmnist_file_names_follow_medmnist(tmp_path) -> None:
    """At 28 px medmnist's loader reads breastmnist.npz: a file placed there is used, not downloaded."""
    assert (medmnist_suffix(28), medmnist_suffix(64)) == ("", "_64")
    with open(REPO / "config.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg["datasets"] = {"breastmnist": cfg["datasets"]["breastmnist"]}
    cfg["source_size"] = 28
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "resources" / "medmnist").mkdir(parents=True)
    (tmp_path / "resources" / "medmnist" / "breastmnist.npz").write_bytes(b"")
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n",
                           "--configfile", str(tmp_path / "c.yaml")], capture_output=True, text=True,
                          env=env_with_venv(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "input: resources/medmnist/breastmnist.npz" in done.stdout
    assert not re.search(r"^download_medmnist\s+\d+$", done.stdout, re.M), done.stdout[-3000:]
