"""Helpers shared by the reference modules: argument pairs and batching."""

from __future__ import annotations

from typing import Any

import numpy as np


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _batched(x):
    x = np.asarray(x, np.float64)
    return (x[None], True) if x.ndim == 3 else (x, False)


def _unbatch(a: np.ndarray, unbatched: int) -> np.ndarray:
    return a[(0,) * unbatched] if unbatched else a
