"""What the layer modules share: argument checks and where parameters are made."""

from __future__ import annotations

from typing import Any

from ..backend import get_backend
from . import init
from .module import Parameter


def _is_positive_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


def _positive_int(value: Any, name: str) -> int:
    if not _is_positive_int(value):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def _setup(backend: Any, dtype: Any, seed: Any = None, rng: Any = None) -> tuple[Any, Any, Any]:
    """Resolve a parametric layer's backend (default "cpu"), dtype and init generator."""
    target = get_backend("cpu" if backend is None else backend)
    return target, init.resolve_dtype(target.xp, dtype), init.make_rng(seed, rng)


def _data(p: Parameter | None) -> Any:
    return None if p is None else p.data
