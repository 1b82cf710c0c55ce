"""Seeded synthetic datasets that need no download: shapes to segment and signals to classify.

``make_shapes`` draws circles, rectangles and triangles on noise; the target
is a mask that gives each pixel the class of the shape covering it (0 for the
background). ``make_signals`` draws noisy waveforms (sine, square, sawtooth,
chirp) of random frequency, phase and amplitude; the target is the waveform.
Both depend only on their arguments, so tests and the CLI get the same data
from the same seed. ``load_shapes`` and ``load_signals`` wrap them as a
:class:`~cnnarray.data.Split`.
"""

from __future__ import annotations

import numpy as np

from .. import _args
from .datasets import Split

__all__ = [
    "SHAPE_CLASSES",
    "SIGNAL_CLASSES",
    "SYNTHETIC_SIZES",
    "load_shapes",
    "load_signals",
    "load_synthetic",
    "make_shapes",
    "make_signals",
]

#: Pixel classes of :func:`make_shapes`: index = label.
SHAPE_CLASSES = ["background", "circle", "rectangle", "triangle"]

#: Classes of :func:`make_signals`: index = label.
SIGNAL_CLASSES = ["sine", "square", "sawtooth", "chirp"]

#: Training samples of the data set specs "shapes" and "signals" without N (test: a quarter).
SYNTHETIC_SIZES = {"shapes": 512, "signals": 1024}


def _shape_mask(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean (size, size) mask of one random shape of class ``kind`` (1, 2 or 3)."""
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    r = rng.uniform(0.12, 0.25) * size  # the shape's half-extent
    cy, cx = rng.uniform(r, size - r, 2)
    if kind == 1:
        return (rows - cy) ** 2 + (cols - cx) ** 2 <= r**2
    if kind == 2:
        hy, hx = r * rng.uniform(0.6, 1.0, 2)
        return (np.abs(rows - cy) <= hy) & (np.abs(cols - cx) <= hx)
    # an upright isosceles triangle: apex at the top, base at the bottom
    top, bottom = cy - r, cy + r
    half = r * (rows - top) / (bottom - top)
    return (rows >= top) & (rows <= bottom) & (np.abs(cols - cx) <= half)


def make_shapes(
    n: int, size: int = 32, *, max_shapes: int = 2, noise: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` grey images of shapes on noise and their per-pixel class masks.

    Each image holds 1 to ``max_shapes`` shapes (class 1 circle, 2 rectangle,
    3 triangle, see :data:`SHAPE_CLASSES`), each of radius 12-25 % of the
    size and brightness 0.5-1 over a background of 0-0.3; a later shape covers
    an earlier one. Gaussian noise of std ``noise`` is added, then the pixels
    are clipped to [0, 1].

    Parameters
    ----------
    n : int
        Number of images, at least 1.
    size : int, default 32
        Height and width, at least 8.
    max_shapes : int, default 2
    noise : float, default 0.1
    seed : int, default 0

    Returns
    -------
    x : numpy.ndarray, shape (n, 1, size, size), float32
    masks : numpy.ndarray, shape (n, size, size), int64
        Values in ``0 .. 3``.

    Examples
    --------
    >>> x, masks = make_shapes(2, 16, seed=0)
    >>> x.shape, masks.shape, int(masks.max()) <= 3
    ((2, 1, 16, 16), (2, 16, 16), True)
    """
    n = _args.check_int(n, "n", minimum=1)
    size = _args.check_int(size, "size", minimum=8)
    max_shapes = _args.check_int(max_shapes, "max_shapes", minimum=1)
    noise = _args.check_real(noise, "noise", low=0, finite=True)
    rng = np.random.default_rng(seed)
    x = np.empty((n, 1, size, size), np.float32)
    masks = np.zeros((n, size, size), np.int64)
    for i in range(n):
        image = np.full((size, size), rng.uniform(0.0, 0.3))
        for _ in range(rng.integers(1, max_shapes + 1)):
            kind = int(rng.integers(1, len(SHAPE_CLASSES)))
            inside = _shape_mask(kind, size, rng)
            image[inside] = rng.uniform(0.5, 1.0)
            masks[i][inside] = kind
        image += rng.normal(0.0, noise, image.shape)
        x[i, 0] = np.clip(image, 0.0, 1.0)
    return x, masks


def make_signals(
    n: int, length: int = 128, *, noise: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` noisy waveforms and their classes (sine, square, sawtooth, chirp).

    A sine, square or sawtooth wave has 2 to 6 periods over the length, a
    random phase and an amplitude of 0.5 to 1; a chirp's frequency sweeps
    linearly from 1-2 to 6-10 periods per length. Gaussian noise of std
    ``noise`` is added. The classes come in turn (``i % 4``) and the order is
    then shuffled, so every class has ``n // 4`` or one more samples.

    Parameters
    ----------
    n : int
        Number of signals, at least 1.
    length : int, default 128
        Samples per signal, at least 16.
    noise : float, default 0.2
    seed : int, default 0

    Returns
    -------
    x : numpy.ndarray, shape (n, 1, length), float32
    y : numpy.ndarray, shape (n,), int64
        Labels in ``0 .. 3``, see :data:`SIGNAL_CLASSES`.

    Examples
    --------
    >>> x, y = make_signals(8, 64, seed=0)
    >>> x.shape, sorted(np.bincount(y).tolist())
    ((8, 1, 64), [2, 2, 2, 2])
    """
    n = _args.check_int(n, "n", minimum=1)
    length = _args.check_int(length, "length", minimum=16)
    noise = _args.check_real(noise, "noise", low=0, finite=True)
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % len(SIGNAL_CLASSES)).astype(np.int64)
    t = np.arange(length) / length  # time in signal lengths
    x = np.empty((n, 1, length), np.float32)
    for i, label in enumerate(y):
        amplitude, phase = rng.uniform(0.5, 1.0), rng.uniform(0.0, 1.0)
        if label == 3:
            f0, f1 = rng.uniform(1.0, 2.0), rng.uniform(6.0, 10.0)
            cycles = f0 * t + (f1 - f0) * t**2 / 2 + phase
        else:
            cycles = rng.uniform(2.0, 6.0) * t + phase
        if label == 1:
            wave = np.where(cycles % 1.0 < 0.5, 1.0, -1.0)
        elif label == 2:
            wave = 2.0 * (cycles % 1.0) - 1.0
        else:
            wave = np.sin(2 * np.pi * cycles)
        x[i, 0] = amplitude * wave + rng.normal(0.0, noise, length)
    return x, y


def load_shapes(n_train: int = 512, n_test: int = 128, size: int = 32, *, seed: int = 0) -> Split:
    """Return :func:`make_shapes` as a Split named "shapes"; ``y_*`` are masks (N, size, size).

    The test set is drawn from the generator seeded ``seed + 1``, apart from the
    training set's (``seed``).
    """
    x_train, y_train = make_shapes(n_train, size, seed=seed)
    x_test, y_test = make_shapes(n_test, size, seed=seed + 1)
    return Split(x_train, y_train, x_test, y_test, list(SHAPE_CLASSES), "shapes")


def load_signals(
    n_train: int = 1024, n_test: int = 256, length: int = 128, *, seed: int = 0
) -> Split:
    """Return :func:`make_signals` as a Split named "signals"; ``x_*`` are (N, 1, length).

    The test set is drawn from the generator seeded ``seed + 1``.
    """
    x_train, y_train = make_signals(n_train, length, seed=seed)
    x_test, y_test = make_signals(n_test, length, seed=seed + 1)
    return Split(x_train, y_train, x_test, y_test, list(SIGNAL_CLASSES), "signals")


def load_synthetic(name: str, count: str | None = None) -> Split:
    """Return the data set spec ``"shapes[:N]"`` or ``"signals[:N]"`` (see ``load_dataset``).

    Parameters
    ----------
    name : {"shapes", "signals"}
    count : str, optional
        N, the number of training samples as written in the spec, at least 4
        (default :data:`SYNTHETIC_SIZES`); the test set has N // 4.
    """
    n = SYNTHETIC_SIZES[name]
    if count is not None:
        try:
            n = int(count)
        except ValueError:
            n = 0
        if n < 4:
            raise ValueError(
                f"dataset spec '{name}:N' needs N, the number of training samples, an integer "
                f">= 4, got {count!r}"
            )
    loader = load_shapes if name == "shapes" else load_signals
    return loader(n, n // 4)
