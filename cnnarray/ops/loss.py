"""Softmax cross-entropy with integer class targets, forward and backward."""

from __future__ import annotations

from typing import Any

from .. import _args
from ..backend import array_namespace, dispatch

__all__ = ["cross_entropy", "cross_entropy_backward"]


def _check(logits: Any, target: Any, reduction: Any, label_smoothing: Any) -> tuple[Any, Any, Any]:
    """Validate a cross-entropy call; return ``xp`` and 2-D logits and 1-D target."""
    _args.check_reduction(reduction)
    _args.check_real(label_smoothing, "label_smoothing", low=0, high=1)
    _args.check_ndim(logits, "logits", (1, 2), "(N, C) or (C,)")
    _args.check_nonempty(logits, "logits")
    if not hasattr(target, "dtype") or target.dtype.kind not in "iu":
        got = getattr(target, "dtype", type(target).__name__)
        raise TypeError(f"target must hold integer class indices, got {got}")
    batch = logits.shape[:-1]
    if tuple(target.shape) != tuple(batch):
        raise ValueError(
            f"target must have shape {tuple(batch)} to match logits of shape "
            f"{tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    xp = array_namespace(logits)
    logits = logits.astype(_args.float_dtype(xp, logits=logits), copy=False)
    classes = logits.shape[-1]
    target = target.reshape(-1)
    low, high = int(target.min()), int(target.max())
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        raise ValueError(
            f"target must hold class indices in [0, {classes}) for logits with {classes} "
            f"classes, got {bad}"
        )
    return xp, logits.reshape(-1, classes), target


def _exp_rows(xp: Any, logits: Any) -> tuple[Any, Any, Any]:
    """``(m, e, s)``: row maxima (N, 1), ``e = exp(logits - m)`` (N, C), row sums of e (N, 1).

    ``log_softmax = logits - m - log(s)`` and ``softmax = e / s``; subtracting
    the maximum keeps every exponent at most 0.
    """
    m = logits.max(axis=1, keepdims=True)
    e = logits - m
    xp.exp(e, out=e)
    return m, e, e.sum(axis=1, keepdims=True)


@dispatch("logits", "target")
def cross_entropy(
    logits: Any,
    target: Any,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    backend: str | None = None,
) -> Any:
    """Return the softmax cross-entropy of ``logits`` against class indices.

    ``loss_n = -sum_c q[n, c] * log_softmax(logits)[n, c]`` with
    ``q = (1 - label_smoothing) * onehot(target) + label_smoothing / C``, as
    PyTorch's ``cross_entropy``.

    Parameters
    ----------
    logits : array, shape (N, C) or (C,)
        Unnormalised scores.
    target : int array, shape (N,) or ()
        Class indices in ``[0, C)``.
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float in [0, 1], default 0.0
    backend : str, optional

    Returns
    -------
    array
        Shape () for "mean" and "sum", (N,) (or () unbatched) for "none".

    See Also
    --------
    torch.nn.functional.cross_entropy
    """
    batch = tuple(logits.shape[:-1]) if hasattr(logits, "shape") else ()
    xp, logits2, target = _check(logits, target, reduction, label_smoothing)
    # sum_c q_c = 1, so loss = logsumexp - sum_c q_c logits_c: a gather of the
    # target's logit (and the row mean when smoothing), no dense q
    m, _, s = _exp_rows(xp, logits2)
    rows = xp.arange(target.shape[0])
    picked = logits2[rows, target]
    losses = (m[:, 0] - picked) + xp.log(s[:, 0])
    if label_smoothing:
        spread = (m[:, 0] - logits2.mean(axis=1)) + xp.log(s[:, 0])
        losses = (1 - label_smoothing) * losses + label_smoothing * spread
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses.reshape(batch)


@dispatch("logits", "target", "grad_out")
def cross_entropy_backward(
    logits: Any,
    target: Any,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad_out: Any = None,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`cross_entropy` with respect to the logits.

    ``grad = (softmax(logits) - q) * grad_out``, divided by N for "mean".

    Parameters
    ----------
    logits, target, reduction, label_smoothing, backend
        As given to :func:`cross_entropy`.
    grad_out : array, optional
        Gradient of the loss with respect to the cross-entropy's output: a
        scalar for "mean"/"sum", shape (N,) for "none". Default 1.

    Returns
    -------
    array, shape of logits
    """
    shape = tuple(logits.shape) if hasattr(logits, "shape") else ()
    xp, logits2, target = _check(logits, target, reduction, label_smoothing)
    n, classes = logits2.shape
    scale = xp.ones((n, 1), dtype=logits2.dtype)  # d loss_n / d output, per row
    if reduction == "mean":
        scale /= n
    if grad_out is not None:
        expected = shape[:-1] if reduction == "none" else ()
        _args.check_shape(grad_out, "grad_out", expected)
        dtype = _args.float_dtype(xp, logits=logits2, grad_out=grad_out)
        g = grad_out.astype(dtype, copy=False)
        scale = scale * (g.reshape(-1, 1) if reduction == "none" else g)
    # (softmax - q) * scale, in the buffer of exp(logits - m): one pass for
    # softmax and scale, a scatter for the target, one more when smoothing
    _, grad, s = _exp_rows(xp, logits2)
    grad *= scale / s
    grad[xp.arange(n), target] -= (1 - label_smoothing) * scale[:, 0]
    if label_smoothing:
        grad -= (label_smoothing / classes) * scale
    return grad.reshape(shape)
