"""The perturbations the study is about survive bf16 autocast where they enter the network: the
stem (standardisation and first convolution) runs in fp32 (core/network.py)."""

from __future__ import annotations

import pytest
import torch

from medrobust.core.network import build


def stem_response(model: torch.nn.Module, x: torch.Tensor, delta: torch.Tensor, bf16: bool) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    hook = model.stem.register_forward_hook(lambda m, i, o: seen.append(o.float()))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(x + delta), model(x)
    hook.remove()
    return seen[0] - seen[1]


@pytest.mark.parametrize("channels, width", [(1, 1), (3, 8)])
def test_the_stems_response_to_a_perturbation_is_exact_under_bf16(channels: int, width: int) -> None:
    torch.manual_seed(0)
    model = build(depth=10, width=width, n_classes=4, n_channels=channels, mean=[0.5] * channels,
                  std=[0.25] * channels).eval()
    x = torch.rand(8, channels, 32, 32)
    delta = (torch.randint(0, 2, x.shape) * 2 - 1) * 4 / 255  # a +-4/255 perturbation
    exact, autocast = stem_response(model, x, delta, False), stem_response(model, x, delta, True)
    error = (autocast - exact).norm() / exact.norm()
    assert error < 1e-2, f"relative error {error:.4f}"  # bf16 stem inputs: 2.6% (grey), 5.2% (RGB)
    # the rest of the network does run in bf16
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.blocks[0].conv1(model.stem(x)).dtype == torch.bfloat16
