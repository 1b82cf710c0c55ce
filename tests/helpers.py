"""Shared test helpers: tolerances, assert_close, finite differences, backend runs, strategies.

Every test compares a fast operation with the float64 oracle in
:mod:`cnnarray.reference` (and, where torch imports, with PyTorch) through
:func:`assert_close`, which checks backend, dtype and shape before values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import assume
from hypothesis import strategies as st

import cnnarray
from cnnarray import _args
from cnnarray.backend import Backend, cuda_unavailable_reason

CUDA_REASON = cuda_unavailable_reason()
requires_cuda = pytest.mark.skipif(CUDA_REASON is not None, reason=f"needs CUDA: {CUDA_REASON}")
requires_no_cuda = pytest.mark.skipif(CUDA_REASON is None, reason="a CUDA device answers here")

# Relative tolerance per dtype; the absolute one is scaled to the data (see assert_close).
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
# Floor of the absolute tolerance: covers outputs that are sums of many terms cancelling to ~0.
ATOL_FLOOR = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-13}
# Central differences in float64 with eps=1e-6 are good to ~1e-9 relative.
GRAD_RTOL = 1e-5


# --------------------------------------------------------------------------- comparison


def _describe(a: Any) -> str:
    return f"{type(a).__name__} dtype={getattr(a, 'dtype', None)} shape={getattr(a, 'shape', None)}"


def assert_close(
    actual: Any,
    desired: Any,
    *,
    dtype: Any,
    backend: Backend | str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    scale: float | None = None,
    err_msg: str = "",
) -> None:
    """Assert ``actual`` matches ``desired`` in backend, dtype, shape, then values.

    Parameters
    ----------
    actual : NumPy or CuPy array (or scalar), or None
        Result of the operation under test. None only when ``desired`` is None.
    desired : array_like or None
        Expected values (any dtype: compared in float64).
    dtype : dtype
        The dtype ``actual`` must have; also selects the tolerances.
    backend : Backend or str, optional
        The backend ``actual`` must live on.
    rtol, atol : float, optional
        Default ``RTOL[dtype]`` and ``rtol * scale + ATOL_FLOOR[dtype]``.
    scale : float, optional
        Magnitude of the data for the absolute tolerance; default the largest finite
        ``|desired|``. Pass a bound on the sum of |terms| for long cancelling sums.
    """
    if desired is None or actual is None:
        assert actual is None and desired is None, (
            f"{err_msg}: expected {_describe(desired)}, got {_describe(actual)}"
        )
        return
    dtype = np.dtype(dtype)
    if backend is not None:
        want = cnnarray.get_backend(backend)
        got = cnnarray.backend_of(actual)
        assert got == want, f"{err_msg}: result lives on {got}, expected {want}"
    assert np.dtype(actual.dtype) == dtype, (
        f"{err_msg}: dtype {actual.dtype}, expected {dtype} ({_describe(actual)})"
    )
    expected = np.asarray(cnnarray.to_numpy(desired), dtype=np.float64)
    assert tuple(actual.shape) == expected.shape, (
        f"{err_msg}: shape {tuple(actual.shape)}, expected {expected.shape}"
    )
    values = np.asarray(cnnarray.to_numpy(actual), dtype=np.float64)
    rtol = RTOL[dtype] if rtol is None else rtol
    if atol is None:
        if scale is None:
            finite = np.abs(expected[np.isfinite(expected)])
            scale = float(finite.max()) if finite.size else 0.0
        atol = rtol * scale + ATOL_FLOOR[dtype]
    np.testing.assert_allclose(
        values,
        expected,
        rtol=rtol,
        atol=atol,
        equal_nan=True,
        err_msg=f"{err_msg} (dtype={dtype}, rtol={rtol:g}, atol={atol:g})",
    )


def assert_grad_close(analytic: Any, numeric: np.ndarray, err_msg: str = "") -> None:
    """Compare a float64 analytic gradient with central differences."""
    scale = max(1.0, float(np.abs(numeric).max(initial=0.0)))
    assert_close(
        analytic, numeric, dtype=np.float64, rtol=GRAD_RTOL, atol=1e-7 * scale, err_msg=err_msg
    )


def numerical_grad(f: Callable[[np.ndarray], Any], x: Any, eps: float = 1e-6) -> np.ndarray:
    """Return the float64 central-difference gradient of the scalar function ``f`` at ``x``.

    ``f`` gets a float64 NumPy array of x's shape (modified in place between calls,
    so ``f`` must not keep it) and returns anything ``float`` accepts.
    """
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        orig = x[idx]
        x[idx] = orig + eps
        plus = float(cnnarray.to_numpy(f(x)))
        x[idx] = orig - eps
        minus = float(cnnarray.to_numpy(f(x)))
        x[idx] = orig
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def vjp_objective(out: Any, grad_out: np.ndarray) -> float:
    """``sum(out * grad_out)``: the scalar whose gradient a backward with ``grad_out`` gives."""
    return float(np.sum(np.asarray(cnnarray.to_numpy(out), np.float64) * grad_out))


# --------------------------------------------------------------------------- backends


def train_adam(model: Any, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int,
               lr: float) -> None:  # fmt: skip
    """Train ``model`` with cross-entropy, Adam and a cosine schedule over ``epochs`` (seeded
    shuffling), BLAS limited to one thread where threadpoolctl is installed: on a busy 2-core
    CI machine a second thread only waits, for matrices this small."""
    from cnnarray import optim
    from cnnarray.data import DataLoader

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limit: Any = contextlib.nullcontext()
    else:
        limit = threadpool_limits(1, user_api="blas")
    optimizer = optim.Adam(model.parameters(), lr=lr)
    schedule = optim.CosineAnnealingLR(optimizer, T_max=epochs)
    with limit:
        for epoch in range(epochs):
            model.train()
            for xb, yb in DataLoader(x, y, batch_size=batch_size, shuffle=True, seed=epoch):
                optimizer.zero_grad()
                cnnarray.cross_entropy(model(cnnarray.tensor(xb)), yb).backward()
                optimizer.step()
            schedule.step()


def to_backend(value: Any, backend: Backend) -> Any:
    """Move NumPy arrays to ``backend``; leave everything else alone."""
    if isinstance(value, np.ndarray | np.generic):
        return cnnarray.asarray(value, backend)
    return value


def _compare_results(out: Any, cpu: Any, backend: Backend, name: str) -> None:
    if isinstance(cpu, tuple):
        assert isinstance(out, tuple) and len(out) == len(cpu), f"{name}: {out!r} vs {cpu!r}"
        for k, (a, b) in enumerate(zip(out, cpu, strict=True)):
            _compare_results(a, b, backend, f"{name}[{k}]")
        return
    assert_close(
        out,
        cpu,
        dtype=None if cpu is None else cpu.dtype,
        backend=backend,
        err_msg=f"{name}: {backend} vs cpu",
    )


def _check_lives_on(out: Any, backend: Backend, name: str) -> None:
    for item in out if isinstance(out, tuple) else (out,):
        if item is not None:
            where = cnnarray.backend_of(item)
            assert where == backend, f"{name}: result lives on {where}, expected {backend}"


def run_op(op: Callable[..., Any], *args: Any, backend: Backend, **kwargs: Any) -> Any:
    """Call ``op`` with its NumPy arguments moved to ``backend`` and ``backend=None``.

    Checks that every result lives on ``backend``. On a GPU backend it also runs
    ``op(..., backend="cpu")`` on the NumPy arguments and compares the two results
    with :func:`assert_close`, so each test doubles as a CuPy-versus-NumPy test.
    """
    name = getattr(op, "__name__", repr(op))
    out = op(
        *(to_backend(a, backend) for a in args),
        **{k: to_backend(v, backend) for k, v in kwargs.items()},
    )
    _check_lives_on(out, backend, name)
    if backend.name != "cpu":
        cpu = op(*args, backend="cpu", **kwargs)
        _compare_results(out, cpu, backend, name)
    return out


# --------------------------------------------------------------------------- data


def tie_free(rng: np.random.Generator, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """Distinct values (a shuffled range, exact in float32), spaced 0.5 apart, centred."""
    size = int(np.prod(shape))
    values = (rng.permutation(size) - size // 2) * 0.5
    return values.reshape(shape).astype(dtype)


def away_from_zero(rng: np.random.Generator, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """Normal values pushed at least 0.05 away from 0 (relu's kink)."""
    v = rng.standard_normal(shape)
    return (np.sign(v) * (0.05 + np.abs(v))).astype(dtype)


# --------------------------------------------------------------------------- strategies


def int_or_pair(low: int, high: int) -> st.SearchStrategy:
    return st.one_of(
        st.integers(low, high), st.tuples(st.integers(low, high), st.integers(low, high))
    )


def _as_pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


@dataclass
class ConvCase:
    """One conv2d call: shapes, hyper-parameters and a seed for the data."""

    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    bias: bool
    kwargs: dict[str, Any]
    seed: int
    layout: str  # "batched", "unbatched" (C, H, W) or "image" (H, W) with a (kh, kw) filter

    def arrays(self, dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        rng = np.random.default_rng(self.seed)
        x = rng.uniform(-1, 1, self.x_shape).astype(dtype)
        w = rng.uniform(-1, 1, self.w_shape).astype(dtype)
        c_out = 1 if self.layout == "image" else self.w_shape[0]
        b = rng.uniform(-1, 1, (c_out,)).astype(dtype) if self.bias else None
        return x, w, b

    def grad_out(self, out_shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.random.default_rng(self.seed + 1).uniform(-1, 1, out_shape).astype(dtype)


@st.composite
def conv_cases(draw: Any, max_n: int = 3, max_c: int = 4, max_hw: int = 10) -> ConvCase:
    """Strategy for conv2d calls (strides, paddings, dilations, groups, layouts)."""
    layout = draw(st.sampled_from(["batched", "batched", "unbatched", "image"]))
    if layout == "image":
        groups, c_in, c_out = 1, 1, 1
    else:
        groups = draw(st.sampled_from([g for g in (1, 2, 3, 4) if g <= max_c]))
        c_in = groups * draw(st.integers(1, max_c // groups))
        c_out = groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dilation = draw(int_or_pair(1, 2))
    padding = draw(st.one_of(int_or_pair(0, 2), st.sampled_from(["valid", "same"])))
    stride = 1 if padding == "same" else draw(int_or_pair(1, 3))
    dh, dw = _as_pair(dilation)
    pt, pb, pl, pr = _args.conv_padding(padding, (kh, kw), (dh, dw), _as_pair(stride))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - pt - pb), max_hw))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - pl - pr), max_hw))
    if layout == "image":
        x_shape, w_shape = (h, w), (kh, kw)
    else:
        lead = (draw(st.integers(1, max_n)),) if layout == "batched" else ()
        x_shape, w_shape = (*lead, c_in, h, w), (c_out, c_in // groups, kh, kw)
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return ConvCase(
        x_shape, w_shape, draw(st.booleans()), kwargs, draw(st.integers(0, 2**32 - 1)), layout
    )


@dataclass
class PoolCase:
    """One max_pool2d / avg_pool2d call."""

    kind: str  # "max" or "avg"
    x_shape: tuple[int, ...]
    kwargs: dict[str, Any]
    seed: int

    def x(self, dtype: Any) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        if self.kind == "max":
            return tie_free(rng, self.x_shape, dtype)
        return rng.uniform(-1, 1, self.x_shape).astype(dtype)

    def grad_out(self, out_shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.random.default_rng(self.seed + 1).uniform(-1, 1, out_shape).astype(dtype)


def pool_has_empty_window(h: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> bool:
    """True when some window reads only padding (possible with dilation): its max is -inf."""
    out = _args.pool_out_size(h, p, k, s, d, ceil_mode)
    return any(all(not 0 <= o * s - p + i * d < h for i in range(k)) for o in range(max(out, 0)))


@st.composite
def pool_cases(draw: Any, kind: str, max_n: int = 3, max_c: int = 4, max_hw: int = 10) -> PoolCase:
    """Strategy for max/avg pooling calls; max-pool windows always read some input."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), int_or_pair(1, 3)))
    padding = draw(
        st.one_of(
            st.integers(0, min(kh, kw) // 2),
            st.tuples(st.integers(0, kh // 2), st.integers(0, kw // 2)),
        )
    )
    dilation = draw(int_or_pair(1, 2)) if kind == "max" else 1
    ceil_mode = draw(st.booleans())
    sh, sw = (kh, kw) if stride is None else _as_pair(stride)
    ph, pw = _as_pair(padding)
    dh, dw = _as_pair(dilation)
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), max_hw))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), max_hw))
    assume(not pool_has_empty_window(h, kh, sh, ph, dh, ceil_mode))
    assume(not pool_has_empty_window(w, kw, sw, pw, dw, ceil_mode))
    c, n = draw(st.integers(1, max_c)), draw(st.integers(1, max_n))
    lead = draw(st.sampled_from([(), (n,)]))  # () is the unbatched (C, H, W) form
    kwargs: dict[str, Any] = {"kernel_size": (kh, kw) if kh != kw else kh, "stride": stride,
                              "padding": padding, "ceil_mode": ceil_mode}  # fmt: skip
    if kind == "max":
        kwargs["dilation"] = dilation
    else:
        kwargs["count_include_pad"] = draw(st.booleans())
        kwargs["divisor_override"] = draw(st.one_of(st.none(), st.integers(1, 5)))
    return PoolCase(kind, (*lead, c, h, w), kwargs, draw(st.integers(0, 2**32 - 1)))


small_shapes = st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)
seeds = st.integers(0, 2**32 - 1)


# --------------------------------------------------------------------------- op table

# One entry per public operation: how to build a typical call with float arrays of a
# dtype. Used by the dtype, backend and list-input tests that must cover every op.


@dataclass
class OpSpec:
    name: str
    make: Callable[[np.random.Generator, Any], tuple[tuple[Any, ...], dict[str, Any]]]

    @property
    def fn(self) -> Callable[..., Any]:
        return getattr(cnnarray, self.name)

    def call_args(self, dtype: Any, seed: int = 0) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return self.make(np.random.default_rng(seed), np.dtype(dtype))


def _u(rng: np.random.Generator, shape: Sequence[int], dtype: Any) -> np.ndarray:
    return rng.uniform(-1, 1, shape).astype(dtype)


_CONV_KW = {"stride": 1, "padding": 1, "groups": 2}
# stride 2 with output_padding 1: out = (size - 1) * 2 - 2 + k + 1 + 1
_TRANSPOSE_KW = {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}
_POOL_KW = {"kernel_size": 2, "stride": 1, "padding": 1}
_RESIZE_KW = {"size": (7, 4), "mode": "bilinear"}


# The one-input activations of cnnarray.ops.activation_more (prelu has a weight).
ELEMENTWISE_MORE = ("hardtanh", "relu6", "hardsigmoid", "hardswish", "elu", "selu", "celu",
                    "gelu", "silu", "mish", "softplus")  # fmt: skip


def _ops() -> list[OpSpec]:
    x3, x4, x5, x5t = (2, 4, 5), (2, 4, 5, 5), (2, 4, 3, 4, 3), (2, 4, 2, 3, 2)
    specs = [
        OpSpec("conv2d", lambda r, d: ((_u(r, x4, d), _u(r, (6, 2, 3, 3), d), _u(r, (6,), d)),
                                       _CONV_KW)),
        OpSpec("conv2d_backward", lambda r, d: ((_u(r, (2, 6, 5, 5), d), _u(r, x4, d),
                                                 _u(r, (6, 2, 3, 3), d), _u(r, (6,), d)),
                                                _CONV_KW)),
        OpSpec("conv1d", lambda r, d: ((_u(r, x3, d), _u(r, (6, 2, 3), d), _u(r, (6,), d)),
                                       _CONV_KW)),
        OpSpec("conv1d_backward", lambda r, d: ((_u(r, (2, 6, 5), d), _u(r, x3, d),
                                                 _u(r, (6, 2, 3), d), _u(r, (6,), d)),
                                                _CONV_KW)),
        OpSpec("conv3d", lambda r, d: ((_u(r, x5, d), _u(r, (6, 2, 3, 2, 3), d),
                                        _u(r, (6,), d)), _CONV_KW)),
        OpSpec("conv3d_backward", lambda r, d: ((_u(r, (2, 6, 3, 5, 3), d), _u(r, x5, d),
                                                 _u(r, (6, 2, 3, 2, 3), d), _u(r, (6,), d)),
                                                _CONV_KW)),
        OpSpec("conv_transpose1d", lambda r, d: ((_u(r, x3, d), _u(r, (4, 3, 3), d),
                                                  _u(r, (6,), d)), _TRANSPOSE_KW)),
        OpSpec("conv_transpose1d_backward", lambda r, d: ((_u(r, (2, 6, 10), d), _u(r, x3, d),
                                                           _u(r, (4, 3, 3), d), _u(r, (6,), d)),
                                                          _TRANSPOSE_KW)),
        OpSpec("conv_transpose2d", lambda r, d: ((_u(r, (2, 4, 3, 2), d), _u(r, (4, 3, 3, 2), d),
                                                  _u(r, (6,), d)), _TRANSPOSE_KW)),
        OpSpec("conv_transpose2d_backward", lambda r, d: ((_u(r, (2, 6, 6, 3), d),
                                                           _u(r, (2, 4, 3, 2), d),
                                                           _u(r, (4, 3, 3, 2), d),
                                                           _u(r, (6,), d)), _TRANSPOSE_KW)),
        OpSpec("conv_transpose3d", lambda r, d: ((_u(r, x5t, d), _u(r, (4, 3, 2, 3, 2), d),
                                                  _u(r, (6,), d)), _TRANSPOSE_KW)),
        OpSpec("conv_transpose3d_backward", lambda r, d: ((_u(r, (2, 6, 3, 6, 3), d),
                                                           _u(r, x5t, d),
                                                           _u(r, (4, 3, 2, 3, 2), d),
                                                           _u(r, (6,), d)), _TRANSPOSE_KW)),
        OpSpec("max_pool2d", lambda r, d: ((tie_free(r, x4, d),), _POOL_KW)),
        OpSpec("max_pool2d_backward", lambda r, d: ((_u(r, (2, 4, 6, 6), d), tie_free(r, x4, d)),
                                                    _POOL_KW)),
        OpSpec("avg_pool2d", lambda r, d: ((_u(r, x4, d),), _POOL_KW)),
        OpSpec("avg_pool2d_backward", lambda r, d: ((_u(r, (2, 4, 6, 6), d), _u(r, x4, d)),
                                                    _POOL_KW)),
        OpSpec("adaptive_avg_pool2d", lambda r, d: ((_u(r, x4, d),), {"output_size": (2, 3)})),
        OpSpec("adaptive_avg_pool2d_backward", lambda r, d: ((_u(r, (2, 4, 2, 3), d),
                                                              _u(r, x4, d)),
                                                             {"output_size": (2, 3)})),
        # running statistics, read only (training=False): integer copies stay valid
        OpSpec("batch_norm2d", lambda r, d: ((_u(r, x4, d), _u(r, (4,), d),
                                              _u(r, (4,), d) + 2, _u(r, (4,), d),
                                              _u(r, (4,), d)), {"training": False})),
        OpSpec("batch_norm2d_backward", lambda r, d: ((_u(r, x4, d), _u(r, x4, d),
                                                       _u(r, (4,), d), _u(r, (4,), d) + 2,
                                                       _u(r, (4,), d), _u(r, (4,), d)),
                                                      {"training": False})),
        OpSpec("linear", lambda r, d: ((_u(r, (3, 5), d), _u(r, (4, 5), d), _u(r, (4,), d)), {})),
        OpSpec("linear_backward", lambda r, d: ((_u(r, (3, 4), d), _u(r, (3, 5), d),
                                                 _u(r, (4, 5), d), _u(r, (4,), d)), {})),
        OpSpec("flatten", lambda r, d: ((_u(r, x4, d),), {})),
        OpSpec("flatten_backward", lambda r, d: ((_u(r, (2, 100), d), _u(r, x4, d)), {})),
        OpSpec("pad", lambda r, d: ((_u(r, x4, d), (1, 2, 0, 1)), {"mode": "reflect"})),
        OpSpec("pad_backward", lambda r, d: ((_u(r, (2, 4, 6, 8), d), x4, (1, 2, 0, 1)),
                                             {"mode": "reflect"})),
        OpSpec("cross_entropy", lambda r, d: ((_u(r, (3, 5), d), r.integers(0, 5, 3)),
                                              {"label_smoothing": 0.1})),
        OpSpec("cross_entropy_backward", lambda r, d: ((_u(r, (3, 5), d), r.integers(0, 5, 3)),
                                                       {"reduction": "none",
                                                        "grad_out": _u(r, (3,), d)})),
        OpSpec("interpolate", lambda r, d: ((_u(r, x4, d),), _RESIZE_KW)),
        OpSpec("interpolate_backward", lambda r, d: ((_u(r, (2, 4, 7, 4), d), _u(r, x4, d)),
                                                     _RESIZE_KW)),
        OpSpec("pixel_shuffle", lambda r, d: ((_u(r, x4, d),), {"upscale_factor": 2})),
        OpSpec("pixel_shuffle_backward", lambda r, d: ((_u(r, (2, 1, 10, 10), d), _u(r, x4, d)),
                                                       {"upscale_factor": 2})),
        OpSpec("pixel_unshuffle", lambda r, d: ((_u(r, (2, 1, 4, 6), d),),
                                                {"downscale_factor": 2})),
        OpSpec("pixel_unshuffle_backward", lambda r, d: ((_u(r, (2, 4, 2, 3), d),
                                                          _u(r, (2, 1, 4, 6), d)),
                                                         {"downscale_factor": 2})),
    ]  # fmt: skip
    specs += [
        # (N, C, L) with running statistics, read only as for batch_norm2d
        OpSpec("batch_norm", lambda r, d: ((_u(r, (3, 4, 5), d), _u(r, (4,), d),
                                            _u(r, (4,), d) + 2, _u(r, (4,), d),
                                            _u(r, (4,), d)), {"training": False})),
        OpSpec("batch_norm_backward", lambda r, d: ((_u(r, (3, 4, 5), d), _u(r, (3, 4, 5), d),
                                                     _u(r, (4,), d), _u(r, (4,), d) + 2,
                                                     _u(r, (4,), d), _u(r, (4,), d)),
                                                    {"training": False})),
        OpSpec("group_norm", lambda r, d: ((_u(r, (2, 4, 3), d), 2, _u(r, (4,), d),
                                            _u(r, (4,), d)), {})),
        OpSpec("group_norm_backward", lambda r, d: ((_u(r, (2, 4, 3), d), _u(r, (2, 4, 3), d),
                                                     2, _u(r, (4,), d), _u(r, (4,), d)), {})),
        OpSpec("layer_norm", lambda r, d: ((_u(r, (2, 3, 4), d), (3, 4), _u(r, (3, 4), d),
                                            _u(r, (3, 4), d)), {})),
        OpSpec("layer_norm_backward", lambda r, d: ((_u(r, (2, 3, 4), d), _u(r, (2, 3, 4), d),
                                                     4, _u(r, (4,), d), _u(r, (4,), d)), {})),
        # use_input_stats without running statistics: nothing is updated in place
        OpSpec("instance_norm", lambda r, d: ((_u(r, (2, 3, 4), d),),
                                              {"weight": _u(r, (3,), d), "bias": _u(r, (3,), d)})),
        OpSpec("instance_norm_backward", lambda r, d: ((_u(r, (2, 3, 4), d),
                                                        _u(r, (2, 3, 4), d)),
                                                       {"weight": _u(r, (3,), d)})),
        # dropout from a seed: every call draws the same mask
        OpSpec("dropout", lambda r, d: ((_u(r, (3, 4), d), 0.3), {"generator": 5})),
        OpSpec("dropout1d", lambda r, d: ((_u(r, (2, 3, 4), d), 0.5), {"generator": 6})),
        OpSpec("dropout2d", lambda r, d: ((_u(r, (3, 4, 2), d), 0.5), {"generator": 7})),
        OpSpec("dropout3d", lambda r, d: ((_u(r, (2, 3, 2, 2, 2), d), 0.5),
                                          {"mask": (r.random((2, 3, 1, 1, 1)) > 0.5).astype(d)})),
        OpSpec("dropout_backward", lambda r, d: ((_u(r, (2, 3, 4), d),
                                                  (r.random((2, 3, 1)) > 0.5).astype(d) * 2), {})),
        OpSpec("prelu", lambda r, d: ((away_from_zero(r, (2, 3, 4), d), _u(r, (3,), d)), {})),
        OpSpec("prelu_backward", lambda r, d: ((_u(r, (2, 3, 4), d),
                                                away_from_zero(r, (2, 3, 4), d),
                                                _u(r, (3,), d)), {})),
    ]  # fmt: skip
    specs += _loss_ops()
    for act in (
        "relu",
        "leaky_relu",
        "sigmoid",
        "tanh",
        "softmax",
        "log_softmax",
        *ELEMENTWISE_MORE,
    ):
        specs.append(OpSpec(act, lambda r, d: ((away_from_zero(r, (3, 4), d),), {})))
        specs.append(
            OpSpec(
                f"{act}_backward",
                lambda r, d: ((_u(r, (3, 4), d), away_from_zero(r, (3, 4), d)), {}),
            )
        )
    return specs + _pool_nd_ops()


def _pool_nd_ops() -> list[OpSpec]:
    """The 1-D/3-D pooling family (and the max-pool indices, unpooling, adaptive and LP
    pooling): one spec per op, on (2, 4, 7) sequences and (2, 3, 4, 5, 4) volumes."""
    specs = []
    for dims, shape in ((1, (2, 4, 7)), (3, (2, 3, 4, 5, 4))):
        out = (*shape[:2], *(s + 1 for s in shape[2:]))  # kernel 2, stride 1, padding 1
        for kind, make in (("max", tie_free), ("avg", _u)):
            name = f"{kind}_pool{dims}d"
            specs.append(OpSpec(name, lambda r, d, s=shape, m=make: ((m(r, s, d),), _POOL_KW)))
            specs.append(OpSpec(f"{name}_backward", lambda r, d, s=shape, o=out, m=make: (
                (_u(r, o, d), m(r, s, d)), _POOL_KW)))  # fmt: skip
    for dims in (1, 2, 3):
        pooled, unpooled = (2, 3, *(3,) * dims), (2, 3, *(6,) * dims)
        specs.append(OpSpec(f"max_unpool{dims}d", lambda r, d, p=pooled: (
            (_u(r, p, d), unpool_indices(r, p)), {"kernel_size": 2})))  # fmt: skip
        specs.append(OpSpec(f"max_unpool{dims}d_backward", lambda r, d, p=pooled, u=unpooled: (
            (_u(r, u, d), _u(r, p, d), unpool_indices(r, p)), {"kernel_size": 2})))  # fmt: skip
    for dims, shape, size in (
        (1, (2, 4, 7), (3,)), (2, (2, 4, 5, 5), (2, 3)), (3, (2, 3, 4, 5, 4), (2, 3, 2))
    ):  # fmt: skip
        out = (*shape[:2], *size)
        for kind, make in (("max", tie_free), ("avg", _u)):
            if (kind, dims) == ("avg", 2):
                continue  # adaptive_avg_pool2d has its entry above
            name, kw = f"adaptive_{kind}_pool{dims}d", {"output_size": size}
            specs.append(OpSpec(name, lambda r, d, s=shape, m=make, kw=kw: ((m(r, s, d),), kw)))
            specs.append(OpSpec(f"{name}_backward", lambda r, d, s=shape, o=out, m=make, kw=kw: (
                (_u(r, o, d), m(r, s, d)), kw)))  # fmt: skip
    lp_kw = {"norm_type": 2.0, "kernel_size": 2, "stride": 1}
    for dims, shape in ((1, (2, 4, 7)), (2, (2, 4, 5, 5)), (3, (2, 3, 4, 5, 4))):
        out = (*shape[:2], *(s - 1 for s in shape[2:]))
        specs.append(OpSpec(f"lp_pool{dims}d", lambda r, d, s=shape: ((_u(r, s, d),), lp_kw)))
        specs.append(OpSpec(f"lp_pool{dims}d_backward", lambda r, d, s=shape, o=out: (
            (_u(r, o, d), _u(r, s, d)), lp_kw)))  # fmt: skip
    return specs


def _p(rng: np.random.Generator, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """Probabilities in [0.05, 0.3]: still in [0, 1] after the integer test's round(3 p)."""
    return rng.uniform(0.05, 0.3, shape).astype(dtype)


def _loss_ops() -> list[OpSpec]:
    s34 = (3, 4)
    specs = [
        OpSpec("nll_loss", lambda r, d: ((_u(r, (3, 5), d), r.integers(0, 5, 3)),
                                         {"weight": _p(r, (5,), d)})),
        OpSpec("nll_loss_backward", lambda r, d: ((_u(r, (3, 5), d), np.array([0, -100, 4])),
                                                  {"reduction": "none",
                                                   "grad_out": _u(r, (3,), d)})),
        OpSpec("binary_cross_entropy", lambda r, d: ((_p(r, s34, d), _p(r, s34, d)),
                                                     {"weight": _u(r, (4,), d)})),
        OpSpec("binary_cross_entropy_backward", lambda r, d: ((_p(r, s34, d), _p(r, s34, d)),
                                                              {"grad_out": _u(r, (), d)})),
        OpSpec("binary_cross_entropy_with_logits",
               lambda r, d: ((_u(r, s34, d), _p(r, s34, d)), {"pos_weight": _p(r, (4,), d)})),
        OpSpec("binary_cross_entropy_with_logits_backward",
               lambda r, d: ((_u(r, s34, d), _p(r, s34, d)),
                             {"weight": _u(r, (3, 1), d), "reduction": "none",
                              "grad_out": _u(r, s34, d)})),
    ]  # fmt: skip
    pointwise = (("mse_loss", {}), ("l1_loss", {"reduction": "sum"}),
                 ("smooth_l1_loss", {"beta": 0.5}), ("huber_loss", {"delta": 2.0}),
                 ("kl_div", {"reduction": "batchmean"}))  # fmt: skip
    for name, kw in pointwise:
        specs.append(OpSpec(name, lambda r, d, kw=kw: ((_u(r, s34, d), _p(r, s34, d)), kw)))
        specs.append(OpSpec(f"{name}_backward",
                            lambda r, d, kw=kw: ((_u(r, s34, d), _p(r, s34, d)),
                                                 {**kw, "grad_out": _u(r, (), d)})))  # fmt: skip
    return specs


def unpool_indices(rng: np.random.Generator, pooled: Sequence[int]) -> np.ndarray:
    """Indices as a 2x2 max pool (kernel 2, stride 2) of maps twice the spatial size of
    ``pooled`` (N, C, ...) gives them: one random cell of each window, flat in its map."""
    spatial = tuple(pooled[2:])
    cells = [
        2 * np.indices(pooled)[2 + a] + rng.integers(0, 2, pooled) for a in range(len(spatial))
    ]
    return np.ravel_multi_index(cells, tuple(2 * s for s in spatial)).astype(np.int64)


OPS = _ops()
# Public names in cnnarray.ops that are not array operations.
NOT_ARRAY_OPS = {
    "ColumnCache",
    "dropout_mask",  # reads only x's shape, dtype and device (tests/test_dropout_fn.py)
    "conv2d_output_shape",
    "get_workspace_limit",
    "set_workspace_limit",
}


# --------------------------------------------------------------------------- layers


def compare_layer_with_torch(torch: Any, ours: Any, theirs: Any, x: np.ndarray) -> None:
    """float64 forward and gradients (input, parameters) of a cnnarray layer against a
    torch layer given the same parameters (copied from ours)."""
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(torch.tensor(cnnarray.to_numpy(dict(ours.named_parameters())[name].data)))
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    leaf = cnnarray.tensor(x, requires_grad=True)
    y = ours(leaf)
    assert_close(y.data, ty.detach().numpy(), dtype=np.float64, err_msg="output")
    g = np.random.default_rng(9).standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(g))
    y.backward(cnnarray.tensor(g))
    assert_close(leaf.grad, tx.grad.numpy(), dtype=np.float64, err_msg="grad_x")
    for name, p in theirs.named_parameters():
        ours_p = dict(ours.named_parameters())[name]
        assert_close(ours_p.grad, p.grad.numpy(), dtype=np.float64, err_msg=f"grad of {name}")


# --------------------------------------------------------------------------- convolution cases


def check_case_against_reference(case: Any, backend: Backend, dtype: Any) -> None:
    """A convolution case (``ops``: forward, backward, reference forward and backward;
    ``arrays``, ``grad_out``, ``kwargs``): both directions against the oracle."""
    forward, backward, ref_forward, ref_backward = case.ops
    x, w, b = case.arrays(dtype)
    y = run_op(forward, x, w, b, backend=backend, **case.kwargs)
    desired = ref_forward(x, w, b, **case.kwargs)
    assert_close(y, desired, dtype=dtype, backend=backend)
    g = case.grad_out(desired.shape, dtype)
    grads = run_op(backward, g, x, w, b, backend=backend, **case.kwargs)
    for got, want, name in zip(grads, ref_backward(g, x, w, b, **case.kwargs), "xwb", strict=True):
        assert_close(got, want, dtype=dtype, backend=backend, err_msg=f"grad_{name}")


def check_case_finite_differences(case: Any, backend: Backend) -> None:
    """A convolution case's backward against central differences, float64."""
    forward, backward, _, _ = case.ops
    x, w, b = case.arrays(np.float64)
    kw = case.kwargs
    g = case.grad_out(forward(x, w, b, **kw).shape, np.float64)
    gx, gw, gb = run_op(backward, g, x, w, b, backend=backend, **kw)

    def loss(xx: Any, ww: Any, bb: Any) -> float:
        return vjp_objective(forward(xx, ww, bb, backend=backend, **kw), g)

    assert_grad_close(gx, numerical_grad(lambda v: loss(v, w, b), x), "grad_x")
    assert_grad_close(gw, numerical_grad(lambda v: loss(x, v, b), w), "grad_weight")
    if b is not None:
        assert_grad_close(gb, numerical_grad(lambda v: loss(x, w, v), b), "grad_bias")


@dataclass
class NdConvCase:
    """One call of a convolution op named ``name`` (conv1d, conv_transpose3d, ...):
    shapes, arguments and a seed for the data; ``bias`` is the bias's length or None."""

    name: str
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    bias: int | None
    kwargs: dict[str, Any]
    seed: int

    @property
    def ops(self) -> tuple[Any, Any, Any, Any]:
        """The op, its backward, and the oracle's two."""
        from cnnarray import reference

        backward = self.name + "_backward"
        return (getattr(cnnarray, self.name), getattr(cnnarray, backward),
                getattr(reference, self.name), getattr(reference, backward))  # fmt: skip

    def arrays(self, dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        rng = np.random.default_rng(self.seed)
        x = rng.uniform(-1, 1, self.x_shape).astype(dtype)
        w = rng.uniform(-1, 1, self.w_shape).astype(dtype)
        return x, w, None if self.bias is None else rng.uniform(-1, 1, self.bias).astype(dtype)

    def grad_out(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.random.default_rng(self.seed + 1).uniform(-1, 1, shape).astype(dtype)
