"""Weight initialisation, PyTorch's defaults, reproducible across backends.

Random numbers are always drawn on the CPU from a NumPy ``Generator`` (reached
as ``get_backend("cpu").xp``, so this module imports no array library) and
then moved to the target backend: a model built with ``seed=0`` has the same
weights on NumPy and on CuPy.

Inside :func:`shapes_only` nothing is drawn or allocated: :func:`uniform` and
:func:`constant` return read-only zero-strided placeholders of the right shape
and dtype, so that a model described by an untrusted spec can be built to
compare its parameter shapes with a checkpoint's tensors before any memory
proportional to them is spent.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import Any

from .. import _args
from ..backend import get_backend

__all__ = [
    "calculate_fan_in_and_fan_out",
    "calculate_gain",
    "constant",
    "kaiming_uniform",
    "make_rng",
    "resolve_dtype",
    "shapes_only",
    "uniform",
]

# [arrays made so far, most allowed] while shapes_only is active, else None
_SHAPES_ONLY: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "shapes_only", default=None
)


@contextlib.contextmanager
def shapes_only(max_arrays: int | None = None) -> Iterator[None]:
    """Within the block, initial values are placeholders that take no memory.

    Parameters
    ----------
    max_arrays : int, optional
        Raise ValueError once more arrays than this are asked for (a bound on
        the work of building a model whose spec asks for a huge number of layers).
    """
    token = _SHAPES_ONLY.set([0, -1 if max_arrays is None else max_arrays])
    try:
        yield
    finally:
        _SHAPES_ONLY.reset(token)


def _placeholder(shape: tuple[int, ...], dtype: Any) -> Any:
    """A read-only array of ``shape`` that takes no memory, or None outside shapes_only."""
    counter = _SHAPES_ONLY.get()
    if counter is None:
        return None
    counter[0] += 1
    if 0 <= counter[1] < counter[0]:
        raise ValueError(f"the spec asks for more than {counter[1]} parameter and buffer arrays")
    xp = get_backend("cpu").xp
    try:
        return xp.broadcast_to(xp.zeros((), dtype), shape)
    except ValueError:  # more elements than an array can index
        raise ValueError(f"the spec asks for a parameter of shape {shape}, too large") from None


_FLOAT_DTYPES = ("float32", "float64")


def make_rng(seed: int | None = None, rng: Any = None) -> Any:
    """Return the CPU random generator that initialisation draws from.

    Parameters
    ----------
    seed : int, optional
        Seed of a fresh ``numpy.random.Generator``.
    rng : numpy.random.Generator, optional
        Generator to draw from (shared between layers, so that a whole model
        is reproducible from one seed). Give at most one of ``seed`` and ``rng``.
    """
    if seed is not None and rng is not None:
        raise ValueError("give at most one of seed and rng, got both")
    if rng is not None:
        if not hasattr(rng, "uniform"):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    if seed is not None:
        seed = _args.check_int(seed, "seed", minimum=0)
    return get_backend("cpu").xp.random.default_rng(seed)


def resolve_dtype(xp: Any, dtype: Any) -> Any:
    """Return ``xp.dtype(dtype)``, which must be float32 or float64."""
    try:
        resolved = xp.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return resolved


def calculate_fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a weight of ``shape``, PyTorch's rule.

    ``(out, in)`` for linear layers, ``(out, in / groups, kh, kw)`` for
    convolutions: ``fan_in = in * kh * kw`` and ``fan_out = out * kh * kw``.
    """
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a weight with at least 2 axes, got {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Return the recommended gain of ``nonlinearity`` ("linear", "relu", "leaky_relu", ...)."""
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def uniform(shape: tuple[int, ...], bound: float, rng: Any, dtype: Any, backend: Any) -> Any:
    """Draw ``U(-bound, bound)`` of ``shape`` on the CPU and return it on ``backend``."""
    placeholder = _placeholder(shape, dtype)
    if placeholder is not None:
        return placeholder
    values = rng.uniform(-bound, bound, size=shape)
    return get_backend(backend).asarray(values, dtype=dtype)


def constant(shape: tuple[int, ...], value: float, dtype: Any, backend: Any) -> Any:
    """Return an array of ``shape`` filled with ``value`` on ``backend``."""
    placeholder = _placeholder(shape, dtype)
    if placeholder is not None:
        return placeholder
    target = get_backend(backend)
    with target.activate():
        return target.xp.full(shape, value, dtype)


def kaiming_uniform(
    shape: tuple[int, ...],
    rng: Any,
    dtype: Any,
    backend: Any,
    a: float = 0.0,
    nonlinearity: str = "leaky_relu",
) -> Any:
    """Draw a weight from ``U(-b, b)``, ``b = gain * sqrt(3 / fan_in)`` (He et al., 2015).

    PyTorch initialises Conv2d and Linear weights with ``a = sqrt(5)``, which
    makes ``b = 1 / sqrt(fan_in)``.

    See Also
    --------
    torch.nn.init.kaiming_uniform_
    """
    fan_in, _ = calculate_fan_in_and_fan_out(shape)
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan_in)
    return uniform(shape, bound, rng, dtype, backend)
