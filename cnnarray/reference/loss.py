"""Cross-entropy by its definition, sample by sample."""

from __future__ import annotations

import numpy as np

from .activation import _softmax_rows


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    """Reference cross-entropy, one sample at a time."""
    logits = np.asarray(logits, np.float64)
    rows, t = logits.reshape(-1, logits.shape[-1]), np.asarray(target).reshape(-1)
    c = rows.shape[1]
    losses = []
    for row, k in zip(rows, t, strict=True):
        logp = np.log(_softmax_rows(row, -1))
        losses.append(-(1 - label_smoothing) * logp[k] - label_smoothing / c * logp.sum())
    losses = np.array(losses)
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses.reshape(logits.shape[:-1])


def cross_entropy_backward(logits, target, reduction="mean", label_smoothing=0.0, grad_out=None):
    """Reference cross-entropy gradient: softmax minus the smoothed one-hot."""
    logits = np.asarray(logits, np.float64)
    rows, t = logits.reshape(-1, logits.shape[-1]), np.asarray(target).reshape(-1)
    n, c = rows.shape
    grad = _softmax_rows(rows, -1)
    for i, k in enumerate(t):
        grad[i] -= label_smoothing / c
        grad[i, k] -= 1 - label_smoothing
    if reduction == "mean":
        grad /= n
    if grad_out is not None:
        g = np.asarray(grad_out, np.float64)
        grad *= g.reshape(-1, 1) if reduction == "none" else g
    return grad.reshape(logits.shape)
