"""The stage vocabulary (medrobust.core.stages): names round-trip, anything else is refused."""

from __future__ import annotations

import re

import pytest

from medrobust.core.stages import (STAGE_PATTERN, metric_title, model_of, parse_stage, stage_eps, stage_label,
                                   stage_name, stage_names)


def test_stage_names_round_trip() -> None:
    names = stage_names([4, 8])
    assert names == ["base", "nonrobust_eps4", "robust_eps4", "nonrobust_eps8", "robust_eps8"]
    for name in names:
        assert stage_name(*parse_stage(name)) == name and re.fullmatch(STAGE_PATTERN, name)
    assert parse_stage("robust_eps16") == ("robust", 16) and model_of("nonrobust_eps4") == "nonrobust"
    assert stage_eps("robust_eps8") == 8 and stage_label("robust_eps8") == "robust eps8"
    assert metric_title("balanced_accuracy") == "Balanced accuracy" and metric_title("auc") == "AUC"


@pytest.mark.parametrize("bad", ["", "robust", "base_eps4", "robusteps4", "robust_eps", "robust_eps4x", "clean"])
def test_anything_else_is_not_a_stage(bad: str) -> None:
    with pytest.raises(ValueError, match="not a stage"):
        parse_stage(bad)
    assert not re.fullmatch(STAGE_PATTERN, bad)
    with pytest.raises(ValueError):
        stage_eps("base")
