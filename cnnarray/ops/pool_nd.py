"""Max and average pooling over 1-D and 3-D windows, forward and backward.

Thin entry points over the N-d window code of :mod:`cnnarray.ops.pool` (one
strided slice per kernel offset, whatever the number of spatial axes), with
PyTorch's arguments for each: ``avg_pool1d`` has no ``divisor_override``.
"""

from __future__ import annotations

from typing import Any

from ..backend import dispatch
from .pool import _avg_pool, _avg_pool_backward, _max_pool, _max_pool_backward

__all__ = [
    "avg_pool1d",
    "avg_pool1d_backward",
    "avg_pool3d",
    "avg_pool3d_backward",
    "max_pool1d",
    "max_pool1d_backward",
    "max_pool3d",
    "max_pool3d_backward",
]

IntOrTuple = int | tuple[int, ...]


@dispatch("x")
def max_pool1d(
    x: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    backend: str | None = None,
) -> Any:
    """Take the maximum over each (dilated) window of a sequence.

    Parameters
    ----------
    x : array, shape (N, C, L) or (C, L)
    kernel_size, stride, padding, dilation : int or (int,)
        As in :func:`cnnarray.ops.max_pool2d`, along L; stride defaults to
        kernel_size, padding (implicit ``-inf``) is at most half the kernel.
    ceil_mode, return_indices, backend
        As in :func:`cnnarray.ops.max_pool2d`; indices are positions in L.

    Returns
    -------
    array, shape (N, C, out_l)
        ``out_l = floor_or_ceil((L + 2 * p - d * (k - 1) - 1) / s) + 1``; with
        ``return_indices``, the pair ``(out, indices)``.

    See Also
    --------
    torch.nn.functional.max_pool1d
    """
    return _max_pool(x, 1, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


@dispatch("grad_out", "x", "output", "indices")
def max_pool1d_backward(
    grad_out: Any,
    x: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    output: Any = None,
    indices: Any = None,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`max_pool1d` with respect to x.

    Each window's gradient goes to its first maximum; see
    :func:`cnnarray.ops.max_pool2d_backward` (``output`` and ``indices`` as there).

    Returns
    -------
    array, shape of x
    """
    return _max_pool_backward(
        grad_out, x, 1, kernel_size, stride, padding, dilation, ceil_mode, output, indices
    )


@dispatch("x")
def max_pool3d(
    x: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    backend: str | None = None,
) -> Any:
    """Take the maximum over each (dilated) window of a volume.

    Parameters
    ----------
    x : array, shape (N, C, D, H, W) or (C, D, H, W)
    kernel_size, stride, padding, dilation : int or (int, int, int)
        As in :func:`cnnarray.ops.max_pool2d`, along D, H and W.
    ceil_mode, return_indices, backend
        As in :func:`cnnarray.ops.max_pool2d`; indices are ``(d * H + h) * W + w``.

    Returns
    -------
    array, shape (N, C, out_d, out_h, out_w)
        Each size as in :func:`cnnarray.ops.max_pool2d`; with ``return_indices``,
        the pair ``(out, indices)``.

    See Also
    --------
    torch.nn.functional.max_pool3d
    """
    return _max_pool(x, 3, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


@dispatch("grad_out", "x", "output", "indices")
def max_pool3d_backward(
    grad_out: Any,
    x: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    *,
    output: Any = None,
    indices: Any = None,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`max_pool3d` with respect to x.

    Each window's gradient goes to its first maximum in row-major order; see
    :func:`cnnarray.ops.max_pool2d_backward` (``output`` and ``indices`` as there).

    Returns
    -------
    array, shape of x
    """
    return _max_pool_backward(
        grad_out, x, 3, kernel_size, stride, padding, dilation, ceil_mode, output, indices
    )


@dispatch("x")
def avg_pool1d(
    x: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    backend: str | None = None,
) -> Any:
    """Average each window of a sequence.

    Parameters
    ----------
    x : array, shape (N, C, L) or (C, L)
    kernel_size, stride, padding : int or (int,)
        As in :func:`cnnarray.ops.avg_pool2d`, along L.
    ceil_mode, count_include_pad, backend
        As in :func:`cnnarray.ops.avg_pool2d` (PyTorch's avg_pool1d has no
        ``divisor_override``).

    Returns
    -------
    array, shape (N, C, out_l)
        ``out_l = floor_or_ceil((L + 2 * p - k) / s) + 1``.

    See Also
    --------
    torch.nn.functional.avg_pool1d
    """
    return _avg_pool(x, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


@dispatch("grad_out", "x")
def avg_pool1d_backward(
    grad_out: Any,
    x: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`avg_pool1d` with respect to x.

    Returns
    -------
    array, shape of x
    """
    return _avg_pool_backward(
        grad_out, x, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None
    )


@dispatch("x")
def avg_pool3d(
    x: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    backend: str | None = None,
) -> Any:
    """Average each window of a volume.

    Parameters
    ----------
    x : array, shape (N, C, D, H, W) or (C, D, H, W)
    kernel_size, stride, padding : int or (int, int, int)
        As in :func:`cnnarray.ops.avg_pool2d`, along D, H and W.
    ceil_mode, count_include_pad, divisor_override, backend
        As in :func:`cnnarray.ops.avg_pool2d`.

    Returns
    -------
    array, shape (N, C, out_d, out_h, out_w)

    See Also
    --------
    torch.nn.functional.avg_pool3d
    """
    return _avg_pool(
        x, 3, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )


@dispatch("grad_out", "x")
def avg_pool3d_backward(
    grad_out: Any,
    x: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`avg_pool3d` with respect to x.

    Returns
    -------
    array, shape of x
    """
    return _avg_pool_backward(
        grad_out, x, 3, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override,
    )  # fmt: skip
