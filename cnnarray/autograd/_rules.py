"""How the ops of :mod:`cnnarray.ops` take Tensors: unwrap, run, record, and call the
op's own ``*_backward`` on the way back.

:func:`cnnarray.backend.dispatch` hands a call whose array arguments include
a Tensor to :func:`call_op` (the ``__cnnarray_function__`` protocol, in the
spirit of NumPy's ``__array_function__``), so the ops themselves know nothing
of Tensors. Each rule below names the arguments the op is differentiable in
and maps the output's gradient to theirs with the matching ``*_backward``
call: one definition of each gradient, in ``ops``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

from .. import ops
from . import _tensor as _t
from ._graph import CallNode

__all__ = ["call_op", "differentiable", "has_rule"]

Backward = Callable[[Any, tuple[bool, ...], dict[str, Any], Any], tuple[Any, ...]]
Prepare = Callable[[dict[str, Any]], None]


class _Rule(NamedTuple):
    names: tuple[str, ...]  # the arguments the op is differentiable in, in order
    backward: Backward  # (grad, needs, arguments, output) -> one gradient per name
    owns: bool  # the gradients are fresh arrays (see Node.owns)
    # fills in, before the op runs, an argument the backward needs and the op would
    # otherwise make and drop (dropout's random mask); None for most ops
    prepare: Prepare | None = None
    # the array arguments the backward reads (None: all); the others are not kept
    saves: tuple[str, ...] | None = None
    keeps_out: bool = True  # whether the backward reads the op's output


class _Signature:
    """An op's arguments by name with its defaults, and which of them are arrays; binding
    by hand is faster than ``inspect.Signature.bind`` (a few microseconds per op call,
    which add up over a training step)."""

    __slots__ = ("arrays", "defaults", "name", "positional")

    def __init__(self, op: Callable[..., Any]) -> None:
        params = inspect.signature(op).parameters.values()
        self.name = op.__name__
        self.positional = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
        self.defaults = {p.name: p.default for p in params if p.default is not p.empty}
        # the arguments dispatch treats as arrays: only these may be Tensors
        self.arrays: tuple[str, ...] = getattr(op, "__cnnarray_arrays__", self.positional)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if len(args) > len(self.positional):
            raise TypeError(
                f"{self.name}() takes {len(self.positional)} positional arguments but "
                f"{len(args)} were given"
            )
        arguments = self.defaults.copy()
        arguments.update(zip(self.positional, args, strict=False))  # fewer args than names
        if kwargs:
            arguments.update(kwargs)
        return arguments


_RULES: dict[Callable[..., Any], _Rule] = {}
_SIGNATURES: dict[Callable[..., Any], _Signature] = {}


def differentiable(
    op: Callable[..., Any],
    *names: str,
    owns: bool = True,
    prepare: Prepare | None = None,
    saves: tuple[str, ...] | None = None,
    keeps_out: bool = True,
) -> Callable[[Backward], Backward]:
    """Decorator: register the backward rule of ``op`` over its arguments ``names``.

    ``prepare(arguments)``, if given, runs on the bound arguments (arrays, not
    Tensors) before every call of the op through a Tensor, and may set some of
    them: what the op would draw at random, so that the backward sees it too.

    ``saves`` names the array arguments the backward reads (None: all of
    them), and ``keeps_out`` whether it reads the output (False keeps only the
    side outputs of a tuple, its values None): the tape keeps only
    those, and its rule sees None for the others, so an activation the forward
    no longer holds is freed before the backward (as PyTorch saves only the
    tensors a backward needs).
    """

    def decorate(backward: Backward) -> Backward:
        _RULES[op] = _Rule(names, backward, owns, prepare, saves, keeps_out)
        return backward

    return decorate


def has_rule(op: Callable[..., Any]) -> bool:
    """Whether ``op`` can be recorded on the tape."""
    return op in _RULES


def call_op(
    op: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> _t.Tensor | tuple[_t.Tensor | None, ...]:
    """Run ``op`` on the arrays of its Tensor arguments; return a Tensor, recorded when
    grad mode is on and a differentiable argument requires grad (a tuple of Tensors, or
    None, for the ``*_backward`` ops, which record nothing)."""
    signature = _SIGNATURES.get(op)
    if signature is None:
        signature = _SIGNATURES[op] = _Signature(op)
    arguments = signature.bind(args, kwargs)
    rule = _RULES.get(op)
    record = _t.is_grad_enabled()
    requires = False
    given: dict[str, _t.Tensor] = {}
    for name in signature.arrays:
        value = arguments.get(name)
        if isinstance(value, _t.Tensor):
            if record and value.requires_grad:
                if rule is None or name not in rule.names:
                    raise TypeError(
                        f"{op.__name__} has no gradient with respect to {name}, which requires "
                        f"grad; pass {name}.detach() or call it under cnnarray.no_grad()"
                    )
                requires = True
            given[name] = value
            arguments[name] = value.data
    if requires and arguments.get("backend") is not None:
        raise ValueError(
            f"{op.__name__}: backend= cannot move Tensors that require grad; move them first "
            "with tensor.to(...)"
        )
    if rule is not None and rule.prepare is not None:
        rule.prepare(arguments)
    out = op(**arguments)
    if not requires:
        if isinstance(out, tuple):  # the *_backward ops: (grad_x, grad_weight, grad_bias)
            return tuple(None if o is None else _t.Tensor(o) for o in out)
        return _t.Tensor(out)
    assert rule is not None
    inputs = tuple([given.get(n) for n in rule.names])
    if rule.saves is not None:
        for name in signature.arrays:
            if name not in rule.saves:
                arguments[name] = None
    # without the output, a tuple's side outputs (batch norm's statistics) are still kept
    kept = out if rule.keeps_out else (None, *out[1:]) if isinstance(out, tuple) else None
    node = CallNode(signature.name, rule.backward, inputs, rule.owns, arguments, kept)
    if isinstance(out, tuple):  # (values, indices, ...): only the values carry a gradient
        return (_t.Tensor._recorded(out[0], node), *(_t.Tensor(o) for o in out[1:]))
    return _t.Tensor._recorded(out, node)


@differentiable(ops.conv2d, "x", "weight", "bias", keeps_out=False)
def _conv2d(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return ops.conv2d_backward(
        g, a["x"], a["weight"], a["bias"], a["stride"], a["padding"], a["dilation"], a["groups"],
        workspace_limit=a["workspace_limit"], input_grad=needs[0], cache=a["cache"],
    )  # fmt: skip


@differentiable(ops.linear, "x", "weight", "bias", keeps_out=False)
def _linear(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return ops.linear_backward(g, a["x"], a["weight"], a["bias"])


@differentiable(ops.flatten, "x", owns=False)  # the gradient is a view of g
def _flatten(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return (ops.flatten_backward(g, a["x"], a["start_axis"], a["end_axis"]),)


# out > 0 exactly where x > 0 (NaN in both or neither): the output is what the backward
# keeps, as it is the next layer's input anyway, and x (a batch norm's output) is freed
@differentiable(ops.relu, "x", saves=())
def _relu(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return (ops.relu_backward(g, out),)


@differentiable(ops.leaky_relu, "x")
def _leaky_relu(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return (ops.leaky_relu_backward(g, a["x"], a["negative_slope"]),)


@differentiable(ops.sigmoid, "x")
def _sigmoid(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return (ops.sigmoid_backward(g, a["x"]),)


@differentiable(ops.tanh, "x")
def _tanh(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return (ops.tanh_backward(g, a["x"]),)


@differentiable(ops.softmax, "x")
def _softmax(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return (ops.softmax_backward(g, a["x"], a["axis"]),)


@differentiable(ops.log_softmax, "x")
def _log_softmax(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    return (ops.log_softmax_backward(g, a["x"], a["axis"]),)


@differentiable(ops.batch_norm2d, "x", "weight", "bias", keeps_out=False)
def _batch_norm2d(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
    # In training mode the forward updated the running statistics in place, but
    # normalised with the batch's: returned with return_stats (as the layers ask),
    # else the backward computes them again from x.
    stats = {"mean": out[1], "inv_std": out[2]} if a["return_stats"] else {}
    return ops.batch_norm2d_backward(g, a["x"], a["running_mean"], a["running_var"], a["weight"],
                                     a["bias"], a["training"], a["eps"], **stats)  # fmt: skip
