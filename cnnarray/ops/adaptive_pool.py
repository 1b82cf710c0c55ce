"""Adaptive pooling: windows chosen from the input and output sizes, PyTorch's rule.

Output ``i`` of an axis of length ``L`` pooled to ``out`` reads
``[floor(i * L / out), ceil((i + 1) * L / out))``; the windows overlap when
``out`` does not divide ``L``.
"""

from __future__ import annotations

from typing import Any

from .. import _args
from ..backend import array_namespace, dispatch

__all__ = ["adaptive_avg_pool2d", "adaptive_avg_pool2d_backward"]


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


def _adaptive_setup(x: Any, output_size: Any) -> tuple[Any, Any, int, int]:
    """Validate; return ``xp``, float x, ``out_h`` and ``out_w``."""
    _args.check_ndim(x, "x", (3, 4), "(N, C, H, W) or (C, H, W)")
    _args.check_nonempty(x, "x")
    out_h, out_w = _args.check_output_size(output_size, input_shape=x.shape)
    xp = array_namespace(x)
    return xp, x.astype(_args.float_dtype(xp, x=x), copy=False), out_h, out_w


def _window_sizes(xp: Any, h: int, w: int, out_h: int, out_w: int, dtype: Any) -> Any:
    """Number of elements in each window, shape (out_h, out_w): the divisors of the sums."""
    (starts_h, ends_h), (starts_w, ends_w) = _windows(xp, h, out_h), _windows(xp, w, out_w)
    return ((ends_h - starts_h)[:, None] * (ends_w - starts_w)).astype(dtype)


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
    xp, x, out_h, out_w = _adaptive_setup(x, output_size)
    (h, w), rows = x.shape[-2:], x.ndim - 2
    if (out_h, out_w) == (1, 1):  # the global average: one reduction
        return x.mean(axis=(-2, -1), keepdims=True)
    a_h, a_w = _averaging(xp, h, out_h, x.dtype), _averaging(xp, w, out_w, x.dtype)
    y = xp.matmul(xp.matmul(a_h, x), a_w.T)
    # A NaN or inf in x makes the outputs of its windows (positive weights) NaN or
    # inf, and the product spreads it further (0 * inf is NaN): a finite y means a
    # finite x, and checking y, the smaller array, is the cheaper test.
    if bool(xp.isfinite(y).all()):
        return y
    sums = _window_sums(xp, _window_sums(xp, x, rows, h, out_h), rows + 1, w, out_w)
    return sums / _window_sizes(xp, h, w, out_h, out_w, x.dtype)


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
    xp, x, out_h, out_w = _adaptive_setup(x, output_size)
    _args.check_shape(grad_out, "grad_out", (*x.shape[:-2], out_h, out_w))
    g = grad_out.astype(_args.float_dtype(xp, grad_out=grad_out, x=x), copy=False)
    (h, w), rows = x.shape[-2:], x.ndim - 2
    if h % out_h == 0 and w % out_w == 0:  # disjoint windows: one share for each element
        g = g / ((h // out_h) * (w // out_w))
        return xp.repeat(xp.repeat(g, h // out_h, axis=rows), w // out_w, axis=rows + 1)
    if bool(xp.isfinite(g).all()):
        a_h, a_w = _averaging(xp, h, out_h, g.dtype), _averaging(xp, w, out_w, g.dtype)
        return xp.matmul(xp.matmul(a_h.T, g), a_w)
    g = g / _window_sizes(xp, h, w, out_h, out_w, g.dtype)
    return _window_sums(xp, _window_sums(xp, g, rows, out_h, h), rows + 1, out_w, w)
