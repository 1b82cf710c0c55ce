"""Convolution over any number of spatial axes: one im2col by kernel offset and GEMMs.

conv3d and the transposed convolutions run here (conv2d keeps its tuned 2-D
paths in :mod:`cnnarray.ops.conv`, conv1d runs on them). Names as there, per
axis: ``size`` (input), ``kernel``, ``stride``, ``dilation``, ``lo``/``hi``
(padding before/after), ``out``; ``K = C_in/groups * prod(kernel)`` and
``S = prod(out)``.

* :func:`im2col` copies, for each kernel offset, one strided slice of the
  padded input into the per-image columns (N, C_in, *kernel, *out), STYLE
  lesson 4: ``prod(kernel)`` slice copies, the same on NumPy and CuPy.
* :func:`forward` is ``y[n] = W (g, C_out/g, K) @ cols[n] (g, K, S)``;
  :func:`input_grad` is ``col2im(W^T @ dY[n])``, the same slices added back;
  :func:`weight_grad` is ``sum_n dY[n] @ cols[n]^T``.

A transposed convolution's forward is :func:`input_grad` (its input plays
dY), its input gradient :func:`forward` and its weight gradient
:func:`weight_grad` with the two roles swapped: one definition of each.
The batch is processed in chunks whose columns fit the workspace limit
(:func:`cnnarray.ops.set_workspace_limit`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from .. import _args
from ..backend import array_namespace
from . import _conv_plan

__all__ = ["NdGeometry", "batched", "check_channels", "forward", "geometry", "input_grad",
           "weight_grad"]  # fmt: skip


@dataclass(frozen=True)
class NdGeometry:
    """Sizes of one N-d convolution, its input being the convolution's input."""

    n: int
    c_in: int
    c_out: int
    groups: int
    size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    out: tuple[int, ...]

    @property
    def k(self) -> int:
        """Rows of one group's columns: ``C_in/groups * prod(kernel)``."""
        return self.c_in // self.groups * math.prod(self.kernel)

    def offsets(self) -> list[tuple[tuple[int, ...], tuple[slice, ...]]]:
        """Each kernel offset and the slices of the padded input it reads for every output."""
        return [
            (o, tuple(slice(i * d, i * d + s * (m - 1) + 1, s) for i, d, s, m in
                      zip(o, self.dilation, self.stride, self.out, strict=True)))
            for o in itertools.product(*(range(k) for k in self.kernel))
        ]  # fmt: skip


def check_channels(
    x: Any, weight: Any, bias: Any, dims: int, groups: Any, transposed: bool
) -> tuple[int, int, int, int, bool]:
    """Validate the shapes of a call; return (n, c_in, c_out, groups, unbatched).

    ``c_in`` and ``c_out`` are the channels of the call's input and output
    (for a transposed convolution, weight is (C_in, C_out/groups, *kernel)).
    """
    axes = ("L",) if dims == 1 else ("D", "H", "W")[3 - dims :]
    if transposed:
        w_layout = f"(C_in, C_out/groups, {', '.join('k' + a.lower() for a in axes)})"
    else:
        w_layout = f"(C_out, C_in/groups, {', '.join('k' + a.lower() for a in axes)})"
    _args.check_ndim(weight, "weight", (dims + 2,), w_layout)
    spatial = ", ".join(axes)
    _args.check_ndim(x, "x", (dims + 1, dims + 2), f"(N, C_in, {spatial}) or (C_in, {spatial})")
    _args.check_nonempty(x, "x")
    _args.check_nonempty(weight, "weight")
    groups = _args.check_int(groups, "groups", minimum=1)
    unbatched = x.ndim == dims + 1
    n, c_in = (1, x.shape[0]) if unbatched else x.shape[:2]
    if transposed:
        if weight.shape[0] % groups:
            raise ValueError(
                f"groups={groups} must divide the number of input channels weight.shape[0]="
                f"{weight.shape[0]} (weight of shape {tuple(weight.shape)})"
            )
        expected, c_out = weight.shape[0], weight.shape[1] * groups
    else:
        if weight.shape[0] % groups:
            raise ValueError(
                f"groups={groups} must divide the number of filters C_out={weight.shape[0]} "
                f"(weight of shape {tuple(weight.shape)})"
            )
        expected, c_out = weight.shape[1] * groups, weight.shape[0]
    if c_in != expected:
        raise ValueError(
            f"Given groups={groups}, weight of shape {tuple(weight.shape)}, expected x of shape "
            f"{tuple(x.shape)} to have {expected} channels, but got {c_in} channels"
        )
    if bias is not None:
        _args.check_ndim(bias, "bias", (1,), "(C_out,)")
        _args.check_shape(bias, "bias", (c_out,))
    return int(n), int(c_in), int(c_out), groups, unbatched


def geometry(
    x: Any, weight: Any, bias: Any, dims: int, stride: Any, padding: Any, dilation: Any,
    groups: Any,
) -> tuple[NdGeometry, bool]:  # fmt: skip
    """Validate a convolution call (no array touched); return its geometry and whether
    ``x`` is unbatched."""
    n, c_in, c_out, groups, unbatched = check_channels(x, weight, bias, dims, groups, False)
    kernel = tuple(int(k) for k in weight.shape[2:])
    stride = _args._ntuple(stride, "stride", dims, minimum=1)
    dilation = _args._ntuple(dilation, "dilation", dims, minimum=1)
    lo, hi = _args.conv_padding_nd(padding, kernel, dilation, stride)
    size = tuple(int(s) for s in x.shape[-dims:])
    out = tuple(_args.conv_out_size(*a) for a in
                zip(size, [a + b for a, b in zip(lo, hi, strict=True)], kernel, stride, dilation,
                    strict=True))  # fmt: skip
    padded = tuple(s + a + b for s, a, b in zip(size, lo, hi, strict=True))
    _args.check_window_fits(out, kernel, dilation, padded, x.shape)
    _args.check_map_size(out, x.shape, padding=padding, kernel=kernel)
    geo = NdGeometry(n, c_in, c_out, groups, size, kernel, stride, dilation, lo, hi, out)
    return geo, unbatched


def batched(x: Any, weight: Any, bias: Any, grad_out: Any = None) -> tuple[Any, ...]:
    """Cast every array to the call's float dtype (grad_out too, when given);
    return ``(xp, x, weight, bias, grad_out)`` with x and grad_out batched."""
    xp = array_namespace(x)
    if grad_out is not None:
        _args.float_dtype(xp, grad_out=grad_out, x=x, weight=weight, bias=bias)
    dtype = _args.float_dtype(xp, x=x, weight=weight, bias=bias)
    cast = [None if a is None else a.astype(dtype, copy=False)
            for a in (x, weight, bias, grad_out)]  # fmt: skip
    if x.ndim == weight.ndim - 1:  # unbatched
        cast[0] = cast[0][None]
        cast[3] = None if grad_out is None else cast[3][None]
    return (xp, *cast)


def _chunks(geo: NdGeometry, itemsize: int, limit: int | None) -> list[slice]:
    """Batch slices whose columns (C_in * prod(kernel) rows of S) fit the workspace limit."""
    limit = _conv_plan.default_limit() if limit is None else _conv_plan.check_limit(limit)
    per_image = geo.c_in * math.prod(geo.kernel) * math.prod(geo.out) * itemsize
    step = max(1, min(geo.n, limit // max(per_image, 1)))
    return [slice(s, min(s + step, geo.n)) for s in range(0, geo.n, step)]


def _padded_shape(geo: NdGeometry, n: int) -> tuple[int, ...]:
    return (n, geo.c_in, *(s + a + b for s, a, b in zip(geo.size, geo.lo, geo.hi, strict=True)))


def _interior(geo: NdGeometry) -> tuple[slice, ...]:
    """Where the input sits in the padded input."""
    return (slice(None), slice(None),
            *(slice(a, a + s) for a, s in zip(geo.lo, geo.size, strict=True)))  # fmt: skip


def im2col(xp: Any, x: Any, geo: NdGeometry) -> Any:
    """Columns (n, C_in, *kernel, *out) of ``x`` (n, C_in, *size): one slice copy per
    kernel offset from the zero-padded input."""
    n = x.shape[0]
    if any(geo.lo) or any(geo.hi):
        xpad = xp.zeros(_padded_shape(geo, n), dtype=x.dtype)
        xpad[_interior(geo)] = x
    else:
        xpad = x
    cols = xp.empty((n, geo.c_in, *geo.kernel, *geo.out), dtype=x.dtype)
    every = (slice(None), slice(None))
    for offset, window in geo.offsets():
        cols[every + offset] = xpad[every + window]
    return cols


def col2im(xp: Any, cols: Any, geo: NdGeometry) -> Any:
    """Adjoint of :func:`im2col`: the columns (n, C_in, *kernel, *out) added back into
    an input (n, C_in, *size), the padding dropped."""
    n = cols.shape[0]
    xpad = xp.zeros(_padded_shape(geo, n), dtype=cols.dtype)
    every = (slice(None), slice(None))
    for offset, window in geo.offsets():
        xpad[every + window] += cols[every + offset]
    return xpad[_interior(geo)]


def forward(xp: Any, x: Any, weight: Any, bias: Any, geo: NdGeometry, limit: int | None) -> Any:
    """``y (N, C_out, *out)`` of the convolution of ``x`` (N, C_in, *size) with ``weight``."""
    g, spatial = geo.groups, math.prod(geo.out)
    w2 = weight.reshape(g, geo.c_out // g, geo.k)
    y = xp.empty((geo.n, geo.c_out, *geo.out), dtype=x.dtype)
    for part in _chunks(geo, x.dtype.itemsize, limit):
        cols = im2col(xp, x[part], geo).reshape(-1, g, geo.k, spatial)  # (n, g, K, S)
        xp.matmul(w2, cols, out=y[part].reshape(-1, g, geo.c_out // g, spatial))
    if bias is not None:
        y += bias.reshape((-1,) + (1,) * len(geo.out))
    return y


def input_grad(xp: Any, grad_out: Any, weight: Any, geo: NdGeometry, limit: int | None) -> Any:
    """Gradient (N, C_in, *size) of the convolution's input, from ``grad_out`` (N, C_out,
    *out): ``col2im(W^T @ dY[n])``."""
    g, spatial = geo.groups, math.prod(geo.out)
    w2t = weight.reshape(g, geo.c_out // g, geo.k).transpose(0, 2, 1)  # (g, K, C_out/g)
    grad_x = xp.empty((geo.n, geo.c_in, *geo.size), dtype=grad_out.dtype)
    for part in _chunks(geo, grad_out.dtype.itemsize, limit):
        dy = grad_out[part].reshape(-1, g, geo.c_out // g, spatial)
        cols = xp.matmul(w2t, dy)  # (n, g, K, S)
        grad_x[part] = col2im(xp, cols.reshape(-1, geo.c_in, *geo.kernel, *geo.out), geo)
    return grad_x


def weight_grad(xp: Any, grad_out: Any, x: Any, geo: NdGeometry, limit: int | None) -> Any:
    """Gradient (C_out, C_in/groups, *kernel) of the convolution's weight:
    ``sum_n dY[n] @ cols[n]^T``."""
    g, spatial = geo.groups, math.prod(geo.out)
    grad_w = xp.zeros((g, geo.c_out // g, geo.k), dtype=x.dtype)
    for part in _chunks(geo, x.dtype.itemsize, limit):
        cols = im2col(xp, x[part], geo).reshape(-1, g, geo.k, spatial)
        dy = grad_out[part].reshape(-1, g, geo.c_out // g, spatial)
        grad_w += xp.matmul(dy, cols.transpose(0, 1, 3, 2)).sum(axis=0)
    return grad_w.reshape(geo.c_out, geo.c_in // g, *geo.kernel)
