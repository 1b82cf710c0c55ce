"""The one backend fixture every test runs under: NumPy ("cpu") and, where a GPU answers, CuPy.

A test that takes ``backend`` (or ``xp``) runs once per backend; the "cuda" run is
skipped with the reason :func:`cnnarray.backend.cuda_unavailable_reason` gives.
Helpers live in ``tests/helpers.py``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import CUDA_REASON
from hypothesis import HealthCheck, settings

import cnnarray

# CI reruns the same examples every time (no flaky reds); locally Hypothesis explores.
settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_report_header(config: pytest.Config) -> str:
    cuda = "available" if CUDA_REASON is None else f"skipped: {CUDA_REASON}"
    return f"cnnarray backends: {cnnarray.available_backends()}; cuda tests {cuda}"


@pytest.fixture(
    scope="session",
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(
                CUDA_REASON is not None, reason=f"CUDA backend unavailable: {CUDA_REASON}"
            ),
        ),
    ],
)
def backend(request: pytest.FixtureRequest) -> cnnarray.Backend:
    """The backend under test (session-scoped, so Hypothesis tests may use it)."""
    return cnnarray.get_backend(request.param)


@pytest.fixture(scope="session")
def xp(backend: cnnarray.Backend):
    """The array module of ``backend``: numpy or cupy."""
    return backend.xp


@pytest.fixture(scope="session", params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> np.dtype:
    return np.dtype(request.param)


@pytest.fixture(autouse=True, scope="session")
def _cli_consoles_follow_columns():
    """Let the CLI's Rich consoles read COLUMNS at each print, as the CLI tests set it.

    Rich fixes a console's width when COLUMNS is set as the console is made, and
    pytest-xdist's workers run with COLUMNS=80: the consoles of ``cnnarray.cli``
    (made at import, when the test modules are collected) would wrap at 80 columns
    whatever ``CliRunner.invoke(env=)`` says, and long paths in the output break
    across lines. Session-wide, so that module fixtures that run the CLI see it too.
    """
    import sys

    cli = sys.modules.get("cnnarray.cli")
    consoles = () if cli is None else (cli.console, cli.err_console)
    saved = [(console, console._width) for console in consoles]
    for console in consoles:
        console._width = None
    yield
    for console, width in saved:
        console._width = width
