"""Autograd rules of the pooling ops: each calls the op's own ``*_backward``.

Every pooling backward takes the gradient and then the op's own arguments by
name, so one rule serves them all. With ``return_indices`` a max pool returns
``(values, indices)`` and only the values carry a gradient (see
:func:`cnnarray.autograd._rules.call_op`); the backward reads the window
maxima (``output=``) or their indices (``indices=``) from the forward's result.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .. import ops
from ._rules import differentiable


def _values(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out


def _indices(out: Any) -> Any:
    return out[1] if isinstance(out, tuple) else None


def _register(name: str, from_output: dict[str, Callable[[Any], Any]] | None = None) -> None:
    """Register the rule of ``ops.<name>`` in x: ``ops.<name>_backward(g, **its arguments)``,
    plus, for each entry of ``from_output``, that keyword computed from the op's result."""
    from_output = from_output or {}
    backward = getattr(ops, f"{name}_backward")
    names = [p for p in inspect.signature(backward).parameters
             if p not in ("grad_out", "backend", *from_output)]  # fmt: skip

    def rule(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
        extra = {key: get(out) for key, get in from_output.items()}
        return (backward(g, **{n: a[n] for n in names}, **extra),)

    differentiable(getattr(ops, name), "x")(rule)


for _dims in (1, 2, 3):
    _register(f"max_pool{_dims}d", {"output": _values, "indices": _indices})
    _register(f"avg_pool{_dims}d")
    _register(f"max_unpool{_dims}d")
    _register(f"adaptive_avg_pool{_dims}d")
    _register(f"adaptive_max_pool{_dims}d", {"indices": _indices})
    _register(f"lp_pool{_dims}d")
