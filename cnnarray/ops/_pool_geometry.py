"""The window geometry of a pooling call and what the pooling passes share: validation
(cached by shape and arguments), the padded maps, the scratch memory, the parallel run
over maps. Split from :mod:`cnnarray.ops.pool`, which computes over these windows.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .. import _args
from ..backend import Workspace, array_namespace, parallel_for
from . import _conv_plan

# The layout of x for each number of spatial axes, as error messages show it.
_LAYOUTS = {1: "(N, C, L) or (C, L)", 2: "(N, C, H, W) or (C, H, W)",
            3: "(N, C, D, H, W) or (C, D, H, W)"}  # fmt: skip


@dataclass(frozen=True)
class _PoolGeometry:
    """The window geometry of one pooling call over ``len(size)`` spatial axes."""

    n: int
    c: int
    size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    out: tuple[int, ...]
    unbatched: bool

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.n, self.c, *self.out)[int(self.unbatched) :]

    @cached_property
    def padded_shape(self) -> tuple[int, ...]:
        """Padded size: ``pad`` before, enough after for every window."""
        return tuple(
            max(s + 2 * p, (o - 1) * st + d * (k - 1) + 1)
            for s, p, o, st, d, k in zip(self.size, self.padding, self.out, self.stride,
                                         self.dilation, self.kernel, strict=True)
        )  # fmt: skip

    @cached_property
    def inner(self) -> tuple[slice, ...]:
        """The slices of the padded maps (M, *padded_shape) that hold the input."""
        pairs = zip(self.padding, self.size, strict=True)
        return (slice(None), *(slice(p, p + s) for p, s in pairs))

    @cached_property
    def tiles(self) -> bool:
        """True when the windows cover the padded input exactly once."""
        return (
            self.stride == self.kernel
            and all(d == 1 for d in self.dilation)
            and self.padded_shape == tuple(map(operator.mul, self.out, self.kernel))
        )

    @cached_property
    def taps(self) -> list[tuple[slice, ...]]:
        """Row-major list of the slices of the padded maps (M, ...) read by each kernel offset."""
        taps = _args.window_slices(self.kernel, self.stride, self.dilation, self.out)
        return [(slice(None), *tap) for tap in taps]


# The most kernel offsets a pooling call loops over, unless the input's maps
# are larger (a window as large as the input is a global pooling): the loop is
# in Python, one pass over the output per offset, and a huge kernel on a small
# input would read mostly padding.
_MAX_TAPS = 2**16


# Geometries already checked, by input shape and arguments: validating the
# arguments and working the windows out take longer than pooling a small batch
# (the 7x7 maps of a late layer), and a training loop asks for the same ones.
_GEOMETRIES: dict[tuple[Any, ...], _PoolGeometry] = {}
_MAX_GEOMETRIES = 1024


def _geometry(
    x: Any,
    dims: int,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: Any,
) -> _PoolGeometry:
    """Validate x's shape and the window arguments; return the geometry of the call."""
    # repr, not the values: True == 1 and (2, 2) == [2, 2] must not find each other's entry;
    # the workspace limit too, as it bounds the padding (check_padded_maps)
    args = repr((kernel_size, stride, padding, dilation, ceil_mode))
    key = (dims, getattr(x, "shape", None), args, _conv_plan.default_limit())
    geo = _GEOMETRIES.get(key)
    if geo is None:
        geo = _new_geometry(x, dims, kernel_size, stride, padding, dilation, ceil_mode)
        if len(_GEOMETRIES) < _MAX_GEOMETRIES:
            _GEOMETRIES[key] = geo
    return geo


def _new_geometry(
    x: Any,
    dims: int,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: Any,
) -> _PoolGeometry:
    _args.check_ndim(x, "x", (dims + 1, dims + 2), _LAYOUTS[dims])
    _args.check_nonempty(x, "x")
    kernel = _args._ntuple(kernel_size, "kernel_size", dims, minimum=1)
    step = kernel if stride is None else _args._ntuple(stride, "stride", dims, minimum=1)
    pad = _args._ntuple(padding, "padding", dims, minimum=0)
    dil = _args._ntuple(dilation, "dilation", dims, minimum=1)
    if any(p > k // 2 for p, k in zip(pad, kernel, strict=True)):
        raise ValueError(
            f"padding must be at most half of kernel_size, got padding={pad} "
            f"for kernel_size={kernel}"
        )
    _args.check_bool(ceil_mode, "ceil_mode")
    unbatched = x.ndim == dims + 1
    n, c, *size = (1,) * unbatched + tuple(x.shape)
    out = tuple(
        _args.pool_out_size(s, p, k, st, d, ceil_mode)
        for s, p, k, st, d in zip(size, pad, kernel, step, dil, strict=True)
    )
    padded = tuple(s + 2 * p for s, p in zip(size, pad, strict=True))
    _args.check_window_fits(out, kernel, dil, padded, x.shape)
    limit = max(_MAX_TAPS, math.prod(size))
    if math.prod(kernel) > limit:
        raise ValueError(
            f"kernel_size must have at most {limit} elements (the larger of {_MAX_TAPS} and "
            f"{'H * W' if dims == 2 else 'the size of a map'}: pooling loops over them), got "
            f"kernel_size={kernel} ({math.prod(kernel)} elements) for x of shape {tuple(x.shape)}"
        )
    # each map is padded whole (_pad): a kernel far larger than x must not pad it to gigabytes
    size, item = tuple(size), x.dtype.itemsize if x.dtype.kind == "f" else 4
    _conv_plan.check_padded_maps(f"padding={pad} with kernel_size={kernel}", size, padded, 1, item)
    return _PoolGeometry(n, c, size, kernel, step, pad, dil, out, unbatched)


class _PoolWorkspace(Workspace):
    """The scratch memory of one pooling call (see :class:`cnnarray.backend.Workspace`).

    Every view is taken and dies inside one ``parallel_for`` body, in its
    thread's memory, and no two share memory: ``pad``, the slice padded by
    :func:`_pad`, read by every tap; max_pool2d_backward's ``best`` (the window
    maxima, when not given), ``grad`` (the padded gradient, cropped into grad_x
    at the end) and ``pending`` and ``hit`` (the windows whose maximum is not
    found yet, and those found at the current tap); with ``return_indices``, the
    forward's ``patch`` (each tap's slice, copied), ``take`` (the windows whose
    maximum it is so far) and ``at`` (the offset of each window's maximum).
    """

    NAME = "pool"
    VIEWS = {
        name: name for name in ("pad", "best", "grad", "pending", "hit", "at", "patch", "take")
    }


def _pad(ws: Workspace, x: Any, geo: _PoolGeometry, fill: float) -> Any:
    """Pad maps (M, *size) to the padded shape with ``fill``."""
    padded = geo.padded_shape
    if padded == geo.size:
        return x
    out = ws.take("pad", (x.shape[0], *padded), x.dtype)
    out[...] = fill
    out[geo.inner] = x
    return out


def _prepare(x: Any, geo: _PoolGeometry) -> tuple[Any, Any]:
    """Return ``xp`` and x as float maps of shape (N*C, *size): pooling treats each alike."""
    xp = array_namespace(x)
    dtype = _args.float_dtype(xp, x=x)
    return xp, x.astype(dtype, copy=False).reshape(geo.n * geo.c, *geo.size)


def _grad_in(xp: Any, grad_out: Any, x: Any, geo: _PoolGeometry) -> Any:
    _args.check_shape(grad_out, "grad_out", geo.out_shape)
    _args.float_dtype(xp, grad_out=grad_out, x=x)
    return grad_out.astype(x.dtype, copy=False).reshape(geo.n * geo.c, *geo.out)


def _run(xp: Any, x: Any, shape: tuple[int, ...], geo: _PoolGeometry, body: Any) -> Any:
    """Allocate the (N*C, *shape) result, fill it by ``body(part, out[part])`` in parallel."""
    out = xp.empty((x.shape[0], *shape), dtype=x.dtype)
    parallel_for(xp, x.shape[0], lambda part: body(part, out[part]), work=x.size)
    return out


def _unflatten(out: Any, geo: _PoolGeometry) -> Any:
    return out.reshape((geo.n, geo.c, *out.shape[1:])[int(geo.unbatched) :])


def _plane_indices(xp: Any, geo: _PoolGeometry) -> Any:
    """The flat index of each element within its input map, padded like x (-1 in the padding)."""
    plane = xp.full((1, *geo.padded_shape), -1, dtype=xp.int64)
    plane[geo.inner] = xp.arange(math.prod(geo.size), dtype=xp.int64).reshape(1, *geo.size)
    return plane
