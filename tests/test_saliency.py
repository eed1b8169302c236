"""Fig. 1's image choice, with two-pixel images and threshold models whose answers are known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medrobust.core.pgd import PGDConfig, default_step_size
from medrobust.evaluate.saliency import CHOICES, example, pick_index

EPS = 0.1
CFG = PGDConfig(eps=EPS, steps=10, step_size=default_step_size(EPS, 10))


class Threshold(nn.Module):
    """Two classes: class 1 when the weighted sum of the pixels exceeds 0.5 (logits +-gain * margin / 2)."""

    def __init__(self, weights: tuple[float, float], gain: float = 100.0):
        super().__init__()
        self.register_buffer("w", torch.tensor(weights).view(1, 1, 1, 2))
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.gain * ((x * self.w).sum((1, 2, 3)) - 0.5) / 2
        return torch.stack([-z, z], 1)


# The standard model reads pixel 0 (and pixel 1 a little, so that PGD against it moves pixel 1
# too); the robust model reads pixel 1 only. PGD at eps 0.1 lowers both pixels of a class-1
# image by 0.1, so a model flips where its pixel is within 0.1 above the threshold.
STANDARD, ROBUST = Threshold((0.999, 0.001)), Threshold((0.0, 1.0))
STANDARD_WRONG = (0.3, 0.9)
NOT_FLIPPED = (0.9, 0.9)
ROBUST_WRONG = (0.55, 0.3)  # the attack flips the standard model, but the robust one was wrong already
BOTH_FLIP = (0.55, 0.55)
STANDARD_ONLY = (0.55, 0.9)


def _images(*pixels: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor(pixels, dtype=torch.float32).view(-1, 1, 1, 2)
    return x, torch.ones(len(x), dtype=torch.int64)


def _pick(*pixels: tuple[float, float], index: int | None = None) -> tuple[int, str]:
    return pick_index(STANDARD, ROBUST, *_images(*pixels), CFG, index)


def test_prefers_an_image_only_the_standard_model_gets_wrong() -> None:
    assert _pick(STANDARD_WRONG, NOT_FLIPPED, ROBUST_WRONG, BOTH_FLIP, STANDARD_ONLY) == \
        (4, CHOICES["robust_holds"])
    assert CHOICES["robust_holds"] == "first image both models get right, flipped for the standard model only"


def test_else_the_first_flip_both_models_got_right() -> None:
    """Not the first flipped image (the robust model gets it wrong clean), but the next."""
    assert _pick(STANDARD_WRONG, ROBUST_WRONG, NOT_FLIPPED, BOTH_FLIP, BOTH_FLIP) == (3, CHOICES["both_flip"])


def test_looks_past_the_first_batch_for_the_preferred_image() -> None:
    pixels = [NOT_FLIPPED] * 300
    pixels[3], pixels[290] = BOTH_FLIP, STANDARD_ONLY
    assert _pick(*pixels) == (290, CHOICES["robust_holds"])


def test_no_suitable_image_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="classified correctly by both models and flipped by the attack"):
        _pick(STANDARD_WRONG, NOT_FLIPPED, ROBUST_WRONG)


def test_an_explicit_index_is_kept() -> None:
    assert _pick(STANDARD_WRONG, NOT_FLIPPED, STANDARD_ONLY, index=0) == (0, CHOICES["given"])
    with pytest.raises(ValueError, match="outside the test split"):
        _pick(STANDARD_WRONG, index=1)


def test_example_records_the_choice_and_both_predictions() -> None:
    x, y = _images(ROBUST_WRONG, BOTH_FLIP, STANDARD_ONLY)
    ex = example({"Robust": ROBUST, "Standard": STANDARD}, "Standard", "Robust", x, y, EPS, 10, None, 0)
    assert (ex.index, ex.label, ex.choice) == (2, 1, CHOICES["robust_holds"])
    assert ex.predictions == {"Robust": [1, 1], "Standard": [1, 0]}
    assert ex.images.shape == (2, 1, 2, 1) and ex.images[1, 0, 0, 0] == pytest.approx(0.45)
