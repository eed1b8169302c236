"""MedMNIST-C corruptions: one test per medmnistc defect, determinism, shapes, registry coverage."""

import itertools
import random
import warnings

import numpy as np
import pytest
from medmnistc.corruptions.registry import CORRUPTIONS_DS
from PIL import Image

import medrobust.data.corrupt as mc
from medrobust.data.prepare import resize
from medrobust.data.synthetic import SyntheticSpec, generate_split

FLAGS = ("pathmnist", "pneumoniamnist", "octmnist", "organsmnist", "breastmnist")
SIZE = 64  # the default apply_size (MedMNIST's 64 px source)


def images(n: int, channels: int) -> np.ndarray:
    return generate_split(SyntheticSpec(n_channels=channels, n_test=n, image_size=SIZE), "test")[0]


@pytest.fixture(scope="module")
def grey() -> np.ndarray:
    return images(6, 1)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return images(6, 3)


def pil_rgb(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image).convert("RGB")


def mean_change(out: np.ndarray, clean: np.ndarray) -> float:
    return float(np.abs(out.astype(np.float32) - clean.astype(np.float32)).mean())


# --- one test per defect -------------------------------------------------------------------

LIBRARY_FROMSTRING = pytest.mark.filterwarnings("ignore:The binary mode of fromstring:DeprecationWarning")


@LIBRARY_FROMSTRING
def test_motion_blur_grey_shape_defect_and_adapter(grey: np.ndarray) -> None:
    library = CORRUPTIONS_DS["octmnist"]["motion_blur"]
    img = pil_rgb(grey[0])
    np.random.seed(1)
    assert library.apply(img, 2).shape == (SIZE, 3)  # the hard-coded (224, 224) check
    np.random.seed(1)
    fixed = mc._MotionBlur(library.severity_params).apply(img, 2)
    assert fixed.shape == (SIZE, SIZE, 3) and fixed.dtype == np.uint8
    assert (fixed[..., 0] == fixed[..., 1]).all() and (fixed[..., 0] == fixed[..., 2]).all()
    out = mc.corrupt(grey, "octmnist", "motion_blur", 3, SIZE, 32, seed=0)
    assert out.shape == (len(grey), 32, 32)


@LIBRARY_FROMSTRING
def test_motion_blur_adapter_equals_library_where_library_is_right(grey: np.ndarray, rgb: np.ndarray) -> None:
    cases = [("pathmnist", pil_rgb(rgb[0])),  # RGB at any size
             ("octmnist", pil_rgb(np.asarray(Image.fromarray(grey[0]).resize((224, 224)))))]  # grey at 224
    for key, img in cases:
        library = CORRUPTIONS_DS[key]["motion_blur"]
        np.random.seed(5)
        expected = library.apply(img, 4)
        np.random.seed(5)
        assert np.array_equal(mc._MotionBlur(library.severity_params).apply(img, 4), expected)
        np.random.seed(6)  # augmentation mode (random radius and sigma) too
        expected = library.apply(img, augmentation=True)
        np.random.seed(6)
        assert np.array_equal(mc._MotionBlur(library.severity_params).apply(img, augmentation=True), expected)


def test_motion_blur_adapter_survives_numpy_without_binary_fromstring(rgb: np.ndarray, monkeypatch) -> None:
    library = CORRUPTIONS_DS["pathmnist"]["motion_blur"]
    img = pil_rgb(rgb[0])
    with pytest.warns(DeprecationWarning, match="fromstring"):  # numpy 2.2 warns, >= 2.3 raises
        library.apply(img, 0)

    def removed(*args, **kwargs):
        raise ValueError("binary mode of fromstring is removed (numpy >= 2.3)")

    monkeypatch.setattr(np, "fromstring", removed)
    with pytest.raises(ValueError, match="fromstring"):
        library.apply(img, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mc.corrupt(rgb, "pathmnist", "motion_blur", 1, SIZE, 32, seed=0).shape == (len(rgb), 32, 32, 3)


def test_stain_deposit_fails_small_and_is_refused_by_name(rgb: np.ndarray) -> None:
    library = CORRUPTIONS_DS["pathmnist"]["stain_deposit"]
    small = pil_rgb(np.asarray(Image.fromarray(rgb[0]).resize((32, 32))))
    for level in range(5):
        with pytest.raises(ValueError, match="empty range"):
            library.apply(small, level)
    assert [mc.min_apply_size("pathmnist", "stain_deposit", s) for s in mc.SEVERITIES] == [44, 44, 44, 44, 52]
    for severity in mc.SEVERITIES:  # the bound is tight: one pixel less always fails
        need = mc.min_apply_size("pathmnist", "stain_deposit", severity)
        below = pil_rgb(np.asarray(Image.fromarray(rgb[0]).resize((need - 1, need - 1))))
        with pytest.raises(ValueError, match="empty range"):
            library.apply(below, severity - 1)
        assert mc.corrupt(rgb[:2], "pathmnist", "stain_deposit", severity, need, 32, seed=0).shape == (2, 32, 32, 3)
    with pytest.raises(mc.CorruptionSizeError, match="stain_deposit at severity 1 needs .* 44 px.*apply_size is 32"):
        mc.corrupt(rgb, "pathmnist", "stain_deposit", 1, 32, 32, seed=0)
    with pytest.raises(mc.CorruptionSizeError, match="stain_deposit"):  # before any work
        mc.corrupt_all(rgb, "pathmnist", 32, 32, seed=0)


def test_bubble_severity_5_fails_at_32_px_by_chance_and_is_refused(rgb: np.ndarray) -> None:
    library = CORRUPTIONS_DS["pathmnist"]["bubble"]
    small = pil_rgb(np.asarray(Image.fromarray(rgb[0]).resize((32, 32))))
    failures = 0
    for k in range(10):
        random.seed(k)
        try:
            library.apply(small, 4)
        except ValueError:
            failures += 1
    assert 0 < failures < 10  # a radius of 17 does not fit in 32 px; drawn at random
    assert [mc.min_apply_size("pathmnist", "bubble", s) for s in mc.SEVERITIES] == [14, 20, 24, 30, 34]
    assert mc.corrupt(rgb, "pathmnist", "bubble", 4, 32, 32, seed=0).shape == (len(rgb), 32, 32, 3)
    assert mc.corrupt(rgb, "pathmnist", "bubble", 5, 34, 32, seed=0).shape == (len(rgb), 32, 32, 3)
    with pytest.raises(mc.CorruptionSizeError, match="bubble at severity 5 needs .* 34 px"):
        mc.corrupt(rgb, "pathmnist", "bubble", 5, 32, 32, seed=0)


def test_impulse_noise_needs_an_rng_the_library_never_sets(grey: np.ndarray) -> None:
    library = CORRUPTIONS_DS["pneumoniamnist"]["impulse_noise"]
    with pytest.raises(AttributeError, match="rng"):
        library.apply(pil_rgb(grey[0]), 0)
    out = mc.corrupt(grey, "pneumoniamnist", "impulse_noise", 5, SIZE, SIZE, seed=0)
    # s&p hits each RGB channel with probability 0.02; convert("L") then mixes the channels
    changed = float((out != grey).mean())
    assert 0.02 < changed < 3 * 0.02
    assert not hasattr(library, "rng")  # the shared registry object is left alone


# --- behaviour ------------------------------------------------------------------------------

@pytest.mark.parametrize("key, name", [("pneumoniamnist", "gaussian_noise"),  # numpy global RNG
                                       ("pneumoniamnist", "impulse_noise"),  # numpy Generator
                                       ("pathmnist", "bubble"),  # Python's random
                                       ("pathmnist", "motion_blur")])  # numpy, via the adapter
def test_deterministic_and_leaves_global_rngs_alone(key: str, name: str, grey: np.ndarray, rgb: np.ndarray) -> None:
    x = rgb if key == "pathmnist" else grey
    np_state, py_state = np.random.get_state()[1].copy(), random.getstate()
    a = mc.corrupt(x, key, name, 3, SIZE, 32, seed=7)
    b = mc.corrupt(x, key, name, 3, SIZE, 32, seed=7)
    assert a.tobytes() == b.tobytes()
    assert np.array_equal(np.random.get_state()[1], np_state) and random.getstate() == py_state
    assert not np.array_equal(a, mc.corrupt(x, key, name, 3, SIZE, 32, seed=8))
    assert np.array_equal(mc.corrupt(x[:2], key, name, 3, SIZE, 32, seed=7), a[:2])


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_dtypes_and_channels(channels: int) -> None:
    x = images(3, channels)
    out = mc.corrupt_all(x, "generic", SIZE, 32, seed=0)
    assert list(out) == mc.corruption_names("generic")
    for arr in out.values():
        assert arr.dtype == np.uint8 and arr.shape == (5, 3, 32, 32) + (() if channels == 1 else (3,))


def test_input_errors_name_the_problem(grey: np.ndarray, rgb: np.ndarray) -> None:
    with pytest.raises(ValueError, match="'pathmnist' is RGB"):
        mc.corrupt(grey, "pathmnist", "pixelate", 1, SIZE, 32, seed=0)
    with pytest.raises(ValueError, match="'saturate' is not in the 'pneumoniamnist' registry"):
        mc.corrupt(grey, "pneumoniamnist", "saturate", 1, SIZE, 32, seed=0)
    with pytest.raises(ValueError, match="severity must be 1..5"):
        mc.corrupt(rgb, "pathmnist", "pixelate", 0, SIZE, 32, seed=0)
    with pytest.raises(ValueError, match="no corruption registry 'cifar10'"):
        mc.corruption_names("cifar10")
    with pytest.raises(ValueError, match="uint8"):
        mc.corrupt(grey.astype(np.float32), "pneumoniamnist", "pixelate", 1, SIZE, 32, seed=0)


@pytest.mark.parametrize("key, name, channels", [("pneumoniamnist", "gaussian_noise", 1),
                                                 ("pathmnist", "defocus_blur", 3),
                                                 ("pathmnist", "jpeg_compression", 3)])
def test_change_grows_with_severity(key: str, name: str, channels: int) -> None:
    x = images(6, channels)
    clean = resize(x, 32)
    changes = [mean_change(mc.corrupt(x, key, name, s, SIZE, 32, seed=0), clean) for s in mc.SEVERITIES]
    assert changes == sorted(changes) and changes[0] > 0.5


def test_brightness_moves_mean_intensity(grey: np.ndarray) -> None:
    clean = float(resize(grey, 32).mean())
    up = [float(mc.corrupt(grey, "pneumoniamnist", "brightness_up", s, SIZE, 32, seed=0).mean()) for s in (1, 5)]
    down = float(mc.corrupt(grey, "pneumoniamnist", "brightness_down", 5, SIZE, 32, seed=0).mean())
    assert clean < up[0] < up[1] and down < clean
    assert up[1] == pytest.approx(1.5 * clean, rel=0.05)  # PIL Brightness(1.5), few pixels saturate


def test_photometric_corruption_is_resolution_free_at_source_size(grey: np.ndarray) -> None:
    # apply_size == source size: no resampling before the corruption
    out = mc.corrupt(grey, "pneumoniamnist", "contrast_up", 1, SIZE, SIZE, seed=0)
    expected = np.stack([np.asarray(Image.fromarray(
        CORRUPTIONS_DS["pneumoniamnist"]["contrast_up"].apply(pil_rgb(g), 0)).convert("L")) for g in grey])
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("key", FLAGS)
def test_every_registry_corruption_runs_at_default_size(key: str) -> None:
    x = images(4, 3 if key == "pathmnist" else 1)
    out = mc.corrupt_all(x, key, SIZE, 32, seed=0)
    assert list(out) == list(CORRUPTIONS_DS[key])
    assert all(arr.shape[:2] == (5, 4) and arr.dtype == np.uint8 for arr in out.values())


def test_generic_set_is_intensity_only_and_documented() -> None:
    names = mc.corruption_names("generic")
    assert names == list(CORRUPTIONS_DS[mc.GENERIC_SOURCE]) and len(names) == 13
    assert not {"stain_deposit", "bubble", "saturate", "characters", "black_corner"} & set(names)


# --- resumption -----------------------------------------------------------------------------

def test_interrupted_after_any_block_resumes_to_the_same_bytes(tmp_path, monkeypatch) -> None:
    """A stop after every block (SIGTERM, requeue, again and again): the finished blocks of the
    current corruption are kept, and the result is byte-identical to one uninterrupted call."""
    from medrobust.core.errors import Interrupted

    monkeypatch.setattr(mc, "BLOCK", 4)  # three blocks per corruption and severity
    x = images(10, 1)
    whole = mc.corrupt_all(x, "generic", SIZE, 32, seed=3)
    state = tmp_path / "state"
    for done in (4, 8, 10):
        with pytest.raises(Interrupted, match=f"stopped after {done} of 10 images of pixelate at severity 1;"):
            mc.corrupt_all(x, "generic", SIZE, 32, seed=3, state=state, should_stop=lambda: True)
        assert len(np.load(state / "pixelate-1.npy")) == done
    checks = itertools.count(1)  # then a stop at every 7th block, until done
    while True:
        try:
            resumed = mc.corrupt_all(x, "generic", SIZE, 32, seed=3, state=state,
                                     should_stop=lambda: next(checks) % 7 == 0)
            break
        except Interrupted:
            pass
    assert list(resumed) == list(whole)
    assert all(resumed[k].tobytes() == whole[k].tobytes() for k in whole)

