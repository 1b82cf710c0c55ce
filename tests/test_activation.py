"""Activations and softmax against the per-element oracle, finite differences and PyTorch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import (
    assert_close,
    assert_grad_close,
    away_from_zero,
    numerical_grad,
    run_op,
    seeds,
    small_shapes,
    vjp_objective,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import reference as ref

ELEMENTWISE = ["relu", "leaky_relu", "sigmoid", "tanh"]
SOFTMAX = ["softmax", "log_softmax"]
ALL = ELEMENTWISE + SOFTMAX


def _ops(name):
    return (getattr(cnnarray, name), getattr(cnnarray, f"{name}_backward"), getattr(ref, name),
            getattr(ref, f"{name}_backward"))  # fmt: skip


@st.composite
def calls(draw, names=tuple(ALL)):
    """(op name, shape, keyword arguments, seed, value scale)."""
    name = draw(st.sampled_from(names))
    shape = draw(small_shapes)
    kwargs = {}
    if name == "leaky_relu":
        kwargs["negative_slope"] = draw(st.sampled_from([0.01, 0.2, 1.5, 0.0, -0.5]))
    if name in SOFTMAX:
        kwargs["axis"] = draw(st.integers(-len(shape), len(shape) - 1))
    return name, shape, kwargs, draw(seeds), draw(st.sampled_from([0.5, 3.0, 30.0]))


def _data(shape, seed, scale, dtype):
    rng = np.random.default_rng(seed)
    x = away_from_zero(rng, shape, np.float64) * scale
    g = rng.uniform(-1, 1, shape)
    return x.astype(dtype), g.astype(dtype)


@settings(max_examples=60, deadline=None)
@given(call=calls())
def test_activation_matches_reference(backend, dtype, call):
    name, shape, kwargs, seed, scale = call
    forward, backward, ref_forward, ref_backward = _ops(name)
    x, g = _data(shape, seed, scale, dtype)
    y = run_op(forward, x, backend=backend, **kwargs)
    assert_close(y, ref_forward(x, **kwargs), dtype=dtype, backend=backend, err_msg=name)
    gx = run_op(backward, g, x, backend=backend, **kwargs)
    assert_close(gx, ref_backward(g, x, **kwargs), dtype=dtype, backend=backend, err_msg=name)


@settings(max_examples=40, deadline=None)
@given(call=calls())
def test_activation_backward_matches_finite_differences(backend, call):
    name, shape, kwargs, seed, scale = call
    forward, backward, _, _ = _ops(name)
    x, g = _data(shape, seed, min(scale, 3.0), np.float64)
    gx = run_op(backward, g, x, backend=backend, **kwargs)
    numeric = numerical_grad(lambda v: vjp_objective(forward(v, backend=backend, **kwargs), g), x)
    assert_grad_close(gx, numeric, name)


@settings(max_examples=40, deadline=None)
@given(call=calls())
def test_activation_matches_torch(backend, call):
    torch = pytest.importorskip("torch")
    name, shape, kwargs, seed, scale = call
    forward, backward, _, _ = _ops(name)
    x, g = _data(shape, seed, scale, np.float64)
    tx = torch.tensor(x, requires_grad=True)
    f = torch.nn.functional
    if name in SOFTMAX:
        ty = getattr(f, name)(tx, dim=kwargs["axis"])
    elif name == "leaky_relu":
        ty = f.leaky_relu(tx, kwargs["negative_slope"])
    else:
        ty = getattr(torch, name)(tx)
    ty.backward(torch.tensor(g))
    y = run_op(forward, x, backend=backend, **kwargs)
    assert_close(y, ty.detach().numpy(), dtype=np.float64, backend=backend, err_msg=name)
    gx = run_op(backward, g, x, backend=backend, **kwargs)
    assert_close(gx, tx.grad.numpy(), dtype=np.float64, err_msg=name)


def test_relu_derivative_at_zero_is_zero_as_pytorch(backend, dtype):
    x = np.array([-1.0, 0.0, 2.0], dtype)
    gx = run_op(cnnarray.relu_backward, np.ones(3, dtype), x, backend=backend)
    assert_close(gx, [0.0, 0.0, 1.0], dtype=dtype, backend=backend)
    gx = run_op(cnnarray.leaky_relu_backward, np.ones(3, dtype), x, 0.1, backend=backend)
    assert_close(gx, [0.1, 0.1, 1.0], dtype=dtype, backend=backend)


@pytest.mark.parametrize("name", ALL)
def test_activation_on_single_element_and_zero_d_input(backend, dtype, name):
    forward, backward, ref_forward, ref_backward = _ops(name)
    inputs = [np.array([0.75], dtype), np.array([[-0.5]], dtype)]
    if name in ELEMENTWISE:
        inputs.append(np.array(-1.25, dtype))  # 0-d: softmax's 0-d case is its own test
    for x in inputs:
        assert_close(run_op(forward, x, backend=backend), ref_forward(x), dtype=dtype)
        g = np.full_like(x, 2.0)
        assert_close(run_op(backward, g, x, backend=backend), ref_backward(g, x), dtype=dtype)


@pytest.mark.parametrize("name, expected", [("softmax", 1.0), ("log_softmax", 0.0)])
def test_softmax_of_zero_d_input_is_one_as_pytorch(backend, dtype, name, expected):
    # (the oracle's moveaxis does not take 0-d input, so this one is pinned by hand)
    x = np.array(0.5, dtype)
    assert_close(run_op(getattr(cnnarray, name), x, backend=backend), np.array(expected),
                 dtype=dtype, backend=backend)  # fmt: skip
    gx = run_op(getattr(cnnarray, f"{name}_backward"), np.array(3.0, dtype), x, backend=backend)
    assert_close(gx, np.array(0.0), dtype=dtype)  # one class: the output is constant
    torch = pytest.importorskip("torch")
    assert float(getattr(torch, name)(torch.tensor(0.5), dim=-1)) == expected


# --------------------------------------------------------------------------- extremes, NaN


@pytest.mark.parametrize("name", ALL)
def test_activation_nan_propagates(backend, dtype, name):
    forward = getattr(cnnarray, name)
    x = np.array([[-1.0, np.nan, 2.0]], dtype)
    y = cnnarray.to_numpy(run_op(forward, x, backend=backend))
    if name in SOFTMAX:  # the NaN enters the row's normaliser: the whole row is NaN
        assert np.isnan(y).all()
    else:
        np.testing.assert_array_equal(np.isnan(y), [[False, True, False]])


def test_relu_of_nan_is_nan_and_of_inf(backend, dtype):
    x = np.array([np.nan, np.inf, -np.inf, -0.0], dtype)
    y = cnnarray.to_numpy(run_op(cnnarray.relu, x, backend=backend))
    np.testing.assert_array_equal(y, np.array([np.nan, np.inf, 0.0, 0.0], dtype))


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_saturating_activations_at_extremes_do_not_overflow(backend, dtype, name):
    forward, backward, ref_forward, ref_backward = _ops(name)
    x = np.array([-1e4, -100.0, -20.0, 20.0, 100.0, 1e4, np.inf, -np.inf], dtype)
    g = np.ones_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow RuntimeWarning fails the test
        y = run_op(forward, x, backend=backend)
        gx = run_op(backward, g, x, backend=backend)
    assert_close(y, ref_forward(x), dtype=dtype, backend=backend)
    assert_close(gx, ref_backward(g, x), dtype=dtype, backend=backend)


@pytest.mark.parametrize("name", SOFTMAX)
def test_softmax_is_stable_for_large_inputs(backend, dtype, name):
    forward, backward, ref_forward, ref_backward = _ops(name)
    x = np.array([[1000.0, 1001.0, 999.0], [-1e4, 0.0, 1e4]], dtype)
    g = np.array([[1.0, -2.0, 0.5], [0.3, 0.1, -1.0]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = run_op(forward, x, backend=backend)
        gx = run_op(backward, g, x, backend=backend)
    assert np.isfinite(cnnarray.to_numpy(y)[0]).all()
    if name == "log_softmax":  # exact: x - max - log(1 + tiny)
        assert_close(y[1:], [[-2e4, -1e4, 0.0]], dtype=dtype)
    assert_close(y[:1], ref_forward(x[:1]), dtype=dtype)  # log(0) = -inf in row 1 for the oracle
    assert_close(gx, ref_backward(g, x), dtype=dtype, backend=backend)


@settings(max_examples=30, deadline=None)
@given(shape=small_shapes, seed=seeds, shift=st.sampled_from([-500.0, 50.0, 700.0]))
def test_softmax_is_shift_invariant_and_sums_to_one(backend, dtype, shape, seed, shift):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    y = run_op(cnnarray.softmax, x, backend=backend)
    assert_close(run_op(cnnarray.softmax, x + dtype.type(shift), backend=backend),
                 cnnarray.to_numpy(y), dtype=dtype, rtol=1e4 * np.finfo(dtype).eps)  # fmt: skip
    assert_close(y.sum(axis=-1), np.ones(shape[:-1]), dtype=dtype)
    assert_close(run_op(cnnarray.log_softmax, x, backend=backend),
                 np.log(cnnarray.to_numpy(y).astype(np.float64)), dtype=dtype,
                 rtol=1e3 * np.finfo(dtype).eps)  # fmt: skip


def test_activations_promote_integers_to_float32(backend):
    x = np.array([[-2, 0, 3]], dtype=np.int64)
    for name in ALL:
        forward = getattr(cnnarray, name)
        assert_close(run_op(forward, x, backend=backend), getattr(ref, name)(x), dtype="f4")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf * 0
@pytest.mark.parametrize("slope", [0.0, 0.01, 1.0, 1.5, -0.2])
def test_relu_family_non_finite_values_match_where(backend, dtype, slope):
    # The fast paths multiply by masks; inf and NaN must still come out as where() gives them.
    x = np.array([[np.inf, -np.inf, np.nan, -2.0, 3.0, -0.0, 0.0, -1.0]], dtype)
    g = np.array([[1.0, np.inf, 2.0, np.nan, -np.inf, np.inf, np.nan, 1.0]], dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        want_relu_grad = np.where(x > 0, g, 0)
        want_leaky = np.where(x > 0, x, x * np.dtype(dtype).type(slope))
        want_leaky_grad = np.where(x > 0, g, g * np.dtype(dtype).type(slope))
    got = run_op(cnnarray.relu_backward, g, x, backend=backend)
    np.testing.assert_array_equal(got, want_relu_grad)
    got = run_op(cnnarray.leaky_relu, x, slope, backend=backend)
    np.testing.assert_array_equal(got, want_leaky)
    got = run_op(cnnarray.leaky_relu_backward, g, x, slope, backend=backend)
    np.testing.assert_array_equal(got, want_leaky_grad)


def test_relu_and_its_gradient_bit_for_bit_on_threads_and_signed_zeros(backend, dtype):
    # Over 2**21 elements the passes run on threads (parallel_for). relu is np.maximum(x, 0)
    # bit for bit (-0.0 -> 0.0, NaN kept); the gradient is g's own bits where x > 0, +0.0
    # elsewhere: inf and NaN of g pass through or vanish, never become NaN.
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 700, 1000)).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    for a in (x, g):
        a.reshape(-1)[rng.integers(0, a.size, 5000)] = rng.choice([np.inf, -np.inf, np.nan, -0.0],
                                                                   5000)  # fmt: skip
    y = cnnarray.to_numpy(run_op(cnnarray.relu, x, backend=backend))
    np.testing.assert_array_equal(y.view(f"i{x.itemsize}"), np.maximum(x, 0).view(f"i{x.itemsize}"))
    gx = cnnarray.to_numpy(run_op(cnnarray.relu_backward, g, x, backend=backend))
    want = np.where(x > 0, g, np.zeros_like(g))
    np.testing.assert_array_equal(gx.view(f"i{x.itemsize}"), want.view(f"i{x.itemsize}"))
