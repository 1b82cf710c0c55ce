"""Losses by their definitions, sample by sample (or element by element), in float64.

Gradients come from the chain rule written out per sample: for the
classification losses ``d l / d logits_j = a_j - p_j * sum_c a_c`` with
``a_c = d l / d log_softmax_c``, and per element for the others.
"""

from __future__ import annotations

import math

import numpy as np

from .activation import _softmax_rows


def _class_rows(x):
    """Scores (C,), (N, C) or (N, C, d...) as a list of per-sample rows (class axis last)."""
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        return x[None]
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _from_rows(rows, shape):
    if len(shape) == 1:
        return rows[0]
    moved = rows.reshape(shape[:1] + shape[2:] + shape[1:2])
    return np.moveaxis(moved, -1, 1)


def _batch(shape):
    return shape[:1] + shape[2:] if len(shape) >= 2 else ()


def _reduce(losses, reduction, divisor, shape):
    if reduction == "none":
        return np.asarray(losses, np.float64).reshape(shape)
    total = math.fsum(losses)
    if reduction == "sum":
        return np.float64(total)
    return np.float64(total / divisor) if divisor else np.float64(np.nan)


def _scales(grad_out, reduction, divisor, n):
    """d output / d l_i for each of the n per-sample losses."""
    if reduction == "none":
        return np.ones(n) if grad_out is None else np.asarray(grad_out, np.float64).reshape(-1)
    g = 1.0 if grad_out is None else float(np.asarray(grad_out))
    return np.full(n, g / divisor if reduction == "mean" and divisor else g)


def _classification(logits, target, weight, ignore_index, label_smoothing, softmax):
    """Per-sample (loss, d loss / d row, counted weight) of cross_entropy or nll_loss."""
    rows = _class_rows(logits)
    c = rows.shape[1]
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    t = np.asarray(target)
    probabilities = t.dtype.kind == "f"
    t = _class_rows(t) if probabilities else t.reshape(-1)
    out = []
    for row, y in zip(rows, t, strict=True):
        logp = np.log(_softmax_rows(row, -1)) if softmax else row
        if probabilities:
            q = (1 - label_smoothing) * y + label_smoothing / c
            a = -w * q  # d l / d logp
            counted = 1.0
        elif y == ignore_index:
            out.append((0.0, np.zeros(c), 0.0))
            continue
        else:
            a = -label_smoothing / c * w
            a[y] -= (1 - label_smoothing) * w[y]
            counted = w[y]
        loss = math.fsum(a * logp)
        grad = a - np.exp(logp) * a.sum() if softmax else a
        out.append((loss, grad, counted))
    return out


def _classification_loss(logits, target, weight, ignore_index, reduction, label_smoothing,
                         softmax):  # fmt: skip
    per = _classification(logits, target, weight, ignore_index, label_smoothing, softmax)
    divisor = math.fsum(p[2] for p in per)
    return _reduce([p[0] for p in per], reduction, divisor, _batch(np.shape(logits)))


def _classification_grad(logits, target, weight, ignore_index, reduction, label_smoothing,
                         grad_out, softmax):  # fmt: skip
    per = _classification(logits, target, weight, ignore_index, label_smoothing, softmax)
    divisor = math.fsum(p[2] for p in per)
    s = _scales(grad_out, reduction, divisor, len(per))
    rows = np.array([si * p[1] for si, p in zip(s, per, strict=True)])
    return _from_rows(rows, np.shape(logits))


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):  # fmt: skip
    """Reference cross-entropy, one sample at a time."""
    return _classification_loss(logits, target, weight, ignore_index, reduction,
                                label_smoothing, True)  # fmt: skip


def cross_entropy_backward(logits, target, weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0, grad_out=None):  # fmt: skip
    """Reference cross-entropy gradient, one sample at a time."""
    return _classification_grad(logits, target, weight, ignore_index, reduction,
                                label_smoothing, grad_out, True)  # fmt: skip


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Reference negative log-likelihood, one sample at a time."""
    return _classification_loss(input, target, weight, ignore_index, reduction, 0.0, False)


def nll_loss_backward(input, target, weight=None, ignore_index=-100, reduction="mean",
                      grad_out=None):  # fmt: skip
    """Reference negative log-likelihood gradient, one sample at a time."""
    return _classification_grad(input, target, weight, ignore_index, reduction, 0.0, grad_out,
                                False)  # fmt: skip


# --------------------------------------------------------------------------- elementwise


def _elementwise(f, *arrays, weight=None):
    """``[f(*elements) * weight]`` over the elements of same-shape arrays (weight broadcast)."""
    arrays = [np.asarray(a, np.float64) for a in arrays]
    shape = arrays[0].shape
    w = np.ones(shape) if weight is None else np.broadcast_to(np.asarray(weight, np.float64), shape)
    values = [tuple(float(v) for v in f(*(float(a[i]) for a in arrays))) for i in np.ndindex(shape)]
    return [tuple(v * w[i] for v in vs) for vs, i in zip(values, np.ndindex(shape), strict=True)]


def _pointwise_loss(f, input, target, reduction, weight=None):
    values = _elementwise(f, input, target, weight=weight)
    shape = np.shape(input)
    if reduction == "batchmean":
        total = math.fsum(v[0] for v in values)
        return np.float64(total / (shape[0] if shape else 1))
    return _reduce([v[0] for v in values], reduction, max(1, math.prod(shape)), shape)


def _pointwise_grad(f, input, target, reduction, grad_out, weight=None):
    """(d/d input, d/d target) of the reduced loss, from ``f -> (l, dl/dx, dl/dy)``."""
    values = _elementwise(f, input, target, weight=weight)
    shape = np.shape(input)
    n = max(1, math.prod(shape))
    divisor = {"batchmean": shape[0] if shape else 1, "mean": n}.get(reduction, 1)
    red = "mean" if reduction == "batchmean" else reduction
    s = _scales(grad_out, red, divisor, len(values))
    gx = np.array([si * v[1] for si, v in zip(s, values, strict=True)]).reshape(shape)
    gy = np.array([si * v[2] for si, v in zip(s, values, strict=True)]).reshape(shape)
    return gx, gy


def _sign(d):
    return float(d > 0) - float(d < 0)


def _mse(x, y):
    return (x - y) ** 2, 2 * (x - y), -2 * (x - y)


def _l1(x, y):
    return abs(x - y), _sign(x - y), -_sign(x - y)


def _smooth_l1(beta):
    def f(x, y):
        d = x - y
        if abs(d) < beta:
            return 0.5 * d * d / beta, d / beta, -d / beta
        return abs(d) - 0.5 * beta, _sign(d), -_sign(d)

    return f


def _huber(delta):
    def f(x, y):
        d = x - y
        if abs(d) < delta:
            return 0.5 * d * d, d, -d
        return delta * (abs(d) - 0.5 * delta), delta * _sign(d), -delta * _sign(d)

    return f


def _kl(log_target):
    def f(x, y):
        if log_target:
            return math.exp(y) * (y - x), -math.exp(y), math.exp(y) * (y - x + 1)
        if y == 0:
            return 0.0, 0.0, math.nan  # 0 * log 0 = 0
        return y * (math.log(y) - x), -y, math.log(y) - x + 1

    return f


def _bce(x, y):
    log_x = max(math.log(x), -100.0) if x > 0 else -100.0
    log_1mx = max(math.log(1 - x), -100.0) if x < 1 else -100.0
    return -(y * log_x + (1 - y) * log_1mx), (x - y) / max(x * (1 - x), 9.999999960041972e-13), 0.0


def _bce_logits(x, y, p):
    log_sig = -np.logaddexp(0.0, -x)  # log sigmoid(x)
    log_1m_sig = -np.logaddexp(0.0, x)  # log (1 - sigmoid(x))
    sig = 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
    loss = -(p * y * log_sig + (1 - y) * log_1m_sig)
    return loss, (1 - y) * sig - p * y * (1 - sig), 0.0


def mse_loss(input, target, reduction="mean"):
    """Reference squared error, element by element."""
    return _pointwise_loss(_mse, input, target, reduction)


def mse_loss_backward(input, target, reduction="mean", grad_out=None):
    """Reference squared-error gradients (input, target)."""
    return _pointwise_grad(_mse, input, target, reduction, grad_out)


def l1_loss(input, target, reduction="mean"):
    """Reference absolute error, element by element."""
    return _pointwise_loss(_l1, input, target, reduction)


def l1_loss_backward(input, target, reduction="mean", grad_out=None):
    """Reference absolute-error gradients (input, target); sign(0) = 0."""
    return _pointwise_grad(_l1, input, target, reduction, grad_out)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """Reference smooth L1 loss; beta = 0 is the L1 loss."""
    f = _l1 if beta == 0 else _smooth_l1(beta)
    return _pointwise_loss(f, input, target, reduction)


def smooth_l1_loss_backward(input, target, reduction="mean", beta=1.0, grad_out=None):
    """Reference smooth L1 gradients (input, target)."""
    f = _l1 if beta == 0 else _smooth_l1(beta)
    return _pointwise_grad(f, input, target, reduction, grad_out)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """Reference Huber loss, element by element."""
    return _pointwise_loss(_huber(delta), input, target, reduction)


def huber_loss_backward(input, target, reduction="mean", delta=1.0, grad_out=None):
    """Reference Huber gradients (input, target)."""
    return _pointwise_grad(_huber(delta), input, target, reduction, grad_out)


def kl_div(input, target, reduction="mean", log_target=False):
    """Reference Kullback-Leibler divergence with log-probabilities ``input``."""
    return _pointwise_loss(_kl(log_target), input, target, reduction)


def kl_div_backward(input, target, reduction="mean", log_target=False, grad_out=None):
    """Reference gradient of kl_div with respect to input."""
    return _pointwise_grad(_kl(log_target), input, target, reduction, grad_out)[0]


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Reference binary cross-entropy, each log clamped at -100 as PyTorch."""
    return _pointwise_loss(_bce, input, target, reduction, weight)


def binary_cross_entropy_backward(input, target, weight=None, reduction="mean", grad_out=None):
    """Reference BCE gradient wrt input: ``w (x - y) / max(x (1 - x), 1e-12)``, PyTorch's."""
    return _pointwise_grad(_bce, input, target, reduction, grad_out, weight)[0]


def _pos_weight(input, pos_weight):
    shape = np.shape(input)
    return np.ones(shape) if pos_weight is None else np.broadcast_to(pos_weight, shape)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):  # fmt: skip
    """Reference binary cross-entropy of sigmoid(input), through log-sigmoid."""
    values = _elementwise(_bce_logits, input, target, _pos_weight(input, pos_weight), weight=weight)
    shape = np.shape(input)
    return _reduce([v[0] for v in values], reduction, max(1, math.prod(shape)), shape)


def binary_cross_entropy_with_logits_backward(input, target, weight=None, reduction="mean",
                                              pos_weight=None, grad_out=None):  # fmt: skip
    """Reference gradient of binary_cross_entropy_with_logits with respect to input."""
    values = _elementwise(_bce_logits, input, target, _pos_weight(input, pos_weight), weight=weight)
    shape = np.shape(input)
    s = _scales(grad_out, reduction, max(1, math.prod(shape)), len(values))
    return np.array([si * v[1] for si, v in zip(s, values, strict=True)]).reshape(shape)
