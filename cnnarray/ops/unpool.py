"""Max unpooling: the partial inverse of max pooling, forward and backward.

``max_unpool*d(y, indices, ...)`` puts each value of ``y`` at its index in a
map of zeros: the indices are those :func:`cnnarray.ops.max_pool2d` (and its
1-D and 3-D twins) return with ``return_indices=True``, flat positions in each
(N, C) map. The backward gathers the gradient at the same indices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .. import _args
from ..backend import array_namespace, dispatch
from ._pool_geometry import _LAYOUTS

__all__ = [
    "max_unpool1d",
    "max_unpool1d_backward",
    "max_unpool2d",
    "max_unpool2d_backward",
    "max_unpool3d",
    "max_unpool3d_backward",
]

IntOrTuple = int | tuple[int, ...]


def _output_size(
    size: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
    output_size: Any,
) -> tuple[int, ...]:  # fmt: skip
    """PyTorch's unpooled size: ``(in - 1) * s - 2 * p + k`` per axis, or ``output_size``
    strictly between that minus and plus the stride (leading N, C may be given too)."""
    default = tuple(
        (i - 1) * s - 2 * p + k for i, k, s, p in zip(size, kernel, stride, padding, strict=True)
    )
    if output_size is None:
        if min(default) < 1:
            raise ValueError(
                f"the unpooled size {default} must be positive: padding={tuple(padding)} is "
                f"too large for kernel_size={tuple(kernel)} and input size {tuple(size)}"
            )
        return default
    dims = len(size)
    given = tuple(output_size) if isinstance(output_size, Sequence) else (output_size,)
    if len(given) == dims + 2:
        given = given[2:]
    if len(given) != dims:
        raise ValueError(f"output_size must have {dims} or {dims + 2} entries, got {output_size!r}")
    sizes = tuple(_args.check_int(v, "output_size", minimum=1) for v in given)
    for d, (want, s) in enumerate(zip(sizes, stride, strict=True)):
        if not default[d] - s < want < default[d] + s:
            raise ValueError(
                f"output_size must be strictly between {default[d] - s} and {default[d] + s} "
                f"along spatial axis {d} (the default size {default[d]} -+ the stride), "
                f"got {output_size!r}"
            )
    return sizes


def _setup(
    x: Any, indices: Any, dims: int, kernel_size: Any, stride: Any, padding: Any, output_size: Any
) -> tuple[Any, Any, Any, tuple[int, ...], tuple[int, ...]]:
    """Validate; return ``xp``, x as float rows (N*C, in), indices (N*C, in) as int64, the
    output's spatial size and the leading (N, C) or (C,) of x."""
    _args.check_ndim(x, "x", (dims + 1, dims + 2), _LAYOUTS[dims])
    _args.check_nonempty(x, "x")
    _args.check_same_shape(indices, "indices", x, "x")
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices must have an integer dtype, got {indices.dtype}")
    kernel = _args._ntuple(kernel_size, "kernel_size", dims, minimum=1)
    step = kernel if stride is None else _args._ntuple(stride, "stride", dims, minimum=1)
    pad = _args._ntuple(padding, "padding", dims, minimum=0)
    size = _output_size(x.shape[-dims:], kernel, step, pad, output_size)
    _args.check_map_size(size, x.shape, kernel_size=kernel_size, stride=stride, padding=padding)
    xp = array_namespace(x)
    lead = tuple(x.shape[:-dims])
    rows = math.prod(lead)
    x = x.astype(_args.float_dtype(xp, x=x), copy=False).reshape(rows, -1)
    indices = indices.reshape(rows, -1)
    plane = math.prod(size)
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= plane):
        raise ValueError(
            f"indices must lie in [0, {plane}) (the unpooled maps hold {size} elements), "
            f"got values from {int(indices.min())} to {int(indices.max())}"
        )
    return xp, x, indices.astype(xp.int64, copy=False), size, lead


def _unpool(x: Any, indices: Any, dims: int, kernel_size: Any, stride: Any, padding: Any,
            output_size: Any) -> Any:  # fmt: skip
    xp, rows, idx, size, lead = _setup(x, indices, dims, kernel_size, stride, padding, output_size)
    out = xp.zeros((rows.shape[0], math.prod(size)), dtype=rows.dtype)
    # (N*C, in): each value to its index in its own map (duplicates: one of them wins)
    out[xp.arange(rows.shape[0])[:, None], idx] = rows
    return out.reshape(*lead, *size)


def _unpool_backward(grad_out: Any, x: Any, indices: Any, dims: int, kernel_size: Any,
                     stride: Any, padding: Any, output_size: Any) -> Any:  # fmt: skip
    xp, rows, idx, size, lead = _setup(x, indices, dims, kernel_size, stride, padding, output_size)
    _args.check_shape(grad_out, "grad_out", (*lead, *size))
    g = grad_out.astype(_args.float_dtype(xp, grad_out=grad_out, x=x), copy=False)
    return xp.take_along_axis(g.reshape(rows.shape[0], -1), idx, axis=1).reshape(x.shape)


@dispatch("x", "indices")
def max_unpool1d(
    x: Any,
    indices: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
    *,
    backend: str | None = None,
) -> Any:
    """Put each value at its index in maps of zeros: the partial inverse of max_pool1d.

    Parameters
    ----------
    x : array, shape (N, C, L) or (C, L)
        The pooled values.
    indices : int array, shape of x
        Flat positions in each unpooled map, as ``max_pool1d(..., return_indices=True)``
        gives them; each in ``[0, prod(output size))``.
    kernel_size, stride, padding : int or (int,)
        Those of the pooling; stride defaults to kernel_size.
    output_size : sequence of int, optional
        The size of the unpooled maps (optionally with N and C first), strictly
        within the stride of the default size, to undo a pooling that dropped
        the input's last rows.

    Returns
    -------
    array, shape (N, C, out_l)
        ``out_l = (L - 1) * s - 2 * p + k``,
        unless ``output_size`` is given. Where two values share an index,
        one of them is kept.

    See Also
    --------
    torch.nn.functional.max_unpool1d
    """
    return _unpool(x, indices, 1, kernel_size, stride, padding, output_size)


@dispatch("grad_out", "x", "indices")
def max_unpool1d_backward(
    grad_out: Any,
    x: Any,
    indices: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`max_unpool1d` with respect to x: ``grad_out`` read
    at the indices.

    Returns
    -------
    array, shape of x
    """
    return _unpool_backward(grad_out, x, indices, 1, kernel_size, stride, padding, output_size)


@dispatch("x", "indices")
def max_unpool2d(
    x: Any,
    indices: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
    *,
    backend: str | None = None,
) -> Any:
    """Put each value at its index in maps of zeros: the partial inverse of max_pool2d.

    Parameters
    ----------
    x : array, shape (N, C, H, W) or (C, H, W)
        The pooled values.
    indices : int array, shape of x
        Flat positions in each unpooled map, as ``max_pool2d(..., return_indices=True)``
        gives them; each in ``[0, prod(output size))``.
    kernel_size, stride, padding : int or (int, int)
        Those of the pooling; stride defaults to kernel_size.
    output_size : sequence of int, optional
        The size of the unpooled maps (optionally with N and C first), strictly
        within the stride of the default size, to undo a pooling that dropped
        the input's last rows.

    Returns
    -------
    array, shape (N, C, out_h, out_w)
        ``out_h = (H - 1) * sh - 2 * ph + kh``, likewise ``out_w``,
        unless ``output_size`` is given. Where two values share an index,
        one of them is kept.

    See Also
    --------
    torch.nn.functional.max_unpool2d
    """
    return _unpool(x, indices, 2, kernel_size, stride, padding, output_size)


@dispatch("grad_out", "x", "indices")
def max_unpool2d_backward(
    grad_out: Any,
    x: Any,
    indices: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`max_unpool2d` with respect to x: ``grad_out`` read
    at the indices.

    Returns
    -------
    array, shape of x
    """
    return _unpool_backward(grad_out, x, indices, 2, kernel_size, stride, padding, output_size)


@dispatch("x", "indices")
def max_unpool3d(
    x: Any,
    indices: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
    *,
    backend: str | None = None,
) -> Any:
    """Put each value at its index in maps of zeros: the partial inverse of max_pool3d.

    Parameters
    ----------
    x : array, shape (N, C, D, H, W) or (C, D, H, W)
        The pooled values.
    indices : int array, shape of x
        Flat positions in each unpooled map, as ``max_pool3d(..., return_indices=True)``
        gives them; each in ``[0, prod(output size))``.
    kernel_size, stride, padding : int or (int, int, int)
        Those of the pooling; stride defaults to kernel_size.
    output_size : sequence of int, optional
        The size of the unpooled maps (optionally with N and C first), strictly
        within the stride of the default size, to undo a pooling that dropped
        the input's last rows.

    Returns
    -------
    array, shape (N, C, out_d, out_h, out_w)
        ``out_d = (D - 1) * sd - 2 * pd + kd``, likewise ``out_h``, ``out_w``,
        unless ``output_size`` is given. Where two values share an index,
        one of them is kept.

    See Also
    --------
    torch.nn.functional.max_unpool3d
    """
    return _unpool(x, indices, 3, kernel_size, stride, padding, output_size)


@dispatch("grad_out", "x", "indices")
def max_unpool3d_backward(
    grad_out: Any,
    x: Any,
    indices: Any,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`max_unpool3d` with respect to x: ``grad_out`` read
    at the indices.

    Returns
    -------
    array, shape of x
    """
    return _unpool_backward(grad_out, x, indices, 3, kernel_size, stride, padding, output_size)
