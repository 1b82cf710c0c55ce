"""Power-average (LP) pooling, forward and backward, PyTorch's definition.

``lp_pool*d(x, p, k)`` is ``(K * avg_pool(x ** p, k)) ** (1 / p)`` with ``K``
the number of kernel elements: on a full window the p-norm of the window,
``(sum x ** p) ** (1 / p)``. As in PyTorch, a partial window of ``ceil_mode``
is also scaled by ``K`` over its count of real elements (the average pool's
divisor), and where the sum is 0 the gradient is 0.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _args
from ..backend import dispatch
from .pool import _avg_pool, _avg_pool_backward, _avg_setup

__all__ = [
    "lp_pool1d",
    "lp_pool1d_backward",
    "lp_pool2d",
    "lp_pool2d_backward",
    "lp_pool3d",
    "lp_pool3d_backward",
]

IntOrTuple = int | tuple[int, ...]


def _lp_setup(
    x: Any, dims: int, norm_type: Any, kernel_size: Any, stride: Any, ceil_mode: Any
) -> tuple[Any, Any, float, int, Any]:
    """Validate; return ``xp``, float x (its shape), p, K and ``K * avg_pool(x ** p)``."""
    p = _args.check_real(norm_type, "norm_type", low=0, low_open=True, finite=True)
    xp, xf, geo = _avg_setup(x, dims, kernel_size, stride, 0, ceil_mode, True, None)
    xf = xf.reshape(x.shape)
    taps = math.prod(geo.kernel)
    total = _avg_pool(xf**p, dims, kernel_size, stride, 0, ceil_mode, True, None) * taps
    return xp, xf, p, taps, total


def _lp_pool(x: Any, dims: int, norm_type: Any, kernel_size: Any, stride: Any,
             ceil_mode: Any) -> Any:  # fmt: skip
    _, _, p, _, total = _lp_setup(x, dims, norm_type, kernel_size, stride, ceil_mode)
    return total ** (1 / p)


def _lp_pool_backward(grad_out: Any, x: Any, dims: int, norm_type: Any, kernel_size: Any,
                      stride: Any, ceil_mode: Any) -> Any:  # fmt: skip
    xp, xf, p, taps, total = _lp_setup(x, dims, norm_type, kernel_size, stride, ceil_mode)
    _args.check_shape(grad_out, "grad_out", total.shape)
    g = grad_out.astype(_args.float_dtype(xp, grad_out=grad_out, x=x), copy=False)
    # d total ** (1/p) = total ** (1/p - 1) / p; times K back through the average, and
    # d x ** p = p * x ** (p - 1): the p's cancel. A zero total passes no gradient.
    nonzero = total != 0
    share = xp.where(nonzero, g * xp.where(nonzero, total, 1) ** (1 / p - 1), 0) * taps
    grad = _avg_pool_backward(share, xf, dims, kernel_size, stride, 0, ceil_mode, True, None)
    return grad * xf ** (p - 1)


@dispatch("x")
def lp_pool1d(
    x: Any,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    ceil_mode: bool = False,
    *,
    backend: str | None = None,
) -> Any:
    """Take the p-norm of each window: ``(sum x ** p) ** (1 / p)``.

    Parameters
    ----------
    x : array, shape (N, C, L) or (C, L)
    norm_type : float
        ``p``, positive and finite: 1 sums the windows, 2 gives their
        Euclidean norm. Non-integer ``p`` gives NaN for negative x.
    kernel_size : int or (int,)
        Window size; no padding, as in PyTorch.
    stride : int or (int,), optional
        Defaults to ``kernel_size``.
    ceil_mode : bool, default False
        Count partial windows at the end, scaled as PyTorch does (see the
        module's notes).
    backend : str, optional
        None computes where x lives; a name moves x there first.

    Returns
    -------
    array
        The shape of :func:`cnnarray.ops.avg_pool1d` with these arguments.

    See Also
    --------
    torch.nn.functional.lp_pool1d
    """
    return _lp_pool(x, 1, norm_type, kernel_size, stride, ceil_mode)


@dispatch("grad_out", "x")
def lp_pool1d_backward(
    grad_out: Any,
    x: Any,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    ceil_mode: bool = False,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`lp_pool1d` with respect to x.

    ``d y / d x_i = y ** (1 - p) * x_i ** (p - 1)`` on a full window; overlapping
    windows add up; 0 where a window's sum is 0, as in PyTorch.

    Returns
    -------
    array, shape of x
    """
    return _lp_pool_backward(grad_out, x, 1, norm_type, kernel_size, stride, ceil_mode)


@dispatch("x")
def lp_pool2d(
    x: Any,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    ceil_mode: bool = False,
    *,
    backend: str | None = None,
) -> Any:
    """Take the p-norm of each window: ``(sum x ** p) ** (1 / p)``.

    Parameters
    ----------
    x : array, shape (N, C, H, W) or (C, H, W)
    norm_type : float
        ``p``, positive and finite: 1 sums the windows, 2 gives their
        Euclidean norm. Non-integer ``p`` gives NaN for negative x.
    kernel_size : int or (int, int)
        Window size; no padding, as in PyTorch.
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    ceil_mode : bool, default False
        Count partial windows at the end, scaled as PyTorch does (see the
        module's notes).
    backend : str, optional
        None computes where x lives; a name moves x there first.

    Returns
    -------
    array
        The shape of :func:`cnnarray.ops.avg_pool2d` with these arguments.

    See Also
    --------
    torch.nn.functional.lp_pool2d

    Examples
    --------
    >>> import numpy as np
    >>> from cnnarray.ops import lp_pool2d
    >>> lp_pool2d(np.array([[[3.0, 4.0], [0.0, 0.0]]]), 2, 2)  # the 2-norm of the window
    array([[[5.]]])
    """
    return _lp_pool(x, 2, norm_type, kernel_size, stride, ceil_mode)


@dispatch("grad_out", "x")
def lp_pool2d_backward(
    grad_out: Any,
    x: Any,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    ceil_mode: bool = False,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`lp_pool2d` with respect to x.

    ``d y / d x_i = y ** (1 - p) * x_i ** (p - 1)`` on a full window; overlapping
    windows add up; 0 where a window's sum is 0, as in PyTorch.

    Returns
    -------
    array, shape of x
    """
    return _lp_pool_backward(grad_out, x, 2, norm_type, kernel_size, stride, ceil_mode)


@dispatch("x")
def lp_pool3d(
    x: Any,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    ceil_mode: bool = False,
    *,
    backend: str | None = None,
) -> Any:
    """Take the p-norm of each window: ``(sum x ** p) ** (1 / p)``.

    Parameters
    ----------
    x : array, shape (N, C, D, H, W) or (C, D, H, W)
    norm_type : float
        ``p``, positive and finite: 1 sums the windows, 2 gives their
        Euclidean norm. Non-integer ``p`` gives NaN for negative x.
    kernel_size : int or (int, int, int)
        Window size; no padding, as in PyTorch.
    stride : int or (int, int, int), optional
        Defaults to ``kernel_size``.
    ceil_mode : bool, default False
        Count partial windows at the end, scaled as PyTorch does (see the
        module's notes).
    backend : str, optional
        None computes where x lives; a name moves x there first.

    Returns
    -------
    array
        The shape of :func:`cnnarray.ops.avg_pool3d` with these arguments.

    See Also
    --------
    torch.nn.functional.lp_pool3d
    """
    return _lp_pool(x, 3, norm_type, kernel_size, stride, ceil_mode)


@dispatch("grad_out", "x")
def lp_pool3d_backward(
    grad_out: Any,
    x: Any,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    ceil_mode: bool = False,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`lp_pool3d` with respect to x.

    ``d y / d x_i = y ** (1 - p) * x_i ** (p - 1)`` on a full window; overlapping
    windows add up; 0 where a window's sum is 0, as in PyTorch.

    Returns
    -------
    array, shape of x
    """
    return _lp_pool_backward(grad_out, x, 3, norm_type, kernel_size, stride, ceil_mode)
