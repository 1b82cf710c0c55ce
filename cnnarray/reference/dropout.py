"""Dropout with a given mask, element by element: ``x * mask`` broadcast over the axes
where the mask has length 1 (whole channels)."""

from __future__ import annotations

import numpy as np


def _times_mask(a, mask):
    a, mask = np.asarray(a, np.float64), np.asarray(mask, np.float64)
    out = np.empty_like(a)
    for idx in np.ndindex(a.shape):
        m = mask[tuple(i if n > 1 else 0 for i, n in zip(idx, mask.shape, strict=True))]
        out[idx] = a[idx] * m
    return out


def dropout(x, p=0.5, training=True, *, mask=None):
    """``x * mask`` in training mode with p > 0, else x (the mask is given, never drawn)."""
    if not training or p == 0:
        return np.asarray(x, np.float64)
    return _times_mask(x, mask)


def dropout_backward(grad_out, mask=None):
    return np.asarray(grad_out, np.float64) if mask is None else _times_mask(grad_out, mask)
