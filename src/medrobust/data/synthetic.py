"""A seeded, offline, MedMNIST-format dataset with planted robust and nonrobust features.

Each image is a noisy, unevenly lit background with one bright structure on it.

* Robust cue (human-visible): the structure's *shape* (disk, square, ring, cross, triangle,
  horizontal bar, vertical bar, diamond; one per class), at a random position, size and
  contrast. For a fraction ``shape_noise`` of images the shape is drawn at random, so the shape
  alone caps accuracy near ``1 - shape_noise * (1 - 1/C)`` (about 81% for the defaults).
* Nonrobust cue (invisible, fully predictive): a class-specific zero-mean +-1 texture of 4x4
  cells, each cell 1/16 of the image side, tiled over the whole image at a random whole-cell
  phase and added with ``nonrobust_amplitude`` grey levels (default 3/255) *after* the image is
  quantised to uint8. Resizing averages pixels, so its amplitude at any lower resolution stays
  at most 3/255 < 4/255 = eps: an eps-bounded attack can overwrite it. It is zero-mean over
  every 4x4-cell tile, so blur removes it, and noise or JPEG bury it.

Every class sees every texture only with its own label, and the same shape family, so a model
may use either cue; which it uses is what the study measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("disk", "square", "ring", "cross", "triangle", "hbar", "vbar", "diamond")
TILE_CELLS = 4  # the texture tile is TILE_CELLS x TILE_CELLS cells
CELLS_PER_SIDE = 16  # cell side = image side / CELLS_PER_SIDE
CHUNK = 2048  # images generated at once (bounds memory for large splits)
NOISE = 4 / 255  # pixel noise of the background, at source resolution


@dataclass(frozen=True)
class SyntheticSpec:
    n_classes: int = 4
    n_channels: int = 1
    n_train: int = 3000
    n_val: int = 600
    n_test: int = 600
    shape_noise: float = 0.25
    nonrobust_amplitude: int = 3
    seed: int = 0
    image_size: int = 64

    def __post_init__(self) -> None:
        if not 2 <= self.n_classes <= len(SHAPES):
            raise ValueError(f"n_classes must be 2..{len(SHAPES)}, got {self.n_classes}")
        if self.image_size % CELLS_PER_SIDE:
            raise ValueError(f"image_size must be a multiple of {CELLS_PER_SIDE}, got {self.image_size}")


def class_textures(n_classes: int, seed: int) -> np.ndarray:
    """(C, 4, 4) +-1 patterns, each with as many +1 as -1, no two equal under any cyclic shift."""
    rng = np.random.default_rng([seed, 7919])
    half = TILE_CELLS * TILE_CELLS // 2
    base = np.array([1] * half + [-1] * half, dtype=np.int8)
    chosen: list[np.ndarray] = []
    while len(chosen) < n_classes:
        cand = rng.permutation(base).reshape(TILE_CELLS, TILE_CELLS)
        shifts = [np.roll(cand, (i, j), axis=(0, 1)) for i in range(TILE_CELLS) for j in range(TILE_CELLS)]
        if all(not np.array_equal(s, c) for s in shifts for c in chosen):
            chosen.append(cand)
    return np.stack(chosen)


def texture_image(texture: np.ndarray, image_size: int, phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The +-1 texture tiled over an image_size square, shifted by `phase` whole cells."""
    cell = image_size // CELLS_PER_SIDE
    tile = np.kron(texture, np.ones((cell, cell), dtype=np.int8))
    reps = image_size // tile.shape[0]
    return np.roll(np.tile(tile, (reps, reps)), (phase[0] * cell, phase[1] * cell), axis=(0, 1))


def shape_masks(kinds: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size) boolean masks of shape SHAPES[kinds[i]] centred at (cx, cy) with radius r."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx = (xx[None] - cx[:, None, None]) / r[:, None, None]
    dy = (yy[None] - cy[:, None, None]) / r[:, None, None]
    rad = np.hypot(dx, dy)
    ax, ay = np.abs(dx), np.abs(dy)
    by_kind = {
        "disk": rad <= 1,
        "square": np.maximum(ax, ay) <= 0.85,
        "ring": (rad >= 0.55) & (rad <= 1),
        "cross": ((ax <= 0.3) & (ay <= 1)) | ((ay <= 0.3) & (ax <= 1)),
        "triangle": (dy <= 0.8) & (ax <= (dy + 1) / 2),
        "hbar": (ay <= 0.35) & (ax <= 1),
        "vbar": (ax <= 0.35) & (ay <= 1),
        "diamond": ax + ay <= 1,
    }
    masks = np.zeros(dx.shape, dtype=bool)
    for k, name in enumerate(SHAPES):
        sel = kinds == k
        if sel.any():
            masks[sel] = by_kind[name][sel]
    return masks


def _clean_images(rng: np.random.Generator, labels: np.ndarray, spec: SyntheticSpec) -> np.ndarray:
    """Background + structure, quantised to uint8, shape (N, H, W, C); no nonrobust cue yet."""
    n, s, c = len(labels), spec.image_size, spec.n_channels
    kinds = np.where(rng.random(n) < spec.shape_noise, rng.integers(0, spec.n_classes, n), labels)
    r = rng.uniform(0.14, 0.24, n) * s
    cx, cy = (rng.uniform(0.3, 0.7, (2, n)) * s).astype(np.float32)
    mask = shape_masks(kinds, cx, cy, r.astype(np.float32), s).astype(np.float32)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
    gx, gy = rng.uniform(-0.15, 0.15, (2, n, 1, 1)).astype(np.float32)
    background = rng.uniform(0.2, 0.4, (n, 1, 1)).astype(np.float32) + gx * xx + gy * yy
    contrast = rng.uniform(0.25, 0.45, (n, 1, 1)).astype(np.float32)
    grey = background + contrast * mask
    tint = rng.uniform(0.75, 1.0, (n, 1, 1, c)).astype(np.float32) if c == 3 else np.ones((n, 1, 1, 1), np.float32)
    img = grey[..., None] * tint + rng.normal(0, NOISE, (n, s, s, c)).astype(np.float32)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def _add_texture(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray,
                 textures: np.ndarray, amplitude: int) -> np.ndarray:
    phases = rng.integers(0, TILE_CELLS, (len(labels), 2))
    size = images.shape[1]
    every = np.array([[[texture_image(t, size, (i, j)) for j in range(TILE_CELLS)] for i in range(TILE_CELLS)]
                      for t in textures])  # (C, phase_y, phase_x, H, W)
    cue = every[labels, phases[:, 0], phases[:, 1]]
    out = images.astype(np.int16) + amplitude * cue[..., None].astype(np.int16)
    return np.clip(out, 0, 255).astype(np.uint8)


def generate_split(spec: SyntheticSpec, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) or (N, H, W, 3) uint8 and labels (N, 1) uint8 for one split."""
    index = ("train", "val", "test").index(split)
    n = {"train": spec.n_train, "val": spec.n_val, "test": spec.n_test}[split]
    rng = np.random.default_rng([spec.seed, index])
    labels = np.arange(n) % spec.n_classes  # balanced classes, then shuffled
    labels = rng.permutation(labels).astype(np.int64)
    textures = class_textures(spec.n_classes, spec.seed)
    chunks = []
    for start in range(0, n, CHUNK):
        y = labels[start:start + CHUNK]
        chunk_rng = np.random.default_rng([spec.seed, index, start])
        clean = _clean_images(chunk_rng, y, spec)
        chunks.append(_add_texture(chunk_rng, clean, y, textures, spec.nonrobust_amplitude))
    images = np.concatenate(chunks)
    if spec.n_channels == 1:
        images = images[..., 0]
    return images, labels.astype(np.uint8)[:, None]


def generate(spec: SyntheticSpec) -> dict[str, np.ndarray]:
    """All three splits under MedMNIST's npz keys."""
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = generate_split(spec, split)
    return arrays
