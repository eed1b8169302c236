"""The one path scheme (medrobust.core.paths): where each result lives, which results a variant
shares with the main run, and the named inputs a command reads back."""

from __future__ import annotations

import copy

import pytest

from medrobust.core import paths
from medrobust.core.config import load, stages
from medrobust.core.errors import ConfigError

from conftest import REPO

DEMO = load(REPO / "config.demo.yaml")


def variant(name: str, change) -> paths.Variant:  # type: ignore[no-untyped-def]
    config = copy.deepcopy(DEMO)
    change(config)
    return paths.Variant(name, config, DEMO)


def test_every_replicate_has_the_same_layout_and_the_grid_its_own() -> None:
    assert paths.run_dir("synthetic", "base", 0) == "results/synthetic/rep0/base"
    assert paths.run_dir("synthetic", "robust_eps4", 2) == "results/synthetic/rep2/robust_eps4"
    assert paths.point_dir("synthetic", "base", "lr0.1_bs64_ep20_aug0") == \
        "results/synthetic/grid/lr0.1_bs64_ep20_aug0/base"
    assert paths.selection("synthetic", "base") == "results/synthetic/grid/base/selected.json"
    assert paths.nonrobust_set("synthetic", 4, 1) == "results/synthetic/rep1/data/nonrobust_eps4.npz"
    clean = paths.evaluation("synthetic", "nonrobust_eps4", 1, "clean_last")
    assert clean == "results/synthetic/rep1/nonrobust_eps4/eval/clean_last.json"
    assert paths.probabilities(clean) == "results/synthetic/rep1/nonrobust_eps4/eval/clean_last_probs.npz"
    # the rules' patterns are the same scheme with wildcards
    assert paths.RUN.format(dataset="d", rep=3, stage="base") == paths.run_dir("d", "base", 3)
    assert paths.EVAL.format(dataset="d", rep=0, stage="base", kind="clean") == paths.evaluation("d", "base", 0, "clean")


def test_a_variant_equal_to_the_main_run_is_the_main_run() -> None:
    same = variant("same", lambda c: None)
    for stage in stages(DEMO):
        assert paths.run_dir("synthetic", stage, 1, same) == paths.run_dir("synthetic", stage, 1)
        assert paths.evaluation("synthetic", stage, 1, "clean", same) == paths.evaluation("synthetic", stage, 1, "clean")


def test_a_variant_moves_exactly_the_steps_it_changes_and_their_downstream() -> None:
    main = {s: paths.run_dir("synthetic", s, 1) for s in stages(DEMO)}

    def moved(v: paths.Variant) -> set[str]:
        return {s for s in stages(DEMO) if paths.run_dir("synthetic", s, 1, v) != main[s]}

    targets = variant("targets_other", lambda c: c["nonrobust"].update(targets="other"))
    assert moved(targets) == {"nonrobust_eps4"}
    assert paths.nonrobust_set("synthetic", 4, 1, targets) == "results/variants/targets_other/synthetic/rep1/data/" \
                                                            "nonrobust_eps4.npz"
    ema = variant("ema", lambda c: c["training"].update(ema_decay=0.995))
    assert moved(ema) == set(stages(DEMO))  # every model trains with it
    beta = variant("beta", lambda c: c["robust"].update(beta=6.0))
    assert moved(beta) == {"robust_eps4"}
    select = variant("select_clean", lambda c: c["robust"].update(select_by="clean"))
    assert moved(select) == {"robust_eps4"}
    base_grid = variant("base_aug", lambda c: c["grids"]["base"]["demo"].update(augment=[True]))
    assert moved(base_grid) == {"base", "nonrobust_eps4"}  # the nonrobust-only set is built from the base model
    # an evaluation setting: the models stay, their evaluations move
    attack = variant("aa", lambda c: c["evaluation"]["autoattack"].update(batch_size=7))
    assert moved(attack) == set()
    assert paths.evaluation("synthetic", "base", 1, "autoattack", attack).startswith("results/variants/aa/")
    for kind in ("clean", "corrupted"):  # the other evaluations stay the main run's
        assert paths.evaluation("synthetic", "base", 1, kind, attack) == paths.evaluation("synthetic", "base", 1, kind)
    # the nonrobust-only models' own grid: their set stays the main run's
    grid = variant("nonrobust_no_aug", lambda c: c["grids"]["nonrobust"]["demo"].update(augment=[False]))
    assert moved(grid) == {"nonrobust_eps4"}
    assert paths.nonrobust_set("synthetic", 4, 1, grid) == paths.nonrobust_set("synthetic", 4, 1)
    # the kept epoch: the weights are the main run's (both epochs saved), their evaluations move
    epoch = variant("last_epoch", lambda c: c["nonrobust"].update(keep_epoch="last"))
    assert moved(epoch) == set()
    assert paths.evaluation("synthetic", "nonrobust_eps4", 1, "clean", epoch).startswith("results/variants/")
    assert paths.evaluation("synthetic", "nonrobust_eps4", 1, "clean_last", epoch) == \
        paths.evaluation("synthetic", "nonrobust_eps4", 1, "clean_last")
    assert paths.evaluation("synthetic", "base", 1, "clean", epoch) == paths.evaluation("synthetic", "base", 1, "clean")


def test_named_inputs_are_read_back_by_stage_and_replicate() -> None:
    inputs = {paths.key("d", "base", r, kind): f"{r}{kind}" for r in (1, 0) for kind in ("clean", "corrupted")}
    inputs |= {paths.key("d", "base", None, "bootstrap"): "b", paths.key("e", "robust_eps4", 0, "clean"): "x",
               "summary": "not a stage's"}
    assert paths.gather(inputs) == [
        {"dataset": "d", "stage": "base", "bootstrap": "b",
         "replicates": [{"clean": "0clean", "corrupted": "0corrupted"}, {"clean": "1clean", "corrupted": "1corrupted"}]},
        {"dataset": "e", "stage": "robust_eps4", "replicates": [{"clean": "x"}]},
    ]


def test_source_files_are_where_their_rules_put_them() -> None:
    config = copy.deepcopy(DEMO)
    config["datasets"] |= {"breastmnist": {"source": "medmnist", "grid": "demo"},
                           "mine": {"source": "npz", "path": "/data/mine.npz", "grid": "demo"},
                           "fetched": {"source": "npz", "url": "https://x/f.npz", "md5": "0" * 32, "grid": "demo"}}
    assert paths.source(config, "synthetic") == f"resources/synthetic/synthetic_{config['source_size']}.npz"
    assert paths.source(config, "mine") == "/data/mine.npz"
    assert paths.source(config, "fetched") == paths.source_pattern(config, "npz").format(dataset="fetched")
    config["source_size"] = 28  # medmnist's loader reads the 28 px release by its own name
    assert paths.source(config, "breastmnist") == "resources/medmnist/breastmnist.npz"
    config["source_size"] = 64
    assert paths.source(config, "breastmnist") == "resources/medmnist/breastmnist_64.npz"


FULL = load(REPO / "config.yaml")
# config.yaml's named variants: which models, nonrobust sets and clean evaluations each moves
# (rep 1 of PathMNIST at eps 4); everything else is the main run's file
MOVES = {
    "augment_on": ({"base", "robust_eps4", "robust_eps8", "nonrobust_eps4", "nonrobust_eps8"}, True),
    "targets_other": ({"nonrobust_eps4", "nonrobust_eps8"}, True),
    "last_epoch": (set(), False),
    "ema_0995": ({"base", "robust_eps4", "robust_eps8", "nonrobust_eps4", "nonrobust_eps8"}, True),
    "select_clean": ({"robust_eps4", "robust_eps8"}, False),
    "trades_reference": ({"robust_eps4", "robust_eps8"}, False),
    "weight_decay_2e4": ({"base", "robust_eps4", "robust_eps8", "nonrobust_eps4", "nonrobust_eps8"}, True),
    "no_label_smoothing": ({"base", "robust_eps4", "robust_eps8", "nonrobust_eps4", "nonrobust_eps8"}, True),
}


def test_each_named_variant_moves_what_its_reading_changes() -> None:
    assert set(FULL["variants"]) == set(MOVES) and FULL["run_variants"] == []
    docs = (REPO / "docs" / "variants.md").read_text()
    assert all(f"| `{name}` |" in docs for name in MOVES)  # each documented, with its anchor
    for name, (models, sets) in MOVES.items():
        v = paths.Variant.of(FULL, name)
        assert {s for s in stages(FULL) if paths.run_dir("pathmnist", s, 1, v) != paths.run_dir("pathmnist", s, 1)} \
            == models, name
        assert (paths.nonrobust_set("pathmnist", 4, 1, v) != paths.nonrobust_set("pathmnist", 4, 1)) == sets, name
        evaluated = {s for s in stages(FULL)
                     if paths.evaluation("pathmnist", s, 1, "clean", v) != paths.evaluation("pathmnist", s, 1, "clean")}
        assert evaluated == models | ({"nonrobust_eps4", "nonrobust_eps8"} if name == "last_epoch" else set()), name


def test_a_variant_retrains_the_selected_point_with_the_same_changes_everywhere() -> None:
    """paths.overlay: what a variant's replicates add to the main run's selected point."""
    expected = {"augment_on": ({"augment": True}, {}), "ema_0995": ({"ema_decay": 0.995},) * 2,
                "trades_reference": ({}, {}), "targets_other": ({}, {}), "select_clean": ({}, {})}
    for name, (base, nonrobust) in expected.items():
        v = paths.Variant.of(FULL, name)
        assert paths.overlay(v, "octmnist", "base") == base, name
        assert paths.overlay(v, "octmnist", "nonrobust_eps8") == nonrobust, name
    assert paths.overlay(paths.Variant.of(FULL, "trades_reference"), "octmnist", "robust_eps4") == {"reference": True}
    # only a variant with its own selection criterion has its own selection (over the main grid)
    moved = {n for n in FULL["variants"] if paths.selection("octmnist", "robust_eps4", paths.Variant.of(FULL, n))
             != paths.selection("octmnist", "robust_eps4")}
    assert moved == {"select_clean"}


def test_a_variant_that_changes_the_grid_point_by_point_is_refused() -> None:
    config = copy.deepcopy(FULL)
    config["variants"]["lower_lr"] = {"tests": "t", "anchor": "a",
                                      "settings": {"grids": {"base": {"large": {"lr": [0.04, 0.03, 0.02, 0.01]}}}}}
    config["run_variants"] = ["lower_lr"]
    with pytest.raises(ConfigError, match="variants.lower_lr.settings: it changes the base grid of pathmnist"):
        paths.variants_to_run(config)
    config["run_variants"] = ["augment_on", "targets_other"]
    assert list(paths.variants_to_run(config)) == ["augment_on", "targets_other"]
