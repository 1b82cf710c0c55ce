"""Padding by ``numpy.pad`` and explicit crops; its gradient by following each output
back to the input element it copies."""

from __future__ import annotations

from typing import Any

import numpy as np

_NUMPY_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
               "circular": "wrap"}  # fmt: skip


def _pad_any(x: np.ndarray, pad: Any, mode: str, value: float) -> np.ndarray:
    """``pad`` on any array (float64 or the int64 source indices of pad_backward)."""
    axes = len(pad) // 2
    lead = [(0, 0)] * (x.ndim - axes)
    pairs = [(int(pad[2 * k]), int(pad[2 * k + 1])) for k in reversed(range(axes))]
    positive = lead + [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
    crop = [slice(None)] * (x.ndim - axes) + [
        slice(max(-lo, 0), None if hi >= 0 else hi) for lo, hi in pairs
    ]
    # reflect, replicate and constant read the whole axis: pad, then crop; circular, as
    # PyTorch, wraps what the crops keep: crop, then pad
    if mode == "circular":
        return np.pad(x[tuple(crop)], positive, mode="wrap")
    extra = {"constant_values": value} if mode == "constant" else {}
    return np.pad(x, positive, mode=_NUMPY_MODE[mode], **extra)[tuple(crop)]


def pad(x, pad, mode="constant", value=0.0) -> np.ndarray:
    """Reference pad: numpy.pad of the positive pads, slices for the negative ones."""
    return _pad_any(np.asarray(x, np.float64), pad, mode, 0.0 if value is None else value)


def pad_backward(grad_out, x, pad, mode="constant") -> np.ndarray:
    """Reference gradient of pad: each output's gradient added to the element it copies."""
    shape = tuple(np.shape(x)) if hasattr(x, "shape") else tuple(x)
    source = _pad_any(np.arange(int(np.prod(shape))).reshape(shape), pad, mode, -1)
    grad = np.zeros(int(np.prod(shape)))
    g = np.asarray(grad_out, np.float64)
    real = source >= 0
    np.add.at(grad, source[real], g[real])
    return grad.reshape(shape)
