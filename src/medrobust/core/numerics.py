"""Numerics every stage shares: seeds, precision (autocast, exact evaluation), image conversion and
eval mode. Torch is imported inside the functions that need it, so that light commands and the
scheduler can import this module cheaply."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, overload

import numpy as np

if TYPE_CHECKING:
    import torch


def derive_seed(*parts: int) -> int:
    """An independent 32-bit seed for each tuple of integers (seed, purpose, index, ...)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is bf16 on CUDA and fp32 elsewhere; explicit choices are kept."""
    import torch

    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


EVALUATION_PRECISION = "fp32"


def exact_evaluation() -> str:
    """Every test-time number (clean, corrupted, AutoAttack, the figures' predictions) at one
    precision: fp32 with TF32 off and cudnn.benchmark off (no autotuned algorithm choice), so a
    checkpoint's test numbers agree across nodes up to argmax flips of near ties. Returns the
    precision to pass on. Training keeps bf16."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.set_float32_matmul_precision("highest")
    return EVALUATION_PRECISION


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast where asked (weights stay fp32); a no-op for fp32."""
    import torch

    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@overload
def as_float(x: torch.Tensor) -> torch.Tensor: ...
@overload
def as_float(x: np.ndarray) -> np.ndarray: ...
def as_float(x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Images stored as uint8 (0..255) or float (0..1) to float32 in [0, 1]: tensors or arrays."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float32) / 255 if x.dtype == np.uint8 else x.astype(np.float32)
    import torch

    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module, freeze: bool = False) -> Iterator[torch.nn.Module]:
    """The model in eval mode for the block (batch-norm statistics fixed, no dropout), and with
    `freeze` its parameters without gradients; both restored afterwards, even on an error."""
    was_training = model.training
    grads_were = [p.requires_grad for p in model.parameters()]
    model.eval()
    if freeze:
        model.requires_grad_(False)
    try:
        yield model
    finally:
        for p, g in zip(model.parameters(), grads_were):
            p.requires_grad_(g)
        model.train(was_training)
