"""Activations elementwise through ``numpy.vectorize`` of the scalar formula; softmax row by row."""

from __future__ import annotations

import math

import numpy as np


def _elementwise(f, x):
    x = np.asarray(x, np.float64)
    return np.vectorize(f, otypes=[np.float64])(x)


def relu(x):
    return _elementwise(lambda v: v if v > 0 or math.isnan(v) else 0.0, x)


def relu_backward(grad_out, x):
    return np.asarray(grad_out, np.float64) * _elementwise(lambda v: 1.0 if v > 0 else 0.0, x)


def leaky_relu(x, negative_slope=0.01):
    return _elementwise(lambda v: v if v > 0 else negative_slope * v, x)


def leaky_relu_backward(grad_out, x, negative_slope=0.01):
    slope = _elementwise(lambda v: 1.0 if v > 0 else negative_slope, x)
    return np.asarray(grad_out, np.float64) * slope


def _sig(v):
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


def sigmoid(x):
    return _elementwise(_sig, x)


def sigmoid_backward(grad_out, x):
    return np.asarray(grad_out, np.float64) * _elementwise(lambda v: _sig(v) * (1 - _sig(v)), x)


def tanh(x):
    return _elementwise(math.tanh, x)


def tanh_backward(grad_out, x):
    return np.asarray(grad_out, np.float64) * _elementwise(lambda v: 1 - math.tanh(v) ** 2, x)


def _softmax_rows(x, axis):
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        m = max(row)
        e = [math.exp(v - m) for v in row]
        out[i] = [v / math.fsum(e) for v in e]
    return np.moveaxis(out.reshape(x.shape), -1, axis)


def softmax(x, axis=-1):
    return _softmax_rows(x, axis)


def softmax_backward(grad_out, x, axis=-1):
    s = _softmax_rows(x, axis)
    g = np.asarray(grad_out, np.float64)
    # Jacobian-vector product written out: sum_j g_j (delta_ij s_i - s_i s_j)
    return s * g - s * np.sum(g * s, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    return np.log(_softmax_rows(x, axis))


def log_softmax_backward(grad_out, x, axis=-1):
    s = _softmax_rows(x, axis)
    g = np.asarray(grad_out, np.float64)
    return g - s * np.sum(g, axis=axis, keepdims=True)


# ------------------------------------------------------------------ more activations
# Each scalar formula as written in its paper / PyTorch's docs; derivatives by hand,
# with PyTorch's one-sided values at the kinks.

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _times(grad_out, slope):
    return np.asarray(grad_out, np.float64) * slope


def hardtanh(x, min_val=-1.0, max_val=1.0):
    return _elementwise(lambda v: v if math.isnan(v) else min(max(v, min_val), max_val), x)


def hardtanh_backward(grad_out, x, min_val=-1.0, max_val=1.0):
    return _times(grad_out, _elementwise(lambda v: 1.0 if min_val < v < max_val else 0.0, x))


def relu6(x):
    return hardtanh(x, 0.0, 6.0)


def relu6_backward(grad_out, x):
    return hardtanh_backward(grad_out, x, 0.0, 6.0)


def hardsigmoid(x):
    return _elementwise(lambda v: 0.0 if v <= -3 else 1.0 if v >= 3 else v / 6 + 0.5, x)


def hardsigmoid_backward(grad_out, x):
    return _times(grad_out, _elementwise(lambda v: 1 / 6 if -3 < v < 3 else 0.0, x))


def hardswish(x):
    return _elementwise(lambda v: 0.0 if v <= -3 else v if v >= 3 else v * (v + 3) / 6, x)


def hardswish_backward(grad_out, x):
    return _times(
        grad_out, _elementwise(lambda v: 0.0 if v <= -3 else 1.0 if v >= 3 else (2 * v + 3) / 6, x)
    )


def elu(x, alpha=1.0):
    return _elementwise(lambda v: v if v > 0 else alpha * (math.exp(v) - 1), x)


def elu_backward(grad_out, x, alpha=1.0):
    return _times(grad_out, _elementwise(lambda v: 1.0 if v > 0 else alpha * math.exp(v), x))


def selu(x):
    return _SELU_SCALE * elu(x, _SELU_ALPHA)


def selu_backward(grad_out, x):
    return _SELU_SCALE * elu_backward(grad_out, x, _SELU_ALPHA)


def celu(x, alpha=1.0):
    return _elementwise(lambda v: v if v > 0 else alpha * (math.exp(v / alpha) - 1), x)


def celu_backward(grad_out, x, alpha=1.0):
    return _times(grad_out, _elementwise(lambda v: 1.0 if v > 0 else math.exp(v / alpha), x))


def _phi(v):
    """Standard normal CDF."""
    return 0.5 * (1 + math.erf(v / math.sqrt(2)))


_K = math.sqrt(2 / math.pi)


def gelu(x, approximate="none"):
    if approximate == "tanh":
        return _elementwise(lambda v: 0.5 * v * (1 + math.tanh(_K * (v + 0.044715 * v**3))), x)
    return _elementwise(lambda v: v * _phi(v), x)


def _gelu_tanh_slope(v):
    t = math.tanh(_K * (v + 0.044715 * v**3))
    return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * _K * (1 + 3 * 0.044715 * v * v)


def gelu_backward(grad_out, x, approximate="none"):
    if approximate == "tanh":
        return _times(grad_out, _elementwise(_gelu_tanh_slope, x))
    density = lambda v: math.exp(-v * v / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return _times(grad_out, _elementwise(lambda v: _phi(v) + v * density(v), x))


def silu(x):
    return _elementwise(lambda v: v * _sig(v), x)


def silu_backward(grad_out, x):
    return _times(grad_out, _elementwise(lambda v: _sig(v) + v * _sig(v) * (1 - _sig(v)), x))


def _log1p_exp(v):
    return v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v))


def softplus(x, beta=1.0, threshold=20.0):
    return _elementwise(lambda v: v if beta * v > threshold else _log1p_exp(beta * v) / beta, x)


def softplus_backward(grad_out, x, beta=1.0, threshold=20.0):
    return _times(
        grad_out, _elementwise(lambda v: 1.0 if beta * v > threshold else _sig(beta * v), x)
    )


def mish(x):
    return _elementwise(lambda v: v * math.tanh(_log1p_exp(v)), x)


def _mish_slope(v):
    t = math.tanh(_log1p_exp(v))
    return t + v * _sig(v) * (1 - t * t)


def mish_backward(grad_out, x):
    return _times(grad_out, _elementwise(_mish_slope, x))


def prelu(x, weight):
    """Loop over every element; the slope of element ``idx`` is weight[idx[1]] (or weight[0])."""
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    y = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        a = weight[0] if weight.size == 1 else weight[idx[1]]
        y[idx] = x[idx] if x[idx] > 0 else a * x[idx]
    return y


def prelu_backward(grad_out, x, weight):
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    g = np.asarray(grad_out, np.float64)
    gx, gw = np.empty_like(x), np.zeros(weight.shape)
    for idx in np.ndindex(x.shape):
        c = 0 if weight.size == 1 else idx[1]
        if x[idx] > 0:
            gx[idx] = g[idx]
        else:
            gx[idx] = weight[c] * g[idx]
            gw[c] += x[idx] * g[idx]
    return gx, gw
