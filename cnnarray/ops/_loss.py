"""What the loss modules share: the reduction of per-element losses and the scale of
their gradient.

Every loss reduces its per-element losses ``l`` in one of PyTorch's ways:
"none" keeps them, "sum" adds them, "mean" divides the sum by a count (the
number of elements, or the total class weight of the counted targets for
:func:`cross_entropy` and :func:`nll_loss`). The backward of each then
multiplies ``d l / d input`` by the gradient of the reduced output with respect
to ``l``: ``grad_out`` ("none", shape of ``l``), ``grad_out`` ("sum") or
``grad_out / count`` ("mean"), with ``grad_out`` 1 when not given.
"""

from __future__ import annotations

from typing import Any

from .. import _args
from ..backend import array_namespace


def reduce(xp: Any, losses: Any, reduction: str, count: Any = None) -> Any:
    """Reduce per-element ``losses``; "mean" divides by ``count`` (default their number).

    A count of exactly 0 (no element, or every target ignored) gives NaN, as
    PyTorch's 0/0, without a division warning.
    """
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if count is None:
        count = losses.size
        if count:
            return losses.mean()
    if isinstance(count, int | float) and count == 0:
        return xp.asarray(float("nan"), dtype=losses.dtype)
    return losses.sum() / count


def check_grad_out(grad_out: Any, reduction: str, shape: tuple[int, ...]) -> None:
    """Raise ValueError unless ``grad_out`` fits the output: ``shape`` for "none", () else."""
    if grad_out is not None:
        _args.check_shape(grad_out, "grad_out", shape if reduction == "none" else ())


def grad_scale(xp: Any, grad_out: Any, reduction: str, dtype: Any, count: Any = 1) -> Any:
    """``d output / d l``: ``grad_out`` (1 when None), divided by ``count`` for "mean".

    A scalar (a Python float or a 0-d array) for "mean" and "sum"; ``grad_out`` in
    ``dtype`` for "none" (shape of the per-element losses).
    """
    if reduction == "none":
        if grad_out is None:
            return 1.0
        return grad_out.astype(dtype, copy=False)
    scale = 1.0 if grad_out is None else grad_out.astype(dtype, copy=False)
    if reduction == "mean":
        # every counted target ignored: the gradient is 0 everywhere, not 0/0
        is_zero = isinstance(count, int | float) and count == 0
        scale = scale / (1 if is_zero else count)
    return scale


def _check_broadcasts(a: Any, name: str, shape: tuple[int, ...]) -> None:
    """Raise ValueError unless ``a`` broadcasts to ``shape`` (without growing it)."""
    a_shape = tuple(a.shape)
    fits = len(a_shape) <= len(shape) and all(
        m in (1, n) for m, n in zip(a_shape[::-1], shape[::-1], strict=False)
    )
    if not fits:
        raise ValueError(f"{name} must broadcast to the shape of input, {shape}, got {a_shape}")


def check_pair(
    input: Any,
    target: Any,
    reduction: Any,
    grad_out: Any = None,
    reductions: tuple[str, ...] = ("mean", "sum", "none"),
    **broadcast: Any,
) -> tuple[Any, Any]:
    """Validate an elementwise loss of ``input`` against a ``target`` of its shape.

    ``broadcast`` names optional arrays (``weight``, ``pos_weight``) that must
    broadcast to input's shape. Return ``xp`` and the common float dtype.
    """
    if reduction not in reductions:
        listed = ", ".join(repr(r) for r in reductions[:-1]) + f" or {reductions[-1]!r}"
        raise ValueError(f"reduction must be {listed}, got {reduction!r}")
    for name, a in (("input", input), ("target", target)):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    _args.check_same_shape(target, "target", input, "input")
    shape = tuple(input.shape)
    for name, a in broadcast.items():
        if a is not None:
            _check_broadcasts(a, name, shape)
    check_grad_out(grad_out, reduction, shape)
    xp = array_namespace(input)
    return xp, _args.float_dtype(xp, input=input, target=target, **broadcast, grad_out=grad_out)
