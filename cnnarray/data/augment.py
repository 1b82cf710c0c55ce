"""Random augmentations of image batches, on whichever device the batch lives.

Every transform is a callable ``t(x, rng) -> x`` on a batch ``x`` of shape
``(N, C, H, W)``. The array module comes from the batch
(:func:`cnnarray.backend.array_namespace`), so the same code runs on NumPy and
CuPy arrays. ``rng`` is a ``numpy.random.Generator`` or a
``cupy.random.Generator``: the transforms draw a few numbers per image with its
``integers``, ``random`` and ``standard_normal`` methods and move them to the
batch's device. Passing the same NumPy generator state therefore gives the
same augmentation on the CPU and on the GPU.

Each image gets its own random choice, but no transform loops over images or
pixels in Python: crops and shifts gather all images at once with one fancy
index, flips select with ``where``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

from .. import _args
from ..backend import array_namespace

__all__ = [
    "Compose",
    "GaussianNoise",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomShift",
]


def _check_batch(x: Any, transform: str) -> None:
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4:
        got = f"shape {tuple(shape)}" if shape is not None else type(x).__name__
        raise ValueError(f"{transform} expects a batch x of shape (N, C, H, W), got {got}")


def _check_floating(x: Any, transform: str) -> None:
    if x.dtype.kind != "f":
        raise TypeError(f"{transform} expects a floating-point batch x, got dtype {x.dtype}")


def _gather_windows(x: Any, top: Any, left: Any, out_h: int, out_w: int) -> Any:
    """Cut an ``(out_h, out_w)`` window from each image at its own offset.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    top, left : int array, shape (N,)
        Row and column of each window's upper-left corner.

    Returns
    -------
    array, shape (N, C, out_h, out_w)
        ``out[i] == x[i, :, top[i]:top[i] + out_h, left[i]:left[i] + out_w]``.
    """
    xp = array_namespace(x)
    n, c = x.shape[:2]
    rows = top[:, None] + xp.arange(out_h)  # (N, out_h)
    cols = left[:, None] + xp.arange(out_w)  # (N, out_w)
    # the four index arrays broadcast to (N, C, out_h, out_w)
    return x[
        xp.arange(n)[:, None, None, None],
        xp.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def _random_offsets(rng: Any, xp: Any, n: int, high: int) -> Any:
    """Draw ``n`` ints uniformly from ``0..high`` (inclusive), on the batch's device."""
    return xp.asarray(rng.integers(0, high + 1, size=n)).astype(xp.int64)


class RandomCrop:
    """Crop each image at a random position, after optional zero padding.

    Parameters
    ----------
    size : int or (int, int)
        Output ``(out_h, out_w)``; an int means a square.
    padding : int or (int, int), default 0
        ``(ph, pw)`` pixels of ``fill`` added on each side before cropping.
    fill : float, default 0.0
        Value of the padding.

    Notes
    -----
    For ``x`` of shape ``(N, C, H, W)`` the result has shape
    ``(N, C, out_h, out_w)`` and equals ``xpad[i, :, t:t + out_h, l:l + out_w]``
    where ``xpad`` is ``x`` padded by ``(ph, pw)`` and ``t``, ``l`` are drawn
    uniformly from ``0..H + 2*ph - out_h`` and ``0..W + 2*pw - out_w``.

    See Also
    --------
    torchvision.transforms.RandomCrop

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones((4, 3, 32, 32), dtype=np.float32)
    >>> RandomCrop(32, padding=4)(x, np.random.default_rng(0)).shape
    (4, 3, 32, 32)
    """

    def __init__(
        self, size: int | tuple[int, int], padding: int | tuple[int, int] = 0, fill: float = 0.0
    ) -> None:
        self.size = _args._pair(size, "size", minimum=1)
        self.padding = _args._pair(padding, "padding", minimum=0)
        self.fill = float(fill)

    def __call__(self, x: Any, rng: Any) -> Any:
        """Return the cropped batch, shape ``(N, C, out_h, out_w)``."""
        _check_batch(x, type(self).__name__)
        xp = array_namespace(x)
        n, _, h, w = x.shape
        (out_h, out_w), (ph, pw) = self.size, self.padding
        if out_h > h + 2 * ph or out_w > w + 2 * pw:
            raise ValueError(
                f"RandomCrop size {self.size} is larger than the padded image "
                f"({h + 2 * ph}, {w + 2 * pw}) of input shape {tuple(x.shape)} "
                f"with padding {self.padding}"
            )
        if ph or pw:
            x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=self.fill)
        top = _random_offsets(rng, xp, n, h + 2 * ph - out_h)
        left = _random_offsets(rng, xp, n, w + 2 * pw - out_w)
        return _gather_windows(x, top, left, out_h, out_w)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding}, fill={self.fill})"


class RandomShift:
    """Translate each image by a random whole number of pixels, filling the gap.

    Parameters
    ----------
    max_shift : int or (int, int)
        Largest shift ``(mh, mw)``; each image moves by ``dy`` rows and ``dx``
        columns drawn uniformly from ``-mh..mh`` and ``-mw..mw``.
    fill : float, default 0.0
        Value of the pixels uncovered by the shift.

    Notes
    -----
    The output keeps the input shape ``(N, C, H, W)``, with
    ``out[i, :, r, c] == x[i, :, r - dy, c - dx]`` where that pixel exists and
    ``fill`` elsewhere. It is ``RandomCrop((H, W), padding=max_shift)``.
    """

    def __init__(self, max_shift: int | tuple[int, int], fill: float = 0.0) -> None:
        self.max_shift = _args._pair(max_shift, "max_shift", minimum=0)
        self.fill = float(fill)

    def __call__(self, x: Any, rng: Any) -> Any:
        """Return the shifted batch, same shape as ``x``."""
        _check_batch(x, type(self).__name__)
        h, w = x.shape[2:]
        return RandomCrop((h, w), padding=self.max_shift, fill=self.fill)(x, rng)

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift}, fill={self.fill})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``.

    Parameters
    ----------
    p : float, default 0.5
        Probability that an image is flipped. Image ``i`` is flipped when
        ``rng.random(N)[i] < p``.

    Notes
    -----
    Shape ``(N, C, H, W)`` in and out; flipped images are ``x[i, :, :, ::-1]``.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = _args.check_real(p, "p", low=0, high=1)

    def __call__(self, x: Any, rng: Any) -> Any:
        """Return the batch with the chosen images flipped."""
        _check_batch(x, type(self).__name__)
        xp = array_namespace(x)
        flip = xp.asarray(rng.random(x.shape[0]) < self.p)  # (N,)
        return xp.where(flip[:, None, None, None], x[..., ::-1], x)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class GaussianNoise:
    """Add independent Gaussian noise to every pixel.

    Parameters
    ----------
    std : float
        Standard deviation of the noise, ``>= 0``.
    clip : (float, float), optional
        Clip the result to ``[low, high]``, e.g. ``(0.0, 1.0)``.

    Notes
    -----
    Shape and dtype ``(N, C, H, W)`` in and out; ``x`` must be floating point.
    The noise is drawn with ``rng.standard_normal(x.shape)``, so a NumPy
    generator creates it on the host and copies it to the device.
    """

    def __init__(self, std: float, clip: tuple[float, float] | None = None) -> None:
        self.std = _args.check_real(std, "std", low=0)
        if clip is not None and (len(clip) != 2 or clip[0] > clip[1]):
            raise ValueError(
                f"clip must be None or a pair (low, high) with low <= high, got {clip!r}"
            )
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))

    def __call__(self, x: Any, rng: Any) -> Any:
        """Return ``x + std * noise``, clipped when ``clip`` is set."""
        _check_batch(x, type(self).__name__)
        _check_floating(x, type(self).__name__)
        xp = array_namespace(x)
        noise = xp.asarray(rng.standard_normal(size=x.shape)).astype(x.dtype, copy=False)
        out = x + self.std * noise  # a Python float keeps the dtype of noise
        if self.clip is not None:
            out = xp.clip(out, self.clip[0], self.clip[1])
        return out

    def __repr__(self) -> str:
        return f"GaussianNoise(std={self.std}, clip={self.clip})"


class Normalize:
    """Subtract a per-channel mean and divide by a per-channel standard deviation.

    Parameters
    ----------
    mean : float or sequence of float
        One value for all channels, or one per channel (length C).
    std : float or sequence of float
        Likewise; every value must be ``> 0``.

    Notes
    -----
    ``out[:, c] = (x[:, c] - mean[c]) / std[c]``, shape and dtype
    ``(N, C, H, W)`` in and out. ``rng`` is accepted for a uniform call
    signature and not used.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.full((1, 2, 1, 1), 0.5, dtype=np.float32)
    >>> Normalize([0.5, 0.25], [1.0, 0.5])(x, None).ravel().tolist()
    [0.0, 0.5]
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        self.mean = self._as_tuple(mean, "mean")
        self.std = self._as_tuple(std, "std")
        if min(self.std) <= 0:
            raise ValueError(f"std must be > 0 for every channel, got {std!r}")
        if 1 not in (len(self.mean), len(self.std)) and len(self.mean) != len(self.std):
            raise ValueError(
                f"mean and std must have the same number of channels, got {len(self.mean)} "
                f"and {len(self.std)}"
            )

    @staticmethod
    def _as_tuple(value: Any, name: str) -> tuple[float, ...]:
        values = (value,) if isinstance(value, numbers.Real) else value
        try:
            out = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} must be a number or a sequence of numbers, got {value!r}"
            ) from None
        if not out:
            raise ValueError(f"{name} must not be empty")
        return out

    def __call__(self, x: Any, rng: Any = None) -> Any:
        """Return the normalised batch."""
        _check_batch(x, type(self).__name__)
        _check_floating(x, type(self).__name__)
        xp = array_namespace(x)
        channels = x.shape[1]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ValueError(
                    f"Normalize {name} has {len(values)} values but the batch has {channels} "
                    f"channels (shape {tuple(x.shape)})"
                )
        mean = xp.asarray(self.mean, dtype=x.dtype).reshape(1, -1, 1, 1)
        std = xp.asarray(self.std, dtype=x.dtype).reshape(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Compose:
    """Apply transforms one after the other.

    Parameters
    ----------
    transforms : sequence of callables
        Each is called as ``t(x, rng)``; all share the one ``rng``.

    Examples
    --------
    >>> import numpy as np
    >>> augment = Compose([RandomShift(2), RandomHorizontalFlip()])
    >>> augment(np.zeros((8, 1, 8, 8)), np.random.default_rng(0)).shape
    (8, 1, 8, 8)
    """

    def __init__(self, transforms: Sequence[Callable[[Any, Any], Any]]) -> None:
        transforms = list(transforms)
        for i, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(
                    f"transforms[{i}] must be a callable t(x, rng), got {type(t).__name__}"
                )
        self.transforms = transforms

    def __call__(self, x: Any, rng: Any) -> Any:
        """Return ``x`` after every transform, in order."""
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"
