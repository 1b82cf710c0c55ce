"""Padding of the last axes, as ``torch.nn.functional.pad``, and its gradient.

Along each padded axis the output reads input position ``src[j]`` (or the
constant, ``-1``), a map that every mode defines on the original size, so
that negative pads (crops) and positive ones combine as PyTorch's do. The map
splits into runs of consecutive, reversed or repeated positions: the forward
copies each run as one slice, and the backward adds each run back as one
slice add (a repeated position, replicate's edge, as one sum), so neither
needs ``add.at``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _args
from ..backend import array_namespace, dispatch

__all__ = ["pad", "pad_backward"]

MODES = ("constant", "reflect", "replicate", "circular")


def _check_pad(shape: tuple[int, ...], pad: Any, mode: Any, value: Any) -> tuple[int, ...]:
    """Validate a call; return the output shape."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if isinstance(pad, str | bytes) or not isinstance(pad, Sequence):
        raise _args.ArgumentTypeError(
            f"pad must be a tuple of ints (left, right, top, bottom, ...), got {pad!r}"
        )
    pad = tuple(_args.check_int(p, "pad", minimum=-_args.MAX_SIZE, maximum=_args.MAX_PADDING)
                for p in pad)  # fmt: skip
    axes = len(pad) // 2
    if len(pad) % 2 or axes > len(shape):
        raise ValueError(
            f"pad must hold an even number of ints, at most 2 * x.ndim = {2 * len(shape)}, "
            f"got {len(pad)} for x of shape {shape}"
        )
    if mode == "constant":
        _args.check_real(value, "value")
    else:
        if value is not None and value != 0:
            raise ValueError(f"mode={mode!r} takes no value, got value={value!r}")
        if not 1 <= axes <= 3 or len(shape) not in (axes + 1, axes + 2):
            raise ValueError(
                f"mode={mode!r} pads the last 1, 2 or 3 axes of an input with one or two "
                f"leading (batch, channel) axes: pad of length {len(pad)} needs x with "
                f"{axes + 1} or {axes + 2} axes, got shape {shape}"
            )
    out = list(shape)
    for k in range(axes):
        axis, (left, right) = len(shape) - 1 - k, pad[2 * k : 2 * k + 2]
        size = shape[axis]
        out[axis] = size + left + right
        if mode == "reflect" and (left >= size or right >= size):
            raise ValueError(
                f"mode='reflect' needs pads smaller than the axis they pad, got pad "
                f"({left}, {right}) for axis {axis} of size {size} (x of shape {shape})"
            )
        kept = size + min(left, 0) + min(right, 0)  # circular wraps what the crops keep
        if mode == "circular" and (left > kept or right > kept or kept < 1):
            raise ValueError(
                f"mode='circular' needs pads at most the size of the axis they pad after the "
                f"negative pads' crops (it wraps once), got pad ({left}, {right}) for axis "
                f"{axis} of size {size}, {kept} after cropping (x of shape {shape})"
            )
        if out[axis] < (0 if mode == "constant" else 1) or (mode != "constant" and size < 1):
            raise ValueError(
                f"pad ({left}, {right}) leaves axis {axis} of x with shape {shape} with "
                f"{out[axis]} elements; mode={mode!r} needs at least "
                f"{0 if mode == 'constant' else 1}"
            )
    _args.check_map_size(out[len(shape) - axes :], shape, pad=pad)
    return tuple(out)


def _source(size: int, left: int, out: int, mode: str) -> list[int]:
    """Input position read by each output position along one axis (-1: the constant).

    Reflect, replicate and constant are defined on the whole axis; circular, as in
    PyTorch, wraps within what the negative pads keep (``kept`` from ``low``)."""
    low, right = max(-left, 0), out - size - left
    kept = size - low - max(-right, 0)
    src = []
    for j in range(out):
        p = j - left
        if mode == "circular":
            p = low + (j - max(left, 0)) % kept
        elif mode == "reflect":
            p = -p if p < 0 else 2 * (size - 1) - p if p >= size else p
        elif mode == "replicate":
            p = min(max(p, 0), size - 1)
        elif not 0 <= p < size:
            p = -1
        src.append(p)
    return src


def _runs(src: list[int]) -> list[tuple[slice, int, int, int]]:
    """Split a source map into runs ``(outputs, first input, step, length)``, step
    -1, 0 or 1, skipping the constant (-1) entries."""
    runs: list[tuple[slice, int, int, int]] = []
    j = 0
    while j < len(src):
        if src[j] < 0:
            j += 1
            continue
        step, end = 0, j + 1
        if end < len(src) and src[end] >= 0 and abs(src[end] - src[j]) <= 1:
            step = src[end] - src[j]
            while end < len(src) and src[end] >= 0 and src[end] - src[end - 1] == step:
                end += 1
        runs.append((slice(j, end), src[j], step, end - j))
        j = end
    return runs


def _inputs(first: int, step: int, length: int) -> slice:
    """The input positions of a run as a slice (step 0: just ``first``)."""
    if step == 0:
        return slice(first, first + 1)
    last = first + step * (length - 1)
    return slice(first, last + 1) if step > 0 else slice(first, None if last == 0 else last - 1, -1)


def _axis_runs(shape: tuple[int, ...], out_shape: tuple[int, ...], pad: tuple[int, ...],
               mode: str) -> list[tuple[int, list[tuple[slice, int, int, int]]]]:  # fmt: skip
    """``(axis, runs)`` for each padded axis, last axis first."""
    result = []
    for k in range(len(pad) // 2):
        axis = len(shape) - 1 - k
        src = _source(shape[axis], int(pad[2 * k]), out_shape[axis], mode)
        result.append((axis, _runs(src)))
    return result


def _at(axis: int, index: slice) -> tuple[Any, ...]:
    return (slice(None),) * axis + (index,)


@dispatch("x")
def pad(
    x: Any,
    pad: Sequence[int],
    mode: str = "constant",
    value: float | None = 0.0,
    *,
    backend: str | None = None,
) -> Any:
    """Pad (or, with negative pads, crop) the last axes of ``x``.

    Parameters
    ----------
    x : array, any shape (non-constant modes: (N, C, *spatial) or (C, *spatial))
        float32 and float64 are kept; integers are promoted to float32.
    pad : tuple of ints, length 2 * m
        ``(left, right)`` of the last axis, then of the one before, and so on:
        ``(pad_w_left, pad_w_right, pad_h_top, pad_h_bottom, ...)``. Negative
        values remove elements.
    mode : {"constant", "reflect", "replicate", "circular"}, default "constant"
        ``"constant"`` fills with ``value``; ``"reflect"`` mirrors without
        repeating the edge (pads smaller than the axis); ``"replicate"``
        repeats the edge; ``"circular"`` wraps around (pads at most the axis).
        The non-constant modes pad 1 to 3 trailing axes.
    value : float, default 0
        Fill value of ``"constant"``.
    backend : str, optional
        None computes where the inputs live; a name moves them there first.

    Returns
    -------
    array
        Axis ``-1 - k`` has ``size + pad[2k] + pad[2k + 1]`` elements.

    See Also
    --------
    torch.nn.functional.pad, numpy.pad

    Examples
    --------
    >>> import numpy as np, cnnarray
    >>> cnnarray.pad(np.arange(4.0).reshape(1, 4), (2, 1), mode="reflect")
    array([[2., 1., 0., 1., 2., 3., 2.]])
    """
    shape = tuple(int(s) for s in x.shape)
    value = 0.0 if value is None else value  # PyTorch's None: no value given
    out_shape = _check_pad(shape, pad, mode, value)
    xp = array_namespace(x)
    x = x.astype(_args.float_dtype(xp, x=x), copy=False)
    # one axis at a time, last first: each step reads the previous one's result
    for axis, runs in _axis_runs(shape, out_shape, tuple(pad), mode):
        step_shape = x.shape[:axis] + (out_shape[axis],) + x.shape[axis + 1 :]
        y = xp.empty(step_shape, dtype=x.dtype)
        if mode == "constant":
            y[...] = value
        for outputs, first, step, length in runs:
            src = x[_at(axis, _inputs(first, step, length))]
            y[_at(axis, outputs)] = src
        x = y
    return x if len(pad) else x.copy()  # a new array, as for any pad


@dispatch("grad_out")
def pad_backward(
    grad_out: Any,
    x: Any,
    pad: Sequence[int],
    mode: str = "constant",
    *,
    backend: str | None = None,
) -> Any:
    """Return the gradient of :func:`pad` with respect to its input.

    Parameters
    ----------
    grad_out : array, shape of ``pad(x, pad, mode)``
    x : array or tuple of ints
        The padded input, or its shape: only the shape is read.
    pad, mode
        As given to :func:`pad`.

    Returns
    -------
    array, shape of ``x``
        Each input element gets the sum of the gradients of the outputs that
        read it (the edge under ``"replicate"`` many, a cropped one none).
    """
    shape = x.shape if hasattr(x, "shape") else x
    if isinstance(shape, str | bytes) or not isinstance(shape, Sequence):
        raise _args.ArgumentTypeError(
            f"x must be an array or a tuple of ints (its shape), got {shape!r}"
        )
    shape = tuple(_args.check_int(s, "x's shape", minimum=0) for s in shape)
    out_shape = _check_pad(shape, pad, mode, 0.0)
    _args.check_shape(grad_out, "grad_out", out_shape)
    xp = array_namespace(grad_out)
    g = grad_out.astype(_args.float_dtype(xp, grad_out=grad_out), copy=False)
    # undo the forward's steps in reverse: the first padded axis (the last one) last
    for axis, runs in reversed(_axis_runs(shape, out_shape, tuple(pad), mode)):
        gx = xp.zeros(g.shape[:axis] + (shape[axis],) + g.shape[axis + 1 :], dtype=g.dtype)
        for outputs, first, step, length in runs:
            part = g[_at(axis, outputs)]
            if step == 0:  # one input position read by `length` outputs
                part = part.sum(axis=axis, keepdims=True)
            gx[_at(axis, _inputs(first, step, length))] += part
        g = gx
    return g if len(pad) else g.copy()
