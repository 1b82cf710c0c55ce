"""2-D convolution (cross-correlation, as in deep-learning frameworks) and its gradient.

The forward pass is im2col followed by GEMMs:

* the padded input is copied into a column buffer in one pass, from a
  strided view of all its windows (no per-pixel loop), in one of two
  layouts: channel-major ``(C_in, kh, kw, N, out_h, out_w)``, whose
  ``W (groups, C_out/g, K) @ cols (groups, K, N*out_h*out_w)`` is one large GEMM
  per group (K = C_in/g * kh * kw), or per-image ``(N, C_in, kh, kw, out_h, out_w)``,
  whose batched GEMM ``W @ cols[n]`` lands directly in NCHW. The per-image
  layout is used for short reductions and small layers (:func:`_per_image`),
  where the transposes of the channel-major one cost more than they save.
  Weight sharing is the GEMM reusing one row of weights against every column.
  With one group and a bias, the buffer gets a last row of ones and the
  weights a bias column, so the GEMM adds the bias and the backward's
  grad_weight GEMM yields grad_bias as its last column. For stride 1 and
  outputs the size of the input, the channel-major buffer is instead one
  pass over a view in which every kernel tap is a flat shift of the whole
  batch, masked so that reads of padding come out zero
  (:func:`_im2col_flat`). Channel-major rows sit on padded pitches.

Large kernels over few channels with stride 1 (say a 9x9 filter on one
image) take the FFT instead (:mod:`cnnarray.ops._conv_fft`), when their
spectra fit the workspace limit; the rule is measured there.

The backward pass needs the same buffer: ``grad_weight = (cols @ dY^T)^T``
and ``grad_cols = W^T @ dY``, which col2im adds back into the input with
``kh * kw`` clipped slice adds (no ``add.at``) or, for stride 1 and outputs
the size of the input (3x3 with padding 1, "same"), as one sum over a
strided view in which every tap is a flat shift. It rebuilds the buffer,
unless a :class:`ColumnCache` given to both calls kept the forward's (as
:class:`cnnarray.nn.Conv2d` does in training). The grad columns go into the
columns' own memory once the grad_weight GEMM has read them, so a call holds
one column-sized buffer; batches are processed in chunks so it never exceeds
the workspace limit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from .. import _args
from ..backend import array_namespace, dispatch, parallel_for, reserve_scratch, scratch
from . import _conv_fft

__all__ = [
    "ColumnCache",
    "conv2d",
    "conv2d_backward",
    "conv2d_output_shape",
    "get_workspace_limit",
    "set_workspace_limit",
]

_workspace_limit = 256 * 2**20
# Column layout rule (_per_image), measured by benchmarks/layout_rule.py (table in
# benchmarks/README.md). Per-image for short reductions (K = C_in/groups * kh * kw
# up to this: 2.2x faster for 3 -> 32 channels, 3x3) ...
_PER_IMAGE_MAX_K = 32
# ... channel-major for a batch through wide weights (K * C_out/groups at least
# this: the per-image GEMMs are long and thin, up to 3x slower per step) ...
_CHANNEL_MAJOR_MIN_WEIGHTS = 2**14
# ... else per-image below this many outputs for a forward pass alone (1.2-1.4x
# faster on LeNet's layers at batch 32) ...
_PER_IMAGE_MAX_OUTPUT = 2**19
# ... and, for a training step (a ColumnCache, or the backward), below this
# N * K * C_out/groups: the backward's per-image GEMMs fall behind sooner.
_PER_IMAGE_MAX_STEP = 2**17


def set_workspace_limit(nbytes: int) -> None:
    """Set the default byte budget of conv2d's im2col buffer (default 256 MiB)."""
    global _workspace_limit
    _workspace_limit = _check_limit(nbytes)


def get_workspace_limit() -> int:
    """Return the default byte budget of conv2d's im2col buffer."""
    return _workspace_limit


def _check_limit(nbytes: Any) -> int:
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0:
        raise ValueError(f"workspace_limit must be a positive number of bytes, got {nbytes!r}")
    return nbytes


class ColumnCache:
    """Keep conv2d's im2col columns for conv2d_backward: memory traded for time.

    ``conv2d_backward`` needs the column buffer that ``conv2d`` built (the
    grad_weight GEMM reads it) and rebuilds it by default. Given the same cache,
    ``conv2d`` keeps its buffer there and ``conv2d_backward`` reads it instead:
    one im2col pass less per training step (about 2 of 24 ms on benchmark
    case c). :class:`cnnarray.nn.Conv2d` holds one in training mode.

    The cache is filled only when the whole batch fits in the workspace limit
    in one piece, so it never holds more than that limit. It recognises ``x``
    by identity and keeps a reference to it until the backward: do not change
    ``x`` in place between the two calls (as with PyTorch's saved tensors). The
    memory stays with the cache and is reused by the next forward pass, so
    repeated steps pay for fresh pages once; :meth:`release` frees it. The
    backward writes its grad columns there once it has read the columns, so
    the memory is the larger of the two (the grad columns' rows carry a few
    guard values, see ``_col2im_flat``).

    Examples
    --------
    >>> import numpy as np, cnnarray
    >>> x, w = np.ones((2, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32)
    >>> cache = cnnarray.ColumnCache()
    >>> y = cnnarray.conv2d(x, w, padding=1, cache=cache)
    >>> gx, gw, _ = cnnarray.conv2d_backward(np.ones_like(y), x, w, padding=1, cache=cache)
    >>> cache.nbytes  # 2 * 3 * 3 * 3 rows of 8 * 8 columns + 2 * 16 guards (float32)
    20736
    """

    def __init__(self) -> None:
        self._buffer: Any = None
        self._x: Any = None
        self._key: tuple[Any, ...] | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of memory the cache holds (0 after :meth:`release`)."""
        return 0 if self._buffer is None else int(self._buffer.nbytes)

    def clear(self) -> None:
        """Forget the saved columns and input; keep the memory for the next call."""
        self._x = self._key = None

    def release(self) -> None:
        """Forget the saved columns and free their memory."""
        self.clear()
        self._buffer = None

    def _buffer_for(self, xp: Any, shape: tuple[int, ...], dtype: Any, nbytes: int = 0) -> Any:
        """Return an uninitialised buffer of ``shape`` in the cache's memory, which
        holds at least ``nbytes`` (the backward's grad columns reuse it)."""
        nbytes = max(nbytes, math.prod(shape) * dtype.itemsize)
        buffer = self._buffer
        if buffer is None or buffer.nbytes < nbytes or array_namespace(buffer) is not xp:
            self._buffer = None  # free the old one before allocating
            self._buffer = xp.empty(max(nbytes, 1), dtype=xp.uint8)
        return self._view(shape, dtype)

    def _view(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """The first bytes of the buffer as an array of ``shape`` and ``dtype``."""
        return self._buffer[: math.prod(shape) * dtype.itemsize].view(dtype).reshape(shape)

    def _remember(self, x: Any, key: tuple[Any, ...]) -> None:
        """Mark the buffer as holding the columns of ``x`` for ``key``."""
        self._x, self._key = x, key

    def _load(self, x: Any, key: tuple[Any, ...], shape: tuple[int, ...], dtype: Any) -> Any:
        """Return the columns saved for ``x`` with ``key``, or None, and forget them."""
        if self._x is not x or self._key != key:
            self.clear()
            return None
        self.clear()
        return self._view(shape, dtype)


def _check_cache(cache: Any) -> None:
    if cache is not None and not isinstance(cache, ColumnCache):
        raise TypeError(f"cache must be a cnnarray.ColumnCache or None, got {type(cache).__name__}")


@dataclass(frozen=True)
class _Geometry:
    """Sizes of one conv2d call, named as in the module docstring."""

    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pb: int
    pl: int
    pr: int
    groups: int
    out_h: int
    out_w: int
    # 0: (N, C, H, W); 1: (C, H, W); 2: one (H, W) image with one (kh, kw) filter
    unbatched: int

    @property
    def out_shape(self) -> tuple[int, ...]:
        full = (self.n, self.c_out, self.out_h, self.out_w)
        return full[self.unbatched :]

    @property
    def padded(self) -> bool:
        return any((self.pt, self.pb, self.pl, self.pr))


def _geometry(
    x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any
) -> _Geometry:
    """Validate a conv2d call and return its sizes (no array is touched)."""
    _args.check_ndim(weight, "weight", (2, 4), "(C_out, C_in/groups, kh, kw)")
    if weight.ndim == 2:
        _args.check_ndim(x, "x", (2,), "(H, W) to go with a 2-D weight (kh, kw)")
        unbatched = 2
        n, c_in, h, w = 1, 1, *x.shape
        c_out, c_per_group, kh, kw = 1, 1, *weight.shape
    else:
        _args.check_ndim(x, "x", (3, 4), "(N, C_in, H, W) or (C_in, H, W)")
        unbatched = 1 if x.ndim == 3 else 0
        n, c_in, h, w = (1,) * unbatched + tuple(x.shape)
        c_out, c_per_group, kh, kw = weight.shape
    _args.check_nonempty(x, "x")
    _args.check_nonempty(weight, "weight")
    sh, sw = _args._pair(stride, "stride", minimum=1)
    dh, dw = _args._pair(dilation, "dilation", minimum=1)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if c_out % groups:
        raise ValueError(
            f"groups={groups} must divide the number of filters C_out={c_out} "
            f"(weight of shape {tuple(weight.shape)})"
        )
    if c_in != c_per_group * groups:
        raise ValueError(
            f"Given groups={groups}, weight of shape {tuple(weight.shape)}, expected x of shape "
            f"{tuple(x.shape)} to have {c_per_group * groups} channels, but got {c_in} channels"
        )
    if bias is not None:
        _args.check_ndim(bias, "bias", (0, 1) if unbatched == 2 else (1,), "(C_out,)")
        if bias.ndim == 1 and bias.shape[0] != c_out:
            raise ValueError(f"bias must have shape ({c_out},), got {tuple(bias.shape)}")
    pt, pb, pl, pr = _args.conv_padding(padding, (kh, kw), (dh, dw), (sh, sw))
    out_h = _args.conv_out_size(h, pt + pb, kh, sh, dh)
    out_w = _args.conv_out_size(w, pl + pr, kw, sw, dw)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"kernel of size ({dh * (kh - 1) + 1}, {dw * (kw - 1) + 1}) after dilation is "
            f"larger than the padded input ({h + pt + pb}, {w + pl + pr}) of x with shape "
            f"{tuple(x.shape)}"
        )
    return _Geometry(
        n, c_in, h, w, c_out, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, groups, out_h, out_w,
        unbatched,
    )  # fmt: skip


def conv2d_output_shape(
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: _args.IntPair = 1,
    padding: _args.IntPair | str = 0,
    dilation: _args.IntPair = 1,
    groups: int = 1,
) -> tuple[int, ...]:
    """Return the shape of ``conv2d(x, weight, ...)`` without computing it.

    ``out = floor((H + pad_top + pad_bottom - dilation * (kh - 1) - 1) / stride) + 1``
    along each spatial axis.
    """

    class _Shape:
        def __init__(self, shape: tuple[int, ...]) -> None:
            self.shape, self.ndim = tuple(shape), len(shape)

    return _geometry(
        _Shape(x_shape), _Shape(weight_shape), None, stride, padding, dilation, groups
    ).out_shape


def _batched(x: Any, weight: Any, bias: Any, geo: _Geometry) -> tuple[Any, Any, Any]:
    """Return 4-D x and weight and 1-D bias, whatever form the caller used."""
    if geo.unbatched == 2:
        return x[None, None], weight[None, None], None if bias is None else bias.reshape(1)
    return (x[None] if geo.unbatched else x), weight, bias


def _pad(xp: Any, x: Any, geo: _Geometry) -> Any:
    """Zero-pad ``x`` (N, C, H, W) to (N, C, H + pt + pb, W + pl + pr), in scratch memory."""
    if not geo.padded:
        return x
    n, c, h, w = x.shape
    out = scratch(xp, "conv.image", (n, c, h + geo.pt + geo.pb, w + geo.pl + geo.pr), x.dtype)
    out[...] = 0
    out[:, :, geo.pt : geo.pt + h, geo.pl : geo.pl + w] = x
    return out


def _cols_shape(geo: _Geometry, n: int, per_image: bool) -> tuple[int, ...]:
    if per_image:
        return (n, geo.c_in, geo.kh, geo.kw, geo.out_h, geo.out_w)
    return (geo.c_in, geo.kh, geo.kw, n, geo.out_h, geo.out_w)


def _windows(xp: Any, xpad: Any, geo: _Geometry) -> Any:
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


def _same_size(geo: _Geometry) -> bool:
    """Stride 1 and an output the size of the input: the case of :func:`_im2col_flat`
    and :func:`_col2im_flat`."""
    return geo.sh == geo.sw == 1 and geo.out_h == geo.h and geo.out_w == geo.w


def _flat_guard(geo: _Geometry) -> int:
    """Spare values on each side of the flat input (:func:`_im2col_flat`, whose mask
    clears what a tap reads there) and of each grad-columns row (zeroed,
    :func:`_col2im_flat`): the largest flat shift of a tap, rounded up to 16
    values (64-byte rows for float32)."""
    # the corner taps: (i*dh - pt)*W + (j*dw - pl), where (kh - 1)*dh = pt + pb
    shifts = (t * geo.w + u for t in (-geo.pt, geo.pb) for u in (-geo.pl, geo.pr))
    return -(-max(abs(s) for s in shifts) // 16) * 16


def _guard_width(geo: _Geometry) -> int:
    """Extra values per grad-columns row: both guards on the flat path, else none."""
    return 2 * _flat_guard(geo) if _same_size(geo) else 0


def _flat_shifts(geo: _Geometry) -> tuple[int, int, int]:
    """Flat shift of tap (0, 0), and its growth per kernel row and per kernel column:
    tap (i, j) reads pixel ``m + s0 + i * s_i + j * s_j`` for output ``m`` (H*W pitch)."""
    return -(geo.pt * geo.w + geo.pl), geo.dh * geo.w, geo.dw


def _zero_invalid(cols: Any, geo: _Geometry, per_image: bool) -> None:
    """Zero the column entries whose window tap read padding, not a pixel.

    ``cols`` is (c, kh, kw, N, oh, ow), or (n, C, kh, kw, oh, ow) when ``per_image``.
    One slice per kernel row and column that reaches past an edge.
    """
    lead = (slice(None),) * (2 if per_image else 1)
    for i in range(geo.kh):
        valid = _clipped(i * geo.dh, geo.pt, geo.h, geo.out_h, 1)
        valid = valid[0] if valid else slice(0, 0)
        for part in (slice(0, valid.start), slice(valid.stop, geo.out_h)):
            if part.stop > part.start:  # kernel row axis, then (N,) output rows
                cols[(*lead, i, slice(None)) + ((part,) if per_image else (slice(None), part))] = 0
    for j in range(geo.kw):
        valid = _clipped(j * geo.dw, geo.pl, geo.w, geo.out_w, 1)
        valid = valid[0] if valid else slice(0, 0)
        for part in (slice(0, valid.start), slice(valid.stop, geo.out_w)):
            if part.stop > part.start:
                cols[(*lead, slice(None), j, Ellipsis, part)] = 0


def _im2col(xp: Any, x: Any, geo: _Geometry, per_image: bool = False, out: Any = None) -> Any:
    """Gather every window of ``x`` (N, C, H, W) into a column buffer.

    The channel-major layout (C, kh, kw, N, out_h, out_w) makes one large GEMM
    per group; the per-image layout (N, C, kh, kw, out_h, out_w) makes one small
    GEMM per image whose result is already NCHW, which wins when the reduction
    ``C_in/g * kh * kw`` is too short to amortise the transposes. ``out`` is
    the buffer to fill (scratch memory by default).
    """
    n = x.shape[0]
    cols = scratch(xp, "conv.cols", _cols_shape(geo, n, per_image), x.dtype) if out is None else out

    def fill_images(part: slice) -> None:
        cols[part] = _windows(xp, _pad(xp, x[part], geo), geo)

    def fill_channels(part: slice) -> None:
        cols[part] = _windows(xp, _pad(xp, x[:, part], geo), geo).transpose(1, 2, 3, 0, 4, 5)

    if not per_image and _same_size(geo):
        _im2col_flat(xp, x, geo, cols)
    elif per_image:
        parallel_for(xp, n, fill_images, work=cols.size)
    else:
        parallel_for(xp, x.shape[1], fill_channels, work=cols.size)
    return cols


def _im2col_flat(xp: Any, x: Any, geo: _Geometry, cols: Any) -> None:
    """Channel-major :func:`_im2col` for stride 1 and same-size outputs: one pass.

    With the input laid out (C, N, H*W) between guards, row (c, i, j) of the
    columns is that channel's whole batch shifted by the tap's flat offset
    (:func:`_flat_shifts`), so the buffer is one pass over a strided view with
    rows of ``N*H*W`` values instead of ``ow``-long slices (20-25 % faster on
    the benchmark's 3x3 layers). The entries whose tap read padding (a read
    that wrapped into a neighbouring row or image, or into a guard) must come
    out zero. On narrow images the pass is a bitwise AND of the view with a
    per-tap mask of all-ones and all-zeros words (:func:`_tap_mask`), exact
    and NaN- and inf-safe, instead of a copy and then a zeroing pass that
    touches every cache line of the taps that wrap (25-35 % faster on 7x7 to
    28x28 images); on wide ones, where that zeroing touches few lines and the
    mask is re-read for every channel, a copy and the zeroing (the AND was
    1.4x slower on 48x48 to 128x128).
    """
    n, c = x.shape[:2]
    size, guard, item = geo.h * geo.w, _flat_guard(geo), x.dtype.itemsize
    s0, s_i, s_j = _flat_shifts(geo)
    masked = geo.w * item <= _MASK_MAX_ROW_BYTES
    words = f"i{item}"  # the integer type of the float's width
    if masked:
        mask, per = _tap_mask(xp, geo, n, words)

    def fill(part: slice) -> None:
        count = part.stop - part.start
        src = scratch(xp, "conv.image", (count * n * size + 2 * guard,), x.dtype)
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
            _zero_invalid(cols[part], geo, False)
            return
        rows = rows.view(words)
        for a in range(0, n * size, per * size):  # the mask covers `per` images
            b = min(a + per * size, n * size)
            xp.bitwise_and(view[..., a:b], mask[..., : b - a], out=rows[..., a:b])

    parallel_for(xp, c, fill, work=cols.size)


# _im2col_flat masks image rows of at most this many bytes (W <= 32 in float32),
# and copies then zeroes wider ones.
_MASK_MAX_ROW_BYTES = 128
# Largest mask of _tap_mask, in words: it is read once per input channel, so it
# should stay in L2 (1 MB in float32).
_MASK_MAX_WORDS = 2**18


def _tap_mask(xp: Any, geo: _Geometry, n: int, words: str) -> tuple[Any, int]:
    """The mask of :func:`_im2col_flat`: (kh, kw, per * H*W) words, all ones where
    the tap reads a pixel and zero where it reads padding, for ``per`` of the ``n``
    images (the pattern repeats per image); returns (mask, per)."""
    size = geo.h * geo.w
    per = max(1, min(n, _MASK_MAX_WORDS // (geo.kh * geo.kw * size)))
    mask = scratch(xp, "conv.mask", (1, geo.kh, geo.kw, per, geo.h, geo.w), words)
    mask[...] = -1
    _zero_invalid(mask, geo, False)
    return mask.reshape(geo.kh, geo.kw, per * size), per


def _operand(xp: Any, x: Any, geo: _Geometry, per_image: bool, ones: bool,
             buffer: Any = None) -> Any:  # fmt: skip
    """im2col of ``x`` as the GEMM operand, with a last row of ones when ``ones``.

    Returns (K, n*oh*ow) channel-major or (n, K, oh*ow) per image, K = C_in *
    kh * kw (+ 1): the row of ones makes the GEMM add the bias (a column of the
    weights) and gives grad_bias as the last column of grad_weight, saving a
    pass over the output each way. Only for groups = 1, where that row is
    shared by every filter. ``buffer`` is the memory to use (scratch by
    default), of the returned shape.
    """
    n, k = x.shape[0], geo.c_in * geo.kh * geo.kw
    shape = _operand_shape(geo, n, per_image, ones)
    mat = scratch(xp, "conv.cols", shape, x.dtype) if buffer is None else buffer
    mat = _unpadded(mat, geo, n, per_image)
    cols = mat[:, :k] if per_image else mat[:k]
    _im2col(xp, x, geo, per_image, out=cols.reshape(_cols_shape(geo, n, per_image)))
    if ones:
        if per_image:
            mat[:, k] = 1
        else:
            mat[k] = 1
    return mat


# Spare values at the end of each row of the channel-major GEMM operands and
# results: a row pitch off powers of two (N * oh * ow often is one) avoids
# cache-set conflicts, 3-5 % on OpenBLAS's GEMMs for benchmark case c.
_ROW_PAD = 16


def _operand_shape(geo: _Geometry, n: int, per_image: bool, ones: bool) -> tuple[int, ...]:
    """Shape of the memory that holds the GEMM operand (rows padded, channel-major)."""
    k = geo.c_in * geo.kh * geo.kw + ones
    spatial = geo.out_h * geo.out_w
    return (n, k, spatial) if per_image else (k, n * spatial + _ROW_PAD)


def _unpadded(mat: Any, geo: _Geometry, n: int, per_image: bool) -> Any:
    """The operand itself: ``mat`` without the spare values of its rows."""
    return mat if per_image else mat[:, : n * geo.out_h * geo.out_w]


def _padded_rows(xp: Any, name: str, rows: int, width: int, dtype: Any) -> Any:
    """Scratch (rows, width) whose rows are ``_ROW_PAD`` values apart more than ``width``."""
    return scratch(xp, name, (rows, width + _ROW_PAD), dtype)[:, :width]


def _clipped(tap: int, pad: int, size: int, out: int, step: int) -> tuple[slice, slice] | None:
    """Outputs along one axis whose window tap ``tap`` (already times the dilation)
    reads a real pixel, not padding: (slice of outputs, slice of pixels), or None."""
    lo = max(0, -((tap - pad) // step))  # ceil((pad - tap) / step)
    hi = min(out, (size - 1 + pad - tap) // step + 1)
    if lo >= hi:
        return None
    start = tap + lo * step - pad
    return slice(lo, hi), slice(start, start + (hi - lo - 1) * step + 1, step)


@functools.lru_cache(maxsize=256)
def _col2im_taps(geo: _Geometry) -> tuple[list[tuple[int, int, Any, Any]], bool]:
    """The kernel taps that read real pixels, clipped, for :func:`_col2im` (cached per
    geometry: a layer calls it with the same one every step). When a tap reads every
    pixel exactly once it comes first and ``full`` is True."""
    rows = [_clipped(i * geo.dh, geo.pt, geo.h, geo.out_h, geo.sh) for i in range(geo.kh)]
    cols = [_clipped(j * geo.dw, geo.pl, geo.w, geo.out_w, geo.sw) for j in range(geo.kw)]
    taps = [(i, j, r, c) for i, r in enumerate(rows) for j, c in enumerate(cols)
            if r is not None and c is not None]  # fmt: skip
    full = [t for t in taps if t[2][1] == slice(0, geo.h, 1) and t[3][1] == slice(0, geo.w, 1)]
    if full:  # move it first: it is assigned
        taps.remove(full[0])
        taps.insert(0, full[0])
    return taps, bool(full)


def _col2im(xp: Any, cols: Any, geo: _Geometry, out: Any, per_image: bool = False) -> None:
    """Adjoint of :func:`_im2col`: write into out (N, C, H, W) the sum of the columns.

    ``cols`` has the channel-major layout (C, kh, kw, N, oh, ow), or the
    per-image one (N, C, kh, kw, oh, ow) when ``per_image``. Each kernel tap
    adds only the outputs whose window read a real pixel, straight into
    ``out`` (no padded buffer, no copy back); a tap that reads every pixel
    exactly once (stride 1, "same"-style padding) is assigned instead, which
    saves zeroing ``out``.
    """
    taps, full = _col2im_taps(geo)

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


def _grad_cols_rows(xp: Any, rows: int, width: int, guard: int, dtype: Any,
                    cache: ColumnCache | None) -> Any:  # fmt: skip
    """Rows of ``guard + width + guard`` values for the grad columns, in the memory
    the columns used (the grad_weight GEMM has read them by then): one column-sized
    buffer per call instead of two, 1 ms less per step on benchmark case c."""
    shape = (rows, width + 2 * guard)
    if cache is not None and cache.nbytes >= math.prod(shape) * dtype.itemsize:
        return cache._view(shape, dtype)
    return scratch(xp, "conv.cols", shape, dtype)


def _workspace_bytes(geo: _Geometry, n: int, per_image: bool, ones: bool, itemsize: int) -> int:
    """Bytes of column memory for ``n`` images: the operand or the grad columns."""
    rows, width = geo.c_in * geo.kh * geo.kw, geo.out_h * geo.out_w
    guard = _guard_width(geo)
    grad = rows * (n * (width + guard) if per_image else n * width + guard)
    return max(math.prod(_operand_shape(geo, n, per_image, ones)), grad) * itemsize


def _col2im_flat(xp: Any, rows: Any, guard: int, geo: _Geometry, out: Any,
                 per_image: bool = False) -> None:  # fmt: skip
    """:func:`_col2im` for stride 1 and same-size outputs, as one sum of shifted views.

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
    n, c = out.shape[:2]
    taps, size = geo.kh * geo.kw, geo.h * geo.w
    pitch, item = rows.shape[1], rows.itemsize
    rows[:, :guard] = 0
    rows[:, pitch - guard :] = 0
    s0, s_i, s_j = _flat_shifts(geo)
    flat = rows.reshape(-1)

    def add(part: slice) -> None:
        count = part.stop - part.start
        if per_image:
            first = part.start * c * taps
            inner = rows[first : first + count * c * taps, guard : pitch - guard]
            _zero_invalid(inner.reshape(count, c, geo.kh, geo.kw, geo.out_h, geo.out_w), geo, True)
            shape = (count, c, geo.kh, geo.kw, size)
            strides = (c * taps * pitch, taps * pitch, geo.kw * pitch - s_i, pitch - s_j, 1)
            target = out[part].reshape(count, c, size)
        else:
            first = part.start * taps
            inner = rows[first : first + count * taps, guard : pitch - guard]
            _zero_invalid(inner.reshape(count, geo.kh, geo.kw, n, geo.out_h, geo.out_w), geo, False)
            shape = (count, geo.kh, geo.kw, n, size)
            strides = (taps * pitch, geo.kw * pitch - s_i, pitch - s_j, size, 1)
            target = scratch(xp, "conv.image", (count, n, size), rows.dtype)
        start = first * pitch + guard - s0
        view = xp.lib.stride_tricks.as_strided(
            flat[start:], shape=shape, strides=tuple(item * s for s in strides)
        )
        view.sum(axis=(2, 3) if per_image else (1, 2), out=target)
        if not per_image:
            out[:, part] = target.reshape(count, n, geo.h, geo.w).transpose(1, 0, 2, 3)

    parallel_for(xp, n if per_image else c, add, work=rows.size)


def _store_nchw(xp: Any, y: Any, bias: Any, out: Any) -> None:
    """``out[...] = y + bias``: the (N, C_out, oh, ow) view ``y`` of the GEMM result, copied
    to NCHW with the bias added in the same pass, over threads on the CPU (and any
    other transposing copy split along the first axis)."""

    def store(part: slice) -> None:
        if bias is None:
            out[part] = y[part]
        else:
            xp.add(y[part], bias.reshape(-1, 1, 1), out=out[part])

    parallel_for(xp, out.shape[0], store, work=out.size)


def _per_image(geo: _Geometry, training: bool = False) -> bool:
    """Choose the column layout: per-image for short reductions and small layers.

    ``training`` is True for a forward pass that keeps its columns for the
    backward (a :class:`ColumnCache`) and for the backward itself: there the
    channel-major layout wins on smaller layers than for a forward alone. One
    image keeps the forward's rule in both (one GEMM either way).
    """
    k = geo.c_in // geo.groups * geo.kh * geo.kw
    weights = k * (geo.c_out // geo.groups)
    if k <= _PER_IMAGE_MAX_K:
        return True
    if geo.n > 1 and weights >= _CHANNEL_MAJOR_MIN_WEIGHTS:
        return False
    if training and geo.n > 1:
        return geo.n * weights < _PER_IMAGE_MAX_STEP
    return geo.n * geo.c_out * geo.out_h * geo.out_w < _PER_IMAGE_MAX_OUTPUT


def _chunks(geo: _Geometry, itemsize: int, buffers: int, limit: int | None) -> list[slice]:
    """Split the batch so ``buffers`` column buffers fit in the workspace limit."""
    limit = _workspace_limit if limit is None else _check_limit(limit)
    # one row more than im2col needs: the row of ones of a folded bias; the
    # grad columns' rows carry guards (_col2im_flat), counted for every image,
    # and each chunk's rows _ROW_PAD spare values
    rows = buffers * (geo.c_in * geo.kh * geo.kw + 1)
    width = geo.out_h * geo.out_w + _guard_width(geo)
    per_image = rows * width * itemsize
    step = max(1, min(geo.n, (limit - rows * _ROW_PAD * itemsize) // max(per_image, 1)))
    return [slice(s, min(s + step, geo.n)) for s in range(0, geo.n, step)]


def _use_fft(geo: _Geometry, itemsize: int, limit: int | None) -> bool:
    """FFT for large kernels over few channels (stride 1), when its spectra fit the limit."""
    cg = geo.c_in // geo.groups
    if not _conv_fft.prefer_fft(geo.n, cg, geo.c_out, geo.kh, geo.kw, (geo.sh, geo.sw),
                                (geo.dh, geo.dw)):  # fmt: skip
        return False
    rows = _conv_fft.fast_length(geo.h + geo.pt + geo.pb)
    cols = _conv_fft.fast_length(geo.w + geo.pl + geo.pr) // 2 + 1
    spectra = geo.n * geo.c_in + geo.n * geo.c_out + geo.c_out * cg
    # complex values are two floats; the transposed copies for the products double it
    nbytes = 4 * spectra * rows * cols * itemsize
    return nbytes <= (_workspace_limit if limit is None else _check_limit(limit))


def _prepare(
    x: Any,
    weight: Any,
    bias: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    grad_out: Any = None,
) -> tuple[Any, Any, Any, Any, _Geometry]:
    """Validate everything (grad_out too, when given), then cast and reshape the inputs."""
    geo = _geometry(x, weight, bias, stride, padding, dilation, groups)
    xp = array_namespace(x)
    if grad_out is not None:
        _args.check_shape(grad_out, "grad_out", geo.out_shape)
        _args.float_dtype(xp, grad_out=grad_out, x=x, weight=weight, bias=bias)
    dtype = _args.float_dtype(xp, x=x, weight=weight, bias=bias)
    x, weight, bias = (
        None if a is None else a.astype(dtype, copy=False) for a in (x, weight, bias)
    )
    x, weight, bias = _batched(x, weight, bias, geo)
    return xp, x, weight, bias, geo


@dispatch("x", "weight", "bias")
def conv2d(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: _args.IntPair = 1,
    padding: _args.IntPair | str = 0,
    dilation: _args.IntPair = 1,
    groups: int = 1,
    *,
    workspace_limit: int | None = None,
    cache: ColumnCache | None = None,
    backend: str | None = None,
) -> Any:
    """Apply a 2-D convolution (cross-correlation) over a batch of images.

    ``y[n, o, p, q] = bias[o] + sum_{c, i, j} weight[o, c, i, j] *
    x_pad[n, g * C_in/groups + c, p * sh + i * dh, q * sw + j * dw]`` where ``g`` is the
    group of filter ``o``. Each filter slides over the image with the stride and
    shares its weights across positions, giving one activation map per filter.

    Parameters
    ----------
    x : array, shape (N, C_in, H, W) or (C_in, H, W); or (H, W) with a 2-D weight
        Input images. float32 and float64 are kept; integer images are promoted
        to float32 (or to the weight's float dtype).
    weight : array, shape (C_out, C_in / groups, kh, kw) or (kh, kw)
        Filters.
    bias : array, shape (C_out,), optional
        One bias per filter.
    stride : int or (int, int), default 1
        Step between windows.
    padding : int, (int, int), "valid" or "same", default 0
        Zeros added on both sides. ``"same"`` (stride 1 only) keeps H and W, with
        the extra pixel of an odd total padding on the bottom/right, as PyTorch.
    dilation : int or (int, int), default 1
        Spacing between kernel elements.
    groups : int, default 1
        Input and output channels are split in ``groups`` independent groups.
    workspace_limit : int, optional
        Byte budget for the im2col buffer; the batch is processed in chunks to
        stay under it (default :func:`get_workspace_limit`, 256 MiB). A single
        image whose buffer is larger still runs.
    cache : ColumnCache, optional
        Keeps the column buffer for a following :func:`conv2d_backward` given
        the same cache and the same ``x`` (when the batch fits the workspace
        limit in one piece).
    backend : str, optional
        None computes where the inputs live; a name moves them there first.

    Returns
    -------
    array, shape (N, C_out, out_h, out_w) (batch axis dropped for unbatched input)
        ``out_h = floor((H + pad_top + pad_bottom - dh * (kh - 1) - 1) / sh) + 1``,
        likewise ``out_w``.

    Notes
    -----
    NaN and inf propagate as IEEE arithmetic says: a NaN in a window makes that
    output NaN (and through the GEMM, possibly its neighbours' sums stay finite).

    See Also
    --------
    scipy.signal.correlate2d, torch.nn.functional.conv2d

    Examples
    --------
    >>> import numpy as np, cnnarray
    >>> image = np.arange(16.0).reshape(4, 4)
    >>> cnnarray.conv2d(image, np.ones((3, 3)))
    array([[45., 54.],
           [81., 90.]])
    """
    _check_cache(cache)
    x_in = x
    xp, x, weight, bias, geo = _prepare(x, weight, bias, stride, padding, dilation, groups)
    g = geo.groups
    w2 = weight.reshape(g, geo.c_out // g, -1)  # (g, C_out/g, C_in/g*kh*kw)
    out = xp.empty((geo.n, geo.c_out, geo.out_h, geo.out_w), dtype=x.dtype)
    if cache is not None:
        cache.clear()
    if _use_fft(geo, x.dtype.itemsize, workspace_limit):
        y = _conv_fft.correlate(xp, _pad(xp, x, geo), weight, g, (geo.out_h, geo.out_w))
        if bias is None:
            out[...] = y
        else:
            xp.add(y, bias.reshape(-1, 1, 1), out=out)
        return out.reshape(geo.out_shape)
    per_image = _per_image(geo, training=cache is not None)
    fold = bias is not None and g == 1  # the bias rides in the GEMM (see _operand)
    if fold:
        w2 = xp.concatenate([w2, bias.reshape(1, -1, 1)], axis=2)
    chunks = _chunks(geo, x.dtype.itemsize, 1, workspace_limit)
    keep = None
    if cache is not None and len(chunks) == 1:
        shape = _operand_shape(geo, geo.n, per_image, fold)
        nbytes = _workspace_bytes(geo, geo.n, per_image, fold, x.dtype.itemsize)
        keep = cache._buffer_for(xp, shape, x.dtype, nbytes)
    spatial = geo.out_h * geo.out_w
    for part in chunks:
        mat = _operand(xp, x[part], geo, per_image, fold, buffer=keep)
        if per_image:
            y = out[part]  # contiguous: the GEMM writes the NCHW result in place
            nb = mat.shape[0]
            xp.matmul(w2, mat.reshape(nb, g, -1, spatial), out=y.reshape(nb, g, -1, spatial))
            if bias is not None and not fold:
                y += bias.reshape(-1, 1, 1)
            continue
        m = mat.shape[1]
        y = _padded_rows(xp, "conv.gemm", geo.c_out, m, x.dtype).reshape(g, -1, m)
        xp.matmul(w2, mat.reshape(g, -1, m), out=y)  # (g, C_out/g, n*oh*ow)
        y = y.reshape(geo.c_out, -1, geo.out_h, geo.out_w).transpose(1, 0, 2, 3)
        _store_nchw(xp, y, None if fold else bias, out[part])
    if keep is not None:  # only now: an interrupted fill must not be used
        cache._remember(x_in, (geo, per_image, fold, x.dtype))
    return out.reshape(geo.out_shape)


@dispatch("grad_out", "x", "weight", "bias")
def conv2d_backward(
    grad_out: Any,
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: _args.IntPair = 1,
    padding: _args.IntPair | str = 0,
    dilation: _args.IntPair = 1,
    groups: int = 1,
    *,
    workspace_limit: int | None = None,
    input_grad: bool = True,
    cache: ColumnCache | None = None,
    backend: str | None = None,
) -> tuple[Any, Any, Any]:
    """Return the gradients of :func:`conv2d` with respect to x, weight and bias.

    Parameters
    ----------
    grad_out : array, shape of ``conv2d(x, weight, ...)``
        Gradient of the loss with respect to the convolution's output.
    x, weight, bias, stride, padding, dilation, groups, workspace_limit, backend
        As given to :func:`conv2d`.
    input_grad : bool, default True
        False skips grad_x (returned as None): the first layer of a network
        does not need the gradient of its images, and col2im is a third of
        the backward's time.
    cache : ColumnCache, optional
        The cache given to the :func:`conv2d` call with this ``x``: its
        columns are used instead of rebuilding them (then forgotten).

    Returns
    -------
    grad_x : array, shape of x, or None when ``input_grad`` is False
        ``col2im(W^T @ dY)``.
    grad_weight : array, shape of weight
        ``dY @ cols^T``, summed over the batch.
    grad_bias : array, shape of bias, or None when bias is None
        ``dY`` summed over batch and positions.
    """
    _check_cache(cache)
    x_in, x_shape, w_shape = x, tuple(x.shape), tuple(weight.shape)
    b_shape = None if bias is None else tuple(bias.shape)
    xp, x, weight, bias, geo = _prepare(
        x, weight, bias, stride, padding, dilation, groups, grad_out
    )
    grad_out = grad_out.astype(x.dtype, copy=False).reshape(geo.n, geo.c_out, geo.out_h, geo.out_w)
    g = geo.groups
    w2 = weight.reshape(g, geo.c_out // g, -1)
    # C-contiguous whatever x's layout: col2im writes through reshaped views of it
    grad_x = xp.empty(x.shape, dtype=x.dtype) if input_grad else None
    cg, og, spatial = geo.c_in // g, geo.c_out // g, geo.out_h * geo.out_w
    grad_bias = None
    if _use_fft(geo, x.dtype.itemsize, workspace_limit):
        if bias is not None:
            grad_bias = grad_out.sum(axis=(0, 2, 3)).reshape(b_shape)
        if cache is not None:
            cache.clear()
        grad_xpad, gw = _conv_fft.correlate_backward(xp, grad_out, _pad(xp, x, geo), weight, g,
                                                     input_grad)  # fmt: skip
        if input_grad:
            grad_x[...] = grad_xpad[:, :, geo.pt : geo.pt + geo.h, geo.pl : geo.pl + geo.w]
            grad_x = grad_x.reshape(x_shape)
        return grad_x, gw.reshape(w_shape), grad_bias
    per_image = _per_image(geo, training=True)
    fold = bias is not None and g == 1  # as in conv2d: grad_bias is grad_w's last column
    k = cg * geo.kh * geo.kw
    grad_w = xp.zeros((g, og, k + fold), dtype=x.dtype)
    saved = None
    if cache is not None:
        shape = _operand_shape(geo, geo.n, per_image, fold)
        saved = cache._load(x_in, (geo, per_image, fold, x.dtype), shape, x.dtype)
        saved = None if saved is None else _unpadded(saved, geo, geo.n, per_image)
    if saved is not None:
        chunks = [slice(0, geo.n)]
    else:  # the operand and the grad columns share one buffer: make it big enough
        chunks = _chunks(geo, x.dtype.itemsize, 1, workspace_limit)
        step = chunks[0].stop
        nbytes = _workspace_bytes(geo, step, per_image, fold, x.dtype.itemsize)
        reserve_scratch(xp, "conv.cols", nbytes)
    memory = cache if saved is not None else None
    flat = _same_size(geo)  # col2im as one sum of shifted views (_col2im_flat)
    guard = _flat_guard(geo) if flat else 0
    for part in chunks:
        mat = _operand(xp, x[part], geo, per_image, fold) if saved is None else saved
        if per_image:
            # dY needs no transpose here: (n, g, C_out/g, oh*ow) is a view of grad_out
            mat = mat.reshape(-1, g, k + fold, spatial)
            dy = grad_out[part].reshape(-1, g, og, spatial)
            grad_w += xp.matmul(dy, mat.transpose(0, 1, 3, 2)).sum(axis=0)
            if input_grad:
                nb = mat.shape[0]
                rows = _grad_cols_rows(xp, nb * g * k, spatial, guard, x.dtype, memory)
                grad_cols = rows[:, guard : guard + spatial].reshape(nb, g, k, spatial)
                xp.matmul(w2.transpose(0, 2, 1), dy, out=grad_cols)  # (n, g, K, oh*ow)
                if flat:
                    _col2im_flat(xp, rows, guard, geo, grad_x[part], per_image=True)
                else:
                    grad_cols = grad_cols.reshape(nb, geo.c_in, geo.kh, geo.kw, geo.out_h, -1)
                    _col2im(xp, grad_cols, geo, grad_x[part], per_image=True)
            continue
        m = mat.shape[1]
        mat = mat.reshape(g, -1, m)
        # the forward's GEMM result memory: one buffer less in the cache
        dy = _padded_rows(xp, "conv.gemm", geo.c_out, m, x.dtype)
        dy4 = dy.reshape(geo.c_out, -1, geo.out_h, geo.out_w)
        # the transposing copy of _store_nchw (on threads when large enough)
        _store_nchw(xp, grad_out[part].transpose(1, 0, 2, 3), None, dy4)
        dy = dy.reshape(g, og, m)
        # cols @ dY^T, then transposed, is ~20% faster than dY @ cols^T with OpenBLAS
        grad_w += xp.matmul(mat, dy.transpose(0, 2, 1)).transpose(0, 2, 1)
        if not input_grad:
            continue
        rows = _grad_cols_rows(xp, g * k, m, guard, x.dtype, memory)
        grad_cols = rows[:, guard : guard + m].reshape(g, k, m)
        xp.matmul(w2.transpose(0, 2, 1), dy, out=grad_cols)  # (g, C_in/g*kh*kw, m)
        if flat:
            _col2im_flat(xp, rows, guard, geo, grad_x[part])
        else:
            grad_cols = grad_cols.reshape(geo.c_in, geo.kh, geo.kw, -1, geo.out_h, geo.out_w)
            _col2im(xp, grad_cols, geo, grad_x[part])
    if fold:
        grad_bias = grad_w[0, :, k].reshape(b_shape).copy()  # contiguous, not a view of grad_w
    elif bias is not None:
        grad_bias = grad_out.sum(axis=(0, 2, 3)).reshape(b_shape)
    grad_x = None if grad_x is None else grad_x.reshape(x_shape)
    return grad_x, grad_w[:, :, :k].reshape(w_shape), grad_bias
