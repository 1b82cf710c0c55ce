"""Facts about the machine a benchmark ran on, for its record: CPU, load, versions, BLAS.

BLAS and thread-pool facts come from :func:`cnnarray.backend.threadpools` and
:func:`cnnarray.backend.blas_info`, the one source ``cnnarray info`` uses too.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..backend import blas_info, threadpools


def blas_threads() -> int:
    """Return the number of threads NumPy's BLAS uses (threadpoolctl, else the CPU count)."""
    return blas_info()["threads"] or os.cpu_count() or 1


def cpu_model() -> str:
    """Return the CPU's model name (Linux's /proc/cpuinfo, else what :mod:`platform` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_affinity() -> int | None:
    """Return how many CPUs this process may run on (None where the OS does not say)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def load_average() -> list[float] | None:
    """Return the 1, 5 and 15 minute load averages: other work skews the timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Return the versions of Python, cnnarray and each library a peer may use (None: absent)."""
    cupy = [
        f"{d.metadata['Name']} {d.version}"
        for d in importlib.metadata.distributions()
        if (d.metadata["Name"] or "").lower().startswith("cupy")
    ]
    return {
        "python": platform.python_version(),
        "cnnarray": __version__,
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "torch": _version("torch"),
        "cupy": ", ".join(cupy) or None,
        "threadpoolctl": _version("threadpoolctl"),
    }


def numpy_config() -> Any:
    """Return NumPy's build configuration as JSON-able dicts (None for NumPy < 1.26)."""
    try:
        config = np.show_config(mode="dicts")
    except TypeError:  # NumPy < 1.26 only prints
        return None
    return json.loads(json.dumps(config, default=str))


def blas() -> dict[str, Any]:
    """Return the record's ``blas`` entry: the thread pools and NumPy's build configuration."""
    return {"threadpoolctl": threadpools(), "numpy_config": numpy_config()}
