"""Tensor arithmetic and shape ops: elementwise math with broadcasting, reductions,
reshapes, indexing, ``cat`` and ``stack``, each with its gradient.

These have no ``*_backward`` in :mod:`cnnarray.ops` (they are one NumPy call
each), so their gradients are written here, once. A binary op's gradient is
summed back over the axes broadcasting added or stretched, to the shape of
each operand (:func:`_unbroadcast`).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any

from .. import _args
from ..backend import array_namespace, backend_of
from . import _tensor as _t
from ._graph import Node

__all__ = ["cat", "stack"]


def _record(
    out: Any,
    name: str,
    inputs: tuple[Any, ...],
    backward: Callable[[Any, tuple[bool, ...]], Sequence[Any]],
    owns: bool = False,
) -> _t.Tensor:
    """Wrap ``out``; record ``backward`` when grad mode is on and an input requires grad."""
    tensors = tuple(t if isinstance(t, _t.Tensor) else None for t in inputs)
    if _t.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _t.Tensor._recorded(out, Node(name, backward, tensors, owns))
    return _t.Tensor(out)


def _operands(name: str, *values: Any) -> tuple[Any, ...]:
    """The arrays of Tensor operands; other values as they are. Tensors must share a device."""
    arrays, where = [], None
    for v in values:
        if isinstance(v, _t.Tensor):
            device = backend_of(v.data)
            if where is None:
                where = device
            elif device != where:
                raise TypeError(
                    f"{name}: operands are on different devices, {where} and {device}; "
                    "move one with .to(...)"
                )
            v = v.data
        arrays.append(v)
    if where is not None:  # arrays given next to a Tensor must live on its device too
        for v in arrays:
            if (
                hasattr(v, "__array_namespace__")
                and getattr(v, "ndim", 0)
                and backend_of(v) != where
            ):
                raise TypeError(
                    f"{name}: operands are on different devices, {where} and {backend_of(v)}"
                )
    return tuple(arrays)


def _unbroadcast(xp: Any, grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``grad`` down to ``shape``: over the axes broadcasting added or stretched."""
    if tuple(grad.shape) == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and grad.shape[lead + i] != 1
    )
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(getattr(v, "shape", ()))


def _binary(
    name: str,
    a: Any,
    b: Any,
    forward: Callable[[Any, Any, Any], Any],
    grads: Callable[[Any, Any, Any, Any, Any, tuple[bool, ...]], tuple[Any, Any]],
    saves: bool = True,
) -> Any:
    """An elementwise binary op with broadcasting; ``grads(xp, g, x, y, out, needs)``
    returns the gradients before they are summed back to each operand's shape.
    ``saves=False``: the gradients need none of x, y and out (they get None), so
    the tape keeps only their shapes (a residual sum frees its operands)."""
    x, y = _operands(name, a, b)
    xp = array_namespace(x, y)
    out = forward(xp, x, y)
    shapes = _shape(x), _shape(y)
    kept = (x, y, out) if saves else (None, None, None)

    def backward(g: Any, needs: tuple[bool, ...]) -> tuple[Any, Any]:
        gx, gy = grads(xp, g, *kept, needs)
        return (
            None if gx is None else _unbroadcast(xp, gx, shapes[0]),
            None if gy is None else _unbroadcast(xp, gy, shapes[1]),
        )

    return _record(out, name, (a, b), backward)


def add(a: Any, b: Any) -> _t.Tensor:
    return _binary("add", a, b, lambda xp, x, y: xp.add(x, y),
                   lambda xp, g, x, y, out, needs: (g, g), saves=False)  # fmt: skip


def sub(a: Any, b: Any) -> _t.Tensor:
    return _binary("sub", a, b, lambda xp, x, y: xp.subtract(x, y),
                   lambda xp, g, x, y, out, needs: (g, -g if needs[1] else None),
                   saves=False)  # fmt: skip


def mul(a: Any, b: Any) -> _t.Tensor:
    return _binary(
        "mul", a, b, lambda xp, x, y: xp.multiply(x, y),
        lambda xp, g, x, y, out, needs: (g * y if needs[0] else None, g * x if needs[1] else None),
    )  # fmt: skip


def div(a: Any, b: Any) -> _t.Tensor:
    return _binary(
        "div", a, b, lambda xp, x, y: xp.true_divide(x, y),
        lambda xp, g, x, y, out, needs: (
            g / y if needs[0] else None, -g * out / y if needs[1] else None
        ),
    )  # fmt: skip


def pow(a: Any, b: Any) -> _t.Tensor:  # noqa: A001 - the operator's name
    """``a ** b``; the gradient for ``b`` is ``a ** b * log(a)`` (needs ``a > 0``)."""

    def grads(
        xp: Any, g: Any, x: Any, y: Any, out: Any, needs: tuple[bool, ...]
    ) -> tuple[Any, Any]:
        gx = g * y * xp.power(x, y - 1) if needs[0] else None
        gy = g * out * xp.log(x) if needs[1] else None
        return gx, gy

    return _binary("pow", a, b, lambda xp, x, y: xp.power(x, y), grads)


def matmul(a: Any, b: Any) -> _t.Tensor:
    """``a @ b`` as ``numpy.matmul``: 1-D operands and batch broadcasting included."""
    x, y = _operands("matmul", a, b)
    xp = array_namespace(x, y)
    out = xp.matmul(x, y)

    def backward(g: Any, needs: tuple[bool, ...]) -> tuple[Any, Any]:
        # 1-D operands are matrices of one row (x) or one column (y) in matmul's rules
        x2 = x[None, :] if x.ndim == 1 else x
        y2 = y[:, None] if y.ndim == 1 else y
        # put back the axes matmul dropped: y's last first, so that 1-D @ 1-D (0-d g) works
        g2 = g
        if y.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        if x.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        gx = gy = None
        if needs[0]:
            gx = _unbroadcast(xp, xp.matmul(g2, xp.swapaxes(y2, -1, -2)), x2.shape).reshape(x.shape)
        if needs[1]:
            gy = _unbroadcast(xp, xp.matmul(xp.swapaxes(x2, -1, -2), g2), y2.shape).reshape(y.shape)
        return gx, gy

    return _record(out, "matmul", (a, b), backward)


def _unary(
    name: str,
    a: Any,
    forward: Callable[[Any, Any], Any],
    grad: Callable[[Any, Any, Any, Any], Any],
    owns: bool = True,
) -> _t.Tensor:
    (x,) = _operands(name, a)
    xp = array_namespace(x)
    out = forward(xp, x)
    return _record(out, name, (a,), lambda g, needs: (grad(xp, g, x, out),), owns)


def neg(a: Any) -> _t.Tensor:
    return _unary("neg", a, lambda xp, x: xp.negative(x), lambda xp, g, x, out: -g)


def exp(a: Any) -> _t.Tensor:
    return _unary("exp", a, lambda xp, x: xp.exp(x), lambda xp, g, x, out: g * out)


def log(a: Any) -> _t.Tensor:
    return _unary("log", a, lambda xp, x: xp.log(x), lambda xp, g, x, out: g / x)


def sqrt(a: Any) -> _t.Tensor:
    return _unary("sqrt", a, lambda xp, x: xp.sqrt(x), lambda xp, g, x, out: g / (2 * out))


def absolute(a: Any) -> _t.Tensor:
    return _unary("abs", a, lambda xp, x: xp.abs(x), lambda xp, g, x, out: g * xp.sign(x))


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if not isinstance(axis, tuple | list):
        axis = (axis,)
    return tuple(_args.check_axis(a, ndim, "axis") for a in axis)


def sum(a: Any, axis: Any = None, keepdims: bool = False) -> _t.Tensor:  # noqa: A001
    """Sum over ``axis`` (all axes by default); the gradient spreads back to every element."""
    (x,) = _operands("sum", a)
    xp = array_namespace(x)
    axes = _axes(axis, x.ndim)
    out = x.sum(axis=axes, keepdims=keepdims)

    def backward(g: Any, needs: tuple[bool, ...]) -> tuple[Any]:
        if not keepdims:
            g = g.reshape([1 if i in axes else s for i, s in enumerate(x.shape)])
        return (xp.broadcast_to(g, x.shape),)

    return _record(out, "sum", (a,), backward)


def mean(a: Any, axis: Any = None, keepdims: bool = False) -> _t.Tensor:
    """Average over ``axis`` (all axes by default)."""
    (x,) = _operands("mean", a)
    count = 1
    for i in _axes(axis, x.ndim):
        count *= x.shape[i]
    return div(sum(a, axis, keepdims), count)


def reshape(a: Any, shape: Any) -> _t.Tensor:
    (x,) = _operands("reshape", a)
    out = x.reshape(shape)
    return _record(out, "reshape", (a,), lambda g, needs: (g.reshape(x.shape),))


def flatten(a: Any, start_axis: int = 0, end_axis: int = -1) -> _t.Tensor:
    (x,) = _operands("flatten", a)
    if x.ndim == 0:
        return reshape(a, (1,))
    start = _args.check_axis(start_axis, x.ndim, "start_axis")
    end = _args.check_axis(end_axis, x.ndim, "end_axis")
    if start > end:
        raise ValueError(f"start_axis ({start_axis}) must not come after end_axis ({end_axis})")
    return reshape(a, (*x.shape[:start], -1, *x.shape[end + 1 :]))


def transpose(a: Any, axes: Any = None) -> _t.Tensor:
    (x,) = _operands("transpose", a)
    xp = array_namespace(x)
    perm = tuple(reversed(range(x.ndim))) if axes is None else _axes(axes, x.ndim)
    if sorted(perm) != list(range(x.ndim)):
        raise ValueError(f"axes must be a permutation of 0..{x.ndim - 1}, got {axes}")
    inverse = tuple(perm.index(i) for i in range(x.ndim))
    out = xp.transpose(x, perm)
    return _record(out, "transpose", (a,), lambda g, needs: (xp.transpose(g, inverse),))


def _unwrap_index(index: Any) -> Any:
    if isinstance(index, tuple):
        return tuple(_unwrap_index(i) for i in index)
    return index.data if isinstance(index, _t.Tensor) else index


def _is_basic(index: Any) -> bool:
    """Whether ``index`` selects a view (ints, slices, None, Ellipsis): no element twice."""
    parts = index if isinstance(index, tuple) else (index,)
    return builtins.all(
        p is None or p is Ellipsis or isinstance(p, slice) or type(p) is int for p in parts
    )  # fmt: skip


def getitem(a: Any, index: Any) -> _t.Tensor:
    """``a[index]``; the gradient lands on the selected elements (summed where picked twice)."""
    (x,) = _operands("getitem", a)
    xp = array_namespace(x)
    index = _unwrap_index(index)
    out = x[index]

    def backward(g: Any, needs: tuple[bool, ...]) -> tuple[Any]:
        gx = xp.zeros(x.shape, dtype=g.dtype)
        if _is_basic(index):
            gx[index] = g
        else:
            xp.add.at(gx, index, g)
        return (gx,)

    return _record(out, "getitem", (a,), backward, owns=True)


def to_backend(a: _t.Tensor, target: Any) -> _t.Tensor:
    """``a`` copied to ``target``; the gradient is copied back."""
    source = backend_of(a.data)
    out = target.asarray(a.data)
    return _record(out, "to", (a,), lambda g, needs: (source.asarray(g),), owns=True)


def _sequence(name: str, tensors: Any) -> list[Any]:
    if isinstance(tensors, _t.Tensor) or not isinstance(tensors, Sequence) or not tensors:
        raise TypeError(f"{name} takes a non-empty list or tuple of tensors, got {tensors!r}")
    return list(tensors)


def cat(tensors: Sequence[Any], axis: int = 0) -> _t.Tensor:
    """Join tensors (or arrays) along an existing ``axis``, as ``torch.cat``.

    Examples
    --------
    >>> import cnnarray
    >>> a = cnnarray.tensor([[1.0, 2.0]], requires_grad=True)
    >>> cnnarray.cat([a, a * 3], axis=0).sum().backward()
    >>> a.grad
    array([[4., 4.]])
    """
    items = _sequence("cat", tensors)
    arrays = _operands("cat", *items)
    xp = array_namespace(*arrays)
    axis = _args.check_axis(axis, arrays[0].ndim, "axis")
    out = xp.concatenate(arrays, axis=axis)
    bounds = [0]
    for arr in arrays:
        bounds.append(bounds[-1] + arr.shape[axis])

    def backward(g: Any, needs: tuple[bool, ...]) -> list[Any]:
        where = [slice(None)] * g.ndim
        grads = []
        for i, need in enumerate(needs):
            where[axis] = slice(bounds[i], bounds[i + 1])
            grads.append(g[tuple(where)] if need else None)
        return grads

    return _record(out, "cat", tuple(items), backward)


def stack(tensors: Sequence[Any], axis: int = 0) -> _t.Tensor:
    """Join tensors of one shape along a new ``axis``, as ``torch.stack``."""
    items = _sequence("stack", tensors)
    arrays = _operands("stack", *items)
    xp = array_namespace(*arrays)
    axis = _args.check_axis(axis, arrays[0].ndim + 1, "axis")
    out = xp.stack(arrays, axis=axis)

    def backward(g: Any, needs: tuple[bool, ...]) -> list[Any]:
        return [xp.take(g, i, axis=axis) if need else None for i, need in enumerate(needs)]

    return _record(out, "stack", tuple(items), backward, owns=True)
