"""No op that makes the host wait for the GPU inside a training step or a PGD iteration.

A GPU runs ahead of Python only while nothing asks it for a value: `.item()`, `float()`,
`bool()` and `.tolist()` of a tensor, boolean-mask indexing and `nonzero` (their output size
depends on the data), and copies between host and device (a Python scalar made into a device
tensor, random numbers drawn on the CPU and moved over) each wait for the GPU's queue to drain.

`SyncCounter` records those ops as the dispatcher sees them. What a CPU run can show: reading a
value (`_local_scalar_dense`, which `.item()`, `float()` and `bool()` call; `.tolist()` and
`.numpy()`, which bypass the dispatcher and are counted by patching them), data-dependent
shapes (`nonzero`, `masked_select`, an index or index_put with a boolean mask) and a tensor
made from Python data (`lift_fresh`: `torch.tensor(...)`, which on a GPU is a blocking copy).
What only a GPU run shows: a copy between devices (`_to_copy`, `copy_`), e.g. a CPU generator's
draw moved to the GPU, since on a CPU `.to(x.device)` is no op at all. So the tests also run on
CUDA where there is one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from medrobust.core.network import build
from medrobust.core.pgd import PGDConfig, cross_entropy, pgd
from medrobust.train.loop import Data, Standard, new_run, train_step
from medrobust.train.trades import Trades

from conftest import train_config

aten = torch.ops.aten
READS = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten.lift_fresh, aten.equal}
INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]
EPS = 4 / 255


def is_sync(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether the op would make the host wait for a GPU (module docstring)."""
    op = func.overloadpacket
    if op in READS:
        return True
    if op in INDEXING:
        return any(i is not None and i.dtype == torch.bool for i in args[1])
    if op is aten._to_copy:
        return kwargs.get("device", args[0].device) != args[0].device
    if op is aten.copy_:
        return args[0].device != args[1].device
    return False


class SyncCounter(TorchDispatchMode):
    """Records the name of every synchronising op run inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if is_sync(func, args, kwargs):
            self.ops.append(str(func))
        return func(*args, **kwargs)


def recording(ops: list[str], name: str) -> Callable[..., Any]:
    """torch.Tensor's method `name`, appending its name to `ops` at every call."""
    original = getattr(torch.Tensor, name)

    def method(t: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        ops.append(f"Tensor.{name}")
        return original(t, *args, **kwargs)

    return method


def syncs(fn: Callable[[], object], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The synchronising ops that `fn()` runs, `.tolist()` and `.numpy()` included."""
    counter = SyncCounter()
    with monkeypatch.context() as patch, counter:
        for name in ("tolist", "numpy"):
            patch.setattr(torch.Tensor, name, recording(counter.ops, name))
        fn()
    return counter.ops


@pytest.mark.parametrize("what, fn", [
    ("item", lambda x: x.sum().item()),
    ("float", lambda x: float(x.sum())),
    ("bool", lambda x: bool(x.sum() > 0)),
    ("tolist", lambda x: x[0].tolist()),
    ("numpy", lambda x: x.numpy()),
    ("nonzero", lambda x: (x > 0).nonzero()),
    ("mask index", lambda x: x[x > 0]),
    ("mask assignment", lambda x: x.__setitem__(x > 0, x[0, 0])),
    ("masked_select", lambda x: x.masked_select(x > 0)),
    ("python scalar to tensor", lambda x: torch.tensor(3.0, device=x.device)),
])
def test_the_counter_sees_every_kind_of_sync_a_cpu_can_show(what: str, fn: Callable[[torch.Tensor], object],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert syncs(lambda: fn(torch.randn(4, 3)), monkeypatch), what


def test_the_counter_passes_what_stays_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    x, idx = torch.randn(4, 3), torch.arange(2)
    assert syncs(lambda: (torch.where(x > 0, x * 2, x)[idx].sum(), torch.full((), 3.0)), monkeypatch) == []


def small_data(device: torch.device) -> Data:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (96, 1, 16, 16), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 3, (96,), generator=g)
    return Data(x.to(device), y.to(device), x[:16].to(device), y[:16].to(device), 3)


def small_model(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(depth=10, width=1, n_classes=3, n_channels=1, mean=[0.5], std=[0.25]).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["standard", "trades"])
@pytest.mark.parametrize("augment", [True, False])
def test_a_training_step_never_synchronises(device: str, method: str, augment: bool,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    dev = torch.device(device)
    trades = {"eps": EPS, "attack_steps": 2} if method == "trades" else {}
    cfg = train_config("robust_eps4" if trades else "base", lr=0.1, batch_size=32, epochs=2, augment=augment,
                       depth=10, width=1, precision="fp32", **trades)
    data = small_data(dev)
    margs = {"depth": 10, "width": 1, "activation": "swish", "n_classes": 3, "n_channels": 1, "mean": [0.5], "std": [0.25]}
    run = new_run(cfg, margs, dev)
    objective = Trades(cfg) if method == "trades" else Standard(cfg)
    perm = torch.randperm(len(data.train_y), device=dev)
    train_step(run, cfg, objective, data, perm, 6)  # warm-up: lazy initialisation is not a step's work
    assert syncs(lambda: [train_step(run, cfg, objective, data, perm, 6) for _ in range(2)], monkeypatch) == []
    assert run.step == 3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("start", ["none", "uniform", "trades"])
@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("keep", ["best", "last"])
def test_pgd_never_synchronises_however_many_steps(device: str, start: str, targeted: bool, keep: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a whole call, so neither the iterations nor the start and the final pick synchronise."""
    dev = torch.device(device)
    model, x = small_model(dev), torch.rand(8, 1, 16, 16, device=dev)
    objective = cross_entropy(torch.arange(8, device=dev) % 3, targeted)

    def attack(steps: int) -> None:
        gen = torch.Generator(device=dev).manual_seed(0)
        pgd(model, x, objective, PGDConfig(EPS, steps, EPS / 2, start=start, keep=keep), generator=gen)

    attack(1)  # warm-up
    assert syncs(lambda: attack(1), monkeypatch) == syncs(lambda: attack(4), monkeypatch) == []
