"""conv2d keeps its im2col buffer under the workspace limit by splitting the batch."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from helpers import assert_close

import cnnarray
from cnnarray import backend as backend_module
from cnnarray import reference as ref


def _peak_bytes(call) -> int:
    """Peak of traced memory above the level before ``call`` (NumPy reports to tracemalloc)."""
    backend_module.release_scratch()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_conv2d_peak_memory_stays_under_workspace_limit(direction, bias):
    # The one-shot column buffer would be 64 * 16 * 9 * 32 * 32 * 4 B = 36 MiB
    # (a bias adds a row of ones to it).
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16, 32, 32), dtype=np.float32)
    w = rng.standard_normal((8, 16, 3, 3), dtype=np.float32)
    b = rng.standard_normal(8, dtype=np.float32) if bias else None
    limit = 4 * 2**20
    out_bytes = 64 * 8 * 32 * 32 * 4
    if direction == "forward":
        peak = _peak_bytes(lambda: cnnarray.conv2d(x, w, b, padding=1, workspace_limit=limit))
        produced = out_bytes
    else:
        g = np.ones((64, 8, 32, 32), np.float32)
        peak = _peak_bytes(
            lambda: cnnarray.conv2d_backward(g, x, w, b, padding=1, workspace_limit=limit)
        )
        produced = x.nbytes + w.nbytes  # grad_x and grad_weight
    one_shot = 64 * 16 * 9 * 32 * 32 * 4
    # Besides the limited column buffer(s), each chunk holds its padded input and
    # its slice of the GEMM result / transposed gradient: a few MiB here.
    allowance = 3 * 2**20
    assert peak <= limit + produced + allowance, (peak, limit, produced)
    assert peak < one_shot  # the limit really changed something


def test_workspace_limit_gives_the_same_result(backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 3, 10, 10))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    small = 3 * 9 * 10 * 10 * 8  # room for the columns of about one image
    xb, wb, bb = (backend.asarray(a) for a in (x, w, b))
    y = cnnarray.conv2d(xb, wb, bb, padding=1, workspace_limit=small)
    assert_close(y, ref.conv2d(x, w, b, padding=1), dtype=np.float64, backend=backend)
    g = rng.standard_normal((9, 4, 10, 10))
    grads = cnnarray.conv2d_backward(
        backend.asarray(g), xb, wb, bb, padding=1, workspace_limit=small
    )
    for got, want in zip(grads, ref.conv2d_backward(g, x, w, b, padding=1), strict=True):
        assert_close(got, want, dtype=np.float64, backend=backend)


def test_global_workspace_limit_round_trips_and_rejects_bad_values():
    before = cnnarray.get_workspace_limit()
    try:
        cnnarray.set_workspace_limit(1 << 20)
        assert cnnarray.get_workspace_limit() == 1 << 20
        for bad in (0, -5, 1.5, True, "1MB"):
            with pytest.raises(ValueError, match="workspace_limit must be a positive"):
                cnnarray.set_workspace_limit(bad)
    finally:
        cnnarray.set_workspace_limit(before)
