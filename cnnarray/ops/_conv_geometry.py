"""conv2d's sizes: validation of a call, its geometry, and the shapes of its buffers.

Names as in :mod:`cnnarray.ops.conv`: ``n, c_in, h, w, c_out, kh, kw``, strides
``sh, sw``, dilations ``dh, dw``, paddings ``pt, pb, pl, pr`` (top, bottom,
left, right), ``out_h, out_w``. Nothing here touches an array's values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import _args
from ..backend import array_namespace

__all__ = [
    "ROW_PAD",
    "Geometry",
    "cols_shape",
    "flat_guard",
    "flat_shifts",
    "geometry",
    "grad_image_width",
    "grad_layout",
    "operand_shape",
    "prepare",
    "same_size",
    "unpadded",
    "wide",
    "workspace_bytes",
]


@dataclass(frozen=True)
class Geometry:
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


# geometry's results by call: a layer makes the same call every step, and the checks
# cost 40 us of a small layer's 150 us forward
_GEOMETRIES: dict[str, Geometry] = {}
_GEOMETRIES_MAX = 1024


def geometry(
    x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any
) -> Geometry:
    """Validate a conv2d call and return its sizes (no array is touched).

    Remembered per call (the shapes and the other arguments' ``repr``, which
    tells ``True`` from ``1``): only a call that passed every check is kept,
    so an invalid one raises every time.
    """
    key = repr((tuple(getattr(x, "shape", ())), tuple(getattr(weight, "shape", ())),
                None if bias is None else tuple(getattr(bias, "shape", ())), stride, padding,
                dilation, groups))  # fmt: skip
    geo = _GEOMETRIES.get(key)
    if geo is None:
        geo = _geometry(x, weight, bias, stride, padding, dilation, groups)
        if len(_GEOMETRIES) >= _GEOMETRIES_MAX:
            _GEOMETRIES.clear()
        _GEOMETRIES[key] = geo
    return geo


def _geometry(
    x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any
) -> Geometry:
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
    groups = _args.check_int(groups, "groups", minimum=1)
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
    _args.check_window_fits((out_h, out_w), (kh, kw), (dh, dw), (h + pt + pb, w + pl + pr),
                            x.shape)  # fmt: skip
    _args.check_map_size((out_h, out_w), x.shape, padding=padding, kernel=(kh, kw))
    return Geometry(
        n, c_in, h, w, c_out, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, groups, out_h, out_w,
        unbatched,
    )  # fmt: skip


def _batched(x: Any, weight: Any, bias: Any, geo: Geometry) -> tuple[Any, Any, Any]:
    """Return 4-D x and weight and 1-D bias, whatever form the caller used."""
    if geo.unbatched == 2:
        return x[None, None], weight[None, None], None if bias is None else bias.reshape(1)
    return (x[None] if geo.unbatched else x), weight, bias


def prepare(
    x: Any,
    weight: Any,
    bias: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    grad_out: Any = None,
) -> tuple[Any, Any, Any, Any, Geometry]:
    """Validate everything (grad_out too, when given), then cast and reshape the inputs."""
    geo = geometry(x, weight, bias, stride, padding, dilation, groups)
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


# --------------------------------------------------------------------------- flat shifts


def same_size(geo: Geometry) -> bool:
    """Stride 1 and an output the size of the input: the case of ``im2col_flat``
    and ``col2im_flat`` (:mod:`cnnarray.ops._im2col`)."""
    return geo.sh == geo.sw == 1 and geo.out_h == geo.h and geo.out_w == geo.w


def flat_guard(geo: Geometry) -> int:
    """Spare values on each side of the flat input (``im2col_flat``, whose mask
    clears what a tap reads there) and of each grad-columns row (zeroed,
    ``col2im_flat``): the largest flat shift of a tap, rounded up to 16
    values (64-byte rows for float32)."""
    # the corner taps: (i*dh - pt)*W + (j*dw - pl), where (kh - 1)*dh = pt + pb; the
    # largest in size is a top-left or bottom-right one (the pads are not negative)
    shift = max(geo.pt * geo.w + geo.pl, geo.pb * geo.w + geo.pr)
    return -(-shift // 16) * 16


def wide(geo: Geometry) -> bool:
    """Stride 1 and an output smaller than the input (a "valid" conv, or padding short of
    "same"): the backward lays its grad columns on the padded input's row pitch and adds
    them back with ``col2im_wide`` (:mod:`cnnarray.ops._im2col`)."""
    return geo.sh == geo.sw == 1 and not same_size(geo)


def grad_layout(geo: Geometry, per_image: bool) -> tuple[int, int]:
    """Values per image in a grad-columns row, and the guard on each side of the row.

    Same-size outputs: ``H*W`` values, :func:`flat_guard`. :func:`wide` ones:
    the output rows on the padded input's pitch ``Wp``, ``out_h * Wp`` per
    image (per-image rows) or the whole padded image ``Hp * Wp`` (channel-major
    rows, so the zero rows past ``out_h`` separate the images), and a guard of
    the largest tap shift ``(kh - 1) * dh * Wp + (kw - 1) * dw``, rounded up to
    16 values. Otherwise ``out_h * out_w`` values and no guard.
    """
    if same_size(geo):
        return geo.h * geo.w, flat_guard(geo)
    if not wide(geo):
        return geo.out_h * geo.out_w, 0
    wp = geo.w + geo.pl + geo.pr
    rows = geo.out_h if per_image else geo.h + geo.pt + geo.pb
    shift = (geo.kh - 1) * geo.dh * wp + (geo.kw - 1) * geo.dw
    return rows * wp, -(-shift // 16) * 16


def grad_image_width(geo: Geometry) -> int:
    """The most values one image adds to a grad-columns row, guards included (either layout)."""
    image, guard = grad_layout(geo, per_image=False)
    return image + 2 * guard


def flat_shifts(geo: Geometry) -> tuple[int, int, int]:
    """Flat shift of tap (0, 0), and its growth per kernel row and per kernel column:
    tap (i, j) reads pixel ``m + s0 + i * s_i + j * s_j`` for output ``m`` (H*W pitch)."""
    return -(geo.pt * geo.w + geo.pl), geo.dh * geo.w, geo.dw


# --------------------------------------------------------------------------- buffer shapes

# Spare values at the end of each row of the channel-major GEMM operands and
# results: a row pitch off powers of two (N * oh * ow often is one) avoids
# cache-set conflicts, 3-5 % on OpenBLAS's GEMMs for benchmark case c.
ROW_PAD = 16


def cols_shape(geo: Geometry, n: int, per_image: bool) -> tuple[int, ...]:
    """Shape of the columns of ``n`` images: per-image or channel-major layout."""
    if per_image:
        return (n, geo.c_in, geo.kh, geo.kw, geo.out_h, geo.out_w)
    return (geo.c_in, geo.kh, geo.kw, n, geo.out_h, geo.out_w)


def operand_shape(geo: Geometry, n: int, per_image: bool, ones: bool) -> tuple[int, ...]:
    """Shape of the memory that holds the GEMM operand (rows padded, channel-major)."""
    k = geo.c_in * geo.kh * geo.kw + ones
    spatial = geo.out_h * geo.out_w
    return (n, k, spatial) if per_image else (k, n * spatial + ROW_PAD)


def unpadded(mat: Any, geo: Geometry, n: int, per_image: bool) -> Any:
    """The operand itself: ``mat`` without the spare values of its rows."""
    return mat if per_image else mat[:, : n * geo.out_h * geo.out_w]


def workspace_bytes(geo: Geometry, n: int, per_image: bool, ones: bool, itemsize: int) -> int:
    """Bytes of column memory for ``n`` images: the operand or the grad columns."""
    rows = geo.c_in * geo.kh * geo.kw
    width, guard = grad_layout(geo, per_image)
    grad = rows * (n * (width + 2 * guard) if per_image else n * width + 2 * guard)
    return max(math.prod(operand_shape(geo, n, per_image, ones)), grad) * itemsize
