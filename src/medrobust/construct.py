"""The nonrobust-feature training set (Ilyas et al.'s D_rand; paper Section 3.1).

Every training image the base model classifies correctly is moved by targeted L-inf PGD
towards a target class t != y and relabelled t. Targets are drawn per training image from
the seed alone (before the model is consulted), uniformly among the other classes (D_rand),
or t = (y + 1) mod C (D_det). The images are kept in float32: quantising a 4/255 perturbation
made of 0.1/255 steps to uint8 would move it by up to 0.5/255 per pixel.

Work proceeds in chunks saved beside the output (`<out>.parts/`), so an interrupted job resumes
at the first unfinished chunk; the parts are deleted once the output is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medrobust.attacks import PGDConfig, default_step_size, pgd
from medrobust.evaluate import predict
from medrobust.io import atomic_path
from medrobust.train import Interrupted, as_float, derive_seed

TARGET_MODES = ("random", "deterministic")


@dataclass(frozen=True)
class ConstructionConfig:
    eps: float  # in [0, 1] units
    steps: int = 100
    step_size_factor: float = 2.5
    targets: str = "random"
    random_start: bool = False
    seed: int = 0
    precision: str = "auto"

    @property
    def pgd(self) -> PGDConfig:
        return PGDConfig(self.eps, self.steps, default_step_size(self.eps, self.steps, self.step_size_factor),
                         random_start=self.random_start)


def draw_targets(labels: torch.Tensor, n_classes: int, mode: str, seed: int) -> torch.Tensor:
    """A target class != label for every sample: uniform over the others, or label + 1 mod C."""
    if mode == "deterministic":
        return (labels + 1) % n_classes
    if mode != "random":
        raise ValueError(f"targets must be one of {TARGET_MODES}, got {mode!r}")
    gen = torch.Generator().manual_seed(derive_seed(seed, 3))
    offset = torch.randint(1, n_classes, (len(labels),), generator=gen).to(labels.device)
    return (labels + offset) % n_classes


def construct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int, cfg: ConstructionConfig,
              parts: Path, tag: str, batch_size: int = 512, chunk: int = 8192,
              should_stop: Callable[[], bool] = lambda: False) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Adversarial images (M, C, H, W) float32, their target labels (M,), and statistics.

    Finished chunks are kept in `parts` under names starting with `tag` (which must identify
    the model, the data and `cfg`), and reused when the same construction runs again."""
    t0 = time.perf_counter()
    correct = torch.from_numpy(predict(model, x, batch_size, cfg.precision).argmax(1)).to(y.device) == y
    targets = draw_targets(y, n_classes, cfg.targets, cfg.seed)
    used = torch.nonzero(correct).squeeze(1)
    parts.mkdir(parents=True, exist_ok=True)
    attack_seconds, attacked = 0.0, 0
    for c, start in enumerate(range(0, len(used), chunk)):
        path = parts / f"{tag}-{c:05d}.pt"
        if path.exists():
            continue
        if should_stop():
            raise Interrupted(f"stopped before chunk {c}; finished chunks are kept in {parts}")
        t1 = time.perf_counter()
        with atomic_path(path) as tmp:
            torch.save(_attack_chunk(model, x, used[start:start + chunk], targets, cfg, batch_size), tmp)
        attack_seconds += time.perf_counter() - t1
        attacked += len(used[start:start + chunk])
    pieces = [torch.load(parts / f"{tag}-{c:05d}.pt") for c in range(-(-len(used) // chunk))]
    adv = torch.cat([p["adv"] for p in pieces]) if pieces else torch.zeros((0, *x.shape[1:]))
    stats = _statistics(pieces, y[used].cpu(), targets[used].cpu(), n_classes, len(x))
    stats.update(seconds=time.perf_counter() - t0, attack_images_per_second=attacked / attack_seconds if attacked else None,
                 config={**asdict(cfg), "step_size": cfg.pgd.step_size})
    return adv.numpy(), targets[used].cpu().numpy(), {**stats, "source_index": used.cpu().numpy()}


def _attack_chunk(model: torch.nn.Module, x: torch.Tensor, idx: torch.Tensor, targets: torch.Tensor,
                  cfg: ConstructionConfig, batch_size: int) -> dict[str, torch.Tensor]:
    out: dict[str, list[torch.Tensor]] = {"adv": [], "hit": [], "linf": []}
    for i in range(0, len(idx), batch_size):
        b = idx[i:i + batch_size]
        xb, tb = as_float(x[b]), targets[b]
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, 4, int(b[0])))
        adv = pgd(model, xb, tb, cfg.pgd, targeted=True, precision=cfg.precision, generator=gen)
        pred = torch.from_numpy(predict(model, adv, batch_size, cfg.precision).argmax(1)).to(tb.device)
        out["adv"].append(adv.cpu())
        out["hit"].append((pred == tb).cpu())
        out["linf"].append((adv - xb).abs().amax((1, 2, 3)).cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def _statistics(pieces: list[dict[str, torch.Tensor]], labels: torch.Tensor, targets: torch.Tensor,
                n_classes: int, n_total: int) -> dict[str, Any]:
    hit = torch.cat([p["hit"] for p in pieces]) if pieces else torch.zeros(0, dtype=torch.bool)
    linf = torch.cat([p["linf"] for p in pieces]) if pieces else torch.zeros(0)
    return {
        "n_train": n_total,
        "n_used": len(labels),
        "fraction_used": len(labels) / max(n_total, 1),
        "target_hit_rate": float(hit.float().mean()) if len(hit) else float("nan"),
        "linf_max_255": float(linf.max() * 255) if len(linf) else 0.0,
        "linf_mean_255": float(linf.mean() * 255) if len(linf) else 0.0,
        "target_class_counts": torch.bincount(targets, minlength=n_classes).tolist(),
        "original_class_counts": torch.bincount(labels, minlength=n_classes).tolist(),
        "targets_equal_labels": int((targets == labels).sum()),
    }

