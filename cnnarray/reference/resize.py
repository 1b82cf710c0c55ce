"""Resizing by loops over every output position.

Each output element is the weighted sum of the input elements it reads; the
taps along every axis come from PyTorch's source-coordinate formulas written
out in scalar arithmetic, and the gradients add ``grad * weight`` back to the
same elements. Pixel shuffling follows its index definition element by element.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

_A = -0.75  # PyTorch's cubic convolution coefficient


def _cubic(d):
    """Keys' cubic convolution kernel with ``a = -0.75`` at distance ``d``."""
    d = abs(d)
    if d <= 1:
        return (_A + 2) * d**3 - (_A + 3) * d**2 + 1
    if d < 2:
        return _A * d**3 - 5 * _A * d**2 + 8 * _A * d - 4 * _A
    return 0.0


def _per_axis(value, dims):
    return tuple(value) if isinstance(value, tuple | list) else (value,) * dims


def _geometry(in_sizes, size, scale_factor, recompute_scale_factor):
    """Output sizes, and the scale factor each axis's kernel uses (None: in / out)."""
    dims = len(in_sizes)
    if size is not None:
        return _per_axis(size, dims), (None,) * dims
    factors = tuple(float(f) for f in _per_axis(scale_factor, dims))
    out = tuple(math.floor(n * f) for n, f in zip(in_sizes, factors, strict=True))
    return out, (None,) * dims if recompute_scale_factor else factors


def _nearest_step(n, m, scale):
    """PyTorch's float32 step of the nearest modes."""
    return np.float32(1.0 / scale) if scale else np.float32(n) / np.float32(m)


def _taps(o, n, m, scale, mode, align_corners, dims):
    """``[(input index, weight), ...]`` that output ``o`` reads along one axis of n -> m."""
    if mode == "nearest":
        if dims == 2 and m == n:  # PyTorch's 2-D kernel: unchanged size is copied
            return [(o, 1.0)]
        if dims == 2 and m == 2 * n:  # and doubled size halves the index
            return [(o // 2, 1.0)]
        return [(min(int(np.floor(np.float32(o) * _nearest_step(n, m, scale))), n - 1), 1.0)]
    if mode == "nearest-exact":
        src = np.float32((o + 0.5) * float(_nearest_step(n, m, scale)))
        return [(min(int(np.floor(src)), n - 1), 1.0)]
    if mode == "area":
        start, end = (o * n) // m, -((-(o + 1) * n) // m)
        return [(i, 1.0 / (end - start)) for i in range(start, end)]
    if align_corners:
        src = o * (n - 1) / (m - 1) if m > 1 else 0.0
    else:
        src = (o + 0.5) * (1.0 / scale if scale else n / m) - 0.5
    if mode == "bicubic":
        i = min(math.floor(src), n - 1)
        t = min(max(src - i, 0.0), 1.0)
        return [(min(max(i + k, 0), n - 1), _cubic(t - k)) for k in (-1, 0, 1, 2)]
    if m == n:  # PyTorch copies an axis whose size does not change
        return [(o, 1.0)]
    src = max(src, 0.0)
    i = min(math.floor(src), n - 1)
    t = min(src - i, 1.0)
    return [(i, 1.0 - t), (min(i + 1, n - 1), t)]


def _products(x_shape, size, scale_factor, mode, align_corners, recompute_scale_factor):
    """Yield ``(output position, [(input position, weight), ...])`` over the output."""
    in_sizes = tuple(x_shape[2:])
    out, scales = _geometry(in_sizes, size, scale_factor, recompute_scale_factor)
    dims = len(in_sizes)
    for pos in itertools.product(*(range(m) for m in out)):
        per_axis = [
            _taps(o, n, m, s, mode, align_corners, dims)
            for o, n, m, s in zip(pos, in_sizes, out, scales, strict=True)
        ]
        yield (
            pos,
            out,
            [
                (tuple(i for i, _ in combo), math.prod(w for _, w in combo))
                for combo in itertools.product(*per_axis)
            ],
        )


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):  # fmt: skip
    """Reference interpolate: each output element summed from its weighted taps."""
    x = np.asarray(x, np.float64)
    y = None
    for pos, out, cells in _products(x.shape, size, scale_factor, mode, align_corners,
                                     recompute_scale_factor):  # fmt: skip
        if y is None:
            y = np.zeros(x.shape[:2] + out)
        for src, weight in cells:
            y[(..., *pos)] += weight * x[(..., *src)]
    return y


def interpolate_backward(grad_out, x, size=None, scale_factor=None, mode="nearest",
                         align_corners=None, recompute_scale_factor=None):  # fmt: skip
    """Reference gradient: each output's gradient added to its taps, times their weights."""
    x = np.asarray(x, np.float64)
    g = np.asarray(grad_out, np.float64)
    grad = np.zeros(x.shape)
    for pos, _, cells in _products(x.shape, size, scale_factor, mode, align_corners,
                                   recompute_scale_factor):  # fmt: skip
        for src, weight in cells:
            grad[(..., *src)] += weight * g[(..., *pos)]
    return grad


def pixel_shuffle(x, upscale_factor):
    """Reference: ``out[..., c, h*r + i, w*r + j] = x[..., c*r*r + i*r + j, h, w]``."""
    x, r = np.asarray(x, np.float64), upscale_factor
    *lead, c, h, w = x.shape
    out = np.zeros((*lead, c // (r * r), h * r, w * r))
    for ch, row, col, i, j in itertools.product(range(c // (r * r)), range(h), range(w),
                                                range(r), range(r)):  # fmt: skip
        out[..., ch, row * r + i, col * r + j] = x[..., ch * r * r + i * r + j, row, col]
    return out


def pixel_unshuffle(x, downscale_factor):
    """Reference: ``out[..., c*r*r + i*r + j, h, w] = x[..., c, h*r + i, w*r + j]``."""
    x, r = np.asarray(x, np.float64), downscale_factor
    *lead, c, h, w = x.shape
    out = np.zeros((*lead, c * r * r, h // r, w // r))
    for ch, row, col, i, j in itertools.product(range(c), range(h // r), range(w // r),
                                                range(r), range(r)):  # fmt: skip
        out[..., ch * r * r + i * r + j, row, col] = x[..., ch, row * r + i, col * r + j]
    return out


def pixel_shuffle_backward(grad_out, x, upscale_factor):
    """A permutation's gradient is the inverse permutation of grad_out."""
    return pixel_unshuffle(grad_out, upscale_factor)


def pixel_unshuffle_backward(grad_out, x, downscale_factor):
    """A permutation's gradient is the inverse permutation of grad_out."""
    return pixel_shuffle(grad_out, downscale_factor)
