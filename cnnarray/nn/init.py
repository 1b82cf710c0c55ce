"""Weight initialisation, PyTorch's defaults, reproducible across backends.

Random numbers are always drawn on the CPU from a NumPy ``Generator`` (reached
as ``get_backend("cpu").xp``, so this module imports no array library) and
then moved to the target backend: a model built with ``seed=0`` has the same
weights on NumPy and on CuPy.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _args
from ..backend import get_backend

__all__ = [
    "calculate_fan_in_and_fan_out",
    "calculate_gain",
    "kaiming_uniform",
    "make_rng",
    "resolve_dtype",
    "uniform",
]

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
    values = rng.uniform(-bound, bound, size=shape)
    return get_backend(backend).asarray(values, dtype=dtype)


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
