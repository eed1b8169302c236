"""MedMNIST-C corrupted test sets through medmnistc 0.1.0's registry, with its defects adapted.

Pipeline per corruption and severity: resize the images to ``apply_size`` (medrobust.data.prepare.resize,
antialiased bilinear, the same resize that made prepared.npz, so one resize exists), apply
``CORRUPTIONS_DS[key][name].apply(pil_rgb, severity - 1)`` to each image as a PIL RGB image
(what the library's own DatasetManager does), convert back with PIL ``convert("L")`` for grey
data (again as DatasetManager does), and resize to ``out_size``.

Resolution (``apply_size``, a config choice; recommended: 64, MedMNIST's source size, fed
the raw 64 px test split, then down to 32). The registry's parameters are in pixels, tuned on
224 px images. Measured on 100 synthetic 64 px images (mean |corrupted - clean| at 32 px, grey
levels, severity 1 -> 5; the resampling round trip alone costs 0.00 / 0.00 / 0.11):

* 224: the spatial corruptions all but vanish after downsampling 7x, and severity loses its
  order: pneumoniamnist gaussian_blur 0.18 -> 0.58, speckle_noise 0.53 -> 1.00, pixelate 0.25,
  0.34, 0.43, 0.53, 0.32; pathmnist defocus_blur 0.65 -> 1.38, stain_deposit 0.67 -> 2.7. Only
  photometric ones (brightness, contrast, gamma, saturate; identical at every size) remain, and
  it is 5-14x slower (per 100 images x all corruptions x 5 severities, one process: pathmnist
  98 s vs 7.1 s at 64, motion_blur alone 64 s; pneumoniamnist 51 s vs 10.5 s).
* 32: stain_deposit cannot run and bubble severity 5 fails at random; bubbles of radius up to
  15 px whiten the image (60 -> 71); noise and blur act 7x larger relative to the anatomy than
  tuned (pneumoniamnist gaussian_noise 5.5 -> 10.9, against 1.8 -> 3.5 at 64).
* 64: every corruption runs, each one visibly changes the 32 px input and grows with severity
  (gaussian_noise 1.8 -> 3.5, jpeg 1.0 -> 4.1, defocus_blur 2.4 -> 5.4, motion_blur 5.1 -> 8.6,
  stain_deposit 8.3 -> 18.6), there is no upsampling, and with no corruption the pipeline
  reproduces prepared.npz exactly. Cost: spatial effects are ~3.5x larger relative to the
  anatomy than in MedMNIST-C at 224 px; marks (stains, bubbles) are the most affected.

Defect adapters (medmnistc is used as released, never forked):

* motion_blur, grey images: the library decodes ImageMagick's PNG with IMREAD_UNCHANGED, which
  gives an (H, W) array for grey data, and only treats it as grey when it is (224, 224); at any
  other size it returns an (H, 3) array. ``_MotionBlur`` re-runs the same four library steps
  (PNG -> ``MotionImage.motion_blur`` with the same ``np.random.uniform(-45, 45)`` angle ->
  decode) but decodes with IMREAD_COLOR, which always yields (H, W, 3). RGB output is
  byte-identical to the library's (tested).
* motion_blur, numpy >= 2.3: the library reads the blob with ``np.fromstring`` (binary mode
  removed in numpy 2.3; 2.2.6, our pin, only warns). ``_MotionBlur`` uses ``np.frombuffer``.
* stain_deposit and bubble, small images: they place marks with ``random.randint(lo, hi)`` and
  fail with "empty range" when the image is too small for the mark (ink stamps of 24 px for
  severities 1-4 and 32 px for 5, plus a 10 px margin each side; bubbles of radius up to
  ``max_radius``, which must fit across the image). ``min_apply_size`` derives the smallest
  size from the registry's own parameters, and ``corrupt`` raises ``CorruptionSizeError`` naming
  the corruption, severity and sizes *before* any work, rather than silently applying that
  corruption at a different size than the config says. At 32 px stain_deposit fails at every
  severity and bubble at severity 5 (only when a radius of 17 is drawn, so by chance).
* impulse_noise: ``ImpulseNoise.apply`` reads ``self.rng``, which only DatasetManager sets, so
  a direct call raises AttributeError. We give our copy of the corruption a seeded generator.

Determinism. The library draws from numpy's global RNG, Python's ``random`` and (impulse noise)
a numpy Generator. Each image is corrupted under its own seed, derived from (seed, corruption
name, severity, image index), with both global RNG states saved and restored around the call,
so a result depends on nothing else (and ``corrupt(x[:k]) == corrupt(x)[:k]``). The library
quantises by truncation (``astype(uint8)``), so noise corruptions lower the mean by about half
a grey level, and for grey data it draws noise per RGB channel before ``convert("L")`` mixes
them (weaker Gaussian noise, salt-and-pepper at partial levels); both kept, as in the published
MedMNIST-C.

Resumption (``corrupt_all`` with a state folder; ``medrobust corrupt --state``). The work runs
in blocks of ``BLOCK`` images per corruption and severity, and the stop flag (SIGTERM) is read
after every block. Each finished (corruption, severity) array is saved in the state folder; on
a stop, so are the finished blocks of the current one, and a requeued job continues with the
next image. As the seeds are per image, the result is byte-identical to an uninterrupted run.
The folder carries the job's fingerprint (code, settings, source file) and is cleared, with
the reason logged, when it differs.
"""

from __future__ import annotations

import copy
import logging
import random
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
from medmnistc.corruptions.base import BaseCorruption
from medmnistc.corruptions.filter import MotionBlur, MotionImage
from medmnistc.corruptions.microscopy import Bubble, StainDeposit
from medmnistc.corruptions.noise import ImpulseNoise
from medmnistc.corruptions.registry import CORRUPTIONS_DS, DATASET_RGB
from PIL import Image

from medrobust.core.errors import Interrupted
from medrobust.core.io import atomic_path
from medrobust.data.prepare import resize
from medrobust.jobs.progress import ProgressLog

log = logging.getLogger(__name__)

SEVERITIES = (1, 2, 3, 4, 5)
# Synthetic and bring-your-own data: chestmnist's registry, 13 corruptions that act on
# intensities only (digital, noise, blur, brightness/contrast/gamma), so they mean the same for
# grey and RGB images and for any anatomy; its noise levels are also dermamnist's (an RGB set)
# and span ImageNet-C-like ranges. Modality-specific ones (stain, bubble, saturate, characters,
# black corner) are left out.
GENERIC = "generic"
GENERIC_SOURCE = "chestmnist"
_STAIN_MARGIN = 10  # StainDeposit keeps marks 10 px from each border
# Images between two reads of the stop flag: the 30 s from SIGTERM to SIGKILL must cover one
# block even for the slowest corruption (motion blur, ~0.13 s an image at 224 px: 8 s).
BLOCK = 64


class CorruptionSizeError(ValueError):
    """A corruption cannot be applied at the requested size; the message names both."""


def _registry(registry_key: str) -> dict[str, BaseCorruption]:
    key = GENERIC_SOURCE if registry_key == GENERIC else registry_key
    if key not in CORRUPTIONS_DS:
        known = ", ".join(sorted([*CORRUPTIONS_DS, GENERIC]))
        raise ValueError(f"no corruption registry '{registry_key}' (known: {known})")
    return CORRUPTIONS_DS[key]


def corruption_names(registry_key: str) -> list[str]:
    """The corruptions of a MedMNIST flag's registry, or of the generic set (key "generic")."""
    return list(_registry(registry_key))


def min_apply_size(registry_key: str, name: str, severity: int) -> int:
    """Smallest image side at which the library can apply this corruption (1 if unlimited)."""
    corruption = _registry(registry_key)[name]
    level = severity - 1
    if isinstance(corruption, StainDeposit):
        ink = corruption.inks[str(max(3, level))][0]  # the library's own ink lookup
        return max(ink.shape) + 2 * _STAIN_MARGIN
    if isinstance(corruption, Bubble):
        max_radius = corruption.severity_params[level][0]
        return 2 * max_radius
    return 1


class _MotionBlur(MotionBlur):
    """The library's MotionBlur.apply with IMREAD_COLOR and np.frombuffer (see module doc)."""

    def apply(self, img: Image.Image, severity: int = -1, augmentation: bool = False) -> np.ndarray:
        if augmentation:  # as the library: radius and sigma drawn between the extreme severities
            (r_lo, s_lo), (r_hi, s_hi) = self.severity_params[0], self.severity_params[-1]
            radius, sigma = np.random.uniform(r_lo, r_hi), np.random.uniform(s_lo, s_hi)
        else:
            radius, sigma = self.severity_params[severity]
        png = BytesIO()
        img.save(png, format="PNG")
        with MotionImage(blob=png.getvalue()) as wand:
            wand.motion_blur(radius=radius, sigma=sigma, angle=np.random.uniform(-45, 45))
            blob = wand.make_blob()
        bgr = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
        return np.ascontiguousarray(bgr[..., ::-1])


def _adapted(registry_key: str, name: str) -> BaseCorruption:
    """A private copy of the registry's corruption, with the adapters applied."""
    corruption = _registry(registry_key)[name]
    if isinstance(corruption, MotionBlur):
        return _MotionBlur(corruption.severity_params)
    return copy.copy(corruption)


@contextmanager
def _preserved_global_rngs() -> Iterator[None]:
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def image_seeds(seed: int, name: str, severity: int, n: int) -> np.ndarray:
    """One 32-bit seed per image for (seed, corruption, severity)."""
    return np.random.SeedSequence([seed, zlib.crc32(name.encode()), severity]).generate_state(n)


def _check(images: np.ndarray, registry_key: str, name: str, severity: int, apply_size: int) -> None:
    grey = images.ndim == 3
    if images.dtype != np.uint8 or not (grey or (images.ndim == 4 and images.shape[-1] == 3)):
        raise ValueError(f"images must be uint8 (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}")
    if DATASET_RGB.get(registry_key, not grey) == grey:
        raise ValueError(f"'{registry_key}' is {'RGB' if grey else 'grey'}, got images of shape {images.shape}")
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be square, got {images.shape}")
    if name not in _registry(registry_key):
        raise ValueError(f"'{name}' is not in the '{registry_key}' registry ({', '.join(corruption_names(registry_key))})")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1..5, got {severity}")
    need = min_apply_size(registry_key, name, severity)
    if apply_size < need:
        raise CorruptionSizeError(f"{name} at severity {severity} needs images of at least {need} px "
                                  f"(medmnistc places fixed-size marks); apply_size is {apply_size}")


def corrupt(images: np.ndarray, registry_key: str, name: str, severity: int, apply_size: int, out_size: int,
            seed: int, meter: ProgressLog | None = None, first: int = 0) -> np.ndarray:
    """Corrupt uint8 (N, S, S[, 3]) images; return uint8 (N, out_size, out_size[, 3]).

    Severity is 1..5 (the library's 0..4). Deterministic in (seed, name, severity, index), the
    index of `images[0]` being `first` (a block of a larger set gets that set's seeds).
    `meter` (if given) advances by one per image (progress lines in the job's log).
    """
    _check(images, registry_key, name, severity, apply_size)
    grey = images.ndim == 3
    corruption = _adapted(registry_key, name)
    big = resize(images, apply_size)
    out = np.empty_like(big)
    with _preserved_global_rngs():
        for i, s in enumerate(image_seeds(seed, name, severity, first + len(big))[first:]):
            np.random.seed(s)
            random.seed(int(s))
            if isinstance(corruption, ImpulseNoise):
                corruption.rng = np.random.default_rng(s)
            result = np.asarray(corruption.apply(Image.fromarray(big[i]).convert("RGB"), severity - 1))
            if result.shape != (apply_size, apply_size, 3) or result.dtype != np.uint8:
                raise RuntimeError(f"medmnistc {name} returned {result.dtype} {result.shape} "
                                   f"for a {apply_size} px image")
            out[i] = np.asarray(Image.fromarray(result).convert("L")) if grey else result
            if meter:
                meter.advance()
    return resize(out, out_size)


def corrupt_all(images: np.ndarray, registry_key: str, apply_size: int, out_size: int, seed: int,
                state: Path | None = None, should_stop: Callable[[], bool] = lambda: False) -> dict[str, np.ndarray]:
    """Every corruption of the registry at severities 1..5: name -> uint8 (5, N, out, out[, 3]).

    All sizes are checked before any work starts. Work proceeds in blocks of BLOCK images;
    `should_stop()` is read after every block. With `state` (a folder made this job's by
    medrobust.jobs.state.resumable), every finished (corruption, severity) array is saved there and reused, and
    on a stop the finished blocks of the current one are saved before Interrupted is raised.
    """
    names = corruption_names(registry_key)
    for name in names:
        for severity in SEVERITIES:
            _check(images, registry_key, name, severity, apply_size)
    empty = np.zeros((0, out_size, out_size, *images.shape[3:]), np.uint8)
    kept = {(name, severity): _load_part(state, name, severity, empty) for name in names for severity in SEVERITIES}
    n_kept, n_all = sum(len(v) for v in kept.values()), len(kept) * len(images)
    if n_kept:
        log.info("resuming: %d of %d corrupted images were made before (kept in %s)", n_kept, n_all, state)
    meter = ProgressLog(log, "corruptions", n_all - n_kept)  # this run's work: a true rate and ETA
    done: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for (name, severity), made in kept.items():
        done[name].append(_finish_part(images, registry_key, name, severity, apply_size, out_size, seed, made,
                                       state, meter, should_stop))
    return {name: np.stack(arrays) for name, arrays in done.items()}


def _part_path(state: Path, name: str, severity: int) -> Path:
    return state / f"{name}-{severity}.npy"


def _load_part(state: Path | None, name: str, severity: int, empty: np.ndarray) -> np.ndarray:
    """The images of (name, severity) corrupted before (the first ones, or all), as saved."""
    if state is None or not _part_path(state, name, severity).exists():
        return empty
    return np.load(_part_path(state, name, severity))


def _save_part(state: Path | None, name: str, severity: int, images: np.ndarray) -> None:
    if state is not None:
        with atomic_path(_part_path(state, name, severity)) as tmp, open(tmp, "wb") as f:
            np.save(f, images)


def _finish_part(images: np.ndarray, registry_key: str, name: str, severity: int, apply_size: int, out_size: int,
                 seed: int, made: np.ndarray, state: Path | None, meter: ProgressLog,
                 should_stop: Callable[[], bool]) -> np.ndarray:
    """(name, severity) of all `images`, given the first ones `made` before: the rest block by
    block (seeds are per image, so blocks change nothing), saved when done or on a stop."""
    blocks = [made]
    for start in range(len(made), len(images), BLOCK):
        blocks.append(corrupt(images[start:start + BLOCK], registry_key, name, severity, apply_size, out_size, seed,
                              meter, first=start))
        if should_stop():
            _save_part(state, name, severity, np.concatenate(blocks))
            raise Interrupted(f"stopped after {start + len(blocks[-1])} of {len(images)} images of {name} "
                              f"at severity {severity}; the finished ones are kept in {state}")
    out = np.concatenate(blocks)
    if len(out) > len(made):
        _save_part(state, name, severity, out)
    return out
