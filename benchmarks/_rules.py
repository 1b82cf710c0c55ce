"""The frame that ``layout_rule.py`` and ``fft_rule.py`` share.

Both time conv2d with one of its measured rules overridden (:func:`forced`),
the variants taking turns call by call (:func:`interleaved_ms`), over a list
of geometries ``(N, C_in, C_out, H = W, k)`` in float32 with padding ``k // 2``
(:func:`geometry_rows`), and print a markdown table.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np

from cnnarray.bench.timing import time_interleaved


def forced(
    module: ModuleType, name: str, value: Any, call: Callable[[], Any]
) -> Callable[[], None]:
    """``call``, made to run with ``module.name`` set to ``value`` (a rule overridden)."""

    def run() -> None:
        saved = getattr(module, name)
        setattr(module, name, value)
        try:
            call()
        finally:
            setattr(module, name, saved)

    return run


def interleaved_ms(calls: dict, repeat: int, warmup: int = 3) -> dict:
    """Median ms of each call, the calls taking turns (so drift hits all alike)."""
    timings = time_interleaved(calls, repeat, warmup=warmup)
    return {key: timing.median_s * 1e3 for key, timing in timings.items()}


def geometry_rows(doc: str, repeat: int, columns: list[str],
                  geometries: list[tuple[int, ...]]) -> Iterator[tuple[Any, ...]]:  # fmt: skip
    """Parse ``--repeat`` (default ``repeat``) and print the table's header; then yield
    ``(repeat, (n, c_in, c_out, size, k), x, w, b, grad_out)`` for each geometry."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=repeat)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for n, c_in, c_out, size, k in geometries:
        shapes = [(n, c_in, size, size), (c_out, c_in, k, k), (c_out,), (n, c_out, size, size)]
        arrays = [rng.standard_normal(shape, dtype=np.float32) for shape in shapes]
        yield args.repeat, (n, c_in, c_out, size, k), *arrays
