"""Scratch memory: conv2d's workspace limit, and the per-call Workspace with its debug mode.

conv2d keeps its im2col buffer under the workspace limit by splitting the batch.
Every operation takes its temporaries from a :class:`cnnarray.backend.Workspace`;
under :func:`cnnarray.backend.debug_workspace` each view comes filled with NaN
(all bits set), and every path of conv2d, pooling and a training step must give
the same bits as without it: none reads scratch memory before writing it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import assert_close

import cnnarray
from cnnarray import backend as backend_module
from cnnarray import reference as ref
from cnnarray.backend import Workspace, debug_workspace


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


# --------------------------------------------------------------------------- the Workspace


class _Pair(Workspace):
    """Views ``a`` and ``b`` share one memory, ``c`` has its own."""

    NAME = "test"
    VIEWS = {"a": "one", "b": "one", "c": "two"}


def test_views_of_one_memory_share_bytes_and_are_reused_by_the_next_call():
    ws = _Pair(np)
    a = ws.take("a", (4, 8), np.float32)
    b = ws.take("b", (16,), np.float64)
    c = ws.take("c", (4, 8), np.float32)
    assert a.shape == (4, 8) and a.dtype == np.float32 and b.dtype == np.float64
    assert np.shares_memory(a, b) and not np.shares_memory(a, c)
    assert np.shares_memory(_Pair(np).take("a", (2,), np.int32), a)
    with pytest.raises(KeyError):
        ws.take("d", (1,), np.float32)


def test_given_memory_is_used_when_it_is_large_enough():
    memory = np.empty(64, np.uint8)
    ws = _Pair(np, one=memory)
    assert np.shares_memory(ws.take("a", (4, 4), np.float32), memory)
    assert not np.shares_memory(ws.take("b", (17,), np.float32), memory)  # too small
    assert not np.shares_memory(ws.take("c", (2,), np.float32), memory)


def test_a_worker_thread_takes_its_own_memory():
    ws = _Pair(np)
    here = ws.take("a", (256,), np.float32)
    with ThreadPoolExecutor(1) as pool:
        there = pool.submit(ws.take, "a", (256,), np.float32).result()
    assert not np.shares_memory(here, there)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.bool_])
def test_debug_mode_fills_every_view_before_handing_it_out(dtype):
    ws = _Pair(np, two=np.zeros(64, np.uint8))
    ws.take("a", (3, 5), dtype)[...] = 0
    with debug_workspace():
        views = [ws.take("a", (3, 5), dtype), ws.take("c", (7,), dtype)]  # thread, given
    for view in views:
        if np.issubdtype(dtype, np.floating):
            assert np.isnan(view).all()
        else:  # all bits set: -1 in an int, 0xFF in a bool
            assert (view.view(np.uint8) == 255).all()
    views[0][...] = 0
    assert not ws.take("a", (3, 5), dtype).any()  # outside the block: as left


def test_debug_mode_from_the_environment():
    code = (
        "import numpy as np, cnnarray.backend as b; "
        "print(bool(np.isnan(b.scratch(np, 'test.env', (4,), np.float32)).all()))"
    )
    env = {**os.environ, "CNNARRAY_DEBUG_WORKSPACE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr


# ------------------------------------------------- every path gives the same bits in debug mode


def _same_bits(normal, debug, what: str) -> None:
    for i, (a, d) in enumerate(zip(normal, debug, strict=True)):
        if a is None or d is None:
            assert a is d, f"{what}: result {i}"
            continue
        a, d = cnnarray.to_numpy(a), cnnarray.to_numpy(d)
        assert a.dtype == d.dtype and a.shape == d.shape, f"{what}: result {i}"
        if a.tobytes() != d.tobytes():
            diff = np.abs(a.astype(np.float64) - d.astype(np.float64))
            raise AssertionError(f"{what}: result {i} differs in debug mode, max {np.nanmax(diff)}")


def _both_modes(call, what: str) -> None:
    """Run ``call`` normally, then with every scratch view poisoned: the same bits."""
    normal = call()
    with debug_workspace():
        debug = call()
    _same_bits(normal, debug, what)


# (x shape, weight shape, kwargs, forced settings); "layout": per_image or channel_major,
# "im2col": flat im2col with a mask or copy-and-zero, "fft", "limit": workspace limit,
# "cache": a ColumnCache between forward and backward, "input_grad": False to skip grad_x
CONV_PATHS = {
    "per-image": ((3, 4, 9, 8), (6, 4, 3, 3), {"stride": 2, "padding": 1},
                  {"layout": "per_image"}),
    "per-image-flat": ((3, 4, 7, 6), (6, 4, 3, 3), {"padding": 1}, {"layout": "per_image"}),
    "channel-major": ((3, 4, 9, 8), (6, 2, 3, 2), {"stride": (2, 1), "dilation": (1, 2),
                      "padding": (0, 2), "groups": 2}, {"layout": "channel_major"}),
    "flat-masked": ((3, 4, 7, 6), (6, 4, 3, 3), {"padding": 1},
                    {"layout": "channel_major", "im2col": "mask"}),
    "flat-zeroed": ((3, 4, 7, 6), (6, 4, 5, 3), {"padding": "same"},
                    {"layout": "channel_major", "im2col": "zero"}),
    "fft": ((2, 3, 12, 11), (4, 3, 7, 7), {"padding": 3}, {"fft": True}),
    "chunked-per-image": ((5, 2, 6, 6), (3, 2, 3, 3), {}, {"layout": "per_image", "limit": 3000}),
    "chunked-channel-major": ((5, 2, 6, 6), (3, 2, 3, 3), {"padding": 1},
                              {"layout": "channel_major", "limit": 3000}),
    "cache-per-image": ((3, 4, 9, 8), (6, 4, 3, 3), {"padding": 1},
                        {"layout": "per_image", "cache": True}),
    "cache-channel-major": ((3, 4, 9, 8), (6, 2, 3, 3), {"stride": 2, "groups": 2},
                            {"layout": "channel_major", "cache": True}),
    "cache-flat": ((3, 4, 9, 8), (6, 4, 3, 3), {"padding": 1},
                   {"layout": "channel_major", "cache": True}),
    "no-input-grad": ((3, 4, 9, 8), (6, 4, 3, 3), {"padding": 1},
                      {"layout": "channel_major", "input_grad": False}),
    # large enough for parallel_for's worker threads (their own scratch memory)
    "threads-flat": ((8, 16, 48, 48), (16, 16, 3, 3), {"padding": 1}, {"cache": True}),
    "threads-per-image": ((16, 3, 96, 96), (8, 3, 3, 3), {}, {}),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CONV_PATHS))
def test_conv2d_paths_give_the_same_bits_in_debug_mode(monkeypatch, backend, name):
    from cnnarray.ops import _conv_fft, _conv_plan, _im2col

    x_shape, w_shape, kwargs, forced = CONV_PATHS[name]
    if "layout" in forced:
        per_image = forced["layout"] == "per_image"
        monkeypatch.setattr(_conv_plan, "use_per_image", lambda geo, training=False: per_image)
    if "im2col" in forced:
        monkeypatch.setattr(_im2col, "MASK_MAX_ROW_BYTES", 1 << 30 if forced["im2col"] == "mask"
                            else 0)  # fmt: skip
    monkeypatch.setattr(_conv_fft, "FFT_RULES", ((1, 10**9),) if forced.get("fft") else ())
    rng = np.random.default_rng(30)
    dtype = np.float32 if name.startswith("threads") else np.float64
    x, w = rng.standard_normal(x_shape, dtype), rng.standard_normal(w_shape, dtype)
    b = rng.standard_normal(w_shape[0], dtype)
    xb, wb, bb = (backend.asarray(a) for a in (x, w, b))
    y_shape = cnnarray.conv2d_output_shape(x_shape, w_shape, **kwargs)
    gb = backend.asarray(rng.standard_normal(y_shape, dtype))
    kwargs["workspace_limit"] = forced.get("limit")

    def step():
        cache = cnnarray.ColumnCache() if forced.get("cache") else None
        y = cnnarray.conv2d(xb, wb, bb, cache=cache, **kwargs)
        input_grad = forced.get("input_grad", True)
        grads = cnnarray.conv2d_backward(gb, xb, wb, bb, cache=cache, input_grad=input_grad,
                                         **kwargs)  # fmt: skip
        assert cache is None or cache.nbytes > 0
        return (y, *grads)

    _both_modes(step, name)


POOL_PATHS = {
    "overlapping-padded": ((2, 3, 9, 8), {"kernel_size": 3, "stride": 2, "padding": 1}),
    "tiled-padded": ((2, 3, 7, 7), {"kernel_size": 2, "padding": 1}),
    "dilated-ceil": ((2, 3, 10, 9), {"kernel_size": 2, "stride": 2, "dilation": 2,
                                     "ceil_mode": True}),
    "threads": ((16, 32, 64, 64), {"kernel_size": 2, "padding": 1}),
}  # fmt: skip


@pytest.mark.parametrize("nan", [False, True], ids=["finite", "nan"])
@pytest.mark.parametrize("name", list(POOL_PATHS))
def test_pooling_gives_the_same_bits_in_debug_mode(backend, name, nan):
    x_shape, kwargs = POOL_PATHS[name]
    rng = np.random.default_rng(31)
    x = rng.standard_normal(x_shape, np.float32)
    if nan:
        x[0, 0, :3, :3] = np.nan
    x[1, 1, 2, :] = 1.0  # ties
    xb = backend.asarray(x)
    avg_kwargs = {k: v for k, v in kwargs.items() if k != "dilation"}

    def step():
        y = cnnarray.max_pool2d(xb, **kwargs)
        g = backend.asarray(np.linspace(-1, 1, y.size, dtype=np.float32).reshape(y.shape))
        grads = [cnnarray.max_pool2d_backward(g, xb, **kwargs),
                 cnnarray.max_pool2d_backward(g, xb, output=y, **kwargs)]  # fmt: skip
        a = cnnarray.avg_pool2d(xb, **avg_kwargs)
        return (y, *grads, a, cnnarray.avg_pool2d_backward(backend.asarray(np.ones(a.shape,
                np.float32)), xb, **avg_kwargs))  # fmt: skip

    _both_modes(step, name)


@pytest.mark.parametrize("model", ["lenet5", "vgg_small"])
def test_a_training_step_gives_the_same_bits_in_debug_mode(backend, model):
    rng = np.random.default_rng(32)
    if model == "lenet5":
        x = rng.standard_normal((8, 1, 28, 28), np.float32)
    else:
        x = rng.standard_normal((4, 3, 32, 32), np.float32)
    target = backend.asarray(rng.integers(0, 10, len(x)))
    xb = backend.asarray(x)

    def step():
        if model == "lenet5":
            net = cnnarray.nn.lenet5(seed=0, backend=backend)
        else:
            net = cnnarray.nn.vgg_small(widths=(8, 16, 32), hidden=32, seed=0, backend=backend)
        sgd = cnnarray.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        for _ in range(2):  # the second step reuses the first one's memory
            sgd.zero_grad()
            logits = net(xb)
            net.backward(cnnarray.cross_entropy_backward(logits, target))
            sgd.step()
        return [logits] + [p.data for p in net.parameters()]

    _both_modes(step, model)
