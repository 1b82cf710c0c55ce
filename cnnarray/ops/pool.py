"""Max and average pooling over 2-D windows, forward and backward.

Both are computed as a reduction over the ``kh * kw`` strided slices of the
padded input, one slice per kernel offset: an elementwise maximum (or sum) of
``kh * kw`` arrays of the output's shape, never a loop over pixels. The
backward passes add into the same slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import _args
from ..backend import Workspace, array_namespace, dispatch, parallel_for
from . import _conv_plan

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
]


@dataclass(frozen=True)
class _PoolGeometry:
    n: int
    c: int
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    out_h: int
    out_w: int
    unbatched: bool

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.n, self.c, self.out_h, self.out_w)[int(self.unbatched) :]

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Padded size: ``pad`` on top/left, enough on bottom/right for every window."""
        hp = max(self.h + 2 * self.ph, (self.out_h - 1) * self.sh + self.dh * (self.kh - 1) + 1)
        wp = max(self.w + 2 * self.pw, (self.out_w - 1) * self.sw + self.dw * (self.kw - 1) + 1)
        return hp, wp

    @property
    def tiles(self) -> bool:
        """True when the windows cover the padded input exactly once."""
        hp, wp = self.padded_shape
        return (
            (self.sh, self.sw) == (self.kh, self.kw)
            and (self.dh, self.dw) == (1, 1)
            and (hp, wp) == (self.out_h * self.kh, self.out_w * self.kw)
        )

    def windows(self) -> list[tuple[slice, slice]]:
        """Row-major list of the padded-input slices read by each kernel offset."""
        slices = _args.window_slices((self.kh, self.kw), (self.sh, self.sw),
                                     (self.dh, self.dw), (self.out_h, self.out_w))  # fmt: skip
        return [(rows, cols) for _, _, rows, cols in slices]


# The most kernel offsets a pooling call loops over, unless the input's maps
# are larger (a window as large as the input is a global pooling): the loop is
# in Python, one pass over the output per offset, and a huge kernel on a small
# input would read mostly padding.
_MAX_TAPS = 2**16


def _geometry(
    x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: Any
) -> _PoolGeometry:
    _args.check_ndim(x, "x", (3, 4), "(N, C, H, W) or (C, H, W)")
    _args.check_nonempty(x, "x")
    kh, kw = _args._pair(kernel_size, "kernel_size", minimum=1)
    sh, sw = (kh, kw) if stride is None else _args._pair(stride, "stride", minimum=1)
    ph, pw = _args._pair(padding, "padding", minimum=0)
    dh, dw = _args._pair(dilation, "dilation", minimum=1)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(
            f"padding must be at most half of kernel_size, got padding={(ph, pw)} "
            f"for kernel_size={(kh, kw)}"
        )
    _args.check_bool(ceil_mode, "ceil_mode")
    unbatched = x.ndim == 3
    n, c, h, w = (1,) * unbatched + tuple(x.shape)
    out_h = _args.pool_out_size(h, ph, kh, sh, dh, ceil_mode)
    out_w = _args.pool_out_size(w, pw, kw, sw, dw, ceil_mode)
    _args.check_window_fits((out_h, out_w), (kh, kw), (dh, dw), (h + 2 * ph, w + 2 * pw), x.shape)
    if kh * kw > max(_MAX_TAPS, h * w):
        raise ValueError(
            f"kernel_size must have at most {max(_MAX_TAPS, h * w)} elements (the larger of "
            f"{_MAX_TAPS} and H * W: pooling loops over them), got kernel_size={(kh, kw)} "
            f"({kh * kw} elements) for x of shape {tuple(x.shape)}"
        )
    geo = _PoolGeometry(n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, unbatched)
    # each map is padded whole (_pad): a kernel far larger than x must not pad it to gigabytes
    itemsize = x.dtype.itemsize if x.dtype.kind == "f" else 4
    _conv_plan.check_padded_maps(f"padding={(ph, pw)} with kernel_size={(kh, kw)}", (h, w),
                                 geo.padded_shape, 1, itemsize)  # fmt: skip
    return geo


class _PoolWorkspace(Workspace):
    """The scratch memory of one pooling call (see :class:`cnnarray.backend.Workspace`).

    Every view is taken and dies inside one ``parallel_for`` body, in its
    thread's memory, and no two share memory: ``pad``, the slice padded by
    :func:`_pad`, read by every tap; max_pool2d_backward's ``best`` (the window
    maxima, when not given), ``grad`` (the padded gradient, cropped into grad_x
    at the end) and ``pending`` and ``hit`` (the windows whose maximum is not
    found yet, and those found at the current tap).
    """

    NAME = "pool"
    VIEWS = {name: name for name in ("pad", "best", "grad", "pending", "hit")}


def _pad(ws: Workspace, x: Any, geo: _PoolGeometry, fill: float) -> Any:
    """Pad maps (M, H, W) to the padded shape with ``fill``."""
    hp, wp = geo.padded_shape
    if (hp, wp) == (geo.h, geo.w):
        return x
    out = ws.take("pad", (x.shape[0], hp, wp), x.dtype)
    out[...] = fill
    out[:, geo.ph : geo.ph + geo.h, geo.pw : geo.pw + geo.w] = x
    return out


def _prepare(x: Any, geo: _PoolGeometry) -> tuple[Any, Any]:
    """Return ``xp`` and x as float maps of shape (N*C, H, W): pooling treats each alike."""
    xp = array_namespace(x)
    dtype = _args.float_dtype(xp, x=x)
    return xp, x.astype(dtype, copy=False).reshape(geo.n * geo.c, geo.h, geo.w)


def _grad_in(xp: Any, grad_out: Any, x: Any, geo: _PoolGeometry) -> Any:
    _args.check_shape(grad_out, "grad_out", geo.out_shape)
    _args.float_dtype(xp, grad_out=grad_out, x=x)
    return grad_out.astype(x.dtype, copy=False).reshape(geo.n * geo.c, geo.out_h, geo.out_w)


def _run(xp: Any, x: Any, out_hw: tuple[int, int], geo: _PoolGeometry, body: Any) -> Any:
    """Allocate the (N*C, *out_hw) result, fill it by ``body(part, out[part])`` in parallel."""
    out = xp.empty((x.shape[0], *out_hw), dtype=x.dtype)
    parallel_for(xp, x.shape[0], lambda part: body(part, out[part]), work=x.size)
    return out


def _unflatten(out: Any, geo: _PoolGeometry) -> Any:
    return out.reshape((geo.n, geo.c, *out.shape[1:])[int(geo.unbatched) :])


@dispatch("x")
def max_pool2d(
    x: Any,
    kernel_size: _args.IntPair,
    stride: _args.IntPair | None = None,
    padding: _args.IntPair = 0,
    dilation: _args.IntPair = 1,
    ceil_mode: bool = False,
    *,
    backend: str | None = None,
) -> Any:
    """Take the maximum over each (dilated) window.

    Parameters
    ----------
    x : array, shape (N, C, H, W) or (C, H, W)
        Input maps, float32 or float64 (integers are promoted to float32).
    kernel_size : int or (int, int)
        Window size ``(kh, kw)``; the dilated window must fit the padded input,
        and hold at most ``max(65536, H * W)`` elements.
    stride : int or (int, int), optional
        Step between windows; defaults to ``kernel_size``.
    padding : int or (int, int), default 0
        Implicit ``-inf`` added on both sides; at most half the kernel size.
    dilation : int or (int, int), default 1
        Spacing between window elements.
    ceil_mode : bool, default False
        Round the output size up, so partial windows at the right/bottom count,
        except a last window that would start inside the right padding.
    backend : str, optional
        None computes where x lives; a name moves x there first.

    Returns
    -------
    array, shape (N, C, out_h, out_w)
        ``out_h = floor_or_ceil((H + 2 * ph - dh * (kh - 1) - 1) / sh) + 1``, likewise
        ``out_w``.

    Notes
    -----
    A NaN in a window makes that output NaN, as in PyTorch.

    See Also
    --------
    torch.nn.functional.max_pool2d
    """
    geo = _geometry(x, kernel_size, stride, padding, dilation, ceil_mode)
    xp, x = _prepare(x, geo)
    windows, ws = geo.windows(), _PoolWorkspace(xp)

    def body(part: slice, out: Any) -> None:
        xpad = _pad(ws, x[part], geo, -float("inf"))
        out[...] = xpad[:, windows[0][0], windows[0][1]]
        for rows, cols in windows[1:]:
            xp.maximum(out, xpad[:, rows, cols], out=out)

    return _unflatten(_run(xp, x, (geo.out_h, geo.out_w), geo, body), geo)


@dispatch("grad_out", "x", "output")
def max_pool2d_backward(
    grad_out: Any,
    x: Any,
    kernel_size: _args.IntPair,
    stride: _args.IntPair | None = None,
    padding: _args.IntPair = 0,
    dilation: _args.IntPair = 1,
    ceil_mode: bool = False,
    *,
    output: Any = None,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`max_pool2d` with respect to x.

    Each window's gradient goes to its maximum. Tie policy: when several
    elements of a window share the maximum, the whole gradient goes to the
    FIRST of them in row-major order of the window, as PyTorch does (a NaN
    counts as the maximum of its window). Overlapping windows add up.

    Parameters
    ----------
    grad_out : array, shape of ``max_pool2d(x, ...)``
    x, kernel_size, stride, padding, dilation, ceil_mode, backend
        As given to :func:`max_pool2d`.
    output : array, shape of ``max_pool2d(x, ...)``, optional
        The result of that :func:`max_pool2d` call, when it is at hand (as
        :class:`cnnarray.nn.MaxPool2d` keeps it): the window maxima are read
        from it instead of computed again, a quarter of the backward's passes
        for 2x2 windows. It must be that result; other values give wrong
        gradients.

    Returns
    -------
    array, shape of x
    """
    geo = _geometry(x, kernel_size, stride, padding, dilation, ceil_mode)
    xp, x = _prepare(x, geo)
    grad_out = _grad_in(xp, grad_out, x, geo)
    if output is not None:
        _args.check_shape(output, "output", geo.out_shape)
        _args.float_dtype(xp, output=output, x=x)
        output = output.astype(x.dtype, copy=False).reshape(grad_out.shape)
    windows, ws = geo.windows(), _PoolWorkspace(xp)
    # When the windows tile the padded input exactly, every input element gets
    # the gradient of one window and the slices can be written, not added.
    tiled = geo.tiles
    padded = geo.padded_shape != (geo.h, geo.w)

    def body(part: slice, grad_x: Any) -> None:
        xpad, g = _pad(ws, x[part], geo, -float("inf")), grad_out[part]
        if output is not None:
            best = output[part]
        else:
            best = ws.take("best", g.shape, x.dtype)
            best[...] = xpad[:, windows[0][0], windows[0][1]]
            for rows, cols in windows[1:]:
                xp.maximum(best, xpad[:, rows, cols], out=best)
        # g * hit is the fast way to route the gradient, but inf * False is NaN:
        # a gradient with inf or NaN takes the slower where().
        finite = bool(xp.isfinite(g).all())
        grad = ws.take("grad", xpad.shape, x.dtype) if padded else grad_x
        if not (tiled and finite):  # else every element is written exactly once below
            grad[...] = 0
        pending = ws.take("pending", best.shape, bool)  # maximum not found yet
        hit = ws.take("hit", best.shape, bool)
        # Without a NaN maximum, the windows still pending at the last tap have
        # their maximum there: that tap's hits are the pending windows themselves.
        rest_at_last = len(windows) > 1 and not bool(xp.isnan(best).any())
        for t, (rows, cols) in enumerate(windows):
            found = hit
            if t == 0:  # nothing found yet: the hits are the equal elements
                xp.equal(xpad[:, rows, cols], best, out=hit)
                xp.logical_not(hit, out=pending)
            elif t == len(windows) - 1 and rest_at_last:
                found = pending
            else:
                xp.equal(xpad[:, rows, cols], best, out=hit)
                hit &= pending
                pending ^= hit  # hit is a subset of pending: this clears the windows just found
            if tiled and finite:
                xp.multiply(g, found, out=grad[:, rows, cols])
            else:
                grad[:, rows, cols] += g * found if finite else xp.where(found, g, 0)
        if not rest_at_last and pending.any():
            # Only windows whose maximum is NaN are left: the gradient goes to the first NaN.
            for rows, cols in windows:
                patch = xpad[:, rows, cols]
                xp.logical_and(patch != patch, pending, out=hit)
                pending ^= hit
                grad[:, rows, cols] += xp.where(hit, g, 0)
        if padded:
            grad_x[...] = grad[:, geo.ph : geo.ph + geo.h, geo.pw : geo.pw + geo.w]

    return _unflatten(_run(xp, x, (geo.h, geo.w), geo, body), geo)


def _avg_divisor(
    xp: Any, geo: _PoolGeometry, count_include_pad: bool, divisor_override: int | None, dtype: Any
) -> Any:
    """Return the divisor of each output, shape (out_h, out_w), PyTorch's rule.

    Windows are clipped to the padded input (``H + pad`` on the bottom) when
    counting padding, and to the input itself otherwise.
    """
    if divisor_override is not None:
        return xp.asarray(divisor_override, dtype=dtype)

    def counts(out: int, size: int, pad: int, kernel: int, stride: int) -> Any:
        start = xp.arange(out) * stride - pad
        end = xp.minimum(start + kernel, size + pad)
        if count_include_pad:
            return end - start
        return xp.minimum(end, size) - xp.maximum(start, 0)

    rows = counts(geo.out_h, geo.h, geo.ph, geo.kh, geo.sh)
    cols = counts(geo.out_w, geo.w, geo.pw, geo.kw, geo.sw)
    return (rows[:, None] * cols[None, :]).astype(dtype)


def _avg_setup(
    x: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    ceil_mode: Any,
    count_include_pad: Any,
    divisor_override: Any,
) -> tuple[Any, Any, _PoolGeometry]:
    """Validate; return ``xp``, x as float maps (N*C, H, W) and the geometry."""
    _args.check_bool(count_include_pad, "count_include_pad")
    if divisor_override is not None and _args.check_int(divisor_override, "divisor_override") == 0:
        raise ValueError(
            f"divisor_override must be a non-zero int or None, got {divisor_override!r}"
        )
    geo = _geometry(x, kernel_size, stride, padding, 1, ceil_mode)
    return (*_prepare(x, geo), geo)


@dispatch("x")
def avg_pool2d(
    x: Any,
    kernel_size: _args.IntPair,
    stride: _args.IntPair | None = None,
    padding: _args.IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    backend: str | None = None,
) -> Any:
    """Average each window.

    Parameters
    ----------
    x : array, shape (N, C, H, W) or (C, H, W)
    kernel_size : int or (int, int)
        As in :func:`max_pool2d`.
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int), default 0
        Implicit zeros on both sides; at most half the kernel size.
    ceil_mode : bool, default False
        As in :func:`max_pool2d`.
    count_include_pad : bool, default True
        Divide by the window size including the zero padding (clipped at the
        padded border) rather than by the number of real elements.
    divisor_override : int, optional
        Divide every window sum by this number instead.
    backend : str, optional
        None computes where x lives; a name moves x there first.

    Returns
    -------
    array, shape (N, C, out_h, out_w)
        ``out_h = floor_or_ceil((H + 2 * ph - kh) / sh) + 1``, likewise ``out_w``.

    See Also
    --------
    torch.nn.functional.avg_pool2d
    """
    xp, x, geo = _avg_setup(
        x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    windows = geo.windows()
    divisor = _avg_divisor(xp, geo, count_include_pad, divisor_override, x.dtype)
    ws = _PoolWorkspace(xp)

    def body(part: slice, out: Any) -> None:
        xpad = _pad(ws, x[part], geo, 0.0)
        out[...] = xpad[:, windows[0][0], windows[0][1]]
        for rows, cols in windows[1:]:
            out += xpad[:, rows, cols]
        out /= divisor

    return _unflatten(_run(xp, x, (geo.out_h, geo.out_w), geo, body), geo)


@dispatch("grad_out", "x")
def avg_pool2d_backward(
    grad_out: Any,
    x: Any,
    kernel_size: _args.IntPair,
    stride: _args.IntPair | None = None,
    padding: _args.IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`avg_pool2d` with respect to x.

    Each output's gradient, divided by its window's divisor, is spread over
    the window; overlapping windows add up.

    Returns
    -------
    array, shape of x
    """
    xp, x, geo = _avg_setup(
        x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    grad_out = _grad_in(xp, grad_out, x, geo)
    divisor = _avg_divisor(xp, geo, count_include_pad, divisor_override, x.dtype)
    windows = geo.windows()

    def body(part: slice, grad_x: Any) -> None:
        share = grad_out[part] / divisor
        grad = xp.zeros((share.shape[0], *geo.padded_shape), dtype=x.dtype)
        for rows, cols in windows:
            grad[:, rows, cols] += share
        grad_x[...] = grad[:, geo.ph : geo.ph + geo.h, geo.pw : geo.pw + geo.w]

    return _unflatten(_run(xp, x, (geo.h, geo.w), geo, body), geo)


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
