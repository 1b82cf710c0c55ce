"""What the layer modules share: where parameters are made."""

from __future__ import annotations

from typing import Any

from ..backend import get_backend
from . import init
from .module import Parameter


def _setup(backend: Any, dtype: Any, seed: Any = None, rng: Any = None) -> tuple[Any, Any, Any]:
    """Resolve a parametric layer's backend (default "cpu"), dtype and init generator."""
    target = get_backend("cpu" if backend is None else backend)
    return target, init.resolve_dtype(target.xp, dtype), init.make_rng(seed, rng)


def _data(p: Parameter | None) -> Any:
    return None if p is None else p.data
