"""Autograd rules of the pooling ops: each calls the op's own ``*_backward``.

With ``return_indices`` a max pool returns ``(values, indices)``; only the
values carry a gradient (see :func:`cnnarray.autograd._rules.call_op`).
"""

from __future__ import annotations

from typing import Any

from .. import ops
from ._rules import differentiable


def _max_pool_rule(backward: Any) -> Any:
    def rule(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
        values = out[0] if isinstance(out, tuple) else out
        return (backward(g, a["x"], a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                         a["ceil_mode"], output=values),)  # fmt: skip

    return rule


for _op, _backward in (
    (ops.max_pool1d, ops.max_pool1d_backward),
    (ops.max_pool2d, ops.max_pool2d_backward),
    (ops.max_pool3d, ops.max_pool3d_backward),
):
    differentiable(_op, "x")(_max_pool_rule(_backward))


@differentiable(ops.avg_pool1d, "x")
def _avg_pool1d(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return (ops.avg_pool1d_backward(g, a["x"], a["kernel_size"], a["stride"], a["padding"],
                                    a["ceil_mode"], a["count_include_pad"]),)  # fmt: skip


def _avg_pool_rule(backward: Any) -> Any:
    def rule(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
        return (backward(g, a["x"], a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                         a["count_include_pad"], a["divisor_override"]),)  # fmt: skip

    return rule


for _op, _backward in (
    (ops.avg_pool2d, ops.avg_pool2d_backward),
    (ops.avg_pool3d, ops.avg_pool3d_backward),
):
    differentiable(_op, "x")(_avg_pool_rule(_backward))


def _adaptive_avg_rule(backward: Any) -> Any:
    def rule(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
        return (backward(g, a["x"], a["output_size"]),)

    return rule


def _adaptive_max_rule(backward: Any) -> Any:
    def rule(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
        indices = out[1] if isinstance(out, tuple) else None
        return (backward(g, a["x"], a["output_size"], indices=indices),)

    return rule


for _dims in (1, 2, 3):
    for _kind, _make in (("avg", _adaptive_avg_rule), ("max", _adaptive_max_rule)):
        _name = f"adaptive_{_kind}_pool{_dims}d"
        differentiable(getattr(ops, _name), "x")(_make(getattr(ops, f"{_name}_backward")))


def _max_unpool_rule(backward: Any) -> Any:
    def rule(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
        return (backward(g, a["x"], a["indices"], a["kernel_size"], a["stride"], a["padding"],
                         a["output_size"]),)  # fmt: skip

    return rule


for _op, _backward in (
    (ops.max_unpool1d, ops.max_unpool1d_backward),
    (ops.max_unpool2d, ops.max_unpool2d_backward),
    (ops.max_unpool3d, ops.max_unpool3d_backward),
):
    differentiable(_op, "x")(_max_unpool_rule(_backward))


def _lp_pool_rule(backward: Any) -> Any:
    def rule(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
        return (backward(g, a["x"], a["norm_type"], a["kernel_size"], a["stride"],
                         a["ceil_mode"]),)  # fmt: skip

    return rule


for _op, _backward in (
    (ops.lp_pool1d, ops.lp_pool1d_backward),
    (ops.lp_pool2d, ops.lp_pool2d_backward),
    (ops.lp_pool3d, ops.lp_pool3d_backward),
):
    differentiable(_op, "x")(_lp_pool_rule(_backward))
