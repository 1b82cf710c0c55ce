"""Classification losses over class scores: softmax cross-entropy and the negative
log-likelihood, forward and backward.

Both take ``(C,)`` (one sample), ``(N, C)`` or ``(N, C, d1, ..., dk)`` scores
with class indices of shape ``()``, ``(N,)`` or ``(N, d1, ..., dk)``, and follow
PyTorch's rules for ``weight`` (one per class), ``ignore_index`` and the
weighted mean: ``sum_i w[y_i] * l_i / sum_i w[y_i]`` over the targets not
ignored (NaN when all are). Internally the scores are rows, shape ``(M, C)``
with ``M = N * d1 * ... * dk``, the class axis moved last.

A loss ends the chain, so its backward takes the forward's arguments and an
optional ``grad_out`` (default 1) last: ``model.backward(cross_entropy_backward(
logits, target))`` starts backpropagation.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _args
from ..backend import array_namespace, dispatch
from . import _loss

__all__ = ["cross_entropy", "cross_entropy_backward", "nll_loss", "nll_loss_backward"]


def _rows(x: Any) -> Any:
    """Scores as rows ``(M, C)``: a view for (C,) and (N, C), a copy for (N, C, d1..dk)."""
    if x.ndim <= 2:
        return x.reshape(-1, x.shape[-1])
    classes = x.shape[1]
    return array_namespace(x).moveaxis(x, 1, -1).reshape(-1, classes)


def _unrows(xp: Any, rows: Any, shape: tuple[int, ...]) -> Any:
    """Rows ``(M, C)`` back to the scores' ``shape``, class axis at 1 (contiguous)."""
    if len(shape) <= 2:
        return rows.reshape(shape)
    moved = rows.reshape(shape[:1] + shape[2:] + shape[1:2])  # (N, d1..dk, C)
    return xp.ascontiguousarray(xp.moveaxis(moved, -1, 1))


def _batch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the class-index target (and of the "none" output) for scores of ``shape``."""
    return shape[:1] + shape[2:] if len(shape) >= 2 else ()


class _Targets(NamedTuple):
    """Class-index targets as rows, with what the weighted mean needs."""

    index: Any  # (M,) ints in [0, C); 0 where ignored, so gathers stay in range
    ignored: Any  # (M,) bool, or None when no target is ignored
    weight: Any  # weight[index] (M,), 0 where ignored; None when unweighted
    count: Any  # the "mean" divisor: sum of weight[index] (0-d) or targets not ignored (int)


def _check_scores(x: Any, name: str, reduction: Any, weight: Any, ignore_index: Any) -> None:
    _args.check_reduction(reduction)
    _args.check_int(ignore_index, "ignore_index")
    if not hasattr(x, "ndim") or x.ndim == 0:
        _args.check_ndim(x, name, (1, 2), "(C,), (N, C) or (N, C, d1, ..., dk)")
    _args.check_nonempty(x, name)
    if weight is not None:
        if getattr(weight, "dtype", None) is not None and weight.dtype.kind in "USO":
            # e.g. cross_entropy(x, y, "sum"): weight now comes third, as in PyTorch
            raise TypeError(
                f"weight must be an array of class weights, got {weight!r}; pass reduction "
                "and label_smoothing by keyword"
            )
        _args.check_shape(weight, "weight", x.shape[1:2] if x.ndim >= 2 else x.shape)


def _check_index(target: Any, x: Any, name: str) -> None:
    """Raise unless ``target`` holds integer class indices of the shape that fits ``x``."""
    if not hasattr(target, "dtype") or target.dtype.kind not in "iu":
        got = getattr(target, "dtype", type(target).__name__)
        hint = ""
        if getattr(target, "dtype", None) is not None and target.dtype.kind == "f":
            hint = f"; class probabilities need the shape of {name}, {tuple(x.shape)}"
        raise TypeError(f"target must hold integer class indices, got {got}{hint}")
    batch = _batch_shape(tuple(x.shape))
    if tuple(target.shape) != batch:
        raise ValueError(
            f"target must have shape {batch} to match {name} of shape {tuple(x.shape)}, "
            f"got {tuple(target.shape)}"
        )


def _targets(
    xp: Any, target: Any, classes: int, ignore_index: int, weight: Any, name: str
) -> _Targets:
    """Validate class indices (any integer dtype) and gather what the reductions need.

    Without a target equal to ``ignore_index`` and without ``weight`` this costs
    one min and one max: the path of a plain training step.
    """
    t = target.reshape(-1)
    low, high = int(t.min()), int(t.max())
    ignored, kept = None, t.shape[0]
    if low <= ignore_index <= high:
        mask = t == ignore_index
        if bool(mask.any()):
            ignored, rest = mask, t[~mask]
            kept = rest.shape[0]
            low, high = (int(rest.min()), int(rest.max())) if kept else (0, 0)
            t = xp.where(mask, 0, t)
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        raise ValueError(
            f"target must hold class indices in [0, {classes}) for {name} with {classes} "
            f"classes, got {bad}"
        )
    if weight is None:
        return _Targets(t, ignored, None, kept)
    w = weight[t]
    if ignored is not None:
        w[ignored] = 0
    # every target ignored: a count of exactly 0, so "mean" is NaN without a 0/0 warning
    return _Targets(t, ignored, w, w.sum() if kept else 0)


def _prepare(
    x: Any, target: Any, weight: Any, ignore_index: int, name: str, grad_out: Any = None
) -> tuple[Any, Any, Any, Any, _Targets]:
    """Scores with checked class-index targets: xp, rows, weight, grad_out, targets.

    The targets' values are checked before the scores are copied into rows.
    """
    xp = array_namespace(x)
    dtype = _args.float_dtype(xp, **{name: x}, weight=weight, grad_out=grad_out)
    weight = None if weight is None else weight.astype(dtype, copy=False)
    grad_out = None if grad_out is None else grad_out.astype(dtype, copy=False)
    classes = x.shape[1] if x.ndim >= 2 else x.shape[0]
    t = _targets(xp, target, classes, ignore_index, weight, name)
    return xp, _rows(x.astype(dtype, copy=False)), weight, grad_out, t


def _row_scale(xp: Any, t: _Targets, grad_out: Any, reduction: str, dtype: Any) -> Any:
    """``d output / d l_i``: one scalar for every row, or a column (M, 1) with 0 on ignored rows."""
    scale = _loss.grad_scale(xp, grad_out, reduction, dtype, t.count)
    if reduction == "none" and grad_out is not None:
        scale = scale.reshape(-1, 1)
    if t.ignored is not None:
        scale = xp.where(t.ignored[:, None], 0, scale).astype(dtype, copy=False)
    return scale


def _per_row(scale: Any) -> Any:
    """A scale of :func:`_row_scale` per row: (M,) from a column, a scalar as it is."""
    return scale[:, 0] if getattr(scale, "ndim", 0) == 2 else scale


def _reduce(xp: Any, losses: Any, t: _Targets, reduction: str, shape: tuple[int, ...]) -> Any:
    if t.ignored is not None:
        losses = xp.where(t.ignored, 0, losses).astype(losses.dtype, copy=False)
    if reduction == "none":
        return losses.reshape(_batch_shape(shape))
    unweighted = t.weight is None and t.ignored is None
    return _loss.reduce(xp, losses, reduction, None if unweighted else t.count)


# --------------------------------------------------------------------------- nll_loss


@dispatch("input", "target", "weight")
def nll_loss(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    *,
    backend: str | None = None,
) -> Any:
    """Return the negative log-likelihood of class indices under log-probabilities.

    ``l_i = -weight[y_i] * input[i, y_i]`` for each sample (and position) ``i``
    whose target ``y_i`` is not ``ignore_index``; 0 for the others. "mean" is
    ``sum_i l_i / sum_i weight[y_i]`` over the targets not ignored (their number
    without ``weight``; NaN when every target is ignored), as PyTorch's.

    Parameters
    ----------
    input : array, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Log-probabilities, e.g. from :func:`log_softmax` over axis 1 (axis 0 for (C,)).
    target : int array, shape (), (N,) or (N, d1, ..., dk)
        Class indices in ``[0, C)``, or ``ignore_index``.
    weight : array, shape (C,), optional
        A weight per class; default 1.
    ignore_index : int, default -100
        Targets equal to it add nothing to the loss nor to the mean's divisor.
    reduction : {"mean", "sum", "none"}, default "mean"
    backend : str, optional

    Returns
    -------
    array
        Shape () for "mean" and "sum", the target's shape for "none".

    See Also
    --------
    torch.nn.functional.nll_loss, cross_entropy

    Examples
    --------
    >>> import numpy as np
    >>> float(nll_loss(np.log([[0.5, 0.5], [0.25, 0.75]]), np.array([0, -100])))
    0.6931471805599453
    """
    _check_scores(input, "input", reduction, weight, ignore_index)
    _check_index(target, input, "input")
    xp, rows, _, _, t = _prepare(input, target, weight, ignore_index, "input")
    losses = -rows[xp.arange(rows.shape[0]), t.index]
    if t.weight is not None:
        losses *= t.weight
    return _reduce(xp, losses, t, reduction, tuple(input.shape))


@dispatch("input", "target", "weight", "grad_out")
def nll_loss_backward(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    grad_out: Any = None,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`nll_loss` with respect to ``input``.

    ``grad[i, y_i] = -weight[y_i] * s_i``, 0 elsewhere and on ignored targets,
    with ``s_i = grad_out`` ("sum"), ``grad_out[i]`` ("none") or
    ``grad_out / sum_i weight[y_i]`` ("mean").

    Parameters
    ----------
    input, target, weight, ignore_index, reduction, backend
        As given to :func:`nll_loss`.
    grad_out : array, optional
        Gradient of the loss with respect to the output of :func:`nll_loss`: shape
        () for "mean" and "sum", the target's shape for "none". Default 1.

    Returns
    -------
    array, shape of input
    """
    _check_scores(input, "input", reduction, weight, ignore_index)
    _check_index(target, input, "input")
    _loss.check_grad_out(grad_out, reduction, _batch_shape(tuple(getattr(input, "shape", ()))))
    xp, rows, _, grad_out, t = _prepare(input, target, weight, ignore_index, "input", grad_out)
    scale = _per_row(_row_scale(xp, t, grad_out, reduction, rows.dtype))
    if t.weight is not None:
        scale = scale * t.weight
    grad = xp.zeros_like(rows)
    grad[xp.arange(rows.shape[0]), t.index] = -scale
    return _unrows(xp, grad, tuple(input.shape))


# --------------------------------------------------------------------------- cross_entropy


def _exp_rows(xp: Any, rows: Any) -> tuple[Any, Any, Any]:
    """``(m, e, s)``: row maxima (M, 1), ``e = exp(rows - m)`` (M, C), row sums of e (M, 1).

    ``log_softmax = rows - m - log(s)`` and ``softmax = e / s``; subtracting
    the maximum keeps every exponent at most 0.
    """
    m = rows.max(axis=1, keepdims=True)
    e = rows - m
    xp.exp(e, out=e)
    return m, e, e.sum(axis=1, keepdims=True)


def _check_ce(logits: Any, target: Any, reduction: Any, label_smoothing: Any, weight: Any,
              ignore_index: Any) -> bool:  # fmt: skip
    """Validate the options of a cross-entropy call; return whether targets are probabilities."""
    _check_scores(logits, "logits", reduction, weight, ignore_index)
    _args.check_real(label_smoothing, "label_smoothing", low=0, high=1)
    dtype = getattr(target, "dtype", None)
    probabilities = dtype is not None and dtype.kind == "f" and target.shape == logits.shape
    if not probabilities:
        _check_index(target, logits, "logits")
    elif ignore_index >= 0:  # PyTorch's rule: a class cannot be ignored in probabilities
        raise ValueError(
            f"ignore_index must be negative with class-probability (float) targets, got "
            f"{ignore_index}"
        )
    return probabilities


def _soft_targets(
    xp: Any, logits: Any, target: Any, weight: Any, label_smoothing: float, grad_out: Any = None
) -> tuple[Any, Any, Any]:
    """Rows of logits and of ``q * weight`` (smoothed probabilities times class weights)."""
    dtype = _args.float_dtype(xp, logits=logits, target=target, weight=weight, grad_out=grad_out)
    rows = _rows(logits.astype(dtype, copy=False))
    q = _rows(target.astype(dtype, copy=False))
    if label_smoothing:
        q = (1 - label_smoothing) * q + label_smoothing / rows.shape[1]
    if weight is not None:
        q = q * weight.astype(dtype, copy=False)
    return dtype, rows, q


@dispatch("logits", "target", "weight")
def cross_entropy(
    logits: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    backend: str | None = None,
) -> Any:
    """Return the softmax cross-entropy of ``logits`` against class indices or probabilities.

    With class indices ``y_i``, for each sample (and position) ``i`` whose target
    is not ``ignore_index``, ``p = log_softmax(logits_i)`` and ``e = label_smoothing``:

        ``l_i = (1 - e) * (-weight[y_i] * p[y_i]) + e / C * (-sum_c weight[c] * p[c])``

    and "mean" is ``sum_i l_i / sum_i weight[y_i]`` over the targets not ignored
    (their number without ``weight``; NaN when every target is ignored), exactly
    as PyTorch's. With class probabilities ``q`` (a float target of the logits'
    shape), ``l_i = -sum_c weight[c] * q'[i, c] * p[c]`` with the smoothed
    ``q' = (1 - e) * q + e / C``, and "mean" divides by the number of samples
    (and positions); ``ignore_index`` must then be negative, and ignores nothing.

    Parameters
    ----------
    logits : array, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Unnormalised scores, the classes along axis 1 (axis 0 for (C,)).
    target : array
        Integer class indices in ``[0, C)`` (or ``ignore_index``), shape (), (N,)
        or (N, d1, ..., dk); or float class probabilities of the logits' shape.
    weight : array, shape (C,), optional
        A weight per class; default 1.
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float in [0, 1], default 0.0
    backend : str, optional

    Returns
    -------
    array
        Shape () for "mean" and "sum"; for "none" the shape of the logits
        without their class axis.

    See Also
    --------
    torch.nn.functional.cross_entropy, nll_loss, log_softmax

    Examples
    --------
    >>> import numpy as np
    >>> round(float(cross_entropy(np.zeros((2, 4)), np.array([1, 3]))), 6)  # log 4
    1.386294
    """
    shape = tuple(getattr(logits, "shape", ()))
    if _check_ce(logits, target, reduction, label_smoothing, weight, ignore_index):
        xp = array_namespace(logits)
        _, rows, q = _soft_targets(xp, logits, target, weight, label_smoothing)
        m, _, s = _exp_rows(xp, rows)
        log_p = rows - (m + xp.log(s))  # log_softmax, (M, C)
        losses = -(q * log_p).sum(axis=1)
        if reduction == "none":
            return losses.reshape(_batch_shape(shape))
        return _loss.reduce(xp, losses, reduction)
    xp, rows, weight, _, t = _prepare(logits, target, weight, ignore_index, "logits")
    # -log_softmax(x)[y] = lse - x[y] with lse = m + log(s): a gather of the
    # target's logit; smoothing adds a weighted row sum, still no dense q
    m, _, s = _exp_rows(xp, rows)
    lse = m[:, 0] + xp.log(s[:, 0])
    losses = lse - rows[xp.arange(rows.shape[0]), t.index]
    if weight is None:
        if label_smoothing:
            spread = lse - rows.mean(axis=1)
            losses = (1 - label_smoothing) * losses + label_smoothing * spread
    else:
        losses *= t.weight if not label_smoothing else (1 - label_smoothing) * t.weight
        if label_smoothing:
            smooth = weight.sum() * lse - rows @ weight
            losses += (label_smoothing / rows.shape[1]) * smooth
    return _reduce(xp, losses, t, reduction, shape)


@dispatch("logits", "target", "weight", "grad_out")
def cross_entropy_backward(
    logits: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad_out: Any = None,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`cross_entropy` with respect to the logits.

    Per row ``i``, with ``p = softmax(logits_i)``, ``e = label_smoothing`` and
    ``W = sum_c weight[c]``: ``s_i * ((1 - e) * weight[y_i] * (p - onehot(y_i))
    + e / C * (W * p - weight))`` for class indices (0 on ignored targets), and
    ``s_i * (sum_c r_c * p - r)`` with ``r = weight * q'`` for probabilities,
    where ``s_i`` is the gradient of the output with respect to ``l_i``
    (``grad_out``, ``grad_out[i]``, or ``grad_out`` over the mean's divisor).

    Parameters
    ----------
    logits, target, weight, ignore_index, reduction, label_smoothing, backend
        As given to :func:`cross_entropy`.
    grad_out : array, optional
        Gradient of the loss with respect to the cross-entropy's output: a
        scalar for "mean"/"sum", the target's batch shape for "none". Default 1.

    Returns
    -------
    array, shape of logits
    """
    shape = tuple(getattr(logits, "shape", ()))
    probabilities = _check_ce(logits, target, reduction, label_smoothing, weight, ignore_index)
    _loss.check_grad_out(grad_out, reduction, _batch_shape(shape))
    xp = array_namespace(logits)
    if probabilities:
        dtype, rows, q = _soft_targets(xp, logits, target, weight, label_smoothing, grad_out)
        scale = _loss.grad_scale(xp, grad_out, reduction, dtype, rows.shape[0])
        if reduction == "none" and grad_out is not None:
            scale = scale.reshape(-1, 1)
        _, grad, s = _exp_rows(xp, rows)
        grad *= q.sum(axis=1, keepdims=True) / s
        grad -= q
        grad *= scale
        return _unrows(xp, grad, shape)
    xp, rows, weight, grad_out, t = _prepare(logits, target, weight, ignore_index, "logits",
                                             grad_out)  # fmt: skip
    n, classes = rows.shape
    scale = _row_scale(xp, t, grad_out, reduction, rows.dtype)  # a scalar or (M, 1)
    # the whole gradient in the buffer of exp(logits - m): one pass for softmax
    # and scale, a scatter for the target, one more when smoothing
    _, grad, s = _exp_rows(xp, rows)
    if weight is None:
        grad *= scale / s
        grad[xp.arange(n), t.index] -= (1 - label_smoothing) * _per_row(scale)
        if label_smoothing:
            grad -= (label_smoothing / classes) * scale
    else:
        wy = t.weight.reshape(-1, 1)
        grad *= scale * ((1 - label_smoothing) * wy + label_smoothing / classes * weight.sum()) / s
        grad[xp.arange(n), t.index] -= (1 - label_smoothing) * _per_row(scale * wy)
        if label_smoothing:
            grad -= (label_smoothing / classes) * scale * weight
    return _unrows(xp, grad, shape)
