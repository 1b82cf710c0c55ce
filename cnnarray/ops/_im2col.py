"""im2col and col2im for conv2d: every layout and shortcut, and the NCHW store.

* :func:`operand` builds the GEMM operand: :func:`im2col` copies the windows
  of the padded input (:func:`pad_input`, :func:`windows`) into the per-image
  layout (N, C, kh, kw, out_h, out_w) or the channel-major one (C, kh, kw, N,
  out_h, out_w); for stride 1 and same-size outputs, the channel-major one in
  one masked pass (:func:`im2col_flat`, :func:`tap_mask`).
* :func:`col2im_rows` adds the grad columns back into the input: kh * kw
  clipped slice adds (:func:`col2im`) or, for stride 1, one sum of shifted
  views (:func:`col2im_flat` for same-size outputs, :func:`col2im_wide` with
  the grad columns on the padded row pitch, :func:`wide_dy`, for the others).
* :func:`store_nchw` copies the channel-major GEMM result into NCHW.

Every temporary is a view of the call's workspace (``ConvWorkspace`` in
:mod:`cnnarray.ops.conv`, whose docstring gives their lifetimes); the copy
passes run on :func:`cnnarray.backend.parallel_for`.
"""

from __future__ import annotations

import functools
from typing import Any

from ..backend import Workspace, parallel_for
from ._conv_geometry import (
    ROW_PAD,
    Geometry,
    cols_shape,
    flat_guard,
    flat_shifts,
    grad_layout,
    operand_shape,
    same_size,
    unpadded,
    wide,
)

__all__ = [
    "MASK_MAX_ROW_BYTES",
    "MASK_MAX_WORDS",
    "col2im",
    "col2im_flat",
    "col2im_rows",
    "col2im_wide",
    "grad_columns",
    "im2col",
    "im2col_flat",
    "operand",
    "pad_input",
    "padded_rows",
    "store_nchw",
    "wide_dy",
    "windows",
    "zero_outside",
]


def pad_input(ws: Workspace, x: Any, geo: Geometry) -> Any:
    """Zero-pad ``x`` (N, C, H, W) to (N, C, H + pt + pb, W + pl + pr), in the view "image"."""
    if not geo.padded:
        return x
    n, c, h, w = x.shape
    out = ws.take("image", (n, c, h + geo.pt + geo.pb, w + geo.pl + geo.pr), x.dtype)
    out[...] = 0
    out[:, :, geo.pt : geo.pt + h, geo.pl : geo.pl + w] = x
    return out


def windows(xp: Any, xpad: Any, geo: Geometry) -> Any:
    """Every window of the padded input as a (N, C, kh, kw, out_h, out_w) view, no copy.

    Element ``(n, c, i, j, p, q)`` is ``xpad[n, c, p * sh + i * dh, q * sw + j * dw]``:
    the strides of ``xpad`` recombined, so im2col is one copy of this view (one
    pass, one kernel on a GPU) instead of ``kh * kw`` slice copies; 20 % faster
    on the benchmark's layers. Read only: windows overlap in memory.
    """
    n, c = xpad.shape[:2]
    s_n, s_c, s_h, s_w = xpad.strides
    shape = (n, c, geo.kh, geo.kw, geo.out_h, geo.out_w)
    strides = (s_n, s_c, geo.dh * s_h, geo.dw * s_w, geo.sh * s_h, geo.sw * s_w)
    return xp.lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides)


def clipped(tap: int, pad: int, size: int, out: int, step: int) -> tuple[slice, slice] | None:
    """Outputs along one axis whose window tap ``tap`` (already times the dilation)
    reads a real pixel, not padding: (slice of outputs, slice of pixels), or None."""
    lo = max(0, -((tap - pad) // step))  # ceil((pad - tap) / step)
    hi = min(out, (size - 1 + pad - tap) // step + 1)
    if lo >= hi:
        return None
    start = tap + lo * step - pad
    return slice(lo, hi), slice(start, start + (hi - lo - 1) * step + 1, step)


def zero_invalid(cols: Any, geo: Geometry, per_image: bool) -> None:
    """Zero the column entries whose window tap read padding, not a pixel.

    ``cols`` is (c, kh, kw, N, oh, ow), or (n, C, kh, kw, oh, ow) when ``per_image``.
    One slice per kernel row and column that reaches past an edge.
    """
    for index in _invalid_slices(geo, per_image):
        cols[index] = 0


@functools.lru_cache(maxsize=256)
def _invalid_slices(geo: Geometry, per_image: bool) -> tuple[tuple[Any, ...], ...]:
    """The index tuples of :func:`zero_invalid` (cached per geometry: a layer zeroes
    the same slices every step)."""
    lead = (slice(None),) * (2 if per_image else 1)
    out = []
    for i in range(geo.kh):
        valid = clipped(i * geo.dh, geo.pt, geo.h, geo.out_h, 1)
        valid = valid[0] if valid else slice(0, 0)
        for part in (slice(0, valid.start), slice(valid.stop, geo.out_h)):
            if part.stop > part.start:  # kernel row axis, then (N,) output rows
                out.append(
                    (*lead, i, slice(None)) + ((part,) if per_image else (slice(None), part))
                )
    for j in range(geo.kw):
        valid = clipped(j * geo.dw, geo.pl, geo.w, geo.out_w, 1)
        valid = valid[0] if valid else slice(0, 0)
        for part in (slice(0, valid.start), slice(valid.stop, geo.out_w)):
            if part.stop > part.start:
                out.append((*lead, slice(None), j, Ellipsis, part))
    return tuple(out)


def operand(ws: Workspace, x: Any, geo: Geometry, per_image: bool, ones: bool) -> Any:
    """im2col of ``x`` as the GEMM operand, with a last row of ones when ``ones``.

    Returns (K, n*oh*ow) channel-major or (n, K, oh*ow) per image, K = C_in *
    kh * kw (+ 1): the row of ones makes the GEMM add the bias (a column of the
    weights) and gives grad_bias as the last column of grad_weight, saving a
    pass over the output each way. Only for groups = 1, where that row is
    shared by every filter. In the view "cols".
    """
    n, k = x.shape[0], geo.c_in * geo.kh * geo.kw
    shape = operand_shape(geo, n, per_image, ones)
    mat = unpadded(ws.take("cols", shape, x.dtype), geo, n, per_image)
    cols = mat[:, :k] if per_image else mat[:k]
    im2col(ws, x, geo, per_image, cols.reshape(cols_shape(geo, n, per_image)))
    if ones:
        if per_image:
            mat[:, k] = 1
        else:
            mat[k] = 1
    return mat


def padded_rows(ws: Workspace, view: str, rows: int, width: int, dtype: Any) -> Any:
    """The view (rows, width) whose rows are ``ROW_PAD`` values apart more than ``width``."""
    return ws.take(view, (rows, width + ROW_PAD), dtype)[:, :width]


def im2col(ws: Workspace, x: Any, geo: Geometry, per_image: bool, cols: Any) -> None:
    """Gather every window of ``x`` (N, C, H, W) into a column buffer.

    The channel-major layout (C, kh, kw, N, out_h, out_w) makes one large GEMM
    per group; the per-image layout (N, C, kh, kw, out_h, out_w) makes one small
    GEMM per image whose result is already NCHW, which wins when the reduction
    ``C_in/g * kh * kw`` is too short to amortise the transposes. ``cols`` is
    the buffer to fill, of :func:`cols_shape`.
    """
    xp, n = ws.xp, x.shape[0]

    def fill_images(part: slice) -> None:
        cols[part] = windows(xp, pad_input(ws, x[part], geo), geo)

    def fill_channels(part: slice) -> None:
        cols[part] = windows(xp, pad_input(ws, x[:, part], geo), geo).transpose(1, 2, 3, 0, 4, 5)

    if not per_image and same_size(geo):
        im2col_flat(ws, x, geo, cols)
    elif per_image:
        parallel_for(xp, n, fill_images, work=cols.size)
    else:
        parallel_for(xp, x.shape[1], fill_channels, work=cols.size)


def im2col_flat(ws: Workspace, x: Any, geo: Geometry, cols: Any) -> None:
    """Channel-major :func:`im2col` for stride 1 and same-size outputs: one pass.

    With the input laid out (C, N, H*W) between guards, row (c, i, j) of the
    columns is that channel's whole batch shifted by the tap's flat offset
    (:func:`flat_shifts`), so the buffer is one pass over a strided view with
    rows of ``N*H*W`` values instead of ``ow``-long slices (20-25 % faster on
    the benchmark's 3x3 layers). The entries whose tap read padding (a read
    that wrapped into a neighbouring row or image, or into a guard) must come
    out zero. On narrow images the pass is a bitwise AND of the view with a
    per-tap mask of all-ones and all-zeros words (:func:`tap_mask`), exact
    and NaN- and inf-safe, instead of a copy and then a zeroing pass that
    touches every cache line of the taps that wrap (25-35 % faster on 7x7 to
    28x28 images); on wide ones, where that zeroing touches few lines and the
    mask is re-read for every channel, a copy and the zeroing (the AND was
    1.4x slower on 48x48 to 128x128).
    """
    xp, (n, c) = ws.xp, x.shape[:2]
    size, guard, item = geo.h * geo.w, flat_guard(geo), x.dtype.itemsize
    s0, s_i, s_j = flat_shifts(geo)
    masked = geo.w * item <= MASK_MAX_ROW_BYTES
    words = f"i{item}"  # the integer type of the float's width
    if masked:
        mask, per = tap_mask(ws, geo, n, words)

    def fill(part: slice) -> None:
        count = part.stop - part.start
        src = ws.take("image", (count * n * size + 2 * guard,), x.dtype)
        if not masked:  # masked, the guards stay uninitialised: the mask clears their reads
            src[:guard] = 0
            src[guard + count * n * size :] = 0
        body = src[guard : guard + count * n * size].reshape(count, n, geo.h, geo.w)
        body[...] = x[:, part].transpose(1, 0, 2, 3)
        view = xp.lib.stride_tricks.as_strided(
            src[guard + s0 :].view(words) if masked else src[guard + s0 :],
            shape=(count, geo.kh, geo.kw, n * size),
            strides=(n * size * item, s_i * item, s_j * item, item),
        )
        rows = cols[part].reshape(view.shape)
        if not masked:
            rows[...] = view
            zero_invalid(cols[part], geo, False)
            return
        rows = rows.view(words)
        for a in range(0, n * size, per * size):  # the mask covers `per` images
            b = min(a + per * size, n * size)
            xp.bitwise_and(view[..., a:b], mask[..., : b - a], out=rows[..., a:b])

    parallel_for(xp, c, fill, work=cols.size)


# im2col_flat masks image rows of at most this many bytes (W <= 32 in float32),
# and copies then zeroes wider ones.
MASK_MAX_ROW_BYTES = 128
# Largest mask of tap_mask, in words: it is read once per input channel, so it
# should stay in L2 (1 MB in float32).
MASK_MAX_WORDS = 2**18


def tap_mask(ws: Workspace, geo: Geometry, n: int, words: str) -> tuple[Any, int]:
    """The mask of :func:`im2col_flat`: (kh, kw, per * H*W) words, all ones where
    the tap reads a pixel and zero where it reads padding, for ``per`` of the ``n``
    images (the pattern repeats per image); returns (mask, per)."""
    size = geo.h * geo.w
    per = max(1, min(n, MASK_MAX_WORDS // (geo.kh * geo.kw * size)))
    mask = ws.take("mask", (1, geo.kh, geo.kw, per, geo.h, geo.w), words)
    mask[...] = -1
    zero_invalid(mask, geo, False)
    return mask.reshape(geo.kh, geo.kw, per * size), per


def store_nchw(xp: Any, y: Any, bias: Any, out: Any) -> None:
    """``out[...] = y + bias``: the (N, C_out, oh, ow) view ``y`` of the GEMM result, copied
    to NCHW with the bias added in the same pass, over threads on the CPU (and any
    other transposing copy split along the first axis)."""

    def store(part: slice) -> None:
        if bias is None:
            out[part] = y[part]
        else:
            xp.add(y[part], bias.reshape(-1, 1, 1), out=out[part])

    parallel_for(xp, out.shape[0], store, work=out.size)


def grad_columns(ws: Workspace, count: int, images: int, geo: Geometry, per_image: bool,
                 dtype: Any) -> tuple[Any, Any]:  # fmt: skip
    """Rows of ``guard + width + guard`` values for the grad columns, in the memory
    the columns used (the view "grad_cols": the grad_weight GEMM has read them by
    then): one column-sized buffer per call instead of two, 1 ms less per step on
    benchmark case c. ``count`` rows of ``images`` images each (1 per row when
    ``per_image``), laid out as :func:`~cnnarray.ops._conv_geometry.grad_layout`
    says. Returns the rows, for :func:`col2im_rows`, and the (count, width) grad
    columns inside them."""
    image, guard = grad_layout(geo, per_image)
    width = image * images
    rows = ws.take("grad_cols", (count, width + 2 * guard), dtype)
    return rows, rows[:, guard : guard + width]


def wide_dy(ws: Workspace, dy: Any, geo: Geometry, per_image: bool) -> Any:
    """dY on the padded input's row pitch, for the grad-columns GEMM of :func:`col2im_wide`.

    ``dy`` is grad_out (n, C_out, oh, ow), or for channel-major rows its
    transposed copy (C_out, n, oh, ow). Returns (n, C_out, oh, Wp) or (C_out,
    n, Hp, Wp), zero outside the outputs: the GEMM then gives grad columns
    that are zero there too, which is what lets col2im_wide add shifted rows
    with no mask. In the view "dy_wide".
    """
    wp = geo.w + geo.pl + geo.pr
    lead = dy.shape[:2]
    rows = geo.out_h if per_image else geo.h + geo.pt + geo.pb
    out = ws.take("dy_wide", (*lead, rows, wp), dy.dtype)
    out[:, :, geo.out_h :] = 0
    out[:, :, : geo.out_h, geo.out_w :] = 0
    out[:, :, : geo.out_h, : geo.out_w] = dy
    return out


def zero_outside(cols: Any, geo: Geometry, per_image: bool) -> None:
    """Zero the entries of wide grad-columns rows (``grad_layout``) that are not outputs.

    ``cols`` is (rows, width), per image (width ``out_h * Wp``) or over the
    batch (``n * Hp * Wp``). There the GEMM multiplied the weights by dY's
    zeros (:func:`wide_dy`): zero while the weights are finite. An inf or NaN
    weight makes them NaN, which :func:`col2im_wide` would add into pixels
    whose gradient that tap is no part of; the backward zeroes them then.
    """
    hp, wp = geo.h + geo.pt + geo.pb, geo.w + geo.pl + geo.pr
    if per_image:
        cols.reshape(cols.shape[0], geo.out_h, wp)[:, :, geo.out_w :] = 0
        return
    grid = cols.reshape(cols.shape[0], -1, hp, wp)
    grid[:, :, geo.out_h :] = 0
    grid[:, :, : geo.out_h, geo.out_w :] = 0


def col2im_rows(ws: Workspace, rows: Any, geo: Geometry, out: Any, per_image: bool) -> None:
    """Write into out (N, C, H, W) the sum of the grad columns in ``rows`` (from
    :func:`grad_columns`): :func:`col2im_flat` for same-size outputs,
    :func:`col2im_wide` for other stride-1 ones, else :func:`col2im`."""
    if same_size(geo):
        col2im_flat(ws, rows, flat_guard(geo), geo, out, per_image)
    elif wide(geo):
        col2im_wide(ws, rows, geo, out, per_image)
    else:
        col2im(ws.xp, rows.reshape(cols_shape(geo, out.shape[0], per_image)), geo, out, per_image)


def col2im_wide(ws: Workspace, rows: Any, geo: Geometry, out: Any, per_image: bool) -> None:
    """:func:`col2im` for stride 1, from grad columns on the padded input's row pitch.

    Each row (c, i, j) (per image, or over the batch) holds the tap's grad
    columns at the output positions of a ``Wp``-wide grid (``grad_layout``),
    zero at the positions past the outputs (:func:`wide_dy`). Tap (i, j) of
    output (p, q) reads padded pixel (p + i*dh, q + j*dw): the flat position
    plus ``i*dh*Wp + j*dw``, the same shift for every output. So the padded
    gradient is one sum over (i, j) of a strided view of the rows, with rows
    as long as the image (not ``ow``-long slice adds, 3-5x slower on LeNet's
    5x5 "valid" layer): every read that falls before a row, after it or past
    an output row's end lands on a zero (guards, zero rows, zero columns).
    Then the padding is cropped off. Overwrites the guards of ``rows``.
    """
    xp, (n, c) = ws.xp, out.shape[:2]
    image, guard = grad_layout(geo, per_image)
    taps, pitch, item = geo.kh * geo.kw, rows.shape[1], rows.itemsize
    hp, wp = geo.h + geo.pt + geo.pb, geo.w + geo.pl + geo.pr
    rows[:, :guard] = 0
    rows[:, pitch - guard :] = 0
    s_i, s_j = geo.dh * wp, geo.dw
    flat = rows.reshape(-1)
    padded = (hp, wp) != (geo.h, geo.w)

    def add(part: slice) -> None:
        count = part.stop - part.start
        if per_image:
            first = part.start * c * taps
            shape = (count, c, geo.kh, geo.kw, hp * wp)
            strides = (c * taps * pitch, taps * pitch, geo.kw * pitch - s_i, pitch - s_j, 1)
            lead = (count, c)
        else:
            first = part.start * taps
            shape = (count, geo.kh, geo.kw, n, hp * wp)
            strides = (taps * pitch, geo.kw * pitch - s_i, pitch - s_j, image, 1)
            lead = (count, n)
        if per_image and not padded:
            target = out[part]
        else:
            target = ws.take("image", (*lead, hp, wp), rows.dtype)
        view = xp.lib.stride_tricks.as_strided(
            flat[first * pitch + guard :], shape=shape, strides=tuple(item * s for s in strides)
        )
        view.sum(axis=(2, 3) if per_image else (1, 2), out=target.reshape(*lead, hp * wp))
        crop = target[:, :, geo.pt : geo.pt + geo.h, geo.pl : geo.pl + geo.w]
        if per_image:
            if padded:
                out[part] = crop
        else:
            out[:, part] = crop.transpose(1, 0, 2, 3)

    parallel_for(xp, n if per_image else c, add, work=rows.size)


@functools.lru_cache(maxsize=256)
def col2im_taps(geo: Geometry) -> tuple[list[tuple[int, int, Any, Any]], bool]:
    """The kernel taps that read real pixels, clipped, for :func:`col2im` (cached per
    geometry: a layer calls it with the same one every step). When a tap reads every
    pixel exactly once it comes first and ``full`` is True."""
    rows = [clipped(i * geo.dh, geo.pt, geo.h, geo.out_h, geo.sh) for i in range(geo.kh)]
    cols = [clipped(j * geo.dw, geo.pl, geo.w, geo.out_w, geo.sw) for j in range(geo.kw)]
    taps = [(i, j, r, c) for i, r in enumerate(rows) for j, c in enumerate(cols)
            if r is not None and c is not None]  # fmt: skip
    full = [t for t in taps if t[2][1] == slice(0, geo.h, 1) and t[3][1] == slice(0, geo.w, 1)]
    if full:  # move it first: it is assigned
        taps.remove(full[0])
        taps.insert(0, full[0])
    return taps, bool(full)


def col2im(xp: Any, cols: Any, geo: Geometry, out: Any, per_image: bool = False) -> None:
    """Adjoint of :func:`im2col`: write into out (N, C, H, W) the sum of the columns.

    ``cols`` has the channel-major layout (C, kh, kw, N, oh, ow), or the
    per-image one (N, C, kh, kw, oh, ow) when ``per_image``. Each kernel tap
    adds only the outputs whose window read a real pixel, straight into
    ``out`` (no padded buffer, no copy back); a tap that reads every pixel
    exactly once (stride 1, "same"-style padding) is assigned instead, which
    saves zeroing ``out``.
    """
    taps, full = col2im_taps(geo)

    def add(part: slice) -> None:
        # per-image: (n, C, kh, kw, oh, ow) into (n, C, H, W);
        # channel-major: (c, kh, kw, N, oh, ow) into the (c, N, H, W) view of out
        grad = out[part] if per_image else out[:, part].transpose(1, 0, 2, 3)
        part_cols = cols[part]
        if not full:
            grad[...] = 0
        for k, (i, j, (src_rows, dst_rows), (src_cols, dst_cols)) in enumerate(taps):
            tap = part_cols[:, :, i, j] if per_image else part_cols[:, i, j]
            tap = tap[:, :, src_rows, src_cols]
            if k == 0 and full:
                grad[...] = tap
            else:
                grad[:, :, dst_rows, dst_cols] += tap

    parallel_for(xp, cols.shape[0], add, work=cols.size)


def col2im_flat(ws: Workspace, rows: Any, guard: int, geo: Geometry, out: Any,
                per_image: bool = False) -> None:  # fmt: skip
    """:func:`col2im` for stride 1 and same-size outputs, as one sum of shifted views.

    ``rows`` holds the grad columns, one row per (c, i, j) tap over the whole
    batch (channel-major) or per (n, c, i, j) (``per_image``), with ``guard``
    spare values on each side. With equal input and output row pitch, tap
    (i, j) moves every value by the same flat offset ``s = (i*dh - pt)*W +
    (j*dw - pl)``, linear in i and j, so ``out[n, c, m] = sum_ij row(c, i,
    j)[n, m - s_ij]`` is the sum over two axes of one strided view of the rows:
    one reduction with long contiguous rows instead of kh*kw slice adds of
    ``ow`` values each (2x faster on the benchmark's layers). Reads that wrap
    into the neighbouring image row or image land on entries whose tap read
    padding; those are zeroed first (and the guards), so they add nothing.
    Overwrites ``rows``.
    """
    xp, (n, c) = ws.xp, out.shape[:2]
    taps, size = geo.kh * geo.kw, geo.h * geo.w
    pitch, item = rows.shape[1], rows.itemsize
    rows[:, :guard] = 0
    rows[:, pitch - guard :] = 0
    s0, s_i, s_j = flat_shifts(geo)
    flat = rows.reshape(-1)

    def add(part: slice) -> None:
        count = part.stop - part.start
        if per_image:
            first = part.start * c * taps
            inner = rows[first : first + count * c * taps, guard : pitch - guard]
            zero_invalid(inner.reshape(count, c, geo.kh, geo.kw, geo.out_h, geo.out_w), geo, True)
            shape = (count, c, geo.kh, geo.kw, size)
            strides = (c * taps * pitch, taps * pitch, geo.kw * pitch - s_i, pitch - s_j, 1)
            target = out[part].reshape(count, c, size)
        else:
            first = part.start * taps
            inner = rows[first : first + count * taps, guard : pitch - guard]
            zero_invalid(inner.reshape(count, geo.kh, geo.kw, n, geo.out_h, geo.out_w), geo, False)
            shape = (count, geo.kh, geo.kw, n, size)
            strides = (taps * pitch, geo.kw * pitch - s_i, pitch - s_j, size, 1)
            target = ws.take("image", (count, n, size), rows.dtype)
        start = first * pitch + guard - s0
        view = xp.lib.stride_tricks.as_strided(
            flat[start:], shape=shape, strides=tuple(item * s for s in strides)
        )
        view.sum(axis=(2, 3) if per_image else (1, 2), out=target)
        if not per_image:
            out[:, part] = target.reshape(count, n, geo.h, geo.w).transpose(1, 0, 2, 3)

    parallel_for(xp, n if per_image else c, add, work=rows.size)
