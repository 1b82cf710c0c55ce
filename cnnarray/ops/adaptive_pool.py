"""Adaptive pooling: windows chosen from the input and output sizes, PyTorch's rule.

Output ``i`` of an axis of length ``L`` pooled to ``out`` reads
``[floor(i * L / out), ceil((i + 1) * L / out))``; the windows overlap when
``out`` does not divide ``L``.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _args
from ..backend import array_namespace, dispatch
from ._pool_geometry import _LAYOUTS

__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool1d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool3d",
    "adaptive_avg_pool3d_backward",
    "adaptive_max_pool1d",
    "adaptive_max_pool1d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    "adaptive_max_pool3d",
    "adaptive_max_pool3d_backward",
]


def _windows(xp: Any, size: int, out: int) -> tuple[Any, Any]:
    """Starts and ends, shape (out,), of the adaptive windows over ``size`` elements.

    Window ``i`` is ``[floor(i * size / out), ceil((i + 1) * size / out))``,
    PyTorch's (they overlap when ``out`` does not divide ``size``).
    """
    i = xp.arange(out)
    return i * size // out, -(-(i + 1) * size // out)


def _averaging(xp: Any, size: int, out: int, dtype: Any) -> Any:
    """Matrix (out, size) whose row i averages the input positions of window i."""
    weights = xp.zeros((out, size), dtype=dtype)
    for i in range(out):  # out is at most MAX_UPSAMPLE * size (check_output_size)
        start, end = i * size // out, -(-(i + 1) * size // out)
        weights[i, start:end] = 1.0 / (end - start)
    return weights


def _window_sums(xp: Any, a: Any, axis: int, size: int, out: int) -> Any:
    """Sum ``a`` along ``axis`` (length ``size``) over its ``out`` adaptive windows.

    Every sum reads only its own window, so a NaN or inf stays in the windows
    that hold it, where a product with the averaging matrix would spread it
    (``0 * nan`` is NaN). Each window's k-th element is gathered, for k up to
    the longest window; positions past a window's end are masked out.
    """
    rest = a.shape[axis + 1 :]
    starts, ends = _windows(xp, size, out)
    index = starts[:, None] + xp.arange(-(-size // out) + 1)  # (out, longest)
    inside = index < ends[:, None]
    taken = xp.take(a, xp.where(inside, index, starts[:, None]), axis=axis)
    inside = inside.reshape(inside.shape + (1,) * len(rest))
    return xp.where(inside, taken, 0).sum(axis=axis + 1)


def _adaptive_setup(x: Any, dims: int, output_size: Any) -> tuple[Any, Any, tuple[int, ...]]:
    """Validate; return ``xp``, float x and the output's spatial size."""
    _args.check_ndim(x, "x", (dims + 1, dims + 2), _LAYOUTS[dims])
    _args.check_nonempty(x, "x")
    out = _args.check_output_size(output_size, dims, input_shape=x.shape)
    xp = array_namespace(x)
    return xp, x.astype(_args.float_dtype(xp, x=x), copy=False), out


def _window_sizes(xp: Any, size: tuple[int, ...], out: tuple[int, ...], dtype: Any) -> Any:
    """Number of elements in each window, shape ``out``: the divisors of the sums."""
    counts = None
    for axis, (n, o) in enumerate(zip(size, out, strict=True)):
        starts, ends = _windows(xp, n, o)
        count = (ends - starts).reshape((1,) * axis + (o,) + (1,) * (len(out) - axis - 1))
        counts = count if counts is None else counts * count
    return counts.astype(dtype)


def _along(xp: Any, a: Any, matrix: Any, axis: int) -> Any:
    """Apply ``matrix`` (out, size) along ``axis`` of ``a``: ``matrix @ a`` on that axis."""
    if axis == a.ndim - 1:
        return xp.matmul(a, matrix.T)
    if axis == a.ndim - 2:  # rows of a matrix: no reshape needed
        return xp.matmul(matrix, a)
    rest = a.shape[axis + 1 :]
    flat = a.reshape(*a.shape[: axis + 1], math.prod(rest))  # (..., size, prod(rest))
    return xp.matmul(matrix, flat).reshape(*a.shape[:axis], matrix.shape[0], *rest)


def _adaptive_avg(x: Any, dims: int, output_size: Any) -> Any:
    """adaptive_avg_pool1d/2d/3d over ``dims`` axes; see :func:`adaptive_avg_pool2d`."""
    xp, x, out = _adaptive_setup(x, dims, output_size)
    size, first = x.shape[-dims:], x.ndim - dims
    if all(o == 1 for o in out):  # the global average: one reduction
        return x.mean(axis=tuple(range(first, x.ndim)), keepdims=True)
    y = x
    for axis, (n, o) in enumerate(zip(size, out, strict=True)):
        y = _along(xp, y, _averaging(xp, n, o, x.dtype), first + axis)
    # A NaN or inf in x makes the outputs of its windows (positive weights) NaN or
    # inf, and the product spreads it further (0 * inf is NaN): a finite y means a
    # finite x, and checking y, the smaller array, is the cheaper test.
    if bool(xp.isfinite(y).all()):
        return y
    for axis, (n, o) in enumerate(zip(size, out, strict=True)):
        x = _window_sums(xp, x, first + axis, n, o)
    return x / _window_sizes(xp, size, out, x.dtype)


def _adaptive_avg_backward(grad_out: Any, x: Any, dims: int, output_size: Any) -> Any:
    """The gradient of :func:`_adaptive_avg`; see :func:`adaptive_avg_pool2d_backward`."""
    xp, x, out = _adaptive_setup(x, dims, output_size)
    _args.check_shape(grad_out, "grad_out", (*x.shape[:-dims], *out))
    g = grad_out.astype(_args.float_dtype(xp, grad_out=grad_out, x=x), copy=False)
    size, first = x.shape[-dims:], x.ndim - dims
    if all(n % o == 0 for n, o in zip(size, out, strict=True)):
        # disjoint windows: one share for each element
        g = g / math.prod(n // o for n, o in zip(size, out, strict=True))
        for axis, (n, o) in enumerate(zip(size, out, strict=True)):
            g = xp.repeat(g, n // o, axis=first + axis)
        return g
    if bool(xp.isfinite(g).all()):
        for axis, (n, o) in enumerate(zip(size, out, strict=True)):
            g = _along(xp, g, _averaging(xp, n, o, g.dtype).T, first + axis)
        return g
    g = g / _window_sizes(xp, size, out, g.dtype)
    for axis, (n, o) in enumerate(zip(size, out, strict=True)):
        g = _window_sums(xp, g, first + axis, o, n)
    return g


def _gather_windows(xp: Any, a: Any, axis: int, size: int, out: int, fill: float) -> Any:
    """``a`` with ``axis`` (length ``size``) replaced by (out, longest): the elements of each
    adaptive window, ``fill`` past its end (see :func:`_window_sums`)."""
    starts, ends = _windows(xp, size, out)
    index = starts[:, None] + xp.arange(-(-size // out) + 1)  # (out, longest)
    inside = index < ends[:, None]
    taken = xp.take(a, xp.where(inside, index, starts[:, None]), axis=axis)
    inside = inside.reshape(inside.shape + (1,) * (a.ndim - axis - 1))
    return xp.where(inside, taken, fill)


def _adaptive_max(x: Any, dims: int, output_size: Any, return_indices: Any) -> Any:
    """adaptive_max_pool1d/2d/3d over ``dims`` axes; see :func:`adaptive_max_pool2d`.

    The maximum is separable: the windows of the last axis are reduced first,
    then those of the axis before, and so on. Reduced that way, the first
    maximum of each row, then the first row holding the window's maximum, is
    the first maximum in row-major order (the first NaN, where there is one),
    so the flat indices, gathered the same way, follow PyTorch's tie rule.
    """
    _args.check_bool(return_indices, "return_indices")
    xp, x, out = _adaptive_setup(x, dims, output_size)
    size, first = x.shape[-dims:], x.ndim - dims
    y = x
    if return_indices:  # the flat index of each element in its map, like x
        flat = xp.arange(math.prod(size), dtype=xp.int64).reshape(size)
        flat = xp.broadcast_to(flat, x.shape)
    for axis in reversed(range(dims)):
        at = first + axis
        taken = _gather_windows(xp, y, at, size[axis], out[axis], -float("inf"))
        if not return_indices:
            y = taken.max(axis=at + 1)
            continue
        # (..., out, longest, ...): argmax takes the first maximum, or the first NaN
        best = xp.expand_dims(xp.argmax(taken, axis=at + 1), at + 1)
        y = xp.take_along_axis(taken, best, axis=at + 1).squeeze(at + 1)
        flat = _gather_windows(xp, flat, at, size[axis], out[axis], 0)
        flat = xp.take_along_axis(flat, best, axis=at + 1).squeeze(at + 1)
    return (y, flat) if return_indices else y


def _adaptive_max_backward(grad_out: Any, x: Any, dims: int, output_size: Any, indices: Any) -> Any:
    """The gradient of :func:`_adaptive_max`: each output's gradient to its maximum, added
    where windows overlap."""
    xp, xf, out = _adaptive_setup(x, dims, output_size)
    lead = tuple(xf.shape[:-dims])
    _args.check_shape(grad_out, "grad_out", (*lead, *out))
    g = grad_out.astype(_args.float_dtype(xp, grad_out=grad_out, x=x), copy=False)
    if indices is None:
        indices = _adaptive_max(xf, dims, out, True)[1]
    else:
        _args.check_shape(indices, "indices", (*lead, *out))
    plane, maps = math.prod(xf.shape[-dims:]), math.prod(lead)
    # each map's indices offset into one long axis, then one weighted count adds the
    # gradients that reach the same element (overlapping windows)
    where = indices.reshape(maps, -1) + xp.arange(maps, dtype=xp.int64)[:, None] * plane
    total = xp.bincount(where.ravel(), weights=g.reshape(-1), minlength=maps * plane)
    return total.astype(g.dtype).reshape(xf.shape)


@dispatch("x")
def adaptive_avg_pool2d(
    x: Any, output_size: int | tuple[int | None, int | None], *, backend: str | None = None
) -> Any:
    """Average-pool to a fixed output size, whatever the input size.

    Output row ``i`` averages input rows ``[floor(i * H / out_h), ceil((i + 1) * H / out_h))``
    (likewise columns), PyTorch's windows. A window sum is separable, so for a
    finite x this is ``A_h @ x @ A_w.T`` with averaging matrices ``A_h``
    (out_h, H) and ``A_w`` (out_w, W): two small GEMMs (one mean for
    ``output_size=1``). Where x holds a NaN or inf, the sums are gathered
    window by window instead, so that it reaches only the outputs whose windows
    hold it, as in PyTorch.

    Parameters
    ----------
    x : array, shape (N, C, H, W) or (C, H, W)
    output_size : int or (int or None, int or None)
        ``(out_h, out_w)``; None keeps that input size. At most 64 times the
        input size along each axis.

    Returns
    -------
    array, shape (N, C, out_h, out_w) or (C, out_h, out_w)

    See Also
    --------
    torch.nn.functional.adaptive_avg_pool2d
    """
    return _adaptive_avg(x, 2, output_size)


@dispatch("grad_out", "x")
def adaptive_avg_pool2d_backward(
    grad_out: Any,
    x: Any,
    output_size: int | tuple[int | None, int | None],
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`adaptive_avg_pool2d` with respect to x.

    Each output's gradient, divided by its window's size, goes to every
    element of its window. The windows that hold input row ``r`` are
    ``[floor(r * out_h / H), ceil((r + 1) * out_h / H))``: adaptive windows
    from out_h to H, so this is the forward's window sum run the other way
    (``A_h.T @ g @ A_w`` for a finite gradient).
    """
    return _adaptive_avg_backward(grad_out, x, 2, output_size)


@dispatch("x")
def adaptive_avg_pool1d(
    x: Any, output_size: int | tuple[int | None], *, backend: str | None = None
) -> Any:
    """Average-pool to a fixed output size, whatever the input size.

    Each axis as in :func:`adaptive_avg_pool2d`: output ``i`` of an axis of
    length ``L`` averages ``[floor(i * L / out), ceil((i + 1) * L / out))``.

    Parameters
    ----------
    x : array, shape (N, C, L) or (C, L)
    output_size : int or (int or None,)
        ``out_l``; None keeps that input size.

    Returns
    -------
    array, shape (N, C, out_l) or (C, out_l)

    See Also
    --------
    torch.nn.functional.adaptive_avg_pool1d
    """
    return _adaptive_avg(x, 1, output_size)


@dispatch("grad_out", "x")
def adaptive_avg_pool1d_backward(
    grad_out: Any, x: Any, output_size: int | tuple[int | None], *, backend: str | None = None
) -> Any:
    """Return the gradient of :func:`adaptive_avg_pool1d` with respect to x.

    Returns
    -------
    array, shape of x
    """
    return _adaptive_avg_backward(grad_out, x, 1, output_size)


@dispatch("x")
def adaptive_avg_pool3d(
    x: Any,
    output_size: int | tuple[int | None, int | None, int | None],
    *,
    backend: str | None = None,
) -> Any:
    """Average-pool to a fixed output size, whatever the input size.

    Each axis as in :func:`adaptive_avg_pool2d`: output ``i`` of an axis of
    length ``L`` averages ``[floor(i * L / out), ceil((i + 1) * L / out))``.

    Parameters
    ----------
    x : array, shape (N, C, D, H, W) or (C, D, H, W)
    output_size : int or (int or None, int or None, int or None)
        ``(out_d, out_h, out_w)``; None keeps that input size.

    Returns
    -------
    array, shape (N, C, out_d, out_h, out_w) or (C, out_d, out_h, out_w)

    See Also
    --------
    torch.nn.functional.adaptive_avg_pool3d
    """
    return _adaptive_avg(x, 3, output_size)


@dispatch("grad_out", "x")
def adaptive_avg_pool3d_backward(
    grad_out: Any,
    x: Any,
    output_size: int | tuple[int | None, int | None, int | None],
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`adaptive_avg_pool3d` with respect to x.

    Returns
    -------
    array, shape of x
    """
    return _adaptive_avg_backward(grad_out, x, 3, output_size)


@dispatch("x")
def adaptive_max_pool1d(
    x: Any,
    output_size: int | tuple[int | None],
    return_indices: bool = False,
    *,
    backend: str | None = None,
) -> Any:
    """Max-pool to a fixed output size, whatever the input size.

    The windows are :func:`adaptive_avg_pool1d`'s (PyTorch's). A NaN in a
    window makes its output NaN.

    Parameters
    ----------
    x : array, shape (N, C, L) or (C, L)
    output_size : int or (int or None,)
        ``out_l``; None keeps that input size.
    return_indices : bool, default False
        Also return the flat index in its input map of each maximum (int64),
        the first one in row-major order of the window on ties.

    Returns
    -------
    array, shape (N, C, out_l) or (C, out_l)
        With ``return_indices``, the pair ``(out, indices)``.

    See Also
    --------
    torch.nn.functional.adaptive_max_pool1d
    """
    return _adaptive_max(x, 1, output_size, return_indices)


@dispatch("grad_out", "x", "indices")
def adaptive_max_pool1d_backward(
    grad_out: Any,
    x: Any,
    output_size: int | tuple[int | None],
    *,
    indices: Any = None,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`adaptive_max_pool1d` with respect to x.

    Each output's gradient goes to the maximum of its window (the first, on
    ties); overlapping windows add up. ``indices``, the forward's with
    ``return_indices=True``, saves finding the maxima again; other values give
    wrong gradients.

    Returns
    -------
    array, shape of x
    """
    return _adaptive_max_backward(grad_out, x, 1, output_size, indices)


@dispatch("x")
def adaptive_max_pool2d(
    x: Any,
    output_size: int | tuple[int | None, int | None],
    return_indices: bool = False,
    *,
    backend: str | None = None,
) -> Any:
    """Max-pool to a fixed output size, whatever the input size.

    The windows are :func:`adaptive_avg_pool2d`'s (PyTorch's). A NaN in a
    window makes its output NaN.

    Parameters
    ----------
    x : array, shape (N, C, H, W) or (C, H, W)
    output_size : int or (int or None, int or None)
        ``(out_h, out_w)``; None keeps that input size.
    return_indices : bool, default False
        Also return the flat index in its input map of each maximum (int64),
        the first one in row-major order of the window on ties.

    Returns
    -------
    array, shape (N, C, out_h, out_w) or (C, out_h, out_w)
        With ``return_indices``, the pair ``(out, indices)``.

    See Also
    --------
    torch.nn.functional.adaptive_max_pool2d
    """
    return _adaptive_max(x, 2, output_size, return_indices)


@dispatch("grad_out", "x", "indices")
def adaptive_max_pool2d_backward(
    grad_out: Any,
    x: Any,
    output_size: int | tuple[int | None, int | None],
    *,
    indices: Any = None,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`adaptive_max_pool2d` with respect to x.

    Each output's gradient goes to the maximum of its window (the first, on
    ties); overlapping windows add up. ``indices``, the forward's with
    ``return_indices=True``, saves finding the maxima again; other values give
    wrong gradients.

    Returns
    -------
    array, shape of x
    """
    return _adaptive_max_backward(grad_out, x, 2, output_size, indices)


@dispatch("x")
def adaptive_max_pool3d(
    x: Any,
    output_size: int | tuple[int | None, int | None, int | None],
    return_indices: bool = False,
    *,
    backend: str | None = None,
) -> Any:
    """Max-pool to a fixed output size, whatever the input size.

    The windows are :func:`adaptive_avg_pool3d`'s (PyTorch's). A NaN in a
    window makes its output NaN.

    Parameters
    ----------
    x : array, shape (N, C, D, H, W) or (C, D, H, W)
    output_size : int or (int or None, int or None, int or None)
        ``(out_d, out_h, out_w)``; None keeps that input size.
    return_indices : bool, default False
        Also return the flat index in its input map of each maximum (int64),
        the first one in row-major order of the window on ties.

    Returns
    -------
    array, shape (N, C, out_d, out_h, out_w) or (C, out_d, out_h, out_w)
        With ``return_indices``, the pair ``(out, indices)``.

    See Also
    --------
    torch.nn.functional.adaptive_max_pool3d
    """
    return _adaptive_max(x, 3, output_size, return_indices)


@dispatch("grad_out", "x", "indices")
def adaptive_max_pool3d_backward(
    grad_out: Any,
    x: Any,
    output_size: int | tuple[int | None, int | None, int | None],
    *,
    indices: Any = None,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`adaptive_max_pool3d` with respect to x.

    Each output's gradient goes to the maximum of its window (the first, on
    ties); overlapping windows add up. ``indices``, the forward's with
    ``return_indices=True``, saves finding the maxima again; other values give
    wrong gradients.

    Returns
    -------
    array, shape of x
    """
    return _adaptive_max_backward(grad_out, x, 3, output_size, indices)
