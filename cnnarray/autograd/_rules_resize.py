"""Autograd rules of the resizing ops: interpolate, pixel_shuffle and pixel_unshuffle.

Each calls the op's own ``*_backward`` (see :mod:`._rules`).
"""

from __future__ import annotations

from typing import Any

from .. import ops
from ._rules import differentiable

_INTERPOLATE_ARGS = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor")


@differentiable(ops.interpolate, "x")
def _interpolate(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return (ops.interpolate_backward(g, a["x"], **{k: a[k] for k in _INTERPOLATE_ARGS}),)


# A factor of 1 makes the rearrangement a reshape, whose result may be a view of g.
@differentiable(ops.pixel_shuffle, "x", owns=False)
def _pixel_shuffle(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return (ops.pixel_shuffle_backward(g, a["x"], a["upscale_factor"]),)


@differentiable(ops.pixel_unshuffle, "x", owns=False)
def _pixel_unshuffle(
    g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any
) -> tuple[Any, ...]:
    return (ops.pixel_unshuffle_backward(g, a["x"], a["downscale_factor"]),)
