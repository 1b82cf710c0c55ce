"""Binary cross-entropy, of probabilities and of logits, forward and backward.

Both compare ``input`` with a ``target`` of its shape element by element, scale
each element's loss by an optional ``weight`` that broadcasts to input's shape,
and reduce ("mean" over all elements). Their backward takes the forward's
arguments and an optional ``grad_out`` (default 1) last, like
:func:`cross_entropy_backward`, and returns the gradient with respect to
``input`` (the target is not differentiated).
"""

from __future__ import annotations

from typing import Any

from ..backend import dispatch
from . import _loss

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_backward",
]

# PyTorch's clamps: each log at -100 in the forward, x (1 - x) at 1e-12 in the backward
_LOG_FLOOR = -100.0
_EPSILON = 9.999999960041972e-13  # float32(1e-12): PyTorch clamps with a C float
# Below e**-100 in both float32 (a subnormal) and float64: log(max(x, _TINY)) is log(x)
# down to the floor and finite, without a divide-by-zero warning, at x = 0
_TINY = 1e-45


def _cast(dtype: Any, *arrays: Any) -> list[Any]:
    return [None if a is None else a.astype(dtype, copy=False) for a in arrays]


def _bce_check(input: Any, target: Any, weight: Any, reduction: Any, grad_out: Any = None
               ) -> tuple[Any, Any, Any, Any, Any]:  # fmt: skip
    xp, dtype = _loss.check_pair(input, target, reduction, grad_out, weight=weight)
    x, t, w, g = _cast(dtype, input, target, weight, grad_out)
    if x.size and not bool(xp.all((x >= 0) & (x <= 1))):
        raise ValueError(
            f"input must hold probabilities in [0, 1], got values from {float(x.min())} to "
            f"{float(x.max())}"
        )
    return xp, x, t, w, g


@dispatch("input", "target", "weight")
def binary_cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    *,
    backend: str | None = None,
) -> Any:
    """Return the binary cross-entropy of probabilities ``input`` against ``target``.

    Elementwise ``-weight * (t * log(x) + (1 - t) * log(1 - x))``, each log
    clamped at -100 as PyTorch does, so a 0 or 1 probability gives a finite loss.

    Parameters
    ----------
    input : array, any shape
        Probabilities in [0, 1] (a ValueError names the range found otherwise).
    target : array, shape of input
        Targets, usually 0 and 1.
    weight : array, optional
        Rescales each element's loss; broadcasts to input's shape.
    reduction : {"mean", "sum", "none"}, default "mean"
    backend : str, optional

    See Also
    --------
    torch.nn.functional.binary_cross_entropy, binary_cross_entropy_with_logits

    Examples
    --------
    >>> import numpy as np
    >>> float(binary_cross_entropy(np.array([1.0, 0.5]), np.array([0.0, 1.0]), reduction="sum"))
    100.69314718055995
    """
    xp, x, t, w, _ = _bce_check(input, target, weight, reduction)
    log_x = xp.maximum(xp.log(xp.maximum(x, _TINY)), _LOG_FLOOR)
    log_1mx = xp.maximum(xp.log(xp.maximum(1 - x, _TINY)), _LOG_FLOOR)
    losses = -(t * log_x + (1 - t) * log_1mx)
    if w is not None:
        losses *= w
    return _loss.reduce(xp, losses, reduction)


@dispatch("input", "target", "weight", "grad_out")
def binary_cross_entropy_backward(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    grad_out: Any = None,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`binary_cross_entropy` with respect to ``input``.

    ``weight * (x - t) / max(x * (1 - x), 1e-12) * s``, PyTorch's formula, with
    ``s = grad_out`` (default 1) divided by the number of elements for "mean".

    Returns
    -------
    array, shape of input
    """
    xp, x, t, w, g = _bce_check(input, target, weight, reduction, grad_out)
    grad = (x - t) / xp.maximum(x * (1 - x), _EPSILON)
    if w is not None:
        grad *= w
    grad *= _loss.grad_scale(xp, g, reduction, x.dtype, x.size)
    return grad


def _bce_logits_check(input: Any, target: Any, weight: Any, reduction: Any, pos_weight: Any,
                      grad_out: Any = None) -> tuple[Any, ...]:  # fmt: skip
    xp, dtype = _loss.check_pair(input, target, reduction, grad_out, weight=weight,
                                 pos_weight=pos_weight)  # fmt: skip
    return xp, *_cast(dtype, input, target, weight, pos_weight, grad_out)


@dispatch("input", "target", "weight", "pos_weight")
def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
    *,
    backend: str | None = None,
) -> Any:
    """Return the binary cross-entropy of ``sigmoid(input)`` against ``target``, stably.

    Elementwise ``weight * ((1 - t) * x + (1 + (p - 1) * t) * softplus(-x))``,
    which is ``-weight * (p * t * log(sigmoid(x)) + (1 - t) * log(1 - sigmoid(x)))``
    with ``softplus(-x) = max(-x, 0) + log1p(exp(-|x|))``: no exponent above 0,
    so no overflow for any logit.

    Parameters
    ----------
    input : array, any shape
        Logits.
    target : array, shape of input
        Targets, usually 0 and 1.
    weight : array, optional
        Rescales each element's loss; broadcasts to input's shape.
    reduction : {"mean", "sum", "none"}, default "mean"
    pos_weight : array, optional
        Weight ``p`` of the positive term, e.g. one per class along the last
        axis; broadcasts to input's shape. Default 1.
    backend : str, optional

    See Also
    --------
    torch.nn.functional.binary_cross_entropy_with_logits, binary_cross_entropy
    """
    xp, x, t, w, p = _bce_logits_check(input, target, weight, reduction, pos_weight)[:5]
    softplus = xp.maximum(-x, 0) + xp.log1p(xp.exp(-abs(x)))  # softplus(-x) = -log sigmoid(x)
    if p is None:
        losses = (1 - t) * x + softplus
    else:
        losses = (1 - t) * x + (1 + (p - 1) * t) * softplus
    if w is not None:
        losses *= w
    return _loss.reduce(xp, losses, reduction)


@dispatch("input", "target", "weight", "pos_weight", "grad_out")
def binary_cross_entropy_with_logits_backward(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
    grad_out: Any = None,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`binary_cross_entropy_with_logits` with respect to input.

    ``weight * ((1 - t) * sigmoid(x) - p * t * (1 - sigmoid(x))) * s``, which is
    ``weight * (sigmoid(x) - t) * s`` without ``pos_weight``; ``s`` as in
    :func:`binary_cross_entropy_backward`.

    Returns
    -------
    array, shape of input
    """
    xp, x, t, w, p, g = _bce_logits_check(input, target, weight, reduction, pos_weight, grad_out)
    e = xp.exp(-abs(x))  # sigmoid from exp(-|x|) <= 1: no overflow
    sig = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
    grad = sig - t if p is None else (1 - t) * sig - p * t * (1 - sig)
    if w is not None:
        grad *= w
    grad *= _loss.grad_scale(xp, g, reduction, x.dtype, x.size)
    return grad
