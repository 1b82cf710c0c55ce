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


# ------------------------------------------------------------------ per-sample statistics


def _standardize(v, eps):
    """One set of values (any shape): (v - mean) / sqrt(var + eps), biased variance."""
    mean = v.mean()
    return (v - mean) / math.sqrt(((v - mean) ** 2).mean() + eps)


def _standardize_vjp(v, gy, eps):
    """``J^T gy`` for :func:`_standardize` of ``v``, from its explicit Jacobian
    ``d xhat_i / d v_j = (delta_ij - 1/m - xhat_i xhat_j / m) / s``."""
    flat, m = v.ravel(), v.size
    s = math.sqrt(((flat - flat.mean()) ** 2).mean() + eps)
    xhat = (flat - flat.mean()) / s
    jac = (np.eye(m) - 1.0 / m - np.outer(xhat, xhat) / m) / s
    return (jac.T @ gy.ravel()).reshape(v.shape)


def _channel_scale(x, weight, bias):
    """weight and bias of C channels as arrays broadcasting over (N, C, *), ones / zeros if None."""
    c, trail = x.shape[1], (1,) * (x.ndim - 2)
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    b = np.zeros(c) if bias is None else np.asarray(bias, np.float64)
    return w.reshape(c, *trail), b.reshape(c, *trail)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Reference group norm: each (sample, group) standardised on its own."""
    x = np.asarray(x, np.float64)
    y, cg = np.empty_like(x), x.shape[1] // num_groups
    for n in range(x.shape[0]):
        for g in range(num_groups):
            y[n, g * cg : (g + 1) * cg] = _standardize(x[n, g * cg : (g + 1) * cg], eps)
    w, b = _channel_scale(x, weight, bias)
    return y * w + b


def group_norm_backward(grad_out, x, num_groups, weight=None, bias=None, eps=1e-5):
    x, g = np.asarray(x, np.float64), np.asarray(grad_out, np.float64)
    w, _ = _channel_scale(x, weight, None)
    xhat = group_norm(x, num_groups, None, None, eps)
    gx, cg = np.empty_like(x), x.shape[1] // num_groups
    for n in range(x.shape[0]):
        for grp in range(num_groups):
            chans = slice(grp * cg, (grp + 1) * cg)
            gx[n, chans] = _standardize_vjp(x[n, chans], g[n, chans] * w[chans], eps)
    axes = (0, *range(2, x.ndim))
    gw = None if weight is None else (g * xhat).sum(axis=axes)
    gb = None if bias is None else g.sum(axis=axes)
    return gx, gw, gb


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Reference layer norm: each index of the leading axes standardised on its own."""
    x = np.asarray(x, np.float64)
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    y = np.empty_like(x)
    for idx in np.ndindex(x.shape[: x.ndim - k]):
        y[idx] = _standardize(x[idx], eps)
    if weight is not None:
        y = y * np.asarray(weight, np.float64)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return y


def layer_norm_backward(grad_out, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    x, g = np.asarray(x, np.float64), np.asarray(grad_out, np.float64)
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    w = 1.0 if weight is None else np.asarray(weight, np.float64)
    xhat = layer_norm(x, normalized_shape, None, None, eps)
    gx = np.empty_like(x)
    for idx in np.ndindex(x.shape[: x.ndim - k]):
        gx[idx] = _standardize_vjp(x[idx], g[idx] * w, eps)
    lead = tuple(range(x.ndim - k))
    gw = None if weight is None else (g * xhat).sum(axis=lead)
    gb = None if bias is None else g.sum(axis=lead)
    return gx, gw, gb


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):  # fmt: skip
    """Reference instance norm: group norm with one channel per group, or the running
    statistics (which are not updated here)."""
    x = np.asarray(x, np.float64)
    if use_input_stats:
        return group_norm(x, x.shape[1], weight, bias, eps)
    var, mean = _channel_scale(x, running_var, running_mean)  # shaped to broadcast
    w, b = _channel_scale(x, weight, bias)
    return (x - mean) / np.sqrt(var + eps) * w + b


def instance_norm_backward(grad_out, x, running_mean=None, running_var=None, weight=None,
                           bias=None, use_input_stats=True, eps=1e-5):  # fmt: skip
    x, g = np.asarray(x, np.float64), np.asarray(grad_out, np.float64)
    if use_input_stats:
        return group_norm_backward(g, x, x.shape[1], weight, bias, eps)
    var, mean = _channel_scale(x, running_var, running_mean)
    w, _ = _channel_scale(x, weight, None)
    axes = (0, *range(2, x.ndim))
    xhat = (x - mean) / np.sqrt(var + eps)
    gw = None if weight is None else (g * xhat).sum(axis=axes)
    gb = None if bias is None else g.sum(axis=axes)
    return g * w / np.sqrt(var + eps), gw, gb
