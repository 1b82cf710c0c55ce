"""Autograd rules of the convolution family: pad, conv1d/3d and the transposed
convolutions, each calling its op's ``*_backward`` (see :mod:`._rules`)."""

from __future__ import annotations

from typing import Any

from .. import ops
from ._rules import differentiable


@differentiable(ops.pad, "x")
def _pad(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return (ops.pad_backward(g, a["x"], a["pad"], a["mode"]),)


@differentiable(ops.conv1d, "x", "weight", "bias")
def _conv1d(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return ops.conv1d_backward(
        g, a["x"], a["weight"], a["bias"], a["stride"], a["padding"], a["dilation"], a["groups"],
        workspace_limit=a["workspace_limit"], input_grad=needs[0],
    )  # fmt: skip


@differentiable(ops.conv3d, "x", "weight", "bias")
def _conv3d(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return ops.conv3d_backward(
        g, a["x"], a["weight"], a["bias"], a["stride"], a["padding"], a["dilation"], a["groups"],
        workspace_limit=a["workspace_limit"], input_grad=needs[0],
    )  # fmt: skip


def _transposed_rule(op: Any, backward: Any) -> None:
    """Register conv_transpose{1,2,3}d's rule: its backward, with the op's own arguments."""

    @differentiable(op, "x", "weight", "bias")
    def _rule(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
        return backward(
            g, a["x"], a["weight"], a["bias"], a["stride"], a["padding"], a["output_padding"],
            a["groups"], a["dilation"], workspace_limit=a["workspace_limit"], input_grad=needs[0],
        )  # fmt: skip


for _op, _backward in (
    (ops.conv_transpose1d, ops.conv_transpose1d_backward),
    (ops.conv_transpose2d, ops.conv_transpose2d_backward),
    (ops.conv_transpose3d, ops.conv_transpose3d_backward),
):
    _transposed_rule(_op, _backward)
