"""Tape rules of the normalisation, activation and dropout ops beyond the classic set:
each calls its op's ``*_backward`` (see :mod:`._rules`)."""

from __future__ import annotations

from typing import Any

from .. import _args, ops
from ._rules import differentiable

# Elementwise activations: op -> the keyword arguments its backward takes besides (g, x).
_ELEMENTWISE = {
    ops.hardtanh: ("min_val", "max_val"),
    ops.relu6: (),
    ops.hardsigmoid: (),
    ops.hardswish: (),
    ops.elu: ("alpha",),
    ops.selu: (),
    ops.celu: ("alpha",),
    ops.gelu: ("approximate",),
    ops.silu: (),
    ops.mish: (),
    ops.softplus: ("beta", "threshold"),
}


def _register_elementwise(op: Any, params: tuple[str, ...]) -> None:
    backward = getattr(ops, op.__name__ + "_backward")

    @differentiable(op, "x")
    def rule(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
        return (backward(g, a["x"], **{k: a[k] for k in params}),)


for _op, _params in _ELEMENTWISE.items():
    _register_elementwise(_op, _params)


@differentiable(ops.prelu, "x", "weight")
def _prelu(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return ops.prelu_backward(g, a["x"], a["weight"])


@differentiable(ops.batch_norm, "x", "weight", "bias", keeps_out=False)
def _batch_norm(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    # As batch_norm2d's rule: the statistics the forward normalised with, if it returned them.
    stats = {"mean": out[1], "inv_std": out[2]} if a["return_stats"] else {}
    return ops.batch_norm_backward(g, a["x"], a["running_mean"], a["running_var"], a["weight"],
                                   a["bias"], a["training"], a["eps"], **stats)  # fmt: skip


@differentiable(ops.group_norm, "x", "weight", "bias")
def _group_norm(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return ops.group_norm_backward(g, a["x"], a["num_groups"], a["weight"], a["bias"], a["eps"])


@differentiable(ops.layer_norm, "x", "weight", "bias")
def _layer_norm(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return ops.layer_norm_backward(g, a["x"], a["normalized_shape"], a["weight"], a["bias"],
                                   a["eps"])  # fmt: skip


@differentiable(ops.instance_norm, "x", "weight", "bias")
def _instance_norm(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    # The forward may have updated the running statistics in place; with
    # use_input_stats it did not normalise with them, and without it they are unchanged.
    return ops.instance_norm_backward(g, a["x"], a["running_mean"], a["running_var"], a["weight"],
                                      a["bias"], a["use_input_stats"], a["eps"])  # fmt: skip


# Dropout: the mask is drawn before the op runs (prepare), so the op multiplies by it and
# the backward by the same one. One draw per element, or per channel for the
# trailing 1, 2, 3 spatial axes.
_DROPOUT = {ops.dropout: 0, ops.dropout1d: 1, ops.dropout2d: 2, ops.dropout3d: 3}


def _register_dropout(op: Any, spatial_dims: int) -> None:
    def prepare(a: dict[str, Any]) -> None:
        drops = _args.check_bool(a["training"], "training") and a["mask"] is None
        if drops and _args.check_real(a["p"], "p", low=0, high=1) > 0:
            a["mask"] = ops.dropout_mask(a["x"], a["p"], spatial_dims, generator=a["generator"])

    @differentiable(op, "x", prepare=prepare)
    def rule(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
        return (ops.dropout_backward(g, a["mask"]),)


for _op, _dims in _DROPOUT.items():
    _register_dropout(_op, _dims)
