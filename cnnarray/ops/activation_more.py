"""More activations, forward and backward: the clipped (hardtanh, relu6, hardsigmoid,
hardswish), the exponential (elu, selu, celu), the smooth gates (gelu, silu, mish,
softplus) and the learned-slope prelu.

As in :mod:`cnnarray.ops.activation`, every ``*_backward(grad_out, x, ...)`` takes
the forward's input and returns ``grad_out * d f(x) / dx``. At the kinks the
derivative is PyTorch's: 0 at both ends of hardtanh / relu6 / hardsigmoid,
0 at hardswish's -3 and 1 at its +3, ``alpha`` at elu's 0, ``weight`` at prelu's 0.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _args
from ..backend import array_namespace, dispatch, erf
from .activation import _float, _grad, _sigmoid

__all__ = [
    "celu",
    "celu_backward",
    "elu",
    "elu_backward",
    "gelu",
    "gelu_backward",
    "hardsigmoid",
    "hardsigmoid_backward",
    "hardswish",
    "hardswish_backward",
    "hardtanh",
    "hardtanh_backward",
    "mish",
    "mish_backward",
    "prelu",
    "prelu_backward",
    "relu6",
    "relu6_backward",
    "selu",
    "selu_backward",
    "silu",
    "silu_backward",
    "softplus",
    "softplus_backward",
]

# SELU's constants (Klambauer et al. 2017), as PyTorch spells them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _where(xp: Any, mask: Any, a: Any, b: Any) -> Any:
    """``where(mask, a, b)`` in a's dtype (a Python scalar b does not promote)."""
    return xp.where(mask, a, xp.asarray(b, dtype=a.dtype) if isinstance(b, float | int) else b)


# --------------------------------------------------------------------------- clipped


def _bounds(min_val: Any, max_val: Any) -> tuple[float, float]:
    lo = _args.check_real(min_val, "min_val")
    hi = _args.check_real(max_val, "max_val")
    if lo > hi:
        raise ValueError(f"min_val must not exceed max_val, got min_val={lo!r} > max_val={hi!r}")
    return lo, hi


@dispatch("x")
def hardtanh(
    x: Any, min_val: float = -1.0, max_val: float = 1.0, *, backend: str | None = None
) -> Any:
    """Return ``x`` clipped to ``[min_val, max_val]`` elementwise (NaN stays NaN).

    Parameters
    ----------
    x : array, any shape
    min_val, max_val : float, default -1 and 1
        The bounds, ``min_val <= max_val``.

    See Also
    --------
    torch.nn.functional.hardtanh
    """
    lo, hi = _bounds(min_val, max_val)
    xp, x = _float(x)
    return xp.clip(x, lo, hi)


@dispatch("grad_out", "x")
def hardtanh_backward(
    grad_out: Any, x: Any, min_val: float = -1.0, max_val: float = 1.0, *,
    backend: str | None = None,
) -> Any:  # fmt: skip
    """Return ``grad_out`` where ``min_val < x < max_val``, else 0 (0 at both bounds)."""
    lo, hi = _bounds(min_val, max_val)
    xp, grad_out, x = _grad(grad_out, x)
    return _where(xp, (x > lo) & (x < hi), grad_out, 0)


@dispatch("x")
def relu6(x: Any, *, backend: str | None = None) -> Any:
    """Return ``min(max(x, 0), 6)``: :func:`hardtanh` with bounds 0 and 6."""
    xp, x = _float(x)
    return xp.clip(x, 0, 6)


@dispatch("grad_out", "x")
def relu6_backward(grad_out: Any, x: Any, *, backend: str | None = None) -> Any:
    """Return ``grad_out`` where ``0 < x < 6``, else 0."""
    xp, grad_out, x = _grad(grad_out, x)
    return _where(xp, (x > 0) & (x < 6), grad_out, 0)


@dispatch("x")
def hardsigmoid(x: Any, *, backend: str | None = None) -> Any:
    """Return ``relu6(x + 3) / 6``: 0 below -3, 1 above 3, linear between."""
    xp, x = _float(x)
    return xp.clip(x + 3, 0, 6) / 6


@dispatch("grad_out", "x")
def hardsigmoid_backward(grad_out: Any, x: Any, *, backend: str | None = None) -> Any:
    """Return ``grad_out / 6`` where ``-3 < x < 3``, else 0."""
    xp, grad_out, x = _grad(grad_out, x)
    return _where(xp, (x > -3) & (x < 3), grad_out / 6, 0)


@dispatch("x")
def hardswish(x: Any, *, backend: str | None = None) -> Any:
    """Return ``x * relu6(x + 3) / 6`` (MobileNetV3's h-swish)."""
    xp, x = _float(x)
    return x * xp.clip(x + 3, 0, 6) / 6


@dispatch("grad_out", "x")
def hardswish_backward(grad_out: Any, x: Any, *, backend: str | None = None) -> Any:
    """Return ``grad_out`` times 0 for ``x <= -3``, ``x / 3 + 1/2`` for ``-3 < x < 3``,
    1 for ``x >= 3`` (PyTorch's one-sided values at the two kinks)."""
    xp, grad_out, x = _grad(grad_out, x)
    slope = _where(xp, x < 3, x / 3 + 0.5, 1.0)
    return _where(xp, x > -3, grad_out * slope, 0)


# --------------------------------------------------------------------------- exponential


def _elu(xp: Any, x: Any, alpha: float, scale: float, input_scale: float) -> Any:
    # exp of min(x, 0): the branch not taken never overflows
    neg = alpha * xp.expm1(xp.minimum(x, 0) * input_scale)
    return scale * _where(xp, x > 0, x, neg)


def _elu_slope(xp: Any, x: Any, alpha: float, scale: float, input_scale: float) -> Any:
    neg = (alpha * input_scale) * xp.exp(xp.minimum(x, 0) * input_scale)
    return scale * _where(xp, x > 0, xp.ones_like(x), neg)


@dispatch("x")
def elu(x: Any, alpha: float = 1.0, *, backend: str | None = None) -> Any:
    """Return ``x`` where ``x > 0`` and ``alpha * (exp(x) - 1)`` elsewhere.

    Parameters
    ----------
    x : array, any shape
    alpha : float, default 1.0

    See Also
    --------
    torch.nn.functional.elu
    """
    alpha = _args.check_real(alpha, "alpha", finite=True)
    xp, x = _float(x)
    return _elu(xp, x, alpha, 1.0, 1.0)


@dispatch("grad_out", "x")
def elu_backward(grad_out: Any, x: Any, alpha: float = 1.0, *, backend: str | None = None) -> Any:
    """Return ``grad_out`` where ``x > 0`` and ``grad_out * alpha * exp(x)`` elsewhere
    (``alpha`` at 0, as PyTorch)."""
    alpha = _args.check_real(alpha, "alpha", finite=True)
    xp, grad_out, x = _grad(grad_out, x)
    return grad_out * _elu_slope(xp, x, alpha, 1.0, 1.0)


@dispatch("x")
def selu(x: Any, *, backend: str | None = None) -> Any:
    """Return ``scale * elu(x, alpha)`` with SELU's fixed ``alpha ~ 1.6733``, ``scale ~ 1.0507``."""
    xp, x = _float(x)
    return _elu(xp, x, SELU_ALPHA, SELU_SCALE, 1.0)


@dispatch("grad_out", "x")
def selu_backward(grad_out: Any, x: Any, *, backend: str | None = None) -> Any:
    """Return ``grad_out * scale`` where ``x > 0``, else ``grad_out * scale * alpha * exp(x)``."""
    xp, grad_out, x = _grad(grad_out, x)
    return grad_out * _elu_slope(xp, x, SELU_ALPHA, SELU_SCALE, 1.0)


def _check_celu_alpha(alpha: Any) -> float:
    alpha = _args.check_real(alpha, "alpha", finite=True)
    if alpha == 0:
        raise ValueError("alpha of celu must be non-zero (it divides x), got 0")
    return alpha


@dispatch("x")
def celu(x: Any, alpha: float = 1.0, *, backend: str | None = None) -> Any:
    """Return ``x`` where ``x > 0`` and ``alpha * (exp(x / alpha) - 1)`` elsewhere.

    See Also
    --------
    torch.nn.functional.celu
    """
    alpha = _check_celu_alpha(alpha)
    xp, x = _float(x)
    return _elu(xp, x, alpha, 1.0, 1 / alpha)


@dispatch("grad_out", "x")
def celu_backward(grad_out: Any, x: Any, alpha: float = 1.0, *, backend: str | None = None) -> Any:
    """Return ``grad_out`` where ``x > 0`` and ``grad_out * exp(x / alpha)`` elsewhere."""
    alpha = _check_celu_alpha(alpha)
    xp, grad_out, x = _grad(grad_out, x)
    return grad_out * _elu_slope(xp, x, alpha, 1.0, 1 / alpha)


# --------------------------------------------------------------------------- smooth gates

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_CUBIC = 0.044715


def _check_approximate(approximate: Any) -> str:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return approximate


@dispatch("x")
def gelu(x: Any, approximate: str = "none", *, backend: str | None = None) -> Any:
    """Return ``x * Phi(x)``, Phi the standard normal CDF.

    Parameters
    ----------
    x : array, any shape
    approximate : {"none", "tanh"}, default "none"
        "none": ``0.5 * x * (1 + erf(x / sqrt(2)))``; "tanh":
        ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))``.

    See Also
    --------
    torch.nn.functional.gelu
    """
    approximate = _check_approximate(approximate)
    xp, x = _float(x)
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x)
        return 0.5 * x * (1 + xp.tanh(inner))
    return 0.5 * x * (1 + erf(xp)(x * (1 / math.sqrt(2))))


@dispatch("grad_out", "x")
def gelu_backward(
    grad_out: Any, x: Any, approximate: str = "none", *, backend: str | None = None
) -> Any:
    """Return ``grad_out * (Phi(x) + x * phi(x))`` (phi the normal density), or the
    derivative of the tanh form."""
    approximate = _check_approximate(approximate)
    xp, grad_out, x = _grad(grad_out, x)
    if approximate == "tanh":
        x2 = x * x
        t = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x2 * x))
        d_inner = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * x2)
        return grad_out * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * d_inner)
    cdf = 0.5 * (1 + erf(xp)(x * (1 / math.sqrt(2))))
    pdf = xp.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
    return grad_out * (cdf + x * pdf)


@dispatch("x")
def silu(x: Any, *, backend: str | None = None) -> Any:
    """Return ``x * sigmoid(x)`` (swish)."""
    xp, x = _float(x)
    return x * _sigmoid(xp, x).astype(x.dtype, copy=False)


@dispatch("grad_out", "x")
def silu_backward(grad_out: Any, x: Any, *, backend: str | None = None) -> Any:
    """Return ``grad_out * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``."""
    xp, grad_out, x = _grad(grad_out, x)
    s = _sigmoid(xp, x).astype(x.dtype, copy=False)
    return grad_out * (s * (1 + x * (1 - s)))


def _softplus(xp: Any, z: Any) -> Any:
    """``log(1 + exp(z))`` without overflow: ``max(z, 0) + log1p(exp(-|z|))``."""
    return xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))


def _softplus_args(beta: Any, threshold: Any) -> tuple[float, float]:
    beta = _args.check_real(beta, "beta", low=0, low_open=True, finite=True)
    return beta, _args.check_real(threshold, "threshold")


@dispatch("x")
def softplus(
    x: Any, beta: float = 1.0, threshold: float = 20.0, *, backend: str | None = None
) -> Any:
    """Return ``log(1 + exp(beta * x)) / beta``, or ``x`` where ``beta * x > threshold``.

    Parameters
    ----------
    x : array, any shape
    beta : float > 0, default 1
    threshold : float, default 20
        Above it the function is taken as linear, as PyTorch does.

    See Also
    --------
    torch.nn.functional.softplus
    """
    beta, threshold = _softplus_args(beta, threshold)
    xp, x = _float(x)
    z = x * beta
    return _where(xp, z > threshold, x, _softplus(xp, z) / beta)


@dispatch("grad_out", "x")
def softplus_backward(
    grad_out: Any, x: Any, beta: float = 1.0, threshold: float = 20.0, *,
    backend: str | None = None,
) -> Any:  # fmt: skip
    """Return ``grad_out * sigmoid(beta * x)``, or ``grad_out`` where ``beta * x > threshold``."""
    beta, threshold = _softplus_args(beta, threshold)
    xp, grad_out, x = _grad(grad_out, x)
    z = x * beta
    s = _sigmoid(xp, z).astype(x.dtype, copy=False)
    return _where(xp, z > threshold, grad_out, grad_out * s)


@dispatch("x")
def mish(x: Any, *, backend: str | None = None) -> Any:
    """Return ``x * tanh(softplus(x))``."""
    xp, x = _float(x)
    return x * xp.tanh(_softplus(xp, x))


@dispatch("grad_out", "x")
def mish_backward(grad_out: Any, x: Any, *, backend: str | None = None) -> Any:
    """Return ``grad_out * (t + x * sigmoid(x) * (1 - t**2))`` with ``t = tanh(softplus(x))``."""
    xp, grad_out, x = _grad(grad_out, x)
    t = xp.tanh(_softplus(xp, x))
    s = _sigmoid(xp, x).astype(x.dtype, copy=False)
    return grad_out * (t + x * s * (1 - t * t))


# --------------------------------------------------------------------------- prelu


def _prelu_check(x: Any, weight: Any) -> int:
    """Validate prelu's weight against x; return its channel count C (1 for 0-d and 1-d x)."""
    for name, a in (("x", x), ("weight", weight)):
        if not hasattr(a, "ndim"):
            raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    channels = int(x.shape[1]) if x.ndim >= 2 else 1
    if weight.ndim != 1 or weight.shape[0] not in (1, channels):
        raise ValueError(
            f"weight must have shape (1,) or (C,) = ({channels},) for x of shape "
            f"{tuple(x.shape)} (channels on axis 1), got {tuple(weight.shape)}"
        )
    return channels


def _prelu_slope(weight: Any, x: Any) -> Any:
    """weight shaped to broadcast over x: a scalar, or (C, 1, ..., 1) for axis 1."""
    if weight.shape[0] == 1:
        return weight.reshape(())
    return weight.reshape((weight.shape[0],) + (1,) * (x.ndim - 2))


@dispatch("x", "weight")
def prelu(x: Any, weight: Any, *, backend: str | None = None) -> Any:
    """Return ``x`` where ``x > 0`` and ``weight * x`` elsewhere, with a learned slope.

    Parameters
    ----------
    x : array, shape (N, C, *) or any shape with one slope
    weight : array, shape (1,) or (C,)
        One slope for all of x, or one per channel (axis 1, as PyTorch).

    See Also
    --------
    torch.nn.functional.prelu
    """
    _prelu_check(x, weight)
    xp = array_namespace(x, weight)
    dtype = _args.float_dtype(xp, x=x, weight=weight)
    x, weight = x.astype(dtype, copy=False), weight.astype(dtype, copy=False)
    return _where(xp, x > 0, x, _prelu_slope(weight, x) * x)


@dispatch("grad_out", "x", "weight")
def prelu_backward(
    grad_out: Any, x: Any, weight: Any, *, backend: str | None = None
) -> tuple[Any, Any]:
    """Return the gradients of :func:`prelu`: ``grad_x`` (``grad_out``, or ``weight *
    grad_out`` where ``x <= 0``) and ``grad_weight``, the sum of ``x * grad_out`` over
    ``x <= 0`` per channel (or in all, for one slope)."""
    _prelu_check(x, weight)
    _args.check_same_shape(grad_out, "grad_out", x, "x")
    xp = array_namespace(grad_out, x, weight)
    dtype = _args.float_dtype(xp, grad_out=grad_out, x=x, weight=weight)
    g, x, weight = (a.astype(dtype, copy=False) for a in (grad_out, x, weight))
    positive = x > 0
    grad_x = _where(xp, positive, g, _prelu_slope(weight, x) * g)
    contrib = _where(xp, ~positive, x * g, 0)
    if weight.shape[0] == 1:
        grad_w = contrib.sum().reshape(1)
    else:
        axes = (0, *range(2, x.ndim))
        grad_w = contrib.sum(axis=axes)
    return grad_x, grad_w.astype(dtype, copy=False)
