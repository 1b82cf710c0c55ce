"""The recorded graph and the engine that walks it backwards.

A :class:`Node` is one recorded op: its inputs and how to map the output's
gradient to theirs. :func:`run_backward` orders the nodes reachable from the output
so that each runs after every node that uses its output, sums the gradients that
reach each node, and adds those reaching a leaf (a Tensor made by the user, such
as a parameter) into its ``.grad``.

An input is held as the :class:`Node` that made it when it was recorded (see
:func:`edge`), not as its Tensor: the graph needs only where the gradient goes,
and the Tensor's array may then be freed as soon as the forward drops it,
unless the op's rule keeps it for its backward (PyTorch's saved tensors). A
ReLU that saves its output lets the batch norm output before it go, a third
of a ResNet step's peak memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..backend import backend_of

if TYPE_CHECKING:
    from ._tensor import Tensor

__all__ = ["CallNode", "Node", "accumulate", "backward_times", "edge", "run_backward"]

_state = threading.local()  # the backward_times in effect in this thread


def edge(t: Tensor | None) -> Node | Tensor | None:
    """How a node holds an input: the Node that made ``t`` when ``t`` was recorded, else
    ``t`` itself (a leaf, whose ``.grad`` the backward fills, or a constant), or None."""
    if t is None or t._node is None:
        return t
    return t._node


class Node:
    """One recorded op: its inputs and the closure that maps the output's gradient to theirs.

    ``inputs`` holds one :func:`edge` per input. ``backward(grad, needs)``
    returns one gradient (or None) per input, where ``needs[i]`` says whether
    input ``i`` wants one. ``owns`` is True when those gradients are fresh
    arrays nobody else holds, so a leaf may keep one as its ``.grad`` without
    a copy.
    """

    __slots__ = ("backward", "inputs", "name", "owns")

    def __init__(
        self,
        name: str,
        backward: Callable[[Any, tuple[bool, ...]], Sequence[Any]],
        inputs: tuple[Tensor | None, ...],
        owns: bool = False,
    ) -> None:
        self.name = name
        self.backward: Callable[[Any, tuple[bool, ...]], Sequence[Any]] | None = backward
        self.inputs: tuple[Node | Tensor | None, ...] | None = tuple([edge(t) for t in inputs])
        self.owns = owns

    def run(self, grad: Any, needs: tuple[bool, ...]) -> Sequence[Any]:
        """The inputs' gradients, given the output's."""
        assert self.backward is not None
        return self.backward(grad, needs)

    def release(self) -> None:
        """Drop what backward needed (after a backward without ``retain_graph``)."""
        self.inputs = self.backward = None

    def __repr__(self) -> str:
        return f"<Node {self.name}>"


class CallNode(Node):
    """A recorded op of :mod:`cnnarray.ops`: ``backward(grad, needs, arguments, out)`` is
    its rule, called with the op's arguments and output, so recording makes no closure."""

    __slots__ = ("arguments", "out")

    def __init__(
        self,
        name: str,
        backward: Callable[[Any, tuple[bool, ...], dict[str, Any], Any], Sequence[Any]],
        inputs: tuple[Tensor | None, ...],
        owns: bool,
        arguments: dict[str, Any],
        out: Any,
    ) -> None:
        self.name, self.backward, self.owns = name, backward, owns
        self.inputs = tuple([edge(t) for t in inputs])
        self.arguments: dict[str, Any] | None = arguments
        self.out = out

    def run(self, grad: Any, needs: tuple[bool, ...]) -> Sequence[Any]:
        assert self.backward is not None
        return self.backward(grad, needs, self.arguments, self.out)

    def release(self) -> None:
        self.inputs = self.backward = self.arguments = self.out = None


def accumulate(leaf: Tensor, grad: Any, owned: bool) -> None:
    """Add ``grad`` into ``leaf.grad``; the first is kept uncopied only if nobody else has it.

    ``.grad`` is an array of the leaf's dtype, as in PyTorch: an op may have promoted the
    dtype on the way (float32 * float64), and NumPy hands 0-d results back as scalars,
    whose in-place updates (an optimiser's momentum buffer) would not stick.
    """
    if leaf.grad is not None:
        leaf.grad += grad
    elif grad.dtype != leaf.data.dtype or grad.ndim == 0:
        target = backend_of(leaf.data)
        with target.activate():
            leaf.grad = target.xp.array(grad, dtype=leaf.data.dtype)
    else:
        leaf.grad = grad if owned else grad.copy()


def _graph_order(root: Node) -> list[Node]:
    """Nodes reachable from ``root``, each after every node it takes input from (iterative DFS)."""
    order: list[Node] = []
    seen: set[Node] = set()  # Nodes hash by identity
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        if node.inputs is None:
            raise RuntimeError(
                f"backward through the graph a second time: what {node.name} saved was freed by "
                "the first backward; pass retain_graph=True to the first one to keep it"
            )
        stack.append((node, True))
        for e in node.inputs:
            if isinstance(e, Node) and e not in seen:
                stack.append((e, False))
    return order


def _wants(e: Node | Tensor | None) -> bool:
    """Whether an input wants a gradient: a recorded one always, a leaf if it requires grad."""
    return e is not None and (isinstance(e, Node) or e.requires_grad)


def run_backward(root: Node, grad: Any, retain_graph: bool) -> None:
    order = _graph_order(root)
    pending: dict[Node, Any] = {root: grad}
    timer = getattr(_state, "timer", None)
    for node in reversed(order):
        g = pending.pop(node, None)
        inputs = node.inputs
        assert inputs is not None  # checked by _graph_order
        if g is None:  # no path from the root carried a gradient here
            if not retain_graph:
                node.release()
            continue
        needs = tuple([_wants(e) for e in inputs])
        if timer is None:
            grads = node.run(g, needs)
        else:
            start = time.perf_counter()
            grads = node.run(g, needs)
            timer.seconds[node.name] = timer.seconds.get(node.name, 0.0) + (
                time.perf_counter() - start
            )
        if not retain_graph:
            node.release()
        for e, need, gi in zip(inputs, needs, grads, strict=True):
            if not need or gi is None:
                continue
            if isinstance(e, Node):
                previous = pending.get(e)
                pending[e] = gi if previous is None else previous + gi
            else:
                accumulate(e, gi, node.owns)


class backward_times:  # noqa: N801 - a context manager, named like no_grad
    """Add up the seconds each recorded op's backward takes, by op name, in this thread.

    For profiling on the CPU (on a GPU the times are of the launches).

    Attributes
    ----------
    seconds : dict of str to float
        ``{"conv2d": 0.012, "relu": 0.001, ...}``, summed over every backward
        run inside the ``with`` block.

    Examples
    --------
    >>> import cnnarray
    >>> x = cnnarray.tensor([1.0, -1.0], requires_grad=True)
    >>> with cnnarray.autograd.backward_times() as times:
    ...     cnnarray.relu(x).sum().backward()
    >>> sorted(times.seconds)
    ['relu', 'sum']
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._previous: list[Any] = []

    def __enter__(self) -> backward_times:
        self._previous.append(getattr(_state, "timer", None))
        _state.timer = self
        return self

    def __exit__(self, *exc: object) -> None:
        _state.timer = self._previous.pop()
