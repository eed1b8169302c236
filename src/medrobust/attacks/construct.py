"""The nonrobust-feature training set (Ilyas et al.; paper Section 3.1).

Every training image the base model classifies correctly is moved by targeted L-inf PGD towards
a target class t and relabelled t. The targets (drawn per training image from the seed alone,
before the model is consulted) decide what the robust features say about the new label:

- `uniform` (default, Ilyas et al.'s D_rand): t uniform over all C classes, so P(t = y) = 1/C
  and the original label, hence every robust feature, is independent of the new label: what
  a model learns from the set can only come from the nonrobust perturbations (the paper's
  argument: "the robust features are now uncorrelated with the new label").
- `other`: t uniform over the C - 1 other classes. t != y always, so the robust features are
  anti-correlated with the new label (for C = 2 every label is flipped and the robust features
  predict the *wrong* label perfectly); a model then scores below chance unless the nonrobust
  features win.
- `deterministic` (D_det): t = y + 1 mod C: the robust features predict the new label through a
  fixed permutation (for C = 2 the same as `other`).

The images are kept in float32: quantising a 4/255 perturbation made of 0.1/255 steps to uint8
would move it by up to 0.5/255 per pixel.

Work proceeds in chunks of consecutive training images saved beside the output
(`<out>.parts/`), batch by batch within a chunk: the stop flag (SIGTERM) is read after every
batch, and on a stop the chunk's finished batches are saved before the job exits, so a requeued
job loses no finished batch and continues with the next one. The batches of a chunk are the
same in every run (a resumed chunk is bit-identical to an uninterrupted one: each batch's
generator is seeded by its first index). Each chunk records the source indices, labels and
targets it was built from, so a resumed job reuses a chunk only where the same images, selected
by the same predictions, got the same targets (a borderline prediction that flips after a
requeue rebuilds that chunk alone), and never pairs an image with another sample's label. The
parts carry the job's fingerprint (code, settings, data) and are discarded, with the reason
logged, when it differs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from medrobust.core.errors import ConfigError, Interrupted
from medrobust.core.io import atomic_path
from medrobust.core.network import predict
from medrobust.core.numerics import as_float, derive_seed
from medrobust.core.pgd import PGDConfig, cross_entropy, default_step_size, pgd
from medrobust.jobs.progress import ProgressLog

log = logging.getLogger(__name__)
TARGET_MODES = ("uniform", "other", "deterministic")
RESULTS = ("adv", "hit", "linf")  # per attacked image, kept batch by batch


@dataclass(frozen=True)
class ConstructionConfig:
    """Every construction setting (medrobust.core.hparams.construction_settings: the schema's
    values; no defaults here)."""

    eps: float  # in [0, 1] units
    steps: int
    step_size_factor: float
    targets: str
    random_start: bool
    seed: int
    precision: str

    def __post_init__(self) -> None:
        if self.targets not in TARGET_MODES:
            raise ConfigError(f"construction setting targets: {self.targets!r} is not one of {', '.join(TARGET_MODES)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConstructionConfig:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown construction setting(s): {', '.join(unknown)} (known: {', '.join(known)})")
        missing = [k for k in known if k not in d]
        if missing:
            raise ConfigError(f"missing construction setting(s): {', '.join(missing)}")
        return cls(**d)

    @property
    def pgd(self) -> PGDConfig:
        return PGDConfig(self.eps, self.steps, default_step_size(self.eps, self.steps, self.step_size_factor),
                         start="uniform" if self.random_start else "none")


def draw_targets(labels: torch.Tensor, n_classes: int, mode: str, seed: int) -> torch.Tensor:
    """A target class for every sample, by `mode` (module docstring), from the seed alone."""
    if mode == "deterministic":
        return (labels + 1) % n_classes
    gen = torch.Generator().manual_seed(derive_seed(seed, 3))
    if mode == "uniform":
        return torch.randint(0, n_classes, (len(labels),), generator=gen).to(labels.device)
    offset = torch.randint(1, n_classes, (len(labels),), generator=gen).to(labels.device)  # "other"
    return (labels + offset) % n_classes


def construct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int, cfg: ConstructionConfig,
              parts: Path, batch_size: int = 512, chunk: int = 8192,
              should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """The set: adversarial images (M, C, H, W) float32 `adv`, their targets `targets` (M,), the
    training indices they come from `source_index` and original `labels`, and `stats`.

    The finished batches of every chunk are kept in the state folder `parts` (made this job's,
    by the code, the model, the data, `cfg` and `batch_size`, in medrobust.jobs.state.resumable)
    and reused when they were built from the same images. Raises Interrupted, after saving, when
    `should_stop()` turns true (it is read before every attack step)."""
    t0 = time.perf_counter()
    correct = torch.from_numpy(predict(model, x, batch_size, cfg.precision).argmax(1)).to(y.device) == y
    targets = draw_targets(y, n_classes, cfg.targets, cfg.seed)
    chunks = [start + torch.nonzero(correct[start:start + chunk]).squeeze(1) for start in range(0, len(x), chunk)]
    pieces = [_load_chunk(parts / f"{c:05d}.pt", idx, targets[idx], y[idx], x.shape[1:]) for c, idx in enumerate(chunks)]
    kept = sum(len(p["adv"]) for p in pieces)
    if kept:
        log.info("resuming: %d of %d images were attacked before (kept in %s)", kept, int(correct.sum()), parts)
    meter = ProgressLog(log, "construction", int(correct.sum()) - kept)  # this run's work: a true rate and ETA
    attack_seconds, attacked = 0.0, 0
    for c, idx in enumerate(chunks):
        before = len(pieces[c]["adv"])
        if before == len(idx):
            continue
        t1 = time.perf_counter()
        pieces[c] = _attack_chunk(model, x, idx, targets, pieces[c], cfg, batch_size, meter,
                                  parts / f"{c:05d}.pt", should_stop)
        attack_seconds += time.perf_counter() - t1
        attacked += len(idx) - before
        log.info("chunk %d/%d: %d images attacked (%.0f img/s)", c + 1, len(chunks), len(idx) - before,
                 attacked / max(attack_seconds, 1e-9))
    out = {k: torch.cat([p[k] for p in pieces]) for k in ("adv", "target", "source_index", "label", "hit", "linf")}
    stats = _statistics(out, n_classes, len(x))
    stats.update(seconds=time.perf_counter() - t0, attack_images_per_second=attacked / attack_seconds if attacked else None,
                 config={**asdict(cfg), "step_size": cfg.pgd.step_size})
    return {"adv": out["adv"].numpy(), "targets": out["target"].numpy(), "source_index": out["source_index"].numpy(),
            "labels": out["label"].numpy(), "stats": stats}


def _load_chunk(path: Path, idx: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor,
                image_shape: torch.Size) -> dict[str, torch.Tensor]:
    """The chunk of these images, labels and targets: its finished batches as saved if it was
    built from exactly them, else none."""
    fresh = {"source_index": idx.cpu(), "target": targets.cpu(), "label": labels.cpu(),
             "adv": torch.zeros((0, *image_shape)), "hit": torch.zeros(0, dtype=torch.bool), "linf": torch.zeros(0)}
    if not path.exists():
        return fresh
    piece = torch.load(path, weights_only=True)
    for key, want in (("source_index", idx), ("label", labels), ("target", targets)):
        if not torch.equal(piece[key], want.cpu()):
            diff = sorted(set(piece["source_index"].tolist()) ^ set(idx.cpu().tolist()))[:10]
            log.warning("rebuilding %s: its %s differ from this run's (the base model's correct set changed "
                        "at training images %s)", path, key, diff)
            return fresh
    return piece


def _attack_chunk(model: torch.nn.Module, x: torch.Tensor, idx: torch.Tensor, targets: torch.Tensor,
                  piece: dict[str, torch.Tensor], cfg: ConstructionConfig, batch_size: int, meter: ProgressLog,
                  path: Path, should_stop: Callable[[], bool]) -> dict[str, torch.Tensor]:
    """`piece` with its remaining batches attacked, saved to `path`. The batches are those of an
    uninterrupted run (each one's generator is seeded by its first index), so a resumed chunk
    is bit-identical. `should_stop()` is read before every attack step: when true, the
    unfinished batch is dropped, the finished ones saved, and Interrupted raised."""
    done = {k: [piece[k]] for k in RESULTS}
    for i in range(len(piece["adv"]), len(idx), batch_size):
        b = idx[i:i + batch_size]
        xb, tb = as_float(x[b]), targets[b]
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, 4, int(b[0])))
        try:
            adv = pgd(model, xb, cross_entropy(tb, targeted=True), cfg.pgd, precision=cfg.precision, generator=gen,
                      should_stop=should_stop)
        except Interrupted as e:
            _save_chunk(path, piece, done)
            raise Interrupted(f"stopped after {i} of {len(idx)} images of chunk {path.stem} ({e}); "
                              f"the finished batches are kept in {path.parent}") from None
        pred = torch.from_numpy(predict(model, adv, batch_size, cfg.precision).argmax(1)).to(tb.device)
        done["adv"].append(adv.cpu())
        done["hit"].append((pred == tb).cpu())
        done["linf"].append((adv - xb).abs().amax((1, 2, 3)).cpu())
        meter.advance(len(b))
    return _save_chunk(path, piece, done)


def _save_chunk(path: Path, piece: dict[str, torch.Tensor], done: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    whole = {**piece, **{k: torch.cat(v) for k, v in done.items()}}
    with atomic_path(path) as tmp:
        torch.save(whole, tmp)
    return whole


def _statistics(out: dict[str, torch.Tensor], n_classes: int, n_total: int) -> dict[str, Any]:
    labels, targets, hit, linf = out["label"], out["target"], out["hit"], out["linf"]
    n = len(labels)
    agree = int((targets == labels).sum())
    return {
        "n_train": n_total,
        "n_used": n,
        "fraction_used": n / max(n_total, 1),
        "target_hit_rate": float(hit.float().mean()) if n else float("nan"),
        "targets_equal_labels": agree,
        "targets_equal_labels_fraction": agree / n if n else float("nan"),
        "chance": 1 / n_classes,
        "linf_max_255": float(linf.max() * 255) if n else 0.0,
        "linf_mean_255": float(linf.mean() * 255) if n else 0.0,
        "target_class_counts": torch.bincount(targets, minlength=n_classes).tolist(),
        "original_class_counts": torch.bincount(labels, minlength=n_classes).tolist(),
    }
