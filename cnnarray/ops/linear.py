"""Fully connected layer and flatten, forward and backward."""

from __future__ import annotations

from typing import Any

from .. import _args
from ..backend import array_namespace, dispatch

__all__ = ["flatten", "flatten_backward", "linear", "linear_backward"]


def _check_linear(x: Any, weight: Any, bias: Any) -> None:
    _args.check_ndim(weight, "weight", (2,), "(out_features, in_features)")
    if x.ndim < 1:
        raise ValueError("x must have shape (..., in_features), got a 0-d array")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"x must have in_features={weight.shape[1]} on its last axis to match weight of "
            f"shape {tuple(weight.shape)}, got x of shape {tuple(x.shape)}"
        )
    if bias is not None:
        _args.check_shape(bias, "bias", (weight.shape[0],))


@dispatch("x", "weight", "bias")
def linear(x: Any, weight: Any, bias: Any = None, *, backend: str | None = None) -> Any:
    """Apply an affine map ``y = x @ weight.T + bias``.

    Parameters
    ----------
    x : array, shape (..., in_features)
    weight : array, shape (out_features, in_features)
    bias : array, shape (out_features,), optional
    backend : str, optional
        None computes where the inputs live; a name moves them there first.

    Returns
    -------
    array, shape (..., out_features)

    See Also
    --------
    torch.nn.functional.linear
    """
    _check_linear(x, weight, bias)
    xp = array_namespace(x)
    dtype = _args.float_dtype(xp, x=x, weight=weight, bias=bias)
    y = xp.matmul(x.astype(dtype, copy=False), weight.astype(dtype, copy=False).T)
    if bias is not None:
        y += bias.astype(dtype, copy=False)
    return y


@dispatch("grad_out", "x", "weight", "bias")
def linear_backward(
    grad_out: Any, x: Any, weight: Any, bias: Any = None, *, backend: str | None = None
) -> tuple[Any, Any, Any]:
    """Return the gradients of :func:`linear` with respect to x, weight and bias.

    Returns
    -------
    grad_x : array, shape of x
        ``grad_out @ weight``.
    grad_weight : array, shape (out_features, in_features)
        ``grad_out^T @ x`` over all leading axes.
    grad_bias : array, shape (out_features,), or None when bias is None
    """
    _check_linear(x, weight, bias)
    _args.check_shape(grad_out, "grad_out", (*x.shape[:-1], weight.shape[0]))
    xp = array_namespace(x)
    dtype = _args.float_dtype(xp, grad_out=grad_out, x=x, weight=weight, bias=bias)
    g = grad_out.astype(dtype, copy=False)
    x = x.astype(dtype, copy=False)
    grad_x = xp.matmul(g, weight.astype(dtype, copy=False))
    g2 = g.reshape(-1, g.shape[-1])
    grad_w = xp.matmul(g2.T, x.reshape(-1, x.shape[-1]))
    grad_b = None if bias is None else g2.sum(axis=0)
    return grad_x, grad_w, grad_b


def _flat_shape(x: Any, start_axis: int, end_axis: int) -> tuple[int, ...]:
    if x.ndim == 0:
        return (1,)
    start, end = (
        _args.check_axis(a, x.ndim, name)
        for a, name in ((start_axis, "start_axis"), (end_axis, "end_axis"))
    )
    if start > end:
        raise ValueError(f"start_axis ({start_axis}) must not come after end_axis ({end_axis})")
    middle = 1
    for s in x.shape[start : end + 1]:
        middle *= s
    return (*x.shape[:start], middle, *x.shape[end + 1 :])


@dispatch("x")
def flatten(x: Any, start_axis: int = 1, end_axis: int = -1, *, backend: str | None = None) -> Any:
    """Merge axes ``start_axis..end_axis`` into one, e.g. (N, C, H, W) -> (N, C*H*W).

    A view where possible. The dtype rules of every op apply: float32 and
    float64 stay, integers become float32, anything else is a TypeError.

    See Also
    --------
    torch.flatten
    """
    shape = _flat_shape(x, start_axis, end_axis)
    xp = array_namespace(x)
    return x.astype(_args.float_dtype(xp, x=x), copy=False).reshape(shape)


@dispatch("grad_out", "x")
def flatten_backward(
    grad_out: Any, x: Any, start_axis: int = 1, end_axis: int = -1, *, backend: str | None = None
) -> Any:
    """Return the gradient of :func:`flatten`: ``grad_out`` reshaped to x's shape."""
    _args.check_shape(grad_out, "grad_out", _flat_shape(x, start_axis, end_axis))
    dtype = _args.float_dtype(array_namespace(x), grad_out=grad_out, x=x)
    return grad_out.astype(dtype, copy=False).reshape(x.shape)
