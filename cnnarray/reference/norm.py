"""Normalisations from the mean and variance formulas, one channel (or group) at a time."""

from __future__ import annotations

import math

import numpy as np


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
                 momentum=0.1, eps=1e-5):  # fmt: skip
    """Reference batch norm of (N, C, *) input, one channel at a time over every axis but 1
    (running statistics are not updated)."""
    x = np.asarray(x, np.float64)
    y = np.empty_like(x)
    for c in range(x.shape[1]):
        values = x[:, c]
        if training or running_mean is None:
            mean, var = values.mean(), ((values - values.mean()) ** 2).mean()
        else:
            mean, var = float(running_mean[c]), float(running_var[c])
        y[:, c] = (values - mean) / math.sqrt(var + eps)
        if weight is not None:
            y[:, c] *= float(weight[c])
        if bias is not None:
            y[:, c] += float(bias[c])
    return y


def batch_norm_backward(grad_out, x, running_mean=None, running_var=None, weight=None,
                          bias=None, training=False, eps=1e-5):  # fmt: skip
    """Reference batch-norm gradients: the explicit Jacobian of each channel, in float64."""
    x, g = np.asarray(x, np.float64), np.asarray(grad_out, np.float64)
    gx = np.empty_like(x)
    gw = None if weight is None else np.empty(x.shape[1])
    gb = None if bias is None else np.empty(x.shape[1])
    for c in range(x.shape[1]):
        v, gc = x[:, c].ravel(), g[:, c].ravel()
        w = 1.0 if weight is None else float(weight[c])
        if training or running_mean is None:
            m = v.size
            mean, var = v.mean(), ((v - v.mean()) ** 2).mean()
            s = math.sqrt(var + eps)
            xhat = (v - mean) / s
            # d xhat_i / d x_j = (delta_ij - 1/m - xhat_i xhat_j / m) / s
            jac = (np.eye(m) - 1.0 / m - np.outer(xhat, xhat) / m) / s
        else:
            s = math.sqrt(float(running_var[c]) + eps)
            xhat = (v - float(running_mean[c])) / s
            jac = np.eye(v.size) / s
        gx[:, c] = (jac.T @ (gc * w)).reshape(x[:, c].shape)
        if gw is not None:
            gw[c] = (gc * xhat).sum()
        if gb is not None:
            gb[c] = gc.sum()
    return gx, gw, gb


batch_norm2d = batch_norm
batch_norm2d_backward = batch_norm_backward
