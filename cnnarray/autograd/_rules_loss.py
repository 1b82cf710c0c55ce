"""Autograd rules of the losses: each calls the loss's own ``*_backward``.

Every loss's backward takes the forward's arguments and ``grad_out``, so one
rule fits them all; the distance losses are differentiable in ``target`` too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import ops
from ._rules import differentiable


def _loss_rule(op: Callable[..., Any], *names: str) -> None:
    """Register ``op``'s rule over ``names``: ``<op>_backward(**arguments, grad_out=g)``."""
    backward = getattr(ops, f"{op.__name__}_backward")

    @differentiable(op, *names)
    def rule(g: Any, needs: tuple[bool, ...], a: dict[str, Any], out: Any) -> tuple[Any, ...]:
        grads = backward(**{k: v for k, v in a.items() if k != "backend"}, grad_out=g)
        return grads if isinstance(grads, tuple) else (grads,)


_loss_rule(ops.cross_entropy, "logits")
_loss_rule(ops.nll_loss, "input")
_loss_rule(ops.binary_cross_entropy, "input")
_loss_rule(ops.binary_cross_entropy_with_logits, "input")
_loss_rule(ops.kl_div, "input")
for _op in (ops.mse_loss, ops.l1_loss, ops.smooth_l1_loss, ops.huber_loss):
    _loss_rule(_op, "input", "target")
