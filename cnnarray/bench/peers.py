"""The peers: cnnarray and the implementations it is timed against, one runner each.

:func:`runner` returns ``(call, sync, device, to_numpy)``: ``call()`` computes
once and returns the outputs (y, then grad_x, grad_weight, grad_bias for
fwd+bwd) in the peer's own arrays; ``sync()`` waits for its device;
``to_numpy`` converts the outputs afterwards, outside the timing.
:func:`skip_reason` says, before any process starts, where a peer does not run.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import get_backend, to_numpy
from ..ops import ColumnCache, conv2d, conv2d_backward, linear, max_pool2d, max_pool2d_backward
from .cases import Case
from .timing import no_sync

PEERS = ("cnnarray", "torch", "scipy", "naive")
# Peers timed in one round only: their loops take seconds a call and stand 50x
# or more from cnnarray, so a second process would only lengthen the run.
ONE_ROUND_PEERS = ("scipy", "naive")

# Per-call cost models of the slow peers, fitted on a 2-core Xeon; they only
# decide what to skip, so they need to be right within a factor of two.
_NAIVE_S_PER_WINDOW = 4e-6  # one np.sum(filter * patch) from the Python loop
_SCIPY_S_PER_CALL = 15e-6  # fixed cost of one correlate2d call
_SCIPY_S_PER_MAC = 2.5e-9


class Skip(Exception):
    """A peer cannot run this case; the message is the reason."""


def runner(peer: str, case: Case, mode: str, data: dict, device: str, threads: int) -> tuple:
    """Return ``(call, sync, device, to_numpy)`` of ``peer`` on ``case`` in ``mode``.

    ``data`` is :func:`~cnnarray.bench.cases.make_inputs`' dict; ``device`` is
    cnnarray's backend name (torch follows it; scipy and naive stay on the
    CPU); ``threads`` is torch's CPU thread count. Raises :class:`Skip` where
    the peer cannot run the case.
    """
    if peer == "cnnarray":
        return _cnnarray_runner(case, mode, data, device)
    if peer == "torch":
        return _torch_runner(case, mode, data, device, threads)
    if peer == "scipy":
        return _scipy_runner(case, mode, data)
    return _naive_runner(case, mode, data)


def skip_reason(peer: str, case: Case, mode: str, slow_limit_s: float) -> str | None:
    """Return why ``peer`` does not run ``case`` in ``mode``, or None when it does."""
    module = {"torch": "torch", "scipy": "scipy"}.get(peer)
    if module is not None and importlib.util.find_spec(module) is None:
        return f"skipped: {module} not installed"
    if peer == "scipy" and case.op != "conv2d":
        return "skipped: not applicable"
    if peer == "naive" and case.op == "matmul":
        return "skipped: not applicable"
    estimate = _estimated_call_s(peer, case, mode)
    if estimate is not None and estimate > slow_limit_s:
        return f"skipped: too slow (estimated {estimate:.3g} s per call)"
    return None


def cuda_index(device: str) -> int:
    """GPU index of a backend name such as "cuda:1" (without importing CuPy)."""
    return int(device.partition(":")[2] or 0)


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

    torch_ieee_fp32(torch)
    backend_name = device.split(":")[0]
    if backend_name == "cpu":
        torch.set_num_threads(threads)
        dev = torch.device("cpu")
        sync: Callable[[], None] = no_sync
    else:
        if not torch.cuda.is_available():
            raise Skip("skipped: this torch has no CUDA")
        dev = torch.device("cuda", cuda_index(device))
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


def torch_ieee_fp32(torch: Any) -> dict[str, Any]:
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
        raise Skip("skipped: not applicable")
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

    return call, no_sync, "cpu", np.asarray


def _naive_runner(case: Case, mode: str, data: dict) -> tuple:
    if case.op == "matmul":
        raise Skip("skipped: not applicable")
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

    return call, no_sync, "cpu", np.asarray


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
