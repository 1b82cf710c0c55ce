"""2-D convolution (cross-correlation, as in deep-learning frameworks) and its gradient.

The forward pass is im2col followed by GEMMs:

* the padded input is copied into a column buffer in one pass, from a
  strided view of all its windows (no per-pixel loop), in one of two
  layouts: channel-major ``(C_in, kh, kw, N, out_h, out_w)``, whose
  ``W (groups, C_out/g, K) @ cols (groups, K, N*out_h*out_w)`` is one large GEMM
  per group (K = C_in/g * kh * kw), or per-image ``(N, C_in, kh, kw, out_h, out_w)``,
  whose batched GEMM ``W @ cols[n]`` lands directly in NCHW. The per-image
  layout is used for short reductions and small layers (:mod:`cnnarray.ops._conv_plan`),
  where the transposes of the channel-major one cost more than they save.
  Weight sharing is the GEMM reusing one row of weights against every column.
  With one group and a bias, the buffer gets a last row of ones and the
  weights a bias column, so the GEMM adds the bias and the backward's
  grad_weight GEMM yields grad_bias as its last column. For stride 1 and
  outputs the size of the input, the channel-major buffer is instead one
  pass over a view in which every kernel tap is a flat shift of the whole
  batch, masked so that reads of padding come out zero
  (``im2col_flat``). Channel-major rows sit on padded pitches.

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

This module holds the public functions. The rest is in modules named for
their job: :mod:`cnnarray.ops._conv_geometry` the validation, sizes and buffer
shapes, :mod:`cnnarray.ops._im2col` im2col and col2im,
:mod:`cnnarray.ops._conv_plan` the measured rules (layout, chunks, FFT, the
workspace limit) and :mod:`cnnarray.ops._conv_fft` the FFT path.
Each layout has one GEMM helper per direction (``_forward_per_image`` and so
on, at the end), so that :func:`conv2d` and :func:`conv2d_backward` read as
straight lines; every temporary array is a view of the call's
:class:`_ConvWorkspace`, whose docstring gives their lifetimes.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _args
from ..backend import Workspace, array_namespace, dispatch
from . import _conv_fft, _conv_plan, _im2col
from ._conv_geometry import (
    Geometry,
    geometry,
    operand_shape,
    prepare,
    unpadded,
    wide,
    workspace_bytes,
)

__all__ = [
    "ColumnCache",
    "conv2d",
    "conv2d_backward",
    "conv2d_output_shape",
    "get_workspace_limit",
    "set_workspace_limit",
]


def set_workspace_limit(nbytes: int) -> None:
    """Set the default byte budget of conv2d's im2col buffer (default 256 MiB)."""
    _conv_plan.set_default_limit(nbytes)


def get_workspace_limit() -> int:
    """Return the default byte budget of conv2d's im2col buffer."""
    return _conv_plan.default_limit()


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
    guard values, see ``col2im_flat``).

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

    def _memory(self, xp: Any, nbytes: int) -> Any:
        """Return the cache's memory (uint8 bytes) grown to at least ``nbytes``: the
        forward's columns, then the backward's grad columns (:class:`_ConvWorkspace`)."""
        buffer = self._buffer
        if buffer is None or buffer.nbytes < nbytes or array_namespace(buffer) is not xp:
            self._buffer = None  # free the old one before allocating
            self._buffer = xp.empty(max(nbytes, 1), dtype=xp.uint8)
        return self._buffer

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


class _ConvWorkspace(Workspace):
    """The scratch memory of one conv2d or conv2d_backward call (see :class:`Workspace`).

    Its views, when each is live, and which share memory:

    ``cols``
        The GEMM operand of one chunk (``operand``: the im2col columns and the
        row of ones), from im2col to the last GEMM that reads it. In the
        :class:`ColumnCache`'s memory when the forward keeps its columns there
        or the backward reads them from there.
    ``grad_cols``
        The backward's grad columns, in the memory of ``cols``: taken only
        after the grad_weight GEMM has read ``cols``, which is dead from then
        on, and live until col2im has added them into grad_x. The backward
        reserves that memory for the larger of the two.
    ``gemm``, ``dy``
        One memory: the forward's channel-major GEMM result until
        ``store_nchw`` has copied it out, or the backward's transposed
        grad_out, read by both of its GEMMs. Never in the memory of ``cols``:
        dY is read with the columns and written into grad_cols.
    ``image``
        Per thread, inside one ``parallel_for`` body: the padded input slice
        that the body copies windows from (``pad_input``), the flat input of
        ``im2col_flat``, or the channel-major ``col2im_flat``'s sum before it
        is copied into grad_x; one at a time in a thread. The FFT path's padded
        batch, live through the transforms.
    ``dy_wide``
        The backward's dY on the padded input's row pitch (``wide_dy``, stride-1
        convs whose output is smaller than the input), read by the grad-columns
        GEMM; its own memory, as the channel-major ``dy`` is live beside it.
    ``mask``
        ``im2col_flat``'s tap mask, taken in the calling thread and read by
        every worker until the columns are filled: never in the memory of
        ``image``, which the workers write meanwhile.
    """

    NAME = "conv"
    VIEWS = {"cols": "cols", "grad_cols": "cols", "gemm": "gemm", "dy": "gemm",
             "dy_wide": "wide", "image": "image", "mask": "mask"}  # fmt: skip


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

    return geometry(
        _Shape(x_shape), _Shape(weight_shape), None, stride, padding, dilation, groups
    ).out_shape


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
        image whose buffer is larger still runs, unless padding is what makes it
        large: padding that only adds zeros (past the kernel's reach, or more
        than doubling a tiny input) and more than this limit (at least 16 MiB)
        to one image's buffers is a ValueError, raised before any allocation
        (an 8x8 image with padding 12000 would ask for gigabytes).
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
    xp, x, weight, bias, geo = prepare(x, weight, bias, stride, padding, dilation, groups)
    g, itemsize = geo.groups, x.dtype.itemsize
    _conv_plan.check_padding(geo, itemsize, workspace_limit)
    w2 = weight.reshape(g, geo.c_out // g, -1)  # (g, C_out/g, C_in/g*kh*kw)
    out = xp.empty((geo.n, geo.c_out, geo.out_h, geo.out_w), dtype=x.dtype)
    if cache is not None:
        cache.clear()
    if _conv_plan.use_fft(geo, itemsize, workspace_limit):
        xpad = _im2col.pad_input(_ConvWorkspace(xp), x, geo)
        y = _conv_fft.correlate(xp, xpad, weight, g, (geo.out_h, geo.out_w))
        if bias is None:
            out[...] = y
        else:
            xp.add(y, bias.reshape(-1, 1, 1), out=out)
        return out.reshape(geo.out_shape)
    per_image = _conv_plan.use_per_image(geo, training=cache is not None)
    fold = bias is not None and g == 1  # the bias rides in the GEMM (see operand)
    if fold:
        w2 = xp.concatenate([w2, bias.reshape(1, -1, 1)], axis=2)
    chunks = _conv_plan.chunks(geo, itemsize, 1, workspace_limit)
    keep = cache is not None and len(chunks) == 1
    if keep:  # the columns go into the cache's memory
        nbytes = workspace_bytes(geo, geo.n, per_image, fold, itemsize)
        ws = _ConvWorkspace(xp, cols=cache._memory(xp, nbytes))
    else:
        ws = _ConvWorkspace(xp)
    gemm = _forward_per_image if per_image else _forward_channel_major
    for part in chunks:
        mat = _im2col.operand(ws, x[part], geo, per_image, fold)
        gemm(ws, w2, mat, None if fold else bias, out[part], geo)
    if keep:  # only now: an interrupted fill must not be used
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
    xp, x, weight, bias, geo = prepare(x, weight, bias, stride, padding, dilation, groups, grad_out)
    grad_out = grad_out.astype(x.dtype, copy=False).reshape(geo.n, geo.c_out, geo.out_h, geo.out_w)
    g, itemsize = geo.groups, x.dtype.itemsize
    _conv_plan.check_padding(geo, itemsize, workspace_limit)
    w2 = weight.reshape(g, geo.c_out // g, -1)
    # C-contiguous whatever x's layout: col2im writes through reshaped views of it
    grad_x = xp.empty(x.shape, dtype=x.dtype) if input_grad else None
    grad_bias = None
    if _conv_plan.use_fft(geo, itemsize, workspace_limit):
        if bias is not None:
            grad_bias = grad_out.sum(axis=(0, 2, 3)).reshape(b_shape)
        if cache is not None:
            cache.clear()
        xpad = _im2col.pad_input(_ConvWorkspace(xp), x, geo)
        grad_xpad, gw = _conv_fft.correlate_backward(xp, grad_out, xpad, weight, g, input_grad)
        if input_grad:
            grad_x[...] = grad_xpad[:, :, geo.pt : geo.pt + geo.h, geo.pl : geo.pl + geo.w]
            grad_x = grad_x.reshape(x_shape)
        return grad_x, gw.reshape(w_shape), grad_bias
    per_image = _conv_plan.use_per_image(geo, training=True)
    fold = bias is not None and g == 1  # as in conv2d: grad_bias is grad_w's last column
    k = geo.c_in // g * geo.kh * geo.kw
    grad_w = xp.zeros((g, geo.c_out // g, k + fold), dtype=x.dtype)
    saved = None
    if cache is not None:
        shape = operand_shape(geo, geo.n, per_image, fold)
        saved = cache._load(x_in, (geo, per_image, fold, x.dtype), shape, x.dtype)
    if saved is not None:  # the grad columns go where the columns are
        chunks = [slice(0, geo.n)]
        ws = _ConvWorkspace(xp, cols=cache._buffer)
        saved = unpadded(saved, geo, geo.n, per_image)
    else:  # the operand and the grad columns share one buffer: make it big enough
        chunks = _conv_plan.chunks(geo, itemsize, 1, workspace_limit)
        ws = _ConvWorkspace(xp)
        ws.reserve("cols", workspace_bytes(geo, chunks[0].stop, per_image, fold, itemsize))
    gemm = _backward_per_image if per_image else _backward_channel_major
    for part in chunks:
        mat = _im2col.operand(ws, x[part], geo, per_image, fold) if saved is None else saved
        gemm(ws, w2, mat, grad_out[part], grad_w, None if grad_x is None else grad_x[part], geo)
    if fold:
        grad_bias = grad_w[0, :, k].reshape(b_shape).copy()  # contiguous, not a view of grad_w
    elif bias is not None:
        grad_bias = grad_out.sum(axis=(0, 2, 3)).reshape(b_shape)
    grad_x = None if grad_x is None else grad_x.reshape(x_shape)
    return grad_x, grad_w[:, :, :k].reshape(w_shape), grad_bias


# --------------------------------------------------------------------------- GEMMs, per layout


def _forward_per_image(ws: Workspace, w2: Any, mat: Any, bias: Any, out: Any, geo: Geometry
                       ) -> None:  # fmt: skip
    """``out[n] = W @ cols[n] + bias``: per-image columns (n, K, oh*ow), weights w2
    (g, C_out/g, K); the batched GEMM writes the NCHW result ``out`` in place."""
    nb, g, spatial = mat.shape[0], geo.groups, geo.out_h * geo.out_w
    ws.xp.matmul(w2, mat.reshape(nb, g, -1, spatial), out=out.reshape(nb, g, -1, spatial))
    if bias is not None:
        out += bias.reshape(-1, 1, 1)


def _forward_channel_major(ws: Workspace, w2: Any, mat: Any, bias: Any, out: Any,
                           geo: Geometry) -> None:  # fmt: skip
    """``out = W @ cols + bias``: channel-major columns (K, n*oh*ow), one GEMM per group
    into the view "gemm" (C_out, n*oh*ow), then copied to NCHW ``out`` with the bias."""
    m = mat.shape[1]
    y = _im2col.padded_rows(ws, "gemm", geo.c_out, m, mat.dtype).reshape(geo.groups, -1, m)
    ws.xp.matmul(w2, mat.reshape(geo.groups, -1, m), out=y)  # (g, C_out/g, n*oh*ow)
    y = y.reshape(geo.c_out, -1, geo.out_h, geo.out_w).transpose(1, 0, 2, 3)
    _im2col.store_nchw(ws.xp, y, bias, out)


def _backward_per_image(ws: Workspace, w2: Any, mat: Any, grad_out: Any, grad_w: Any,
                        grad_x: Any, geo: Geometry) -> None:  # fmt: skip
    """``grad_w += sum_n dY[n] @ cols[n]^T`` for per-image columns (n, K, oh*ow), and
    ``grad_x = col2im(W^T @ dY[n])`` unless ``grad_x`` is None."""
    xp, nb, g, spatial = ws.xp, mat.shape[0], geo.groups, geo.out_h * geo.out_w
    mat = mat.reshape(nb, g, -1, spatial)
    # dY needs no transpose here: (n, g, C_out/g, oh*ow) is a view of grad_out
    dy = grad_out.reshape(nb, g, -1, spatial)
    grad_w += xp.matmul(dy, mat.transpose(0, 1, 3, 2)).sum(axis=0)
    if grad_x is None:
        return
    k = geo.c_in // g * geo.kh * geo.kw
    rows, grad_cols = _im2col.grad_columns(ws, nb * g * k, 1, geo, True, mat.dtype)
    if wide(geo):
        dy = _im2col.wide_dy(ws, grad_out, geo, per_image=True).reshape(nb, g, geo.c_out // g, -1)
    xp.matmul(w2.transpose(0, 2, 1), dy, out=grad_cols.reshape(nb, g, k, -1))
    if wide(geo) and not bool(xp.isfinite(w2).all()):
        _im2col.zero_outside(grad_cols, geo, per_image=True)
    _im2col.col2im_rows(ws, rows, geo, grad_x, per_image=True)


def _backward_channel_major(ws: Workspace, w2: Any, mat: Any, grad_out: Any, grad_w: Any,
                            grad_x: Any, geo: Geometry) -> None:  # fmt: skip
    """``grad_w += dY @ cols^T`` for channel-major columns (K, n*oh*ow), with dY copied
    to (C_out, n*oh*ow) in the view "dy", and ``grad_x = col2im(W^T @ dY)`` unless
    ``grad_x`` is None."""
    xp, g, m = ws.xp, geo.groups, mat.shape[1]
    mat = mat.reshape(g, -1, m)
    # the forward's GEMM result memory: one buffer less in the cache
    dy = _im2col.padded_rows(ws, "dy", geo.c_out, m, mat.dtype)
    # the transposing copy of store_nchw (on threads when large enough)
    dy4 = dy.reshape(geo.c_out, -1, geo.out_h, geo.out_w)
    _im2col.store_nchw(xp, grad_out.transpose(1, 0, 2, 3), None, dy4)
    dy = dy.reshape(g, -1, m)
    # cols @ dY^T, then transposed, is ~20% faster than dY @ cols^T with OpenBLAS
    grad_w += xp.matmul(mat, dy.transpose(0, 2, 1)).transpose(0, 2, 1)
    if grad_x is None:
        return
    k = geo.c_in // g * geo.kh * geo.kw
    images = m // (geo.out_h * geo.out_w)
    rows, grad_cols = _im2col.grad_columns(ws, g * k, images, geo, False, mat.dtype)
    if wide(geo):
        dy = _im2col.wide_dy(ws, dy4, geo, per_image=False).reshape(g, geo.c_out // g, -1)
    xp.matmul(w2.transpose(0, 2, 1), dy, out=grad_cols.reshape(g, k, -1))  # (g, K, m)
    if wide(geo) and not bool(xp.isfinite(w2).all()):
        _im2col.zero_outside(grad_cols, geo, per_image=False)
    _im2col.col2im_rows(ws, rows, geo, grad_x, per_image=False)
