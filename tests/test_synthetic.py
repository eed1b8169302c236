"""The planted-feature dataset: format, determinism, and the two cues' declared properties."""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from medrobust.data.prepare import resize
from medrobust.data.synthetic import SHAPES, SyntheticSpec, class_textures, generate, generate_split, texture_image

EPS = 4 / 255


def test_medmnist_format_grey_and_rgb() -> None:
    for channels in (1, 3):
        spec = SyntheticSpec(n_classes=3, n_channels=channels, n_train=50, n_val=20, n_test=30)
        arrays = generate(spec)
        assert set(arrays) == {f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")}
        for split, n in (("train", 50), ("val", 20), ("test", 30)):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            assert images.shape == (n, 64, 64) + ((3,) if channels == 3 else ())
            assert images.dtype == np.uint8 and labels.dtype == np.uint8 and labels.shape == (n, 1)
            assert set(np.unique(labels)) == {0, 1, 2}


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = generate(SyntheticSpec(n_train=64, n_val=16, n_test=16))
    b = generate(SyntheticSpec(n_train=64, n_val=16, n_test=16))
    c = generate(SyntheticSpec(n_train=64, n_val=16, n_test=16, seed=1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["train_images"], c["train_images"])


def test_textures_are_zero_mean_and_distinct_under_shifts() -> None:
    t = class_textures(len(SHAPES), seed=0)
    assert (t.sum((1, 2)) == 0).all()
    for i in range(len(t)):
        for j in range(i + 1, len(t)):
            assert all(not np.array_equal(np.roll(t[i], (a, b), (0, 1)), t[j]) for a in range(4) for b in range(4))


def test_nonrobust_cue_is_below_eps_at_32px() -> None:
    """With and without the cue, everything else equal: the difference after resizing < 4/255."""
    kw = dict(n_train=8, n_val=8, n_test=300, n_channels=3)
    with_cue, _ = generate_split(SyntheticSpec(**kw), "test")
    without, _ = generate_split(SyntheticSpec(**kw, nonrobust_amplitude=0), "test")
    diff = torch.from_numpy(with_cue.astype(np.float32) - without.astype(np.float32)) / 255
    at32 = F.interpolate(diff.permute(0, 3, 1, 2), size=(32, 32), mode="bilinear", antialias=True)
    assert 2 / 255 < at32.abs().max().item() < EPS
    assert at32.abs().mean().item() > 1.5 / 255  # and not washed out by the resize


def _read_texture(images: np.ndarray, n_classes: int) -> np.ndarray:
    """A matched filter for the class textures (any phase) on high-passed 32 px images."""
    t = torch.from_numpy(images.astype(np.float32))[:, None]
    hp = (t - F.avg_pool2d(F.pad(t, (4, 4, 4, 4), mode="reflect"), 9, 1))[:, 0].clamp(-4, 4).numpy()
    templates = np.array([[texture_image(c, 32, (i, j)) for i in range(4) for j in range(4)]
                          for c in class_textures(n_classes, 0)], np.float32)
    return np.einsum("nhw,cphw->ncp", hp, templates).max(2).argmax(1)


@pytest.fixture(scope="module")
def test32() -> tuple[np.ndarray, np.ndarray]:
    images, labels = generate_split(SyntheticSpec(n_train=8, n_val=8, n_test=800), "test")
    return resize(images, 32), labels[:, 0]


def _pil(images: np.ndarray, f) -> np.ndarray:
    return np.stack([np.asarray(f(Image.fromarray(im))) for im in images])


def _jpeg(quality: int):
    def f(im: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        return Image.open(buf)
    return f


def test_nonrobust_cue_is_fully_predictive_and_fragile(test32) -> None:
    """Measured with the matched filter: clean 100%; strong blur, noise, JPEG bring it down
    towards chance (25%), while the shapes (the robust cue) stay visible."""
    images, labels = test32
    acc = lambda x: float(np.mean(_read_texture(x, 4) == labels))  # noqa: E731
    assert acc(images) > 0.99
    assert acc(_pil(images, lambda im: im.filter(ImageFilter.GaussianBlur(2.0)))) < 0.6
    assert acc(_pil(images, _jpeg(15))) < 0.4
    noisy = np.clip(np.rint(images + np.random.default_rng(0).normal(0, 24, images.shape)), 0, 255)
    assert acc(noisy) < 0.6


def test_spec_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="n_classes"):
        SyntheticSpec(n_classes=9)
    with pytest.raises(ValueError, match="multiple of 16"):
        SyntheticSpec(image_size=40)
