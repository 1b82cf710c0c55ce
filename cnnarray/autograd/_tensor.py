"""``Tensor``, the graph node behind it, and the engine that walks the graph backwards.

A Tensor made by an op while gradients are recorded remembers a :class:`Node`:
the op's inputs and a closure that turns the gradient of the output into the
gradients of the inputs (for the ops of :mod:`cnnarray.ops`, by calling their
``*_backward``; see :mod:`._rules`). :meth:`Tensor.backward` orders the nodes
reachable from the output so that each runs after every node that uses its
output, sums the gradients that reach each node, and adds those reaching a
leaf (a Tensor made by the user, such as a parameter) into its ``.grad``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..backend import asarray, backend_of, get_backend, to_numpy
from . import _functions as _f
from . import _rules

__all__ = [
    "Node",
    "Tensor",
    "backward_times",
    "enable_grad",
    "is_grad_enabled",
    "no_grad",
    "tensor",
]

_state = threading.local()


def is_grad_enabled() -> bool:
    """Return whether ops on Tensors are recorded for backward in this thread."""
    return getattr(_state, "enabled", True)


class _GradMode:
    """Context manager and decorator that sets whether ops are recorded (per thread)."""

    _enabled: bool

    def __new__(cls, func: Callable[..., Any] | None = None) -> Any:
        # ``@no_grad`` as well as ``@no_grad()`` and ``with no_grad():``, as in PyTorch
        self = super().__new__(cls)
        self._previous: list[bool] = []
        return self if func is None else self(func)

    def __init__(self, func: Callable[..., Any] | None = None) -> None:
        pass

    def __enter__(self) -> None:
        self._previous.append(is_grad_enabled())
        _state.enabled = self._enabled

    def __exit__(self, *exc: object) -> None:
        _state.enabled = self._previous.pop()

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        import functools

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with type(self)():
                return func(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):  # noqa: N801 - named like torch.no_grad
    """Record nothing for backward: a context manager and a decorator.

    Results of ops on Tensors inside are Tensors that do not require grad, as
    for evaluation or an optimiser's update.

    Examples
    --------
    >>> import cnnarray
    >>> w = cnnarray.tensor([1.0, 2.0], requires_grad=True)
    >>> with cnnarray.no_grad():
    ...     y = (w * 2).sum()
    >>> y.requires_grad
    False
    """

    _enabled = False


class enable_grad(_GradMode):  # noqa: N801 - named like torch.enable_grad
    """Record ops again inside a :class:`no_grad` region."""

    _enabled = True


class Node:
    """One recorded op: its inputs and the closure that maps the output's gradient to theirs.

    ``backward(grad, needs)`` returns one gradient (or None) per input, where
    ``needs[i]`` says whether input ``i`` wants one. ``owns`` is True when
    those gradients are fresh arrays nobody else holds, so a leaf may keep
    one as its ``.grad`` without a copy.
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
        self.inputs: tuple[Tensor | None, ...] | None = inputs
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
        self.name, self.backward, self.inputs, self.owns = name, backward, inputs, owns
        self.arguments: dict[str, Any] | None = arguments
        self.out = out

    def run(self, grad: Any, needs: tuple[bool, ...]) -> Sequence[Any]:
        assert self.backward is not None
        return self.backward(grad, needs, self.arguments, self.out)

    def release(self) -> None:
        self.inputs = self.backward = self.arguments = self.out = None


def _is_float(dtype: Any) -> bool:
    return getattr(dtype, "kind", "") == "f"


class Tensor:
    """An array of the backend (NumPy or CuPy) that can record the ops applied to it.

    Parameters
    ----------
    data : array
        A NumPy or CuPy array, kept as it is (not copied).
    requires_grad : bool, default False
        Record the ops that use this tensor, so that :meth:`backward` fills
        its ``.grad``. Only floating-point tensors can require grad.

    Attributes
    ----------
    data : array
        The value.
    grad : array or None
        Sum of the gradients that :meth:`backward` calls brought to this leaf.
    requires_grad : bool

    Notes
    -----
    Arrays in, arrays out: every op of :mod:`cnnarray.ops` given arrays
    returns an array as before; given a Tensor it returns a Tensor, recorded
    for backward when grad mode is on (see :class:`no_grad`) and an input
    requires grad. Tensors are hashed by identity, like PyTorch's.

    Examples
    --------
    >>> import cnnarray
    >>> x = cnnarray.tensor([[1.0, -2.0], [3.0, 4.0]], requires_grad=True)
    >>> loss = (cnnarray.relu(x) * x).sum()
    >>> loss.backward()
    >>> x.grad
    array([[2., 0.],
           [6., 8.]])
    """

    __slots__ = ("__weakref__", "_node", "data", "grad", "requires_grad")

    # NumPy's and CuPy's binary operators give way to ours (``array + tensor``).
    __array_ufunc__ = None
    __array_priority__ = 1000

    def __init__(
        self, data: Any, requires_grad: bool = False, *, _node: Node | None = None
    ) -> None:
        if isinstance(data, Tensor):
            data = data.data
        elif not (hasattr(data, "__array_namespace__") and hasattr(data, "dtype") and data.ndim):
            # lists, numbers, and NumPy's 0-d results, which are immutable scalars: 0-d arrays
            data = asarray(data)
        self.data = data
        self.grad: Any = None
        self._node = _node
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _recorded(cls, data: Any, node: Node) -> Tensor:
        """The float result of a recorded op (no checks: the hot path of every op)."""
        if not data.ndim:  # NumPy's 0-d results are immutable scalars: 0-d arrays instead
            data = asarray(data)
        t = object.__new__(cls)
        t.data, t.grad, t._node, t.requires_grad = data, None, node, True
        return t

    @staticmethod
    def __cnnarray_function__(
        op: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Tensor | tuple[Tensor | None, ...]:
        """Called by :func:`cnnarray.backend.dispatch` when an op is given a Tensor."""
        return _rules.call_op(op, args, kwargs)

    # -- what it is ------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return int(self.data.ndim)

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def backend(self) -> Any:
        """The :class:`cnnarray.Backend` the data lives on."""
        return backend_of(self.data)

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user rather than recorded by an op."""
        return self._node is None

    @property
    def grad_fn(self) -> Node | None:
        """The recorded op that made this tensor, or None for a leaf."""
        return self._node

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        body = repr(self.data)
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self._node is not None:
            extra = f", grad_fn={self._node.name}"
        return f"Tensor({body}{extra}, backend={self.backend})"

    # -- conversions -------------------------------------------------------------

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` on a leaf in place; return self."""
        if requires_grad and not _is_float(self.data.dtype):
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype}"
            )
        if not requires_grad and self._node is not None:
            raise ValueError(
                "requires_grad can only be turned off on a leaf tensor; use .detach() instead"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> Tensor:
        """Return a tensor on the same data that records nothing (a new leaf)."""
        return Tensor(self.data)

    def numpy(self) -> Any:
        """Return the data as a NumPy array (a copy from the GPU; the same array on the CPU)."""
        return to_numpy(self.data)

    def item(self) -> Any:
        """Return the one element as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self) -> Any:
        return to_numpy(self.data).tolist()

    def to(self, backend: Any) -> Tensor:
        """Return this tensor on ``backend`` ("cpu", "cuda", "cuda:1"); recorded, so gradients
        flow back to the original device."""
        target = get_backend(backend)
        if target == self.backend:
            return self
        return _f.to_backend(self, target)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        if backend_of(self.data).device is not None:
            raise TypeError(
                "a Tensor on the GPU is not converted to a NumPy array implicitly; use .numpy()"
            )
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        return bool(self.item())

    # -- backward -------------------------------------------------------------------

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Add the gradient of this tensor with respect to every leaf that requires grad
        into the leaves' ``.grad``.

        Parameters
        ----------
        gradient : array or Tensor, optional
            Gradient with respect to this tensor, of its shape; may be left out
            only when the tensor has one element (it is then 1).
        retain_graph : bool, default False
            Keep what the recorded ops saved, so backward can run through
            the graph again. By default it is freed as backward goes.

        Raises
        ------
        ValueError
            If ``gradient`` is missing for a tensor of more than one element,
            or has another shape.
        RuntimeError
            If the tensor does not require grad, or part of the graph was
            freed by an earlier backward.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the ops that "
                "made it requires grad, or they ran under no_grad()"
            )
        grad = self._initial_gradient(gradient)
        if self._node is None:
            _accumulate(self, grad, owned=False)
            return
        _run_backward(self._node, grad, retain_graph)

    def _initial_gradient(self, gradient: Any) -> Any:
        xp = self.backend.xp
        if gradient is None:
            if self.data.size != 1:
                raise ValueError(
                    f"gradient must be given for a tensor of shape {self.shape}: an implicit "
                    "gradient of 1 exists only for a tensor with one element"
                )
            return xp.ones_like(self.data)
        if isinstance(gradient, Tensor):
            gradient = gradient.data
        if not hasattr(gradient, "shape"):
            gradient = xp.asarray(gradient, dtype=self.dtype)
        if backend_of(gradient) != self.backend:
            raise TypeError(
                f"gradient is on {backend_of(gradient)} but the tensor is on {self.backend}"
            )
        if tuple(gradient.shape) != self.shape:
            raise ValueError(
                f"gradient must have the tensor's shape {self.shape}, got {tuple(gradient.shape)}"
            )
        return gradient.astype(self.dtype, copy=False)

    # -- arithmetic (see _functions) -----------------------------------------------

    def __add__(self, other: Any) -> Tensor:
        return _f.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _f.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _f.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _f.sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _f.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _f.mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _f.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _f.div(other, self)

    def __pow__(self, other: Any) -> Tensor:
        return _f.pow(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return _f.pow(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return _f.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _f.matmul(other, self)

    def __neg__(self) -> Tensor:
        return _f.neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __getitem__(self, index: Any) -> Tensor:
        return _f.getitem(self, index)

    def exp(self) -> Tensor:
        return _f.exp(self)

    def log(self) -> Tensor:
        return _f.log(self)

    def sqrt(self) -> Tensor:
        return _f.sqrt(self)

    def abs(self) -> Tensor:
        return _f.absolute(self)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _f.sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _f.mean(self, axis, keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        return _f.reshape(self, shape[0] if len(shape) == 1 else shape)

    def view(self, *shape: Any) -> Tensor:
        return self.reshape(*shape)

    def flatten(self, start_axis: int = 0, end_axis: int = -1) -> Tensor:
        """Merge axes ``start_axis..end_axis`` (all by default, as ``torch.flatten``)."""
        return _f.flatten(self, start_axis, end_axis)

    def transpose(self, *axes: Any) -> Tensor:
        """Reverse the axes, or permute them as ``numpy.transpose`` (one tuple or several ints)."""
        if len(axes) == 1 and not isinstance(axes[0], int):
            axes = tuple(axes[0])
        return _f.transpose(self, axes or None)

    def permute(self, *axes: Any) -> Tensor:
        """Permute the axes, as ``torch.Tensor.permute``."""
        return self.transpose(*axes)

    @property
    def T(self) -> Tensor:  # noqa: N802 - NumPy's name
        return _f.transpose(self, None)


def _accumulate(leaf: Tensor, grad: Any, owned: bool) -> None:
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
        for t in node.inputs:
            if t is not None and t._node is not None and t._node not in seen:
                stack.append((t._node, False))
    return order


def _run_backward(root: Node, grad: Any, retain_graph: bool) -> None:
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
        needs = tuple([t is not None and t.requires_grad for t in inputs])
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
        for t, need, gi in zip(inputs, needs, grads, strict=True):
            if not need or gi is None:
                continue
            source = t._node
            if source is None:
                _accumulate(t, gi, node.owns)
            else:
                previous = pending.get(source)
                pending[source] = gi if previous is None else previous + gi


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


def tensor(
    data: Any, requires_grad: bool = False, backend: Any = None, dtype: Any = None
) -> Tensor:
    """Make a leaf Tensor from an array, a Tensor's data, a list or a number.

    Parameters
    ----------
    data : array_like or Tensor
        Copied only when it must move to ``backend`` or change dtype.
    requires_grad : bool, default False
    backend : str, optional
        Where the data goes ("cpu", "cuda", ...); default where it is (the CPU
        for lists and numbers).
    dtype : dtype, optional
        As ``numpy.asarray``; Python floats become float64, as in NumPy.

    Examples
    --------
    >>> import cnnarray
    >>> t = cnnarray.tensor([1.0, 2.0], requires_grad=True)
    >>> t.shape, t.dtype.name, t.requires_grad
    ((2,), 'float64', True)
    """
    if isinstance(data, Tensor):
        data = data.data
    if backend is None and hasattr(data, "__array_namespace__") and hasattr(data, "dtype"):
        target = backend_of(data)
    else:
        target = get_backend("cpu" if backend is None else backend)
    return Tensor(target.asarray(data, dtype=dtype), requires_grad=requires_grad)
