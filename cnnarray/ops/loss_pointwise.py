"""Elementwise regression and divergence losses: mse_loss, l1_loss, smooth_l1_loss,
huber_loss and kl_div, forward and backward.

Each compares ``input`` with a ``target`` of its shape element by element and
reduces the per-element losses ("mean" over all elements, NaN when there are
none; kl_div also has "batchmean"). Their backward takes the forward's
arguments and an optional ``grad_out`` (default 1) last, like
:func:`cross_entropy_backward`. The distance losses are differentiable in
``target`` too and return ``(grad_input, grad_target)``; kl_div returns the
gradient with respect to ``input`` only.
"""

from __future__ import annotations

from typing import Any

from .. import _args
from ..backend import dispatch
from . import _loss

__all__ = [
    "huber_loss",
    "huber_loss_backward",
    "kl_div",
    "kl_div_backward",
    "l1_loss",
    "l1_loss_backward",
    "mse_loss",
    "mse_loss_backward",
    "smooth_l1_loss",
    "smooth_l1_loss_backward",
]


def _difference(input: Any, target: Any, reduction: Any, grad_out: Any = None) -> tuple[Any, ...]:
    """Validate a distance loss; return xp, ``input - target`` and grad_out in one dtype."""
    xp, dtype = _loss.check_pair(input, target, reduction, grad_out)
    d = input.astype(dtype, copy=False) - target.astype(dtype, copy=False)
    return xp, d, None if grad_out is None else grad_out.astype(dtype, copy=False)


def _both(xp: Any, grad: Any, d: Any, reduction: str, grad_out: Any) -> tuple[Any, Any]:
    """``(g, -g)`` with ``g = grad * d output / d l``: the input's and the target's gradients."""
    grad *= _loss.grad_scale(xp, grad_out, reduction, d.dtype, d.size)
    return grad, -grad


@dispatch("input", "target")
def mse_loss(
    input: Any, target: Any, reduction: str = "mean", *, backend: str | None = None
) -> Any:
    """Return the squared error ``(input - target) ** 2``, reduced.

    Parameters
    ----------
    input : array, any shape
    target : array, shape of input
    reduction : {"mean", "sum", "none"}, default "mean"
    backend : str, optional

    Returns
    -------
    array
        Shape () for "mean" and "sum", input's shape for "none".

    See Also
    --------
    torch.nn.functional.mse_loss

    Examples
    --------
    >>> import numpy as np
    >>> float(mse_loss(np.array([1.0, 2.0]), np.array([0.0, 0.0])))
    2.5
    """
    xp, d, _ = _difference(input, target, reduction)
    return _loss.reduce(xp, d * d, reduction)


@dispatch("input", "target", "grad_out")
def mse_loss_backward(
    input: Any,
    target: Any,
    reduction: str = "mean",
    grad_out: Any = None,
    *,
    backend: str | None = None,
) -> tuple[Any, Any]:
    """Return the gradients of :func:`mse_loss`: ``(2 (input - target) s, -2 (input - target) s)``.

    ``s`` is ``grad_out`` (default 1; shape of input for "none"), divided by
    the number of elements for "mean".

    Returns
    -------
    (array, array)
        With respect to input and to target, both of input's shape.
    """
    xp, d, grad_out = _difference(input, target, reduction, grad_out)
    return _both(xp, 2 * d, d, reduction, grad_out)


@dispatch("input", "target")
def l1_loss(input: Any, target: Any, reduction: str = "mean", *, backend: str | None = None) -> Any:
    """Return the absolute error ``|input - target|``, reduced.

    Parameters
    ----------
    input : array, any shape
    target : array, shape of input
    reduction : {"mean", "sum", "none"}, default "mean"
    backend : str, optional

    See Also
    --------
    torch.nn.functional.l1_loss
    """
    xp, d, _ = _difference(input, target, reduction)
    return _loss.reduce(xp, abs(d), reduction)


@dispatch("input", "target", "grad_out")
def l1_loss_backward(
    input: Any,
    target: Any,
    reduction: str = "mean",
    grad_out: Any = None,
    *,
    backend: str | None = None,
) -> tuple[Any, Any]:
    """Return the gradients of :func:`l1_loss`: ``(sign(d) s, -sign(d) s)``, ``d = input - target``.

    ``sign(0) = 0``, as PyTorch's. ``s`` as in :func:`mse_loss_backward`.
    """
    xp, d, grad_out = _difference(input, target, reduction, grad_out)
    return _both(xp, xp.sign(d), d, reduction, grad_out)


def _check_beta(beta: Any) -> float:
    return _args.check_real(beta, "beta", low=0)


def _smooth(xp: Any, d: Any, beta: float) -> Any:
    """``0.5 d^2 / beta`` where ``|d| < beta``, ``|d| - 0.5 beta`` elsewhere (|d| for beta 0)."""
    a = abs(d)
    if beta == 0:
        return a
    return xp.where(a < beta, (0.5 / beta) * d * d, a - 0.5 * beta)


def _smooth_grad(xp: Any, d: Any, beta: float) -> Any:
    """``d / beta`` clipped to [-1, 1]: the slope of :func:`_smooth` (sign(d) for beta 0)."""
    return xp.sign(d) if beta == 0 else xp.clip(d / beta, -1, 1)


@dispatch("input", "target")
def smooth_l1_loss(
    input: Any,
    target: Any,
    reduction: str = "mean",
    beta: float = 1.0,
    *,
    backend: str | None = None,
) -> Any:
    """Return the smooth L1 loss of ``d = input - target``, reduced.

    ``0.5 * d**2 / beta`` where ``|d| < beta``, ``|d| - 0.5 * beta`` elsewhere;
    ``beta = 0`` is :func:`l1_loss`.

    Parameters
    ----------
    input : array, any shape
    target : array, shape of input
    reduction : {"mean", "sum", "none"}, default "mean"
    beta : float >= 0, default 1.0
    backend : str, optional

    See Also
    --------
    torch.nn.functional.smooth_l1_loss, huber_loss
    """
    beta = _check_beta(beta)
    xp, d, _ = _difference(input, target, reduction)
    return _loss.reduce(xp, _smooth(xp, d, beta), reduction)


@dispatch("input", "target", "grad_out")
def smooth_l1_loss_backward(
    input: Any,
    target: Any,
    reduction: str = "mean",
    beta: float = 1.0,
    grad_out: Any = None,
    *,
    backend: str | None = None,
) -> tuple[Any, Any]:
    """Return the gradients of :func:`smooth_l1_loss` with respect to input and target.

    ``clip(d / beta, -1, 1) * s`` and its negative (``sign(d) * s`` for beta 0);
    ``s`` as in :func:`mse_loss_backward`.
    """
    beta = _check_beta(beta)
    xp, d, grad_out = _difference(input, target, reduction, grad_out)
    return _both(xp, _smooth_grad(xp, d, beta), d, reduction, grad_out)


def _check_delta(delta: Any) -> float:
    return _args.check_real(delta, "delta", low=0, low_open=True)


@dispatch("input", "target")
def huber_loss(
    input: Any,
    target: Any,
    reduction: str = "mean",
    delta: float = 1.0,
    *,
    backend: str | None = None,
) -> Any:
    """Return the Huber loss of ``d = input - target``, reduced.

    ``0.5 * d**2`` where ``|d| < delta``, ``delta * (|d| - 0.5 * delta)``
    elsewhere: ``delta`` times :func:`smooth_l1_loss` with ``beta = delta``.

    Parameters
    ----------
    input : array, any shape
    target : array, shape of input
    reduction : {"mean", "sum", "none"}, default "mean"
    delta : float > 0, default 1.0
    backend : str, optional

    See Also
    --------
    torch.nn.functional.huber_loss, smooth_l1_loss
    """
    delta = _check_delta(delta)
    xp, d, _ = _difference(input, target, reduction)
    return _loss.reduce(xp, delta * _smooth(xp, d, delta), reduction)


@dispatch("input", "target", "grad_out")
def huber_loss_backward(
    input: Any,
    target: Any,
    reduction: str = "mean",
    delta: float = 1.0,
    grad_out: Any = None,
    *,
    backend: str | None = None,
) -> tuple[Any, Any]:
    """Return the gradients of :func:`huber_loss` with respect to input and target.

    ``clip(d, -delta, delta) * s`` and its negative; ``s`` as in
    :func:`mse_loss_backward`.
    """
    delta = _check_delta(delta)
    xp, d, grad_out = _difference(input, target, reduction, grad_out)
    return _both(xp, xp.clip(d, -delta, delta), d, reduction, grad_out)


_KL_REDUCTIONS = ("mean", "batchmean", "sum", "none")


def _kl_check(input: Any, target: Any, reduction: Any, log_target: Any, grad_out: Any = None
              ) -> tuple[Any, Any, Any, Any, Any]:  # fmt: skip
    """Validate a kl_div call; return xp, input, target, grad_out in one dtype, and the count
    that "mean" or "batchmean" divides by."""
    _args.check_bool(log_target, "log_target")
    xp, dtype = _loss.check_pair(input, target, reduction, grad_out, _KL_REDUCTIONS)
    count = (input.shape[0] if input.ndim else 1) if reduction == "batchmean" else input.size
    cast = [None if a is None else a.astype(dtype, copy=False) for a in (input, target, grad_out)]
    return xp, *cast, count


@dispatch("input", "target")
def kl_div(
    input: Any,
    target: Any,
    reduction: str = "mean",
    log_target: bool = False,
    *,
    backend: str | None = None,
) -> Any:
    """Return the Kullback-Leibler divergence of ``target`` from log-probabilities ``input``.

    Elementwise ``target * (log(target) - input)`` (0 where target is 0), or
    ``exp(target) * (target - input)`` with ``log_target``. "mean" divides
    the sum by the number of elements, as PyTorch does; "batchmean" divides it
    by the batch size ``input.shape[0]``, which is the divergence's true mean
    over samples.

    Parameters
    ----------
    input : array, any shape
        Log-probabilities, e.g. from :func:`log_softmax`.
    target : array, shape of input
        Probabilities, or log-probabilities with ``log_target``.
    reduction : {"mean", "batchmean", "sum", "none"}, default "mean"
    log_target : bool, default False
    backend : str, optional

    See Also
    --------
    torch.nn.functional.kl_div

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.5, 0.5]])
    >>> float(kl_div(np.log(p), p, reduction="batchmean"))
    0.0
    """
    xp, x, t, _, count = _kl_check(input, target, reduction, log_target)
    if log_target:
        losses = xp.exp(t) * (t - x)
    else:
        # xlogy(t, t): 0 where t is 0 (log(1) there), NaN for t < 0
        losses = t * (xp.log(xp.where(t == 0, 1, t)) - x)
    red = "mean" if reduction == "batchmean" else reduction
    return _loss.reduce(xp, losses, red, count if red == "mean" else None)


@dispatch("input", "target", "grad_out")
def kl_div_backward(
    input: Any,
    target: Any,
    reduction: str = "mean",
    log_target: bool = False,
    grad_out: Any = None,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`kl_div` with respect to ``input``.

    ``-target * s`` (``-exp(target) * s`` with ``log_target``), with ``s`` the
    ``grad_out`` (default 1) divided by the count of "mean" or "batchmean".

    Returns
    -------
    array, shape of input
    """
    xp, x, t, grad_out, count = _kl_check(input, target, reduction, log_target, grad_out)
    grad = -(xp.exp(t) if log_target else t)
    red = "mean" if reduction == "batchmean" else reduction
    grad *= _loss.grad_scale(xp, grad_out, red, x.dtype, count)
    return grad
