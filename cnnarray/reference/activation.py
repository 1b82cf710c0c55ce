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
