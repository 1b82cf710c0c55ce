"""Pooling over any number of spatial axes by loops over every output position and every
kernel offset, with explicit bounds checks; PyTorch's rules computed on their own.

Covers max/avg pooling in 1-D and 3-D (and the max-pool indices in any dimension),
max_unpool, adaptive max/avg pooling and power-average (LP) pooling.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def _tuple(v, dims):
    return (int(v),) * dims if np.isscalar(v) else tuple(int(i) for i in v)


def _batched(x, dims):
    x = np.asarray(x, np.float64)
    return (x[None], True) if x.ndim == dims + 1 else (x, False)


def _out_len(size, k, s, p, d, ceil_mode):
    span = size + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:  # a last window starting in the padding
        out -= 1
    return out


def _windows(size, kernel_size, stride, padding, dilation, ceil_mode):
    """Return the output shape and, per output position, the window's cells in row-major
    order, each ``(cell, inside, in_padded)``: whether it is in the input, and in the
    input with its padding (``-p .. size + p``)."""
    dims = len(size)
    k = _tuple(kernel_size, dims)
    s = k if stride is None else _tuple(stride, dims)
    p, d = _tuple(padding, dims), _tuple(dilation, dims)
    out = tuple(_out_len(*a, ceil_mode) for a in zip(size, k, s, p, d, strict=True))
    windows = {}
    for o in itertools.product(*map(range, out)):
        cells = []
        for t in itertools.product(*map(range, k)):
            cell = tuple(o[a] * s[a] - p[a] + t[a] * d[a] for a in range(dims))
            inside = all(0 <= cell[a] < size[a] for a in range(dims))
            in_padded = all(-p[a] <= cell[a] < size[a] + p[a] for a in range(dims))
            cells.append((cell, inside, in_padded))
        windows[o] = cells
    return out, windows


def _flat(cell, size):
    return int(np.ravel_multi_index(cell, size))


def _max_with_indices(x, dims, kernel_size, stride, padding, dilation, ceil_mode):
    """Window maxima and the flat index of the first maximum (the first NaN if any)."""
    x, unbatched = _batched(x, dims)
    size = x.shape[2:]
    out_shape, windows = _windows(size, kernel_size, stride, padding, dilation, ceil_mode)
    out = np.full(x.shape[:2] + out_shape, -np.inf)
    idx = np.full(x.shape[:2] + out_shape, -1, dtype=np.int64)
    for b, c in np.ndindex(*x.shape[:2]):
        for o, cells in windows.items():
            best, arg = -np.inf, -1
            for cell, inside, _ in cells:
                if not inside:
                    continue
                v = x[(b, c, *cell)]
                if arg < 0 or v > best or (np.isnan(v) and not np.isnan(best)):
                    best, arg = v, _flat(cell, size)
            out[(b, c, *o)], idx[(b, c, *o)] = best, arg
    return (out[0], idx[0]) if unbatched else (out, idx)


def _max_backward(grad_out, x, dims, kernel_size, stride, padding, dilation, ceil_mode):
    _, idx = _max_with_indices(x, dims, kernel_size, stride, padding, dilation, ceil_mode)
    x = np.asarray(x, np.float64)
    g = np.asarray(grad_out, np.float64)
    gx = np.zeros(x.shape)
    plane = x.shape[-dims:]
    for pos in np.ndindex(*g.shape):
        lead = pos[: g.ndim - dims]
        gx[(*lead, *np.unravel_index(idx[pos], plane))] += g[pos]
    return gx


def max_pool_indices(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Reference flat per-map indices of the window maxima of a batched (N, C, ...) x."""
    dims = np.ndim(x) - 2
    return _max_with_indices(x, dims, kernel_size, stride, padding, dilation, ceil_mode)[1]


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Reference 1-D max pooling: padding never wins, the first maximum is kept."""
    return _max_with_indices(x, 1, kernel_size, stride, padding, dilation, ceil_mode)[0]


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Reference 3-D max pooling."""
    return _max_with_indices(x, 3, kernel_size, stride, padding, dilation, ceil_mode)[0]


def max_pool1d_backward(grad_out, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):  # fmt: skip
    """Reference gradient: each window's gradient to its first maximum."""
    return _max_backward(grad_out, x, 1, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool3d_backward(grad_out, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):  # fmt: skip
    """Reference gradient: each window's gradient to its first maximum."""
    return _max_backward(grad_out, x, 3, kernel_size, stride, padding, dilation, ceil_mode)


def _avg_windows(size, kernel_size, stride, padding, ceil_mode, count_include_pad,
                 divisor_override):  # fmt: skip
    """Per output position: the input cells of the window and its divisor, PyTorch's rules."""
    out_shape, windows = _windows(size, kernel_size, stride, padding, 1, ceil_mode)
    result = {}
    for o, cells in windows.items():
        inside = [cell for cell, ins, _ in cells if ins]
        if divisor_override is not None:
            div = divisor_override
        elif count_include_pad:  # the window clipped to the padded input
            div = sum(1 for _, _, in_padded in cells if in_padded)
        else:
            div = len(inside)
        result[o] = (inside, div)
    return out_shape, result


def _avg(x, dims, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    x, unbatched = _batched(x, dims)
    out_shape, windows = _avg_windows(x.shape[2:], kernel_size, stride, padding, ceil_mode,
                                      count_include_pad, divisor_override)  # fmt: skip
    out = np.zeros(x.shape[:2] + out_shape)
    for o, (inside, div) in windows.items():
        total = sum((x[(..., *cell)] for cell in inside), np.zeros(x.shape[:2]))
        out[(..., *o)] = total / div
    return out[0] if unbatched else out


def _avg_backward(grad_out, x, dims, kernel_size, stride, padding, ceil_mode, count_include_pad,
                  divisor_override):  # fmt: skip
    x, unbatched = _batched(x, dims)
    g = np.asarray(grad_out, np.float64).reshape(x.shape[:2] + np.shape(grad_out)[-dims:])
    _, windows = _avg_windows(x.shape[2:], kernel_size, stride, padding, ceil_mode,
                              count_include_pad, divisor_override)  # fmt: skip
    gx = np.zeros_like(x)
    for o, (inside, div) in windows.items():
        for cell in inside:
            gx[(..., *cell)] += g[(..., *o)] / div
    return gx[0] if unbatched else gx


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Reference 1-D average pooling with PyTorch's divisor rules."""
    return _avg(x, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):  # fmt: skip
    """Reference 3-D average pooling with PyTorch's divisor rules."""
    return _avg(x, 3, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override)  # fmt: skip


def avg_pool1d_backward(grad_out, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):  # fmt: skip
    """Reference gradient: each output's gradient / divisor to its window."""
    return _avg_backward(grad_out, x, 1, kernel_size, stride, padding, ceil_mode,
                         count_include_pad, None)  # fmt: skip


def avg_pool3d_backward(grad_out, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):  # fmt: skip
    """Reference gradient: each output's gradient / divisor to its window."""
    return _avg_backward(grad_out, x, 3, kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override)  # fmt: skip


def _unpool_size(shape, kernel_size, stride, padding, output_size):
    dims = len(shape)
    k = _tuple(kernel_size, dims)
    s = k if stride is None else _tuple(stride, dims)
    p = _tuple(padding, dims)
    if output_size is not None:
        return tuple(output_size)[-dims:]
    return tuple((shape[a] - 1) * s[a] - 2 * p[a] + k[a] for a in range(dims))


def max_unpool(x, indices, kernel_size, stride=None, padding=0, output_size=None, dims=2):
    """Reference max unpooling over ``dims`` axes: each value written at its flat index."""
    x, idx = np.asarray(x, np.float64), np.asarray(indices)
    lead = x.shape[: x.ndim - dims]
    size = _unpool_size(x.shape[-dims:], kernel_size, stride, padding, output_size)
    out = np.zeros(lead + size)
    for pos in np.ndindex(*x.shape):
        cell = np.unravel_index(idx[pos], size)
        out[(*pos[: len(lead)], *cell)] = x[pos]
    return out


def max_unpool_backward(grad_out, x, indices, kernel_size, stride=None, padding=0,
                        output_size=None, dims=2):  # fmt: skip
    """Reference gradient: each input's gradient read at its index."""
    g, idx = np.asarray(grad_out, np.float64), np.asarray(indices)
    x = np.asarray(x, np.float64)
    size = g.shape[-dims:]
    gx = np.zeros(x.shape)
    for pos in np.ndindex(*x.shape):
        gx[pos] = g[(*pos[: x.ndim - dims], *np.unravel_index(idx[pos], size))]
    return gx


def _with_dims(fn, dims, name):
    def bound(*args, **kwargs):
        return fn(*args, **kwargs, dims=dims)

    bound.__name__ = bound.__qualname__ = name
    bound.__doc__ = f"{fn.__doc__.split(' over ')[0]} in {dims}-D."
    return bound


max_unpool1d = _with_dims(max_unpool, 1, "max_unpool1d")
max_unpool2d = _with_dims(max_unpool, 2, "max_unpool2d")
max_unpool3d = _with_dims(max_unpool, 3, "max_unpool3d")
max_unpool1d_backward = _with_dims(max_unpool_backward, 1, "max_unpool1d_backward")
max_unpool2d_backward = _with_dims(max_unpool_backward, 2, "max_unpool2d_backward")
max_unpool3d_backward = _with_dims(max_unpool_backward, 3, "max_unpool3d_backward")


def _adaptive_windows(size, output_size):
    """Per output position, the slices of its window: [floor(i*L/o), ceil((i+1)*L/o))."""
    dims = len(size)
    out = (output_size,) * dims if np.isscalar(output_size) else tuple(output_size)
    out = tuple(n if o is None else int(o) for o, n in zip(out, size, strict=True))
    bounds = [[(i * n // o, -(-(i + 1) * n // o)) for i in range(o)]
              for n, o in zip(size, out, strict=True)]  # fmt: skip
    for pos in itertools.product(*map(range, out)):
        yield pos, out, tuple(slice(*bounds[a][pos[a]]) for a in range(dims))


def _adaptive(x, dims, output_size, reduce):
    x = np.asarray(x, np.float64)
    size = x.shape[-dims:]
    out = None
    for pos, out_size, window in _adaptive_windows(size, output_size):
        if out is None:
            out = np.zeros(x.shape[:-dims] + out_size)
        out[(..., *pos)] = reduce(x[(..., *window)].reshape(*x.shape[:-dims], -1))
    return out


def _first_max(cells):
    """Index of the first NaN, else of the first maximum, along the last axis."""
    nan = np.isnan(cells)
    return np.where(nan.any(axis=-1), nan.argmax(axis=-1), np.argmax(cells, axis=-1))


def adaptive_avg_pool(x, output_size, dims=2):
    """Reference adaptive average pooling over ``dims`` axes: a loop over PyTorch's windows."""
    return _adaptive(x, dims, output_size, lambda cells: cells.mean(axis=-1))


def adaptive_max_pool(x, output_size, dims=2):
    """Reference adaptive max pooling over ``dims`` axes; NaN wins, as in PyTorch."""
    return _adaptive(
        x, dims, output_size,
        lambda cells: np.take_along_axis(cells, _first_max(cells)[..., None], -1)[..., 0],
    )  # fmt: skip


def adaptive_max_pool_indices(x, output_size, dims=2):
    """Reference flat indices of the first maxima of the adaptive windows."""
    x = np.asarray(x, np.float64)
    size = x.shape[-dims:]
    out = None
    for pos, out_size, window in _adaptive_windows(size, output_size):
        if out is None:
            out = np.zeros(x.shape[:-dims] + out_size, dtype=np.int64)
        cells = x[(..., *window)]
        local = _first_max(cells.reshape(*x.shape[:-dims], -1))
        coords = np.unravel_index(local, cells.shape[-dims:])
        global_ = tuple(c + w.start for c, w in zip(coords, window, strict=True))
        out[(..., *pos)] = np.ravel_multi_index(global_, size)
    return out


def adaptive_avg_pool_backward(grad_out, x, output_size, dims=2):
    """Reference gradient: each output's gradient shared evenly by its window."""
    x, g = np.asarray(x, np.float64), np.asarray(grad_out, np.float64)
    gx = np.zeros(x.shape)
    for pos, _, window in _adaptive_windows(x.shape[-dims:], output_size):
        count = math.prod(w.stop - w.start for w in window)
        gx[(..., *window)] += g[(..., *pos)].reshape(g.shape[:-dims] + (1,) * dims) / count
    return gx


def adaptive_max_pool_backward(grad_out, x, output_size, dims=2):
    """Reference gradient: each output's gradient to its window's first maximum."""
    x, g = np.asarray(x, np.float64), np.asarray(grad_out, np.float64)
    idx = adaptive_max_pool_indices(x, output_size, dims)
    gx = np.zeros(x.shape)
    for pos in np.ndindex(*g.shape):
        lead = pos[: g.ndim - dims]
        gx[(*lead, *np.unravel_index(idx[pos], x.shape[-dims:]))] += g[pos]
    return gx


adaptive_avg_pool1d = _with_dims(adaptive_avg_pool, 1, "adaptive_avg_pool1d")
adaptive_avg_pool1d_backward = _with_dims(
    adaptive_avg_pool_backward, 1, "adaptive_avg_pool1d_backward"
)
adaptive_avg_pool3d = _with_dims(adaptive_avg_pool, 3, "adaptive_avg_pool3d")
adaptive_avg_pool3d_backward = _with_dims(
    adaptive_avg_pool_backward, 3, "adaptive_avg_pool3d_backward"
)
adaptive_max_pool1d = _with_dims(adaptive_max_pool, 1, "adaptive_max_pool1d")
adaptive_max_pool1d_backward = _with_dims(
    adaptive_max_pool_backward, 1, "adaptive_max_pool1d_backward"
)
adaptive_max_pool2d = _with_dims(adaptive_max_pool, 2, "adaptive_max_pool2d")
adaptive_max_pool2d_backward = _with_dims(
    adaptive_max_pool_backward, 2, "adaptive_max_pool2d_backward"
)
adaptive_max_pool3d = _with_dims(adaptive_max_pool, 3, "adaptive_max_pool3d")
adaptive_max_pool3d_backward = _with_dims(
    adaptive_max_pool_backward, 3, "adaptive_max_pool3d_backward"
)


def _lp_windows(shape, dims, kernel_size, stride, ceil_mode):
    """Per output position: the window's input cells and PyTorch's scale ``K / count``
    (the kernel's size over the cells inside the input: 1 on a full window)."""
    out_shape, windows = _windows(shape, kernel_size, stride, 0, 1, ceil_mode)
    k = math.prod(_tuple(kernel_size, dims))
    result = {}
    for o, cells in windows.items():
        inside = [cell for cell, ins, _ in cells if ins]
        result[o] = (inside, k / len(inside))
    return out_shape, result


def lp_pool(x, norm_type, kernel_size, stride=None, ceil_mode=False, dims=2):
    """Reference power-average pooling: ``(scale * sum x ** p) ** (1 / p)`` per window."""
    x, unbatched = _batched(x, dims)
    out_shape, windows = _lp_windows(x.shape[2:], dims, kernel_size, stride, ceil_mode)
    out = np.zeros(x.shape[:2] + out_shape)
    for o, (inside, scale) in windows.items():
        total = sum(x[(..., *cell)] ** norm_type for cell in inside) * scale
        out[(..., *o)] = total ** (1 / norm_type)
    return out[0] if unbatched else out


def lp_pool_backward(grad_out, x, norm_type, kernel_size, stride=None, ceil_mode=False, dims=2):
    """Reference gradient: ``d y / d x_i = y / S * scale * x_i ** (p - 1)`` with ``S`` the
    scaled sum (``y = S ** (1 / p)``); 0 where ``S`` is 0, as in PyTorch."""
    x, unbatched = _batched(x, dims)
    g = np.asarray(grad_out, np.float64).reshape(x.shape[:2] + np.shape(grad_out)[-dims:])
    _, windows = _lp_windows(x.shape[2:], dims, kernel_size, stride, ceil_mode)
    gx = np.zeros_like(x)
    for o, (inside, scale) in windows.items():
        total = sum(x[(..., *cell)] ** norm_type for cell in inside) * scale
        safe = np.where(total == 0, 1, total)
        factor = np.where(total == 0, 0, safe ** (1 / norm_type) / safe * scale)
        for cell in inside:
            gx[(..., *cell)] += g[(..., *o)] * factor * x[(..., *cell)] ** (norm_type - 1)
    return gx[0] if unbatched else gx


lp_pool1d = _with_dims(lp_pool, 1, "lp_pool1d")
lp_pool2d = _with_dims(lp_pool, 2, "lp_pool2d")
lp_pool3d = _with_dims(lp_pool, 3, "lp_pool3d")
lp_pool1d_backward = _with_dims(lp_pool_backward, 1, "lp_pool1d_backward")
lp_pool2d_backward = _with_dims(lp_pool_backward, 2, "lp_pool2d_backward")
lp_pool3d_backward = _with_dims(lp_pool_backward, 3, "lp_pool3d_backward")
