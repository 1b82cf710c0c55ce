"""Fully connected layer in float64."""

from __future__ import annotations

import numpy as np


def linear(x, weight, bias=None):
    """Reference ``y[..., o] = sum_i x[..., i] * weight[o, i] + bias[o]``."""
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    y = np.einsum("...i,oi->...o", x, weight)
    return y if bias is None else y + np.asarray(bias, np.float64)


def linear_backward(grad_out, x, weight, bias=None):
    """Reference gradients of linear by einsum."""
    g, x, weight = (np.asarray(a, np.float64) for a in (grad_out, x, weight))
    gx = np.einsum("...o,oi->...i", g, weight)
    gw = np.einsum("no,ni->oi", g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1]))
    gb = None if bias is None else g.reshape(-1, g.shape[-1]).sum(axis=0)
    return gx, gw, gb
