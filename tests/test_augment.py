"""Tests of cnnarray.data.augment: semantics, determinism and device independence."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from cnnarray.backend import asarray, available_backends, backend_of, to_numpy
from cnnarray.data import augment
from cnnarray.data.augment import (
    Compose,
    GaussianNoise,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomShift,
)

BACKENDS = ["cpu"] + (["cuda"] if "cuda" in available_backends() else [])


def batch(n: int = 6, c: int = 2, h: int = 5, w: int = 7, dtype=np.float32) -> np.ndarray:
    """Distinct, positive values, so every window of every image is unique."""
    return (np.arange(n * c * h * w, dtype=dtype).reshape(n, c, h, w) + 1) / (n * c * h * w)


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


# ---------------------------------------------------------------------------
# RandomHorizontalFlip


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_flip_flips_exactly_the_chosen_images(backend, p):
    x = batch(n=40)
    out = to_numpy(RandomHorizontalFlip(p)(asarray(x, backend=backend), np.random.default_rng(9)))
    chosen = np.random.default_rng(9).random(40) < p
    np.testing.assert_array_equal(out[chosen], x[chosen][..., ::-1])
    np.testing.assert_array_equal(out[~chosen], x[~chosen])
    assert out.dtype == x.dtype and out.shape == x.shape


def test_flip_rejects_bad_probability():
    for p in (-0.1, 1.5, "half"):
        with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\], got "):
            RandomHorizontalFlip(p)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# RandomCrop / RandomShift


@pytest.mark.parametrize(("size", "padding"), [(3, 0), ((4, 6), 0), (5, 2), ((5, 7), (1, 3))])
def test_crop_matches_a_slice_of_the_padded_image(backend, size, padding):
    x = batch()
    out = to_numpy(RandomCrop(size, padding)(asarray(x, backend=backend), np.random.default_rng(1)))
    out_h, out_w = (size, size) if isinstance(size, int) else size
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    assert out.shape == (6, 2, out_h, out_w) and out.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    rng = np.random.default_rng(1)
    top = rng.integers(0, 5 + 2 * ph - out_h + 1, size=6)
    left = rng.integers(0, 7 + 2 * pw - out_w + 1, size=6)
    for i in range(6):
        expected = padded[i, :, top[i] : top[i] + out_h, left[i] : left[i] + out_w]
        np.testing.assert_array_equal(out[i], expected)


def test_crop_offsets_cover_the_whole_range():
    x = batch(n=400, c=1, h=4, w=4)
    out = RandomCrop(2, padding=0)(x, np.random.default_rng(0))
    # the top-left pixel of the crop identifies the offset (values are distinct)
    corners = {(np.argwhere(x[i, 0] == out[i, 0, 0, 0])[0]).tolist().__str__() for i in range(400)}
    assert len(corners) == 9  # offsets 0..2 in both directions


def test_crop_fill_value():
    x = np.zeros((3, 1, 2, 2), dtype=np.float32)
    out = RandomCrop(6, padding=2, fill=-1.0)(x, np.random.default_rng(0))
    assert (out == -1.0).sum() == 3 * (36 - 4)


def test_crop_too_large_is_rejected():
    with pytest.raises(ValueError, match=r"RandomCrop size \(8, 8\) is larger than the padded"):
        RandomCrop(8, padding=1)(batch(), np.random.default_rng(0))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"size": 0}, ValueError),
        ({"size": 3, "padding": -1}, ValueError),
        ({"size": "3"}, TypeError),
    ],
)
def test_crop_bad_arguments(kwargs, error):
    with pytest.raises(error):
        RandomCrop(**kwargs)


def test_shift_moves_each_image_within_range(backend):
    x = batch(n=30, c=1, h=6, w=6)
    out = to_numpy(RandomShift(2)(asarray(x, backend=backend), np.random.default_rng(3)))
    assert out.shape == x.shape
    shifts = set()
    for i in range(30):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(out[i, 0], shifted(x[i, 0], dy, dx))
        ]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) > 5


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Reference: out[r, c] = image[r - dy, c - dx], zero outside."""
    h, w = image.shape
    out = np.zeros_like(image)
    for r in range(h):
        for c in range(w):
            if 0 <= r - dy < h and 0 <= c - dx < w:
                out[r, c] = image[r - dy, c - dx]
    return out


def test_shift_zero_is_identity():
    x = batch()
    np.testing.assert_array_equal(RandomShift(0)(x, np.random.default_rng(0)), x)


# ---------------------------------------------------------------------------
# GaussianNoise


def test_noise_statistics_and_dtype(backend):
    x = np.full((8, 3, 32, 32), 0.5, dtype=np.float32)
    out = to_numpy(GaussianNoise(0.1)(asarray(x, backend=backend), np.random.default_rng(0)))
    assert out.dtype == np.float32 and out.shape == x.shape
    noise = out - 0.5
    assert abs(noise.mean()) < 0.005 and noise.std() == pytest.approx(0.1, rel=0.03)


def test_noise_matches_the_generator_draws():
    x = batch()
    out = GaussianNoise(0.2)(x, np.random.default_rng(5))
    expected = x + 0.2 * np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_noise_zero_std_and_clip():
    x = batch()
    np.testing.assert_array_equal(GaussianNoise(0.0)(x, np.random.default_rng(0)), x)
    out = GaussianNoise(5.0, clip=(0.0, 1.0))(x, np.random.default_rng(0))
    assert out.min() == 0.0 and out.max() == 1.0


def test_noise_bad_arguments():
    with pytest.raises(ValueError, match="std"):
        GaussianNoise(-1.0)
    with pytest.raises(ValueError, match="clip"):
        GaussianNoise(0.1, clip=(1.0, 0.0))
    with pytest.raises(TypeError, match="floating-point"):
        GaussianNoise(0.1)(np.zeros((1, 1, 2, 2), dtype=np.uint8), np.random.default_rng(0))


# ---------------------------------------------------------------------------
# Normalize


def test_normalize_per_channel(backend):
    x = batch(c=3)
    mean, std = [0.1, 0.2, 0.3], [0.5, 1.0, 2.0]
    out = to_numpy(Normalize(mean, std)(asarray(x, backend=backend), None))
    expected = (x - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert out.dtype == np.float32


def test_normalize_scalar_and_float64():
    x = batch(dtype=np.float64)
    out = Normalize(0.5, 0.25)(x)
    np.testing.assert_allclose(out, (x - 0.5) / 0.25)
    assert out.dtype == np.float64


def test_normalize_errors():
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalize(0.0, [1.0, 0.0])
    with pytest.raises(ValueError, match="same number of channels"):
        Normalize([0.1, 0.2], [1.0, 1.0, 1.0])
    with pytest.raises(TypeError, match="mean must be a number"):
        Normalize("a", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"mean has 3 values but the batch has 2 channels"):
        Normalize([0.1, 0.2, 0.3], 1.0)(batch(c=2))


# ---------------------------------------------------------------------------
# Compose, determinism, input checks


def test_compose_applies_in_order():
    x = batch(c=1)
    both = Compose([Normalize(0.5, 2.0), RandomHorizontalFlip(1.0)])
    np.testing.assert_allclose(both(x, np.random.default_rng(0)), ((x - 0.5) / 2.0)[..., ::-1])
    assert len(both) == 2 and "Normalize" in repr(both)


def test_compose_is_deterministic_given_the_seed(backend):
    x = asarray(batch(n=16, c=3, h=8, w=8), backend=backend)
    pipeline = Compose(
        [RandomCrop(8, padding=2), RandomHorizontalFlip(), GaussianNoise(0.05), Normalize(0.5, 0.2)]
    )
    a = pipeline(x, np.random.default_rng(42))
    b = pipeline(x, np.random.default_rng(42))
    c = pipeline(x, np.random.default_rng(43))
    assert backend_of(a).name == backend
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert not np.array_equal(to_numpy(a), to_numpy(c))


@pytest.mark.skipif("cuda" not in available_backends(), reason="needs a CUDA device")
def test_same_seed_gives_same_augmentation_on_cpu_and_gpu():
    x = batch(n=16, c=3, h=8, w=8)
    pipeline = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip(), GaussianNoise(0.05)])
    cpu = pipeline(x, np.random.default_rng(0))
    gpu = to_numpy(pipeline(asarray(x, backend="cuda"), np.random.default_rng(0)))
    np.testing.assert_allclose(gpu, cpu, rtol=1e-6, atol=1e-7)


def test_compose_rejects_non_callables():
    with pytest.raises(TypeError, match=r"transforms\[1\]"):
        Compose([Normalize(0.0, 1.0), "flip"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "transform",
    [RandomCrop(2), RandomShift(1), RandomHorizontalFlip(), GaussianNoise(0.1), Normalize(0, 1)],
)
def test_transforms_require_a_4d_batch(transform):
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\), got shape \(3, 4, 4\)"):
        transform(np.zeros((3, 4, 4), dtype=np.float32), np.random.default_rng(0))


def test_augment_never_imports_an_array_library():
    tree = ast.parse(Path(augment.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & {"numpy", "cupy"}
