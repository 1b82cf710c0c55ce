"""linear / flatten and their backward against the einsum oracle, differences and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, assert_grad_close, numerical_grad, run_op, seeds, vjp_objective
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import reference as ref

lead_shapes = st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple)
features = st.integers(1, 6)


def _arrays(seed, lead, n_in, n_out, bias, dtype):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (*lead, n_in)).astype(dtype)
    w = rng.uniform(-1, 1, (n_out, n_in)).astype(dtype)
    b = rng.uniform(-1, 1, n_out).astype(dtype) if bias else None
    g = rng.uniform(-1, 1, (*lead, n_out)).astype(dtype)
    return x, w, b, g


@settings(max_examples=50, deadline=None)
@given(lead=lead_shapes, n_in=features, n_out=features, bias=st.booleans(), seed=seeds)
def test_linear_matches_reference(backend, dtype, lead, n_in, n_out, bias, seed):
    x, w, b, g = _arrays(seed, lead, n_in, n_out, bias, dtype)
    y = run_op(cnnarray.linear, x, w, b, backend=backend)
    assert_close(y, ref.linear(x, w, b), dtype=dtype, backend=backend)
    grads = run_op(cnnarray.linear_backward, g, x, w, b, backend=backend)
    for got, want, name in zip(grads, ref.linear_backward(g, x, w, b), "xwb", strict=True):
        assert_close(got, want, dtype=dtype, backend=backend, err_msg=f"grad_{name}")


@settings(max_examples=20, deadline=None)
@given(lead=lead_shapes, n_in=features, n_out=features, bias=st.booleans(), seed=seeds)
def test_linear_backward_matches_finite_differences(backend, lead, n_in, n_out, bias, seed):
    x, w, b, g = _arrays(seed, lead, n_in, n_out, bias, np.float64)
    gx, gw, gb = run_op(cnnarray.linear_backward, g, x, w, b, backend=backend)

    def loss(xx, ww, bb):
        return vjp_objective(cnnarray.linear(xx, ww, bb, backend=backend), g)

    assert_grad_close(gx, numerical_grad(lambda v: loss(v, w, b), x), "grad_x")
    assert_grad_close(gw, numerical_grad(lambda v: loss(x, v, b), w), "grad_weight")
    if bias:
        assert_grad_close(gb, numerical_grad(lambda v: loss(x, w, v), b), "grad_bias")


@settings(max_examples=30, deadline=None)
@given(lead=lead_shapes, n_in=features, n_out=features, bias=st.booleans(), seed=seeds)
def test_linear_matches_torch(backend, lead, n_in, n_out, bias, seed):
    torch = pytest.importorskip("torch")
    x, w, b, g = _arrays(seed, lead, n_in, n_out, bias, np.float64)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.tensor(g))
    y = run_op(cnnarray.linear, x, w, b, backend=backend)
    assert_close(y, ty.detach().numpy(), dtype=np.float64, backend=backend)
    gx, gw, gb = run_op(cnnarray.linear_backward, g, x, w, b, backend=backend)
    assert_close(gx, tx.grad.numpy(), dtype=np.float64)
    assert_close(gw, tw.grad.numpy(), dtype=np.float64)
    assert_close(gb, None if tb is None else tb.grad.numpy(), dtype=np.float64)


def test_linear_promotes_integers_to_float32(backend):
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    w = np.ones((4, 3), dtype=np.int64)
    assert_close(run_op(cnnarray.linear, x, w, backend=backend), ref.linear(x, w), dtype="f4")


def test_linear_nan_propagates_along_its_row(backend, dtype):
    x = np.ones((3, 4), dtype)
    x[1, 2] = np.nan
    y = cnnarray.to_numpy(run_op(cnnarray.linear, x, np.ones((2, 4), dtype), backend=backend))
    np.testing.assert_array_equal(np.isnan(y), [[False, False], [True, True], [False, False]])


# --------------------------------------------------------------------------- flatten

FLATTEN_AXES = [(1, -1), (0, -1), (0, 0), (2, 3), (-3, -2), (1, 1)]


@pytest.mark.parametrize("start_axis, end_axis", FLATTEN_AXES)
def test_flatten_matches_numpy_reshape_and_torch(backend, dtype, start_axis, end_axis):
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 5)).astype(dtype)
    y = run_op(cnnarray.flatten, x, start_axis, end_axis, backend=backend)
    s, e = start_axis % 4, end_axis % 4
    desired = x.reshape(*x.shape[:s], -1, *x.shape[e + 1 :])
    assert_close(y, desired, dtype=dtype, backend=backend)
    torch = pytest.importorskip("torch")
    assert_close(y, torch.flatten(torch.tensor(x), start_axis, end_axis).numpy(), dtype=dtype)
    g = np.random.default_rng(6).standard_normal(desired.shape).astype(dtype)
    gx = run_op(cnnarray.flatten_backward, g, x, start_axis, end_axis, backend=backend)
    assert_close(gx, g.reshape(x.shape), dtype=dtype, backend=backend)


def test_flatten_then_linear_backward_matches_finite_differences(backend):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 2, 2, 3))
    w = rng.standard_normal((3, 12))
    g = rng.standard_normal((2, 3))

    def loss(v):
        flat = cnnarray.flatten(v, backend=backend)
        return vjp_objective(cnnarray.linear(flat, w, backend=backend), g)

    gflat, _, _ = run_op(cnnarray.linear_backward, g, x.reshape(2, 12), w, backend=backend)
    gx = run_op(cnnarray.flatten_backward, gflat, x, backend=backend)
    assert_grad_close(gx, numerical_grad(loss, x))
