"""Benchmark harness behind ``cnnarray bench``: cnnarray against its peers.

What is measured
----------------
Each *case* is one operation at one size (see :data:`CASES`): six conv2d
layers, a 2x2 max pool, each timed as ``"fwd"`` (forward only) and
``"fwd+bwd"`` (forward, then the gradients of every input), plus a float32
2048 x 2048 GEMM (``"matmul"``) that sets the machine's GEMM ceiling. Each
*peer* (see :data:`PEERS`) is an implementation of the same operation:

``cnnarray``
    This library, on the chosen device, through its public ops only; conv2d's
    fwd+bwd passes one :class:`~cnnarray.ops.ColumnCache` to both calls, as
    :class:`cnnarray.nn.Conv2d` does in training.
``torch``
    PyTorch (CPU with as many threads as cnnarray's BLAS, or CUDA).
``scipy``
    ``scipy.signal.correlate2d`` looped over batch, output and input channels
    (gradients with ``correlate2d`` / ``convolve2d``); conv2d only.
``naive``
    The tutorial loop: one window at a time, ``np.sum(filter * patch)``.

Method
------
Every (peer, case) runs in its own Python process (``python -m cnnarray.bench
--worker ...``) with ``OPENBLAS_THREAD_TIMEOUT=4``, so OpenBLAS threads left
spinning by one peer cannot steal CPU from the next, and with
``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` removed. The inputs are float32,
drawn from one seed, identical for all peers. The first call's outputs are
compared with cnnarray's (max abs difference, recorded). After warm-up, the
call is repeated ``repeat`` times (fewer, but at least 3, when that would take
longer than ``budget_s``); the device is synchronised before each clock read.
The fast peers (cnnarray, torch) run in ``rounds`` worker processes per case,
interleaved with each other's (round 1: cnnarray, torch; round 2: torch,
cnnarray; ...), as pyperf spreads a benchmark over several processes: a slow
spell of a shared machine then lands on both sides of a ratio instead of on one
worker. Reported: median, min and max of all timed calls of all rounds. Slow
peers are skipped when their estimated single call exceeds ``slow_limit_s``;
the record says so.

Examples
--------
>>> from cnnarray.bench import run_benchmarks, render_table, write_json
>>> results = run_benchmarks("cpu", ["a", "matmul"], ["torch"], repeat=7)  # doctest: +SKIP
>>> write_json(results, "benchmarks/results/cpu.json")  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .backend import Backend, get_backend, to_numpy
from .io import atomic_write_bytes
from .ops import ColumnCache, conv2d, conv2d_backward, linear, max_pool2d, max_pool2d_backward

__all__ = [
    "CASES",
    "DEFAULT_CASES",
    "MODES",
    "PEERS",
    "Case",
    "make_inputs",
    "plot",
    "render_table",
    "run_benchmarks",
    "write_json",
]

PEERS = ("cnnarray", "torch", "scipy", "naive")
# Peers timed in one round only: their loops take seconds a call and stand 50x
# or more from cnnarray, so a second process would only lengthen the run.
ONE_ROUND_PEERS = ("scipy", "naive")
MODES = ("fwd", "fwd+bwd")

ROUNDS = 3  # worker processes per (case, fast peer), interleaved; see run_benchmarks
MIN_REPEATS = 3  # the adaptive cap never goes below this (unless repeat itself is lower)
# Warm-up: at least MIN_WARMUP untimed calls (the first one pays for kernel compilation,
# oneDNN primitive creation, allocator growth), more until WARMUP_S have passed, at most
# MAX_WARMUP.
MIN_WARMUP = 2
WARMUP_S = 0.25
MAX_WARMUP = 5
_SCHEMA = 1

# Per-call cost models of the slow peers, fitted on a 2-core Xeon; they only
# decide what to skip, so they need to be right within a factor of two.
_NAIVE_S_PER_WINDOW = 4e-6  # one np.sum(filter * patch) from the Python loop
_SCIPY_S_PER_CALL = 15e-6  # fixed cost of one correlate2d call
_SCIPY_S_PER_MAC = 2.5e-9

# Default OPENBLAS_THREAD_TIMEOUT of each worker: OpenBLAS threads wait 2**4
# cycles after a call before sleeping instead of the default 2**28 (~0.1 s of
# spinning on every core). OpenBLAS accepts 4 to 30.
THREAD_TIMEOUT = 4
# Removed for each worker: they force a core type / cache size and slow NumPy down.
_WORKER_UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Case:
    """One benchmarked operation at one size.

    ``op`` is ``"conv2d"`` (input ``(n, c_in, h, w)``, weight
    ``(c_out, c_in, k, k)``, bias ``(c_out,)``; with ``two_d`` one ``(h, w)``
    image and one ``(k, k)`` filter, no bias), ``"max_pool2d"`` (input
    ``(n, c_in, h, w)``, window ``k``, stride ``stride``) or ``"matmul"``
    (``(dim, dim) @ (dim, dim)``).
    """

    name: str
    op: str
    n: int = 1
    c_in: int = 1
    c_out: int = 1
    h: int = 1
    w: int = 1
    k: int = 1
    stride: int = 1
    padding: int = 0
    two_d: bool = False
    dim: int = 0
    hidden: bool = False  # small cases for the tests; valid names, not run by default

    @property
    def modes(self) -> tuple[str, ...]:
        return ("fwd",) if self.op == "matmul" else MODES

    @property
    def out_hw(self) -> tuple[int, int]:
        """``out = floor((H + 2 * padding - k) / stride) + 1`` along each axis."""
        p = self.padding if self.op == "conv2d" else 0
        return (
            (self.h + 2 * p - self.k) // self.stride + 1,
            (self.w + 2 * p - self.k) // self.stride + 1,
        )

    @property
    def windows(self) -> int:
        """Number of output values, i.e. of windows the naive loop visits."""
        if self.op == "matmul":
            return self.dim * self.dim
        out_h, out_w = self.out_hw
        channels = self.c_in if self.op == "max_pool2d" else self.c_out
        return self.n * channels * out_h * out_w

    def flop(self, mode: str) -> int | None:
        """Floating-point operations of one call (None for pooling, which is memory-bound).

        conv2d: ``2 * N * C_out * out_h * out_w * C_in * kh * kw`` forward, three
        times that for fwd+bwd (grad_x and grad_weight are GEMMs of the same size).
        """
        if self.op == "matmul":
            return 2 * self.dim**3
        if self.op != "conv2d":
            return None
        fwd = 2 * self.windows * self.c_in * self.k * self.k
        return fwd * (3 if mode == "fwd+bwd" else 1)

    def describe(self) -> str:
        if self.op == "matmul":
            return f"float32 ({self.dim}, {self.dim}) @ ({self.dim}, {self.dim})"
        out_h, out_w = self.out_hw
        if self.op == "max_pool2d":
            return (
                f"max_pool2d {self.k}x{self.k}/{self.stride} on ({self.n}, {self.c_in}, "
                f"{self.h}, {self.w}) -> ({self.n}, {self.c_in}, {out_h}, {out_w})"
            )
        if self.two_d:
            return (
                f"conv2d 2-D API: image ({self.h}, {self.w}) * filter ({self.k}, {self.k}), "
                f"stride {self.stride}, padding {self.padding} -> ({out_h}, {out_w})"
            )
        return (
            f"conv2d x ({self.n}, {self.c_in}, {self.h}, {self.w}), weight ({self.c_out}, "
            f"{self.c_in}, {self.k}, {self.k}), stride {self.stride}, padding {self.padding} "
            f"-> ({self.n}, {self.c_out}, {out_h}, {out_w})"
        )


CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("a", "conv2d", n=64, c_in=3, c_out=32, h=32, w=32, k=3, padding=1),
        Case("b", "conv2d", n=64, c_in=32, c_out=64, h=16, w=16, k=3, padding=1),
        Case("c", "conv2d", n=32, c_in=64, c_out=128, h=16, w=16, k=3, padding=1),
        Case("d", "conv2d", h=512, w=512, k=3, two_d=True),
        Case("e", "conv2d", n=128, c_in=1, c_out=6, h=28, w=28, k=5),
        Case("f", "conv2d", h=512, w=512, k=15, padding=7, two_d=True),
        Case("pool", "max_pool2d", n=64, c_in=64, h=32, w=32, k=2, stride=2),
        Case("matmul", "matmul", dim=2048),
        # Small versions of each kind, for the tests.
        Case("tiny", "conv2d", n=2, c_in=3, c_out=4, h=9, w=9, k=3, stride=2, padding=1,
             hidden=True),
        Case("tiny2d", "conv2d", h=12, w=10, k=3, two_d=True, hidden=True),
        Case("tinypool", "max_pool2d", n=2, c_in=3, h=8, w=8, k=2, stride=2, hidden=True),
        Case("tinymatmul", "matmul", dim=64, hidden=True),
    )
}  # fmt: skip
DEFAULT_CASES = tuple(name for name, case in CASES.items() if not case.hidden)


# --------------------------------------------------------------------------- inputs


def make_inputs(case: Case, seed: int = 0) -> dict[str, np.ndarray | None]:
    """Return the float32 inputs of ``case``, the same for every peer and process.

    Keys: ``x``, ``weight``, ``bias`` (None for the 2-D API and for pooling) and
    ``grad_out`` (the upstream gradient used by fwd+bwd); for matmul ``a``, ``b``.
    """
    rng = np.random.default_rng(seed)

    def normal(shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)).astype(
            np.float32, copy=False
        )

    if case.op == "matmul":
        return {"a": normal((case.dim, case.dim)), "b": normal((case.dim, case.dim))}
    out_h, out_w = case.out_hw
    if case.op == "max_pool2d":
        shape = (case.n, case.c_in, case.h, case.w)
        return {"x": normal(shape), "weight": None, "bias": None,
                "grad_out": normal((case.n, case.c_in, out_h, out_w))}  # fmt: skip
    if case.two_d:
        return {"x": normal((case.h, case.w)), "weight": normal((case.k, case.k), 1 / case.k),
                "bias": None, "grad_out": normal((out_h, out_w))}  # fmt: skip
    fan_in = case.c_in * case.k * case.k
    return {
        "x": normal((case.n, case.c_in, case.h, case.w)),
        "weight": normal((case.c_out, case.c_in, case.k, case.k), 1 / math.sqrt(fan_in)),
        "bias": normal((case.c_out,), 0.1),
        "grad_out": normal((case.n, case.c_out, out_h, out_w)),
    }


# --------------------------------------------------------------------------- peers
# Each _*_runner returns (call, sync, device, to_numpy): call() computes once and
# returns the outputs (y, then grad_x, grad_weight, grad_bias for fwd+bwd) in the
# peer's own arrays; to_numpy converts them afterwards, outside the timing.


class _Skip(Exception):
    """A peer cannot run this case; the message is the reason."""


def _no_sync() -> None:
    """CPU peers compute synchronously: nothing to wait for."""


def _cnnarray_runner(case: Case, mode: str, data: dict, device: str) -> tuple:
    backend = get_backend(device)
    d = {k: None if v is None else backend.asarray(v) for k, v in data.items()}
    if case.op == "matmul":
        bt = d["b"].T  # linear computes x @ weight.T, so a @ b is linear(a, b.T): no copy

        def call() -> tuple:
            return (linear(d["a"], bt),)

    elif case.op == "max_pool2d":
        k, s = case.k, case.stride

        def call() -> tuple:
            y = max_pool2d(d["x"], k, s)
            if mode == "fwd":
                return (y,)
            return y, max_pool2d_backward(d["grad_out"], d["x"], k, s)

    else:
        x, w, b, g = d["x"], d["weight"], d["bias"], d["grad_out"]
        s, p = case.stride, case.padding
        # fwd+bwd is a training step's pair of calls: nn.Conv2d passes a cache
        # so the backward reuses the forward's im2col columns.
        cache = ColumnCache() if mode == "fwd+bwd" else None

        def call() -> tuple:
            y = conv2d(x, w, b, s, p, cache=cache)
            if mode == "fwd":
                return (y,)
            return (y, *conv2d_backward(g, x, w, b, s, p, cache=cache))

    return call, backend.synchronize, str(backend), to_numpy


def _torch_runner(case: Case, mode: str, data: dict, device: str, threads: int) -> tuple:
    import torch
    import torch.nn.functional as F

    _torch_ieee_fp32(torch)
    backend_name = device.split(":")[0]
    if backend_name == "cpu":
        torch.set_num_threads(threads)
        dev = torch.device("cpu")
        sync: Callable[[], None] = _no_sync
    else:
        if not torch.cuda.is_available():
            raise _Skip("skipped: this torch has no CUDA")
        dev = torch.device("cuda", _cuda_index(device))
        sync = torch.cuda.synchronize
    grad = mode == "fwd+bwd"

    def tensor(a: np.ndarray | None, requires_grad: bool = False) -> Any:
        if a is None:
            return None
        return torch.from_numpy(a).to(dev).requires_grad_(requires_grad)

    if case.op == "matmul":
        a, b = tensor(data["a"]), tensor(data["b"])

        def call() -> tuple:
            with torch.no_grad():
                return (torch.matmul(a, b),)

    else:
        x = data["x"]
        w, g = data["weight"], data["grad_out"]
        if case.two_d:  # the 2-D API case: one image, one filter, as (1, 1, H, W)
            x, w, g = x[None, None], w[None, None], g[None, None]
        xt, wt, bt = tensor(x, grad), tensor(w, grad), tensor(data["bias"], grad)
        gt = tensor(g)
        k, s, p = case.k, case.stride, case.padding
        if case.op == "max_pool2d":
            forward = lambda: F.max_pool2d(xt, k, s)  # noqa: E731
            inputs = [xt]
        else:
            forward = lambda: F.conv2d(xt, wt, bt, s, p)  # noqa: E731
            inputs = [t for t in (xt, wt, bt) if t is not None]

        def call() -> tuple:
            if not grad:
                with torch.no_grad():
                    return (forward(),)
            y = forward()
            grads = list(torch.autograd.grad(y, inputs, gt))
            if case.op == "conv2d" and bt is None:
                grads.append(None)
            return (y.detach(), *grads)

    def to_numpy(t: Any) -> np.ndarray:
        return t.detach().cpu().numpy()

    return call, sync, str(dev) if dev.type == "cpu" else f"cuda:{dev.index}", to_numpy


def _torch_ieee_fp32(torch: Any) -> dict[str, Any]:
    """Make torch compute float32 in float32: no TF32 in cuDNN convolutions or matmul.

    cuDNN convolutions default to TF32 on Ampere and later GPUs (10-bit
    mantissa), which would compare a less accurate torch with cnnarray. Returns
    the settings, for the record.
    """
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
    if cudnn_conv is not None and hasattr(cudnn_conv, "fp32_precision"):  # torch >= 2.9
        cudnn_conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        return {
            "cudnn_conv_fp32_precision": cudnn_conv.fp32_precision,
            "cuda_matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision,
        }
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return {"cudnn_allow_tf32": False, "cuda_matmul_allow_tf32": False}


def _scipy_runner(case: Case, mode: str, data: dict) -> tuple:
    from scipy.signal import convolve2d, correlate2d

    if case.op != "conv2d":
        raise _Skip("skipped: not applicable")
    x, w, b, g = data["x"], data["weight"], data["bias"], data["grad_out"]
    if case.two_d:
        x, w, g = x[None, None], w[None, None], g[None, None]
    s, p = case.stride, case.padding
    xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    n, c_in, hp, wp = xpad.shape
    c_out, _, kh, kw = w.shape
    full_h, full_w = hp - kh + 1, wp - kw + 1  # output size at stride 1

    def forward() -> np.ndarray:
        out = np.empty((n, c_out, *case.out_hw), dtype=np.float32)
        for i in range(n):
            for o in range(c_out):
                acc = np.zeros((full_h, full_w), dtype=np.float32)
                for c in range(c_in):
                    acc += correlate2d(xpad[i, c], w[o, c], mode="valid")
                out[i, o] = acc[::s, ::s] + (0 if b is None else b[o])
        return out

    def backward() -> tuple:
        gx = np.zeros_like(xpad)
        gw = np.zeros_like(w)
        for i in range(n):
            for o in range(c_out):
                gfull = np.zeros((full_h, full_w), dtype=np.float32)
                gfull[::s, ::s] = g[i, o]  # a stride is a stride-1 output sampled sparsely
                for c in range(c_in):
                    gw[o, c] += correlate2d(xpad[i, c], gfull, mode="valid")
                    gx[i, c] += convolve2d(gfull, w[o, c], mode="full")
        gx = gx[:, :, p : hp - p, p : wp - p]
        gb = None if b is None else g.sum(axis=(0, 2, 3))
        return gx, gw, gb

    def call() -> tuple:
        y = forward()
        return (y,) if mode == "fwd" else (y, *backward())

    return call, _no_sync, "cpu", np.asarray


def _naive_runner(case: Case, mode: str, data: dict) -> tuple:
    if case.op == "matmul":
        raise _Skip("skipped: not applicable")
    x, g = data["x"], data["grad_out"]
    w, b = data["weight"], data["bias"]
    if case.two_d:
        x, w, g = x[None, None], w[None, None], g[None, None]
    s, p, k = case.stride, case.padding, case.k
    out_h, out_w = case.out_hw

    def conv_forward() -> np.ndarray:
        xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        out = np.zeros((x.shape[0], w.shape[0], out_h, out_w), dtype=np.float32)
        for i in range(out.shape[0]):
            for o in range(out.shape[1]):
                for r in range(out_h):
                    for q in range(out_w):
                        patch = xpad[i, :, r * s : r * s + k, q * s : q * s + k]
                        out[i, o, r, q] = np.sum(w[o] * patch)
                if b is not None:
                    out[i, o] += b[o]
        return out

    def conv_backward() -> tuple:
        xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        gx = np.zeros_like(xpad)
        gw = np.zeros_like(w)
        for i in range(g.shape[0]):
            for o in range(g.shape[1]):
                for r in range(out_h):
                    for q in range(out_w):
                        window = (i, slice(None), slice(r * s, r * s + k), slice(q * s, q * s + k))
                        gw[o] += g[i, o, r, q] * xpad[window]
                        gx[window] += g[i, o, r, q] * w[o]
        gb = None if b is None else g.sum(axis=(0, 2, 3))
        return gx[:, :, p : xpad.shape[2] - p, p : xpad.shape[3] - p], gw, gb

    def pool_forward() -> np.ndarray:
        out = np.empty((*x.shape[:2], out_h, out_w), dtype=np.float32)
        for i in range(x.shape[0]):
            for c in range(x.shape[1]):
                for r in range(out_h):
                    for q in range(out_w):
                        out[i, c, r, q] = np.max(x[i, c, r * s : r * s + k, q * s : q * s + k])
        return out

    def pool_backward() -> np.ndarray:
        gx = np.zeros_like(x)
        for i in range(x.shape[0]):
            for c in range(x.shape[1]):
                for r in range(out_h):
                    for q in range(out_w):
                        patch = x[i, c, r * s : r * s + k, q * s : q * s + k]
                        dr, dq = divmod(int(np.argmax(patch)), k)  # first maximum wins
                        gx[i, c, r * s + dr, q * s + dq] += g[i, c, r, q]
        return gx

    def call() -> tuple:
        if case.op == "max_pool2d":
            y = pool_forward()
            return (y,) if mode == "fwd" else (y, pool_backward())
        y = conv_forward()
        return (y,) if mode == "fwd" else (y, *conv_backward())

    return call, _no_sync, "cpu", np.asarray


def _estimated_call_s(peer: str, case: Case, mode: str) -> float | None:
    """Rough seconds of one call for the slow peers (None: fast peer, never skipped)."""
    factor = 3 if mode == "fwd+bwd" else 1
    if peer == "naive":
        return factor * case.windows * _NAIVE_S_PER_WINDOW
    if peer == "scipy" and case.op == "conv2d":
        n = max(case.n, 1) if not case.two_d else 1
        c_in, c_out = (1, 1) if case.two_d else (case.c_in, case.c_out)
        h_full = case.h + 2 * case.padding - case.k + 1
        w_full = case.w + 2 * case.padding - case.k + 1
        calls = n * c_out * c_in
        return factor * calls * (_SCIPY_S_PER_CALL + _SCIPY_S_PER_MAC * h_full * w_full * case.k**2)
    return None


def _skip_reason(peer: str, case: Case, mode: str, slow_limit_s: float) -> str | None:
    """Return why ``peer`` does not run ``case`` in ``mode``, or None when it does."""
    if peer == "scipy" and case.op != "conv2d":
        return "skipped: not applicable"
    if peer == "naive" and case.op == "matmul":
        return "skipped: not applicable"
    estimate = _estimated_call_s(peer, case, mode)
    if estimate is not None and estimate > slow_limit_s:
        return f"skipped: too slow (estimated {estimate:.3g} s per call)"
    return None


# --------------------------------------------------------------------------- timing


def _time_calls(
    call: Callable[[], tuple], sync: Callable[[], None], repeat: int, budget_s: float
) -> tuple[tuple, list[float], list[float]]:
    """Warm up, then time ``call``; return (first outputs, warm-up times, timed times).

    The device is synchronised before each clock read. At most ``repeat`` timed
    calls, fewer (but at least ``MIN_REPEATS``) when they would take more than
    ``budget_s`` in total.
    """

    def timed() -> tuple[float, tuple]:
        sync()
        start = time.perf_counter()
        out = call()
        sync()
        return time.perf_counter() - start, out

    gc.collect()
    first, outputs = timed()
    warmup = [first]
    while len(warmup) < MIN_WARMUP or (len(warmup) < MAX_WARMUP and sum(warmup) < WARMUP_S):
        warmup.append(timed()[0])
    estimate = max(warmup[-1], 1e-9)
    count = min(repeat, max(MIN_REPEATS, int(budget_s / estimate)))
    times = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection inside one call would be noise
    try:
        for _ in range(count):
            times.append(timed()[0])
    finally:
        if gc_was_enabled:
            gc.enable()
    return outputs, warmup, times


def _cuda_index(device: str) -> int:
    """GPU index of a backend name such as "cuda:1" (without importing CuPy)."""
    return int(device.partition(":")[2] or 0)


def _worker_info(peer: str, device: str, threads: int) -> dict[str, Any]:
    """What this worker process ran with: versions, threads, device name."""
    info: dict[str, Any] = {"pid": os.getpid(), "threadpools": _threadpool_info()}
    if peer == "torch":
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["fp32"] = _torch_ieee_fp32(torch)
        info["torch_config"] = torch.__config__.show()
        if device != "cpu" and torch.cuda.is_available():
            info["device_name"] = torch.cuda.get_device_name(_cuda_index(device))
            info["cudnn"] = torch.backends.cudnn.version()
            info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    elif peer == "cnnarray":
        backend = get_backend(device)
        if backend.device is not None:
            props = backend.xp.cuda.runtime.getDeviceProperties(backend.device)
            name = props["name"]
            info["device_name"] = name.decode() if isinstance(name, bytes) else str(name)
            info["cupy"] = backend.xp.__version__
    return info


def _worker(args: argparse.Namespace) -> int:
    """Run one peer on one case in every requested mode; write <out>/<peer>-<case>.json."""
    case = CASES[args.case]
    out_dir = Path(args.out)
    data = make_inputs(case, args.seed)
    report: dict[str, Any] = {"peer": args.peer, "case": case.name, "modes": []}
    for mode in args.modes.split(","):
        entry: dict[str, Any] = {"mode": mode, "device": "cpu"}
        try:
            if args.peer == "cnnarray":
                runner = _cnnarray_runner(case, mode, data, args.device)
            elif args.peer == "torch":
                runner = _torch_runner(case, mode, data, args.device, args.threads)
            elif args.peer == "scipy":
                runner = _scipy_runner(case, mode, data)
            else:
                runner = _naive_runner(case, mode, data)
            call, sync, where, to_numpy = runner
            entry["device"] = where
            outputs, warmup, times = _time_calls(call, sync, args.repeat, args.budget)
            if not args.no_outputs:
                arrays = {f"out{i}": to_numpy(o) for i, o in enumerate(outputs) if o is not None}
                np.savez(out_dir / f"{args.peer}-{case.name}-{_mode_tag(mode)}.npz", **arrays)
            entry.update(status="ok", warmup_s=warmup, times_s=times)
        except _Skip as exc:
            entry["status"] = str(exc)
        except Exception as exc:  # one failing mode must not hide the others
            entry["status"] = f"error: {type(exc).__name__}: {exc}"
        report["modes"].append(entry)
    report["info"] = _worker_info(args.peer, args.device, args.threads)
    (out_dir / f"{args.peer}-{case.name}.json").write_text(json.dumps(report))
    return 0


def _mode_tag(mode: str) -> str:
    return mode.replace("+", "")


# --------------------------------------------------------------------------- environment


def _threadpool_info() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [
        {k: v for k, v in pool.items() if k != "filepath"} | {"filepath": str(pool["filepath"])}
        for pool in threadpool_info()
    ]


def blas_threads() -> int:
    """Return the number of threads NumPy's BLAS uses (threadpoolctl, else the CPU count)."""
    pools = [p for p in _threadpool_info() if p.get("user_api") == "blas"]
    numpy_pools = [p for p in pools if "numpy" in p.get("filepath", "")]
    for pool in numpy_pools or pools:
        return int(pool["num_threads"])
    return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other work on the machine skews the timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _versions() -> dict[str, str | None]:
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


def _numpy_config() -> Any:
    try:
        config = np.show_config(mode="dicts")
    except TypeError:  # NumPy < 1.26 only prints
        return None
    return json.loads(json.dumps(config, default=str))


def _worker_env(thread_timeout: int | None) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Return (environment of the workers, variables set, variables removed)."""
    env = dict(os.environ)
    removed = [name for name in _WORKER_UNSET if env.pop(name, None) is not None]
    changed = {} if thread_timeout is None else {"OPENBLAS_THREAD_TIMEOUT": str(thread_timeout)}
    env.update(changed)
    # Let the worker import this very checkout even when it is not installed.
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env, changed, removed


# --------------------------------------------------------------------------- driver


def _names(value: Sequence[str] | str | None, valid: Sequence[str], what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    names = []
    for raw in value:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in valid:
            listed = ", ".join(v for v in valid if not (what == "case" and CASES[v].hidden))
            raise ValueError(f"unknown {what} {raw!r}; valid {what}s: {listed}")
        if name not in names:
            names.append(name)
    return names


def _peer_missing(peer: str) -> str | None:
    module = {"torch": "torch", "scipy": "scipy"}.get(peer)
    if module is not None and importlib.util.find_spec(module) is None:
        return f"skipped: {module} not installed"
    return None


def _max_abs_diff(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None or a.size != b.size:
        return None
    return float(np.max(np.abs(a.reshape(-1).astype(np.float64) - b.reshape(-1)), initial=0.0))


def _load_outputs(path: Path) -> list[np.ndarray] | None:
    if not path.exists():
        return None
    with np.load(path) as z:
        return [z[f"out{i}"] if f"out{i}" in z else None for i in range(4)]


def run_benchmarks(
    device: str = "cpu",
    cases: Sequence[str] | str | None = None,
    compare: Sequence[str] | str | None = None,
    repeat: int = 7,
    progress: Callable[[int, int, str], None] | None = None,
    *,
    seed: int = 0,
    budget_s: float = 3.0,
    slow_limit_s: float = 3.0,
    timeout_s: float = 900.0,
    thread_timeout: int | None = THREAD_TIMEOUT,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """Time cnnarray and its peers on the benchmark cases; return JSON-able results.

    Parameters
    ----------
    device : str, default "cpu"
        cnnarray's backend (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``). On a
        CUDA device torch runs on that GPU too; scipy and naive stay on the CPU.
    cases : list of str or comma-separated str, optional
        Case names from :data:`DEFAULT_CASES` (default: all of them). The
        "% of GEMM ceiling" column needs ``"matmul"`` among them.
    compare : list of str or comma-separated str, optional
        Peers to time besides cnnarray (always timed): ``"torch"``, ``"scipy"``,
        ``"naive"``. A peer that is not installed gets a "skipped" record.
    repeat : int, default 7
        Timed calls per (case, mode, peer) after warm-up; fewer (at least 3) when
        they would take more than ``budget_s``.
    progress : callable(done, total, label), optional
        Called before each worker process starts and once at the end with
        ``done == total``; ``label`` is e.g. ``"torch on b"``.
    seed : int, default 0
        Seed of the inputs.
    budget_s : float, default 3.0
        Target total time of the timed calls of one (case, mode, peer).
    slow_limit_s : float, default 3.0
        scipy and naive are skipped ("skipped: too slow") where one call is
        estimated to take longer than this.
    timeout_s : float, default 900.0
        Limit of one worker process.
    thread_timeout : int or None, default 4
        ``OPENBLAS_THREAD_TIMEOUT`` of the workers (4 to 30; OpenBLAS threads
        spin ``2**thread_timeout`` cycles after a call). None keeps the caller's
        environment, to measure what a user who sets nothing gets.
    rounds : int, default 3
        Worker processes per (case, peer) for cnnarray and torch, run round by
        round with the peers' order flipped each round, so that a slow spell of
        the machine falls on both sides of a ratio; their timed calls are
        pooled. scipy and naive (:data:`ONE_ROUND_PEERS`) run once.

    Returns
    -------
    dict
        ``{"schema": 1, "metadata": {...}, "records": [...]}``. One record per
        (case, mode, peer) with ``status`` ("ok", "skipped: ..." or "error: ..."),
        ``median_s``, ``min_s``, ``max_s`` (over the timed calls of every round),
        ``repeats`` (timed calls in all), ``rounds`` (worker processes),
        ``round_medians_s`` (each one's median), ``times_s``, ``flop``,
        ``gflops``, ``fraction_of_gemm_ceiling``, ``ratio_vs_cnnarray`` (this
        peer's median / cnnarray's: how many times slower), ``ratio_vs_torch``
        (this peer's median / torch's), ``max_abs_diff`` (forward output vs
        cnnarray's) and ``grad_max_abs_diff``; timings are None unless ok.

    Raises
    ------
    ValueError
        On an unknown case, peer or device name, ``repeat < 1`` or ``rounds < 1``.
    """
    case_names = _names(cases, list(CASES), "case") or list(DEFAULT_CASES)
    peers = ["cnnarray"] + [p for p in _names(compare, PEERS, "peer") if p != "cnnarray"]
    for name, value in (("repeat", repeat), ("rounds", rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    backend: Backend = get_backend(device)
    device = str(backend)
    threads = blas_threads()
    if thread_timeout is not None and (
        isinstance(thread_timeout, bool)
        or not isinstance(thread_timeout, int)
        or not 4 <= thread_timeout <= 30
    ):
        raise ValueError(
            f"thread_timeout must be None or an int from 4 to 30, got {thread_timeout!r}"
        )
    env, env_set, removed = _worker_env(thread_timeout)
    started = time.perf_counter()
    load_start = _load_average()
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")

    plan: list[tuple[Case, str, list[str], dict[str, str]]] = []
    for name in case_names:
        case = CASES[name]
        for peer in peers:
            skipped = {}
            for mode in case.modes:
                reason = _peer_missing(peer) or _skip_reason(peer, case, mode, slow_limit_s)
                if reason:
                    skipped[mode] = reason
            plan.append((case, peer, [m for m in case.modes if m not in skipped], skipped))
    schedule = _schedule(plan, rounds)
    total = len(schedule)
    # the case's outputs are compared once its first round is over
    first_round_ends = {case.name: i for i, (r, case, *_) in enumerate(schedule) if r == 0}

    entries: dict[tuple[str, str, str], list[dict]] = {}
    diffs: dict[tuple[str, str, str], tuple[float | None, float | None]] = {}
    peer_info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cnnarray-bench-") as tmp:
        out_dir = Path(tmp)
        for done, (round_, case, peer, modes) in enumerate(schedule):
            if progress is not None:
                runs = 1 if peer in ONE_ROUND_PEERS else rounds
                label = f"{peer} on {case.name}" + (f", round {round_ + 1}/{runs}" * (runs > 1))
                progress(done, total, label)
            report = _run_worker(
                peer, case, modes, device, repeat, threads, seed, budget_s,
                timeout_s, out_dir, env, outputs=round_ == 0,
            )  # fmt: skip
            for mode in report["modes"]:
                entries.setdefault((case.name, mode["mode"], peer), []).append(mode)
            if "info" in report:
                peer_info.setdefault(peer, report["info"])
            if first_round_ends[case.name] == done:
                diffs.update(_output_diffs(case, peers, out_dir))
                for path in out_dir.glob(f"*-{case.name}-*.npz"):
                    path.unlink()
    records: list[dict[str, Any]] = []
    for case, peer, _, skipped in plan:
        for mode in case.modes:
            runs = entries.get((case.name, mode, peer))
            if runs is None:
                runs = [{"status": skipped.get(mode, "error: not run")}]
            record = _record(case, mode, peer, runs, device)
            if record["status"] == "ok":
                record["max_abs_diff"], record["grad_max_abs_diff"] = diffs.get(
                    (case.name, mode, peer), (None, None)
                )
            records.append(record)
    if progress is not None:
        progress(total, total, "done")
    # Group the rows by (case, mode) with the peers in the order asked for.
    records.sort(
        key=lambda r: (case_names.index(r["case"]), MODES.index(r["mode"]), peers.index(r["peer"]))
    )

    ceiling = _fill_ratios(records)
    device_name = (peer_info.get("cnnarray") or {}).get("device_name") or _cpu_model()
    metadata = {
        "date": date,
        "wall_s": time.perf_counter() - started,
        "device": device,
        "device_name": device_name,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "load_average": {"start": load_start, "end": _load_average()},
        "threads": {"blas": threads, "torch": threads if "torch" in peers else None},
        "versions": _versions(),
        "blas": {"threadpoolctl": _threadpool_info(), "numpy_config": _numpy_config()},
        "worker_env": {"set": env_set, "unset": removed,
                       "inherited": {v: os.environ[v] for v in _THREAD_VARS if v in os.environ}},
        "repeat": repeat,
        "rounds": rounds,
        "budget_s": budget_s,
        "slow_limit_s": slow_limit_s,
        "seed": seed,
        "peers": peers,
        "peer_info": peer_info,
        "cases": {name: CASES[name].describe() for name in case_names},
        "gemm_ceiling": ceiling,
    }  # fmt: skip
    return {"schema": _SCHEMA, "metadata": metadata, "records": records}


def _schedule(
    plan: list[tuple[Case, str, list[str], dict[str, str]]], rounds: int
) -> list[tuple[int, Case, str, list[str]]]:
    """The worker runs, round by round: ``(round, case, peer, modes)``.

    Round 0 runs every (case, peer) of ``plan`` that has a mode to run, in the
    plan's order; each later round runs the fast peers (not
    :data:`ONE_ROUND_PEERS`) again, case by case, with their order reversed in
    every other round (cnnarray, torch; torch, cnnarray; ...), so neither side
    of a ratio always runs first or right after a slow loop.
    """
    runs = []
    for round_ in range(rounds):
        for case in dict.fromkeys(case for case, *_ in plan):
            peers = [(p, m) for c, p, m, _ in plan if c is case and m]
            if round_ > 0:
                peers = [(p, m) for p, m in peers if p not in ONE_ROUND_PEERS]
            if round_ % 2:
                peers.reverse()
            runs += [(round_, case, peer, modes) for peer, modes in peers]
    return runs


def _run_worker(
    peer: str, case: Case, modes: list[str], device: str, repeat: int, threads: int,
    seed: int, budget_s: float, timeout_s: float, out_dir: Path, env: dict[str, str],
    outputs: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Run one worker process; on failure return a report whose modes carry the error.

    ``outputs``: the worker saves its first call's outputs for the comparison."""
    command = [
        sys.executable, "-m", "cnnarray.bench", "--worker", peer, case.name,
        "--modes", ",".join(modes), "--device", device, "--repeat", str(repeat),
        "--threads", str(threads), "--seed", str(seed), "--budget", str(budget_s),
        "--out", str(out_dir),
    ] + ([] if outputs else ["--no-outputs"])  # fmt: skip
    report_path = out_dir / f"{peer}-{case.name}.json"
    report_path.unlink(missing_ok=True)
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        error = f"error: worker timed out after {timeout_s:g} s"
    else:
        if proc.returncode == 0 and report_path.exists():
            return json.loads(report_path.read_text())
        lines = (proc.stderr or proc.stdout or "").strip().splitlines()
        error = f"error: worker exited with {proc.returncode}: {lines[-1] if lines else ''}"
    return {"modes": [{"mode": m, "status": error} for m in modes]}


def _record(case: Case, mode: str, peer: str, runs: list[dict[str, Any]], device: str) -> dict:
    """One record from the worker reports of every round (``runs``) for one mode:
    their timed calls pooled; the first status that is not "ok", if any, wins."""
    status = next((e.get("status") for e in runs if e.get("status") != "ok"), "ok")
    ok = status == "ok" and all(e.get("times_s") for e in runs)
    times = [t for e in runs for t in e.get("times_s") or []] if ok else []
    median = statistics.median(times) if ok else None
    flop = case.flop(mode)
    return {
        "case": case.name,
        "mode": mode,
        "peer": peer,
        "device": runs[0].get("device", "cpu" if peer in ("scipy", "naive") else device),
        "status": status if status else "error: no report",
        "median_s": median,
        "min_s": min(times) if ok else None,
        "max_s": max(times) if ok else None,
        "repeats": len(times),
        "rounds": len(runs) if ok else 0,
        "round_medians_s": [statistics.median(e["times_s"]) for e in runs] if ok else [],
        "warmup": sum(len(e.get("warmup_s") or []) for e in runs),
        "times_s": times,
        "flop": flop,
        "gflops": flop / median / 1e9 if ok and flop else None,
        "fraction_of_gemm_ceiling": None,
        "ratio_vs_cnnarray": None,
        "ratio_vs_torch": None,
        "max_abs_diff": None,
        "grad_max_abs_diff": None,
    }


def _output_diffs(
    case: Case, peers: list[str], out_dir: Path
) -> dict[tuple[str, str, str], tuple[float | None, float | None]]:
    """``(case, mode, peer) -> (max_abs_diff, grad_max_abs_diff)`` of each peer's saved
    outputs against cnnarray's: forward output, and the largest over the gradients."""
    found = {}
    for mode in case.modes:
        tag = _mode_tag(mode)
        reference = _load_outputs(out_dir / f"cnnarray-{case.name}-{tag}.npz")
        if reference is None:
            continue
        for peer in peers:
            outputs = _load_outputs(out_dir / f"{peer}-{case.name}-{tag}.npz")
            if outputs is None:
                continue
            grads = [_max_abs_diff(a, b) for a, b in zip(outputs[1:], reference[1:], strict=True)]
            grads = [d for d in grads if d is not None]
            found[case.name, mode, peer] = (
                _max_abs_diff(outputs[0], reference[0]),
                max(grads) if grads else None,
            )
    return found


def _fill_ratios(records: list[dict]) -> dict[str, Any] | None:
    """Fill the ratios and GEMM fractions; return the ceiling (best matmul) or None."""
    medians = {(r["case"], r["mode"], r["peer"]): r["median_s"] for r in records}
    gemm = [r for r in records if CASES[r["case"]].op == "matmul" and r["gflops"]]
    best = max(gemm, key=lambda r: r["gflops"], default=None)
    for r in records:
        if r["median_s"] is None:
            continue
        for peer, key in (("cnnarray", "ratio_vs_cnnarray"), ("torch", "ratio_vs_torch")):
            other = medians.get((r["case"], r["mode"], peer))
            if other:
                r[key] = r["median_s"] / other
        if best is not None and r["gflops"] and r["device"] == best["device"]:
            r["fraction_of_gemm_ceiling"] = r["gflops"] / best["gflops"]
    if best is None:
        return None
    return {"gflops": best["gflops"], "peer": best["peer"], "case": best["case"],
            "device": best["device"]}  # fmt: skip


# --------------------------------------------------------------------------- output


def write_json(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``results`` to ``path`` as JSON, atomically (temp file, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(results, indent=2, allow_nan=False) + "\n").encode())
    return path


def _groups(results: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    groups: list[tuple[str, str]] = []
    peers: list[str] = []
    for r in results["records"]:
        if (r["case"], r["mode"]) not in groups:
            groups.append((r["case"], r["mode"]))
        if r["peer"] not in peers:
            peers.append(r["peer"])
    return groups, peers


def plot(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Save a bar chart of the median time of each case/mode and peer (log scale) as PNG.

    Error bars span min to max; skipped and failed runs have no bar.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .plots import png_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    groups, peers = _groups(results)
    by_key = {(r["case"], r["mode"], r["peer"]): r for r in results["records"]}
    fig = Figure(figsize=(max(6.0, 0.9 * len(groups) + 2.0), 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(len(peers), 1)
    for j, peer in enumerate(peers):
        xs, ys, low, high = [], [], [], []
        for i, (case, mode) in enumerate(groups):
            r = by_key.get((case, mode, peer))
            if r is None or r["median_s"] is None:
                continue
            xs.append(i - 0.4 + (j + 0.5) * width)
            ys.append(r["median_s"] * 1e3)
            low.append((r["median_s"] - r["min_s"]) * 1e3)
            high.append((r["max_s"] - r["median_s"]) * 1e3)
        ax.bar(xs, ys, width, yerr=[low, high], capsize=2, label=peer)
    ax.set_yscale("log")
    ax.set_ylabel("median time per call (ms, log scale)")
    ax.set_xticks(range(len(groups)), [f"{c}\n{m}" for c, m in groups])
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend()
    meta = results.get("metadata", {})
    ax.set_title(f"cnnarray bench on {meta.get('device', '?')} ({meta.get('device_name', '')})")
    atomic_write_bytes(path, png_bytes(fig, dpi=120))
    return path


def _fmt(value: float) -> str:
    """Three significant digits, without exponent up to the thousands."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def render_table(results: dict[str, Any]) -> Any:
    """Return a ``rich.table.Table`` with one row per record.

    Columns: case, mode, peer, median ms, min-max ms, GFLOP/s, % of the GEMM
    ceiling, "vs cnnarray" and "vs torch" (median / their median: above 1 is
    slower), max |diff| vs cnnarray's outputs (forward output, and gradients in
    fwd+bwd), and a note saying why a row was skipped or failed.
    """
    from rich.markup import escape
    from rich.table import Table

    meta = results.get("metadata", {})
    threads = (meta.get("threads") or {}).get("blas")
    title = f"cnnarray bench on {meta.get('device', '?')} ({meta.get('device_name', '')})"
    if threads and meta.get("device") == "cpu":
        title += f", {threads} BLAS threads"
    caption = "vs X: median / X's median (above 1: slower than X)."
    if (meta.get("rounds") or 1) > 1:
        caption += (f" cnnarray and torch: {meta['rounds']} interleaved worker processes"
                    " per case, their timed calls pooled.")  # fmt: skip
    ceiling = meta.get("gemm_ceiling")
    if ceiling:
        caption += f" GEMM ceiling: {_fmt(ceiling['gflops'])} GFLOP/s ({ceiling['peer']} matmul)."
    table = Table(title=title, caption=caption)
    for name in ("case", "mode", "peer", "median ms", "min-max ms", "GFLOP/s", "% GEMM",
                 "vs cnnarray", "vs torch", "max |diff|", "note"):  # fmt: skip
        left = name in ("case", "mode", "peer", "note")
        table.add_column(name, justify="left" if left else "right")
    previous = None
    for r in results["records"]:
        group = (r["case"], r["mode"])
        if previous is not None and group != previous:
            table.add_section()
        row = [r["case"], r["mode"]] if group != previous else ["", ""]
        previous = group
        row.append(r["peer"])
        if r["median_s"] is None:
            table.add_row(*row, "-", *[""] * 6, f"[dim]{escape(r['status'])}[/]")
            continue
        frac = r["fraction_of_gemm_ceiling"]
        diffs = [d for d in (r["max_abs_diff"], r["grad_max_abs_diff"]) if d is not None]
        table.add_row(
            *row,
            _fmt(r["median_s"] * 1e3),
            f"{_fmt(r['min_s'] * 1e3)}-{_fmt(r['max_s'] * 1e3)}",
            "" if r["gflops"] is None else _fmt(r["gflops"]),
            "" if frac is None else f"{100 * frac:.1f}%",
            *(
                "" if v is None else f"{v:.3g}"
                for v in (r["ratio_vs_cnnarray"], r["ratio_vs_torch"])
            ),
            "ref" if r["peer"] == "cnnarray" else f"{max(diffs):.1e}" if diffs else "",
            "",
        )
    return table


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cnnarray.bench``: a worker (``--worker PEER CASE``), or a whole run."""
    parser = argparse.ArgumentParser(
        prog="python -m cnnarray.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--worker", nargs=2, metavar=("PEER", "CASE"),
                        help="internal: time one peer on one case and exit")  # fmt: skip
    parser.add_argument("--modes", default="fwd,fwd+bwd")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=3.0)
    parser.add_argument("--out", help="worker: folder for its report and outputs")
    parser.add_argument("--no-outputs", action="store_true",
                        help="worker: do not save the first call's outputs")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES))
    parser.add_argument("--compare", default="torch,scipy,naive")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="save the bar chart here (PNG)")
    parser.add_argument(
        "--thread-timeout",
        default=str(THREAD_TIMEOUT),
        help="OPENBLAS_THREAD_TIMEOUT of the workers; 'none' keeps the environment",
    )
    args = parser.parse_args(argv)
    if args.worker:
        args.peer, args.case = args.worker
        if args.peer not in PEERS or args.case not in CASES or not args.out:
            parser.error(f"--worker needs PEER in {PEERS}, a known CASE, and --out")
        args.threads = args.threads or blas_threads()
        return _worker(args)

    from rich.console import Console

    console = Console()

    def progress(done: int, total: int, label: str) -> None:
        console.print(f"[dim]{time.strftime('%X')} {done}/{total} {label}[/]")

    results = run_benchmarks(
        args.device, args.cases, args.compare, args.repeat, progress,
        seed=args.seed, budget_s=args.budget, rounds=args.rounds,
        thread_timeout=None if args.thread_timeout.lower() == "none" else int(args.thread_timeout),
    )  # fmt: skip
    console.print(render_table(results))
    console.print(f"wall time {results['metadata']['wall_s']:.1f} s")
    if args.json:
        write_json(results, args.json)
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
