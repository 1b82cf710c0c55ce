"""Max and average pooling over windows, forward and backward: the N-d code and its
2-D entry points (1-D and 3-D ones are in :mod:`cnnarray.ops.pool_nd`).

Both reduce the ``prod(kernel)`` strided slices of the padded input, one per kernel
offset: an elementwise maximum (or sum) of as many arrays of the output's shape,
never a loop over pixels. The backward passes add into the same slices. Where each
window's maximum is (``return_indices``) is found by arithmetic in the forward's passes,
and the backward given those indices scatters the gradient to them. The geometry and
scratch memory are in ``_pool_geometry``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from .. import _args
from ..backend import dispatch
from ._pool_geometry import (
    _MAX_GEOMETRIES,
    _geometry,
    _grad_in,
    _pad,
    _plane_indices,
    _PoolGeometry,
    _PoolWorkspace,
    _prepare,
    _run,
    _unflatten,
)

__all__ = [
    "avg_pool2d",
    "avg_pool2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
]


# (base, offsets) of _tap_offsets by geometry and device: building them costs more than
# pooling a small batch of late-layer maps.
_TAP_OFFSETS: dict[tuple[Any, ...], tuple[Any, list[int]]] = {}


def _tap_offsets(xp: Any, geo: _PoolGeometry, device: Any) -> tuple[Any, list[int]]:
    """Flat indices for ``return_indices``: ``(base, offsets)``, on ``device``.

    ``base``, int64 of shape (1, *out), is the flat index in its map of each
    window's first element (outside the map where that is padding), and
    ``offsets[t]`` what kernel offset ``t`` (row-major, as ``geo.taps``) adds.
    """
    key = (geo, xp, str(device))
    cached = _TAP_OFFSETS.get(key)
    if cached is not None:
        return cached
    dims = len(geo.size)
    pitch = [math.prod(geo.size[axis + 1 :]) for axis in range(dims)]
    base = xp.zeros((1, *geo.out), dtype=xp.int64)
    for axis, (out, stride, pad) in enumerate(zip(geo.out, geo.stride, geo.padding, strict=True)):
        start = (xp.arange(out, dtype=xp.int64) * stride - pad) * pitch[axis]
        base += start.reshape((out,) + (1,) * (dims - axis - 1))
    taps = itertools.product(*(range(k) for k in geo.kernel))
    offsets = [sum(i * d * q for i, d, q in zip(tap, geo.dilation, pitch, strict=True))
               for tap in taps]  # fmt: skip
    if len(_TAP_OFFSETS) < _MAX_GEOMETRIES:
        _TAP_OFFSETS[key] = base, offsets
    return base, offsets


def _max_pool(
    x: Any,
    dims: int,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: Any,
    return_indices: Any,
) -> Any:
    """max_pool1d/2d/3d over ``dims`` spatial axes; see :func:`max_pool2d`."""
    geo = _geometry(x, dims, kernel_size, stride, padding, dilation, ceil_mode)
    _args.check_bool(return_indices, "return_indices")
    xp, x = _prepare(x, geo)
    windows, ws = geo.taps, _PoolWorkspace(xp)
    if return_indices:
        indices = xp.empty((x.shape[0], *geo.out), dtype=xp.int64)
        base, offsets = _tap_offsets(xp, geo, getattr(x, "device", None))
        padded = geo.padded_shape != geo.size
        at_dtype = xp.int32 if math.prod(geo.size) < 2**31 else xp.int64
        base = base.astype(at_dtype, copy=False)  # int32 arithmetic, then int64 once

    def body(part: slice, out: Any) -> None:
        xpad = _pad(ws, x[part], geo, -float("inf"))
        out[...] = xpad[windows[0]]
        if not return_indices:
            for window in windows[1:]:
                xp.maximum(out, xpad[window], out=out)
            return
        # Where each window's maximum is, as an offset from its first element: strictly
        # greater keeps the first maximum. A copied patch costs less than reading the
        # strided slice twice, and arithmetic less than NumPy's masked copyto or take.
        at = ws.take("at", out.shape, at_dtype)
        patch = ws.take("patch", out.shape, x.dtype)
        take = ws.take("take", out.shape, bool)
        at[...] = 0
        for offset, window in zip(offsets[1:], windows[1:], strict=True):
            patch[...] = xpad[window]
            xp.greater(patch, out, out=take)
            xp.maximum(out, patch, out=out)
            at += take * (offset - at)  # offset where take, else unchanged
        # A NaN (the first NaN wins) or a maximum of -inf where the first taps may be
        # padding (the first element of the input wins) take the exact, slower loop.
        if bool(xp.isnan(out).any()) or (padded and bool((out == -float("inf")).any())):
            _first_max_offsets(xp, xpad, geo, base, offsets, out, at)
        at += base
        indices[part] = at

    out = _unflatten(_run(xp, x, geo.out, geo, body), geo)
    return (out, _unflatten(indices, geo)) if return_indices else out


def _first_max_offsets(
    xp: Any, xpad: Any, geo: _PoolGeometry, base: Any, offsets: list[int], out: Any, at: Any
) -> None:
    """Fill ``out`` and ``at`` with each window's maximum and its offset from the
    window's first element (``base``), where a NaN beats every number (the first NaN
    wins), a window whose first elements are padding takes its first input element
    even at -inf, and one of padding only gets the index -1."""
    plane = _plane_indices(xp, geo)
    windows = geo.taps
    out[...] = xpad[windows[0]]
    at[...] = 0
    where = plane[windows[0]]  # where each maximum so far is, -1 in the padding
    for offset, window in zip(offsets[1:], windows[1:], strict=True):
        patch, here = xpad[window], plane[window]
        take = (patch > out) | ((patch != patch) & (out == out)) | ((where < 0) & (here >= 0))
        out[...] = xp.where(take, patch, out)
        at[...] = xp.where(take, offset, at)
        where = xp.where(take, here, where)
    at[...] = xp.where(where < 0, -1 - base, at)


def _backward_from_indices(xp: Any, g: Any, x: Any, geo: _PoolGeometry, indices: Any) -> Any:
    """max-pool backward given where each window's maximum is (``return_indices``): g, shape
    (M, *out), goes to those elements of the result, shape (M, *size)."""
    _args.check_shape(indices, "indices", geo.out_shape)
    if indices.dtype.kind not in "iu":
        raise TypeError(
            f"indices must be an integer array (max_pool's return_indices), got dtype "
            f"{indices.dtype}"
        )
    indices = indices.astype(xp.int64, copy=False).reshape(g.shape)
    size = math.prod(geo.size)
    disjoint = all(s >= d * (k - 1) + 1 for s, d, k in zip(geo.stride, geo.dilation, geo.kernel,
                                                          strict=True))  # fmt: skip
    # A window of padding only has the index -1 (and no gradient): only the slower loop,
    # which matches the indices with each tap's elements, leaves it out.
    padded = geo.padded_shape != geo.size
    if disjoint and padded:
        disjoint = not bool((indices < 0).any())
    if not disjoint:
        plane = _plane_indices(xp, geo)

    def body(part: slice, grad_x: Any) -> None:
        index, grad_out = indices[part], g[part]
        if disjoint:  # no element is the maximum of two windows: one scatter of g
            grad_x[...] = 0
            maps = xp.arange(index.shape[0], dtype=xp.int64).reshape(-1, *(1,) * len(geo.out))
            grad_x.reshape(-1)[(index + maps * size).reshape(-1)] = grad_out.reshape(-1)
            return
        grad = xp.zeros((index.shape[0], *geo.padded_shape), dtype=x.dtype)
        for window in geo.taps:  # overlapping windows add up, each at its kernel offset
            grad[window] += xp.where(index == plane[window], grad_out, 0)
        grad_x[...] = grad[geo.inner]

    return _run(xp, x, geo.size, geo, body)


def _max_pool_backward(
    grad_out: Any,
    x: Any,
    dims: int,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: Any,
    output: Any,
    indices: Any = None,
) -> Any:
    """max_pool1d/2d/3d_backward over ``dims`` spatial axes; see :func:`max_pool2d_backward`."""
    geo = _geometry(x, dims, kernel_size, stride, padding, dilation, ceil_mode)
    xp, x = _prepare(x, geo)
    grad_out = _grad_in(xp, grad_out, x, geo)
    if indices is not None:
        return _unflatten(_backward_from_indices(xp, grad_out, x, geo, indices), geo)
    if output is not None:
        _args.check_shape(output, "output", geo.out_shape)
        _args.float_dtype(xp, output=output, x=x)
        output = output.astype(x.dtype, copy=False).reshape(grad_out.shape)
    windows, ws = geo.taps, _PoolWorkspace(xp)
    # When the windows tile the padded input exactly, every input element gets
    # the gradient of one window and the slices can be written, not added.
    tiled = geo.tiles
    padded = geo.padded_shape != geo.size

    def body(part: slice, grad_x: Any) -> None:
        xpad, g = _pad(ws, x[part], geo, -float("inf")), grad_out[part]
        if output is not None:
            best = output[part]
        else:
            best = ws.take("best", g.shape, x.dtype)
            best[...] = xpad[windows[0]]
            for window in windows[1:]:
                xp.maximum(best, xpad[window], out=best)
        # g * hit is the fast way to route the gradient, but inf * False is NaN:
        # a gradient with inf or NaN takes the slower where().
        finite = bool(xp.isfinite(g).all())
        grad = ws.take("grad", xpad.shape, x.dtype) if padded else grad_x
        if not (tiled and finite):  # else every element is written exactly once below
            grad[...] = 0
        pending = ws.take("pending", best.shape, bool)  # maximum not found yet
        hit = ws.take("hit", best.shape, bool)
        # A maximum of -inf equals the padding: the gradient goes to the first input element.
        inside = None
        if padded and bool((best == -float("inf")).any()):
            inside = _plane_indices(xp, geo) >= 0
        # Without a NaN maximum, the windows still pending at the last tap have
        # their maximum there: that tap's hits are the pending windows themselves.
        rest_at_last = len(windows) > 1 and not bool(xp.isnan(best).any())
        for t, window in enumerate(windows):
            found = hit
            if t == 0:  # nothing found yet: the hits are the equal elements
                xp.equal(xpad[window], best, out=hit)
                if inside is not None:
                    hit &= inside[window]
                xp.logical_not(hit, out=pending)
            elif t == len(windows) - 1 and rest_at_last:
                found = pending
            else:
                xp.equal(xpad[window], best, out=hit)
                if inside is not None:
                    hit &= inside[window]
                hit &= pending
                pending ^= hit  # hit is a subset of pending: this clears the windows just found
            if tiled and finite:
                xp.multiply(g, found, out=grad[window])
            else:
                grad[window] += g * found if finite else xp.where(found, g, 0)
        if not rest_at_last and pending.any():
            # Only windows whose maximum is NaN are left: the gradient goes to the first NaN.
            for window in windows:
                patch = xpad[window]
                xp.logical_and(patch != patch, pending, out=hit)
                pending ^= hit
                grad[window] += xp.where(hit, g, 0)
        if padded:
            grad_x[...] = grad[geo.inner]

    return _unflatten(_run(xp, x, geo.size, geo, body), geo)


@dispatch("x")
def max_pool2d(
    x: Any,
    kernel_size: _args.IntPair,
    stride: _args.IntPair | None = None,
    padding: _args.IntPair = 0,
    dilation: _args.IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
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
    return_indices : bool, default False
        Also return where each maximum is: its flat index ``r * W + c`` in its
        (unpadded) input map, int64, as :func:`max_unpool2d` takes it. Ties go
        to the first maximum in row-major order of the window.
    backend : str, optional
        None computes where x lives; a name moves x there first.

    Returns
    -------
    array, shape (N, C, out_h, out_w)
        ``out_h = floor_or_ceil((H + 2 * ph - dh * (kh - 1) - 1) / sh) + 1``, likewise
        ``out_w``. With ``return_indices``, the pair ``(out, indices)``.

    Notes
    -----
    A NaN in a window makes that output NaN, as in PyTorch.

    See Also
    --------
    torch.nn.functional.max_pool2d
    """
    return _max_pool(x, 2, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


@dispatch("grad_out", "x", "output", "indices")
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
    indices: Any = None,
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
    indices : int array, shape of ``max_pool2d(x, ...)``, optional
        The indices of that call with ``return_indices=True``: the gradient
        goes straight to them, one scatter when no two windows overlap, and
        the values of x are not read. Like ``output`` it must be that
        call's; out-of-range values raise IndexError or land in another map.

    Returns
    -------
    array, shape of x
    """
    return _max_pool_backward(
        grad_out, x, 2, kernel_size, stride, padding, dilation, ceil_mode, output, indices
    )


def _avg_divisor(
    xp: Any, geo: _PoolGeometry, count_include_pad: bool, divisor_override: int | None, dtype: Any
) -> Any:
    """Return the divisor of each output, shape ``geo.out``, PyTorch's rule.

    Windows are clipped to the padded input (``size + pad`` at the end) when
    counting padding, and to the input itself otherwise.
    """
    if divisor_override is not None:
        return xp.asarray(divisor_override, dtype=dtype)
    divisor = None
    dims = len(geo.size)
    for axis, (out, size, pad, kernel, stride) in enumerate(
        zip(geo.out, geo.size, geo.padding, geo.kernel, geo.stride, strict=True)
    ):
        start = xp.arange(out) * stride - pad
        end = xp.minimum(start + kernel, size + pad)
        count = end - start if count_include_pad else xp.minimum(end, size) - xp.maximum(start, 0)
        count = count.reshape((1,) * axis + (out,) + (1,) * (dims - axis - 1))
        divisor = count if divisor is None else divisor * count
    return divisor.astype(dtype)


def _avg_setup(
    x: Any,
    dims: int,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    ceil_mode: Any,
    count_include_pad: Any,
    divisor_override: Any,
) -> tuple[Any, Any, _PoolGeometry]:
    """Validate; return ``xp``, x as float maps (N*C, *size) and the geometry."""
    _args.check_bool(count_include_pad, "count_include_pad")
    if divisor_override is not None and _args.check_int(divisor_override, "divisor_override") == 0:
        raise ValueError(
            f"divisor_override must be a non-zero int or None, got {divisor_override!r}"
        )
    geo = _geometry(x, dims, kernel_size, stride, padding, 1, ceil_mode)
    return (*_prepare(x, geo), geo)


def _avg_pool(
    x: Any,
    dims: int,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    ceil_mode: Any,
    count_include_pad: Any,
    divisor_override: Any,
) -> Any:
    """avg_pool1d/2d/3d over ``dims`` spatial axes; see :func:`avg_pool2d`."""
    xp, x, geo = _avg_setup(
        x, dims, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    windows = geo.taps
    divisor = _avg_divisor(xp, geo, count_include_pad, divisor_override, x.dtype)
    ws = _PoolWorkspace(xp)

    def body(part: slice, out: Any) -> None:
        xpad = _pad(ws, x[part], geo, 0.0)
        out[...] = xpad[windows[0]]
        for window in windows[1:]:
            out += xpad[window]
        out /= divisor

    return _unflatten(_run(xp, x, geo.out, geo, body), geo)


def _avg_pool_backward(
    grad_out: Any,
    x: Any,
    dims: int,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    ceil_mode: Any,
    count_include_pad: Any,
    divisor_override: Any,
) -> Any:
    """avg_pool1d/2d/3d_backward over ``dims`` spatial axes; see :func:`avg_pool2d_backward`."""
    xp, x, geo = _avg_setup(
        x, dims, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    grad_out = _grad_in(xp, grad_out, x, geo)
    divisor = _avg_divisor(xp, geo, count_include_pad, divisor_override, x.dtype)
    windows = geo.taps

    def body(part: slice, grad_x: Any) -> None:
        share = grad_out[part] / divisor
        grad = xp.zeros((share.shape[0], *geo.padded_shape), dtype=x.dtype)
        for window in windows:
            grad[window] += share
        grad_x[...] = grad[geo.inner]

    return _unflatten(_run(xp, x, geo.size, geo, body), geo)


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
    return _avg_pool(
        x, 2, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )


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
    return _avg_pool_backward(
        grad_out, x, 2, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override,
    )  # fmt: skip
