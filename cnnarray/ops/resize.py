"""Resizing: interpolate (nearest, nearest-exact, linear, bilinear, bicubic, trilinear,
area) and pixel_shuffle / pixel_unshuffle, forward and backward.

Every interpolation mode is separable: along one spatial axis, output position
``o`` reads a few input positions ``index[o, t]`` ("taps") with weights
``weight[o, t]`` (one tap for nearest, two for linear, four for cubic, the
window for area). The forward resizes one axis at a time by gathering each tap
(``xp.take``) and adding them weighted; the backward does the same with the
transposed taps (for each input position, the outputs that read it), so
neither scatters (no ``add.at``) nor loops over pixels, and a NaN reaches only
the outputs (or input gradients) whose taps read it, as in PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import _args
from ..backend import array_namespace, dispatch
from ._resize_taps import Taps, along, area_taps, cubic_taps, linear_taps, nearest_taps, transpose

__all__ = [
    "interpolate",
    "interpolate_backward",
    "pixel_shuffle",
    "pixel_shuffle_backward",
    "pixel_unshuffle",
    "pixel_unshuffle_backward",
]

# mode -> the input ndims it takes, PyTorch's table
_MODES = {
    "nearest": (3, 4, 5),
    "nearest-exact": (3, 4, 5),
    "area": (3, 4, 5),
    "linear": (3,),
    "bilinear": (4,),
    "bicubic": (4,),
    "trilinear": (5,),
}
_INTERPOLATING = ("linear", "bilinear", "bicubic", "trilinear")
_LAYOUT = {3: "(N, C, L)", 4: "(N, C, H, W)", 5: "(N, C, D, H, W)"}
# How many times its input size the output may be along an axis: 1 x 1 -> 1024 x 1024 still
# goes, a size meant for another axis or a scale in percent is refused before it allocates.
MAX_SCALE = 1024


@dataclass(frozen=True)
class _Plan:
    """What one interpolate call does along each spatial axis."""

    mode: str
    align_corners: bool
    in_sizes: tuple[int, ...]
    out_sizes: tuple[int, ...]
    scales: tuple[float | None, ...]  # the scale_factor the kernel uses, None: in / out

    def out_shape(self, x_shape: Sequence[int]) -> tuple[int, ...]:
        return (*x_shape[:2], *self.out_sizes)


def _items(value: Any, check: Any) -> Any:
    """``check`` applied to a scalar, or to each item of a sequence (returned as a tuple)."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(check(v) for v in value)
    return check(value)


def check_options(
    size: Any, scale_factor: Any, mode: Any, align_corners: Any, recompute_scale_factor: Any
) -> tuple[Any, Any]:
    """Validate interpolate's arguments that do not depend on x, PyTorch's rules.

    Return ``size`` as an int or a tuple of ints and ``scale_factor`` as a
    float or a tuple of floats (each None when not given). Shared by
    :func:`interpolate` and :class:`cnnarray.nn.Upsample`, which checks them
    when it is built.
    """
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}")
    if align_corners is not None:
        _args.check_bool(align_corners, "align_corners")
        if mode not in _INTERPOLATING:
            raise ValueError(
                "align_corners can only be set with the interpolating modes "
                f"{', '.join(_INTERPOLATING)}, got align_corners={align_corners!r} "
                f"with mode={mode!r}"
            )
    if recompute_scale_factor is not None:
        _args.check_bool(recompute_scale_factor, "recompute_scale_factor")
    if (size is None) == (scale_factor is None):
        raise ValueError(
            "exactly one of size and scale_factor must be given, got "
            f"size={size!r} and scale_factor={scale_factor!r}"
        )
    if size is None:
        scale_factor = _items(scale_factor, lambda s: _args.check_real(
            s, "scale_factor", low=0, high=MAX_SCALE, low_open=True))  # fmt: skip
    else:
        if recompute_scale_factor:
            raise ValueError("recompute_scale_factor=True is not meaningful with an explicit size")
        size = _items(size, lambda s: _args.check_int(s, "size", minimum=1, maximum=_args.MAX_SIZE))
    return size, scale_factor


def _per_axis(value: Any, name: str, dims: int, x_shape: tuple[int, ...]) -> tuple[Any, ...]:
    """A scalar repeated ``dims`` times, or a tuple of exactly ``dims`` items."""
    if not isinstance(value, tuple):
        return (value,) * dims
    if len(value) != dims:
        raise ValueError(
            f"{name} must be one value or {dims} (one per spatial axis of x with shape "
            f"{x_shape}), got {value!r} ({len(value)} values)"
        )
    return value


def _plan(
    x: Any, size: Any, scale_factor: Any, mode: Any, align_corners: Any, recompute: Any
) -> _Plan:
    """Validate interpolate's arguments, PyTorch's rules, before anything is allocated."""
    given_factor = scale_factor
    size, scale_factor = check_options(size, scale_factor, mode, align_corners, recompute)
    _args.check_ndim(x, "x", (3, 4, 5), "(N, C, L), (N, C, H, W) or (N, C, D, H, W)")
    shape = _args._shape(x)
    if x.ndim not in _MODES[mode]:
        raise ValueError(
            f"mode={mode!r} needs {_MODES[mode][0]}-D input {_LAYOUT[_MODES[mode][0]]}, "
            f"got x of shape {shape} ({x.ndim}-D)"
        )
    if 0 in shape[2:]:
        raise ValueError(f"x must have non-empty spatial axes, got shape {shape}")
    dims, in_sizes = x.ndim - 2, shape[2:]
    if size is not None:
        out = _per_axis(size, "size", dims, shape)
        scales: tuple[float | None, ...] = (None,) * dims
    else:
        factors = _per_axis(scale_factor, "scale_factor", dims, shape)
        out = tuple(math.floor(n * s) for n, s in zip(in_sizes, factors, strict=True))
        if min(out) < 1:
            raise ValueError(
                f"scale_factor={given_factor!r} gives output size {out} for x of shape {shape}; "
                "each must be at least 1"
            )
        # PyTorch's kernels use 1 / scale_factor unless asked to recompute it from the sizes
        scales = (None,) * dims if recompute else factors
    if any(m > MAX_SCALE * n for n, m in zip(in_sizes, out, strict=True)):
        raise ValueError(
            f"the output size must be at most {MAX_SCALE} times x's along each axis, got "
            f"{out} for x of shape {shape}"
        )
    if math.prod((*shape[:2], *out)) > _args.MAX_SIZE:  # PyTorch's 32-bit index limit on CUDA
        raise ValueError(
            f"the output must hold at most {_args.MAX_SIZE} elements, got shape "
            f"{(*shape[:2], *out)} for x of shape {shape}"
        )
    return _Plan(mode, bool(align_corners), in_sizes, out, scales)


def _taps(xp: Any, plan: _Plan, axis: int, dtype: Any) -> Taps | None:
    """The taps of spatial ``axis``; None where the axis is copied unchanged."""
    n, m, scale = plan.in_sizes[axis], plan.out_sizes[axis], plan.scales[axis]
    if plan.mode in ("nearest", "nearest-exact"):
        exact = plan.mode == "nearest-exact"
        shortcuts = not exact and len(plan.in_sizes) == 2
        return nearest_taps(xp, n, m, scale, exact, shortcuts)
    if plan.mode == "area":
        return None if m == n else area_taps(xp, n, m, dtype)
    if plan.mode == "bicubic":
        return cubic_taps(xp, n, m, scale, plan.align_corners, dtype)
    return linear_taps(xp, n, m, scale, plan.align_corners, dtype)


def _check_grad(grad_out: Any, expected: tuple[int, ...]) -> None:
    """Raise unless grad_out is an array of the forward output's shape ``expected``."""
    if not hasattr(grad_out, "shape"):
        raise TypeError(f"grad_out must be an array, got {type(grad_out).__name__}")
    _args.check_shape(grad_out, "grad_out", expected)


def _setup(x: Any, size: Any, scale_factor: Any, mode: Any, align: Any, recompute: Any) -> Any:
    plan = _plan(x, size, scale_factor, mode, align, recompute)
    xp = array_namespace(x)
    return plan, xp, _args.float_dtype(xp, x=x)


@dispatch("x")
def interpolate(
    x: Any,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    *,
    backend: str | None = None,
) -> Any:
    """Resize the spatial axes of x by sampling or averaging, PyTorch's rules exactly.

    Parameters
    ----------
    x : array, shape (N, C, L), (N, C, H, W) or (N, C, D, H, W)
        Float32 or float64 (integers are promoted to float32).
    size : int or sequence of int, optional
        Output spatial size, one value per spatial axis or one for all.
    scale_factor : float or sequence of float, optional
        Multiplier of the spatial size: ``out = floor(in * scale_factor)``.
        Exactly one of ``size`` and ``scale_factor`` is given; the output may
        be at most 1024 times x along each axis (``MAX_SCALE``) and hold at
        most ``2**31 - 1`` elements.
    mode : str, default "nearest"
        Which input positions an output reads, per axis (``o`` an output index,
        ``step = 1 / scale_factor`` when scale_factor is given and
        recompute_scale_factor is not True, else ``in / out``):

        - "nearest": ``floor(o * step)`` (computed in float32 as PyTorch does,
          see Notes);
        - "nearest-exact": ``floor((o + 0.5) * step)``, the pixel centres';
        - "linear" (3-D), "bilinear" (4-D), "trilinear" (5-D): the two inputs
          around the source coordinate ``(o + 0.5) * step - 0.5`` (clamped at 0),
          weighted by distance;
        - "bicubic" (4-D): four inputs around the same coordinate (not clamped),
          clamped to the border, with Keys' cubic weights for ``A = -0.75``;
        - "area": the adaptive average pooling windows
          ``[floor(o * in / out), ceil((o + 1) * in / out))``.
    align_corners : bool, optional
        For the linear and cubic modes only (None means False): True puts the
        corner pixels' centres on each other, source coordinate
        ``o * (in - 1) / (out - 1)``, and ignores scale_factor's step.
    recompute_scale_factor : bool, optional
        True computes the step from the sizes (``in / out``) although
        scale_factor was given; not allowed with ``size``.
    backend : str, optional
        None computes where x lives; a name moves x there first.

    Returns
    -------
    array, shape (N, C, *out)
        Same float dtype as x.

    Raises
    ------
    ValueError
        For both or neither of size and scale_factor, align_corners with a
        non-interpolating mode, a mode that does not take x's number of axes,
        or an output size below 1.

    Notes
    -----
    PyTorch's 2-D nearest kernel copies an axis whose size does not change and
    reads ``o // 2`` along one whose size exactly doubles, even when a
    scale_factor such as 1.2 or 2.1 gives those sizes; its 1-D and 3-D kernels
    apply the formula. Both are followed, so the forward matches PyTorch's in
    every case. The gradient is always the forward's own: in those cases (and
    for bicubic of unchanged size with a scale_factor other than 1) PyTorch's
    backward takes the shortcut its forward did not, and fails its own gradcheck.

    See Also
    --------
    torch.nn.functional.interpolate, adaptive_avg_pool2d, pixel_shuffle

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[[0.0, 1.0, 2.0]]])
    >>> interpolate(x, scale_factor=2)
    array([[[0., 0., 1., 1., 2., 2.]]])
    >>> interpolate(x, size=5, mode="linear", align_corners=True)
    array([[[0. , 0.5, 1. , 1.5, 2. ]]])
    """
    plan, xp, dtype = _setup(x, size, scale_factor, mode, align_corners, recompute_scale_factor)
    y = x.astype(dtype, copy=False)
    # shrinking axes first: the later gathers then work on less
    ratio = {a: plan.out_sizes[a] / plan.in_sizes[a] for a in range(len(plan.in_sizes))}
    for axis in sorted(ratio, key=ratio.__getitem__):
        taps = _taps(xp, plan, axis, dtype)
        if taps is not None:
            y = along(xp, y, axis + 2, taps)
    return y.copy() if y is x else y


@dispatch("grad_out", "x")
def interpolate_backward(
    grad_out: Any,
    x: Any,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`interpolate` with respect to x.

    Each input position collects ``weight * grad_out`` from every output that
    reads it, axis by axis: the forward's taps transposed and gathered, no
    scatter-add.

    Parameters
    ----------
    grad_out : array, shape of ``interpolate(x, ...)``
    x : array
        The forward's input; only its shape and dtype are read.
    size, scale_factor, mode, align_corners, recompute_scale_factor, backend
        As given to :func:`interpolate`.

    Returns
    -------
    array, shape of x
    """
    plan, xp, _ = _setup(x, size, scale_factor, mode, align_corners, recompute_scale_factor)
    _check_grad(grad_out, plan.out_shape(_args._shape(x)))
    dtype = _args.float_dtype(xp, grad_out=grad_out, x=x)
    g = grad_out.astype(dtype, copy=False)
    ratio = {a: plan.in_sizes[a] / plan.out_sizes[a] for a in range(len(plan.in_sizes))}
    for axis in sorted(ratio, key=ratio.__getitem__):
        taps = _taps(xp, plan, axis, dtype)
        if taps is not None:
            g = along(xp, g, axis + 2, transpose(xp, taps, plan.in_sizes[axis]))
    return g.copy() if g is grad_out else g


# --------------------------------------------------------------------------- pixel shuffle


def _check_factor(x: Any, factor: Any, name: str) -> tuple[int, tuple[int, ...]]:
    """Validate x (at least 3-D) and the factor; return the factor and x's shape."""
    r = _args.check_int(factor, name, minimum=1, maximum=_args.MAX_SIZE)
    if not hasattr(x, "ndim"):
        raise TypeError(f"x must be an array, got {type(x).__name__}")
    shape = _args._shape(x)
    if x.ndim < 3:
        raise ValueError(
            f"x must have shape (*, C, H, W) with at least 3 axes, got shape {shape} "
            f"(ndim={x.ndim})"
        )
    return r, shape


def _shuffled_shape(x: Any, r: int) -> tuple[int, ...]:
    r, (*lead, c, h, w) = _check_factor(x, r, "upscale_factor")
    if c % (r * r):
        raise ValueError(
            f"x's channel axis (-3) must be divisible by upscale_factor**2 = {r * r}, got "
            f"{c} channels in x of shape {_args._shape(x)}"
        )
    return (*lead, c // (r * r), h * r, w * r)


def _unshuffled_shape(x: Any, r: int) -> tuple[int, ...]:
    r, (*lead, c, h, w) = _check_factor(x, r, "downscale_factor")
    for axis, length in (("height (-2)", h), ("width (-1)", w)):
        if length % r:
            raise ValueError(
                f"x's {axis} must be divisible by downscale_factor={r}, got {length} "
                f"in x of shape {_args._shape(x)}"
            )
    return (*lead, c * r * r, h // r, w // r)


def _shuffle(a: Any, r: int, shape: tuple[int, ...]) -> Any:
    """(*, C*r*r, H, W) -> ``shape`` (*, C, H*r, W*r): channel ``c*r*r + i*r + j`` to (i, j)."""
    *lead, c, h, w = a.shape
    b = len(lead)
    a = a.reshape(*lead, c // (r * r), r, r, h, w)
    a = a.transpose(*range(b), b, b + 3, b + 1, b + 4, b + 2)  # (*, C, H, r, W, r)
    return a.reshape(shape)


def _unshuffle(a: Any, r: int, shape: tuple[int, ...]) -> Any:
    """(*, C, H*r, W*r) -> ``shape`` (*, C*r*r, H, W), the inverse of :func:`_shuffle`."""
    *lead, c, h, w = a.shape
    b = len(lead)
    a = a.reshape(*lead, c, h // r, r, w // r, r)
    a = a.transpose(*range(b), b, b + 2, b + 4, b + 1, b + 3)  # (*, C, r, r, H, W)
    return a.reshape(shape)


def _as_float(x: Any) -> Any:
    return x.astype(_args.float_dtype(array_namespace(x), x=x), copy=False)


def _permuted_back(grad_out: Any, x: Any, out_shape: Any, permute: Any, r: int) -> Any:
    """grad_out, of the forward's ``out_shape``, permuted back to x's shape by ``permute``."""
    _check_grad(grad_out, out_shape)
    dtype = _args.float_dtype(array_namespace(x), grad_out=grad_out, x=x)
    return permute(grad_out.astype(dtype, copy=False), r, _args._shape(x))


@dispatch("x")
def pixel_shuffle(x: Any, upscale_factor: int, *, backend: str | None = None) -> Any:
    """Rearrange (*, C * r**2, H, W) into (*, C, H * r, W * r), r = upscale_factor.

    Output ``[..., c, h * r + i, w * r + j]`` is input ``[..., c * r**2 + i * r + j, h, w]``:
    the sub-pixel convolution's upsampling (Shi et al., 2016).

    Parameters
    ----------
    x : array, shape (*, C * r**2, H, W)
        At least 3 axes; the channel axis divisible by ``r**2``.
    upscale_factor : int
        ``r``, positive.
    backend : str, optional
        None computes where x lives; a name moves x there first.

    Returns
    -------
    array, shape (*, C, H * r, W * r)

    See Also
    --------
    torch.nn.functional.pixel_shuffle, pixel_unshuffle (its inverse)

    Examples
    --------
    >>> import numpy as np
    >>> pixel_shuffle(np.arange(4.0).reshape(4, 1, 1), 2)
    array([[[0., 1.],
            [2., 3.]]])
    """
    shape = _shuffled_shape(x, upscale_factor)
    return _shuffle(_as_float(x), upscale_factor, shape)


@dispatch("grad_out", "x")
def pixel_shuffle_backward(
    grad_out: Any, x: Any, upscale_factor: int, *, backend: str | None = None
) -> Any:
    """Return the gradient of :func:`pixel_shuffle`: grad_out pixel-unshuffled to x's shape.

    x, the forward's input, gives the shape and dtype only.
    """
    shape = _shuffled_shape(x, upscale_factor)
    return _permuted_back(grad_out, x, shape, _unshuffle, upscale_factor)


@dispatch("x")
def pixel_unshuffle(x: Any, downscale_factor: int, *, backend: str | None = None) -> Any:
    """Rearrange (*, C, H * r, W * r) into (*, C * r**2, H, W), r = downscale_factor.

    The inverse of :func:`pixel_shuffle`: output ``[..., c * r**2 + i * r + j, h, w]``
    is input ``[..., c, h * r + i, w * r + j]``.

    Parameters
    ----------
    x : array, shape (*, C, H * r, W * r)
        At least 3 axes; height and width divisible by ``r``.
    downscale_factor : int
        ``r``, positive.
    backend : str, optional
        None computes where x lives; a name moves x there first.

    Returns
    -------
    array, shape (*, C * r**2, H, W)

    See Also
    --------
    torch.nn.functional.pixel_unshuffle, pixel_shuffle
    """
    shape = _unshuffled_shape(x, downscale_factor)
    return _unshuffle(_as_float(x), downscale_factor, shape)


@dispatch("grad_out", "x")
def pixel_unshuffle_backward(
    grad_out: Any, x: Any, downscale_factor: int, *, backend: str | None = None
) -> Any:
    """Return the gradient of :func:`pixel_unshuffle`: grad_out pixel-shuffled to x's shape.

    x, the forward's input, gives the shape and dtype only.
    """
    shape = _unshuffled_shape(x, downscale_factor)
    return _permuted_back(grad_out, x, shape, _shuffle, downscale_factor)
