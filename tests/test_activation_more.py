"""The activations of ops.activation_more against the oracle, finite differences and PyTorch;
PyTorch's values at the kinks, prelu's slope shapes and the nn layers."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from helpers import (
    ELEMENTWISE_MORE,
    assert_close,
    assert_grad_close,
    numerical_grad,
    run_op,
    seeds,
    small_shapes,
    vjp_objective,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import nn
from cnnarray import reference as ref

F64 = np.dtype(np.float64)
# Where each function has a kink (finite differences stay clear of them).
KINKS = {"hardtanh": (-1.0, 1.0), "relu6": (0.0, 6.0), "hardsigmoid": (-3.0, 3.0),
         "hardswish": (-3.0, 3.0), "elu": (0.0,), "selu": (0.0,), "celu": (0.0,)}  # fmt: skip


def _ops(name):
    return (getattr(cnnarray, name), getattr(cnnarray, f"{name}_backward"), getattr(ref, name),
            getattr(ref, f"{name}_backward"))  # fmt: skip


@st.composite
def calls(draw, names=ELEMENTWISE_MORE):
    """(op name, shape, keyword arguments, seed, value scale)."""
    name = draw(st.sampled_from(names))
    kwargs = {}
    if name == "hardtanh":
        lo = draw(st.sampled_from([-1.0, -0.5, 0.25]))
        kwargs = {"min_val": lo, "max_val": lo + draw(st.sampled_from([0.5, 2.0]))}
    elif name in ("elu", "celu"):
        kwargs["alpha"] = draw(st.sampled_from([1.0, 0.5, 2.5]))
    elif name == "gelu":
        kwargs["approximate"] = draw(st.sampled_from(["none", "tanh"]))
    elif name == "softplus":
        kwargs = {"beta": draw(st.sampled_from([1.0, 0.5, 3.0])),
                  "threshold": draw(st.sampled_from([20.0, 2.0]))}  # fmt: skip
    return name, draw(small_shapes), kwargs, draw(seeds), draw(st.sampled_from([1.0, 4.0, 30.0]))


def _kinks(name, kwargs):
    if name == "hardtanh":
        return (kwargs.get("min_val", -1.0), kwargs.get("max_val", 1.0))
    if name == "softplus":  # the switch to x at beta * x = threshold
        return (kwargs.get("threshold", 20.0) / kwargs.get("beta", 1.0),)
    return KINKS.get(name, ())


def _data(name, kwargs, shape, seed, scale, dtype):
    """x spread over [-scale, scale], kept 0.05 away from every kink; g in [-1, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-scale, scale, shape)
    for k in _kinks(name, kwargs):
        near = np.abs(x - k) < 0.05
        x[near] = k + 0.05 * np.where(x[near] >= k, 1, -1)
    return x.astype(dtype), rng.uniform(-1, 1, shape).astype(dtype)


@settings(max_examples=50, deadline=None)
@given(call=calls())
def test_activation_matches_reference(backend, dtype, call):
    name, shape, kwargs, seed, scale = call
    forward, backward, ref_forward, ref_backward = _ops(name)
    x, g = _data(name, kwargs, shape, seed, scale, dtype)
    y = run_op(forward, x, backend=backend, **kwargs)
    assert_close(y, ref_forward(x, **kwargs), dtype=dtype, backend=backend, err_msg=name)
    gx = run_op(backward, g, x, backend=backend, **kwargs)
    assert_close(gx, ref_backward(g, x, **kwargs), dtype=dtype, backend=backend, err_msg=name)


@settings(max_examples=30, deadline=None)
@given(call=calls())
def test_activation_backward_matches_finite_differences(backend, call):
    name, shape, kwargs, seed, scale = call
    forward, backward, _, _ = _ops(name)
    x, g = _data(name, kwargs, shape, seed, min(scale, 4.0), np.float64)
    gx = run_op(backward, g, x, backend=backend, **kwargs)
    numeric = numerical_grad(lambda v: vjp_objective(forward(v, backend=backend, **kwargs), g), x)
    assert_grad_close(gx, numeric, name)


# PyTorch's own arguments for each op: positional / keyword as torch.nn.functional takes them.
TORCH_CALLS = [
    ("hardtanh", {"min_val": -0.5, "max_val": 2.0}),
    ("relu6", {}),
    ("hardsigmoid", {}),
    ("hardswish", {}),
    ("elu", {"alpha": 0.7}),
    ("selu", {}),
    ("celu", {"alpha": 1.3}),
    ("gelu", {}),
    ("gelu", {"approximate": "tanh"}),
    ("silu", {}),
    ("mish", {}),
    ("softplus", {"beta": 2.0, "threshold": 3.0}),
]


@pytest.mark.parametrize("name, kwargs", TORCH_CALLS, ids=[f"{n}{k}" for n, k in TORCH_CALLS])
def test_activation_matches_torch_values_and_grads_kinks_included(backend, dtype, name, kwargs):
    torch = pytest.importorskip("torch")
    forward, backward, _, _ = _ops(name)
    rng = np.random.default_rng(7)
    # random values and every kink exactly: the one-sided derivatives must agree too
    x = np.concatenate([rng.uniform(-8, 8, 40), [-3.0, -1.0, -0.5, 0.0, 1.0, 1.5, 2.0, 3.0, 6.0]])
    x, g = x.astype(dtype), rng.uniform(-1, 1, x.shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(torch.nn.functional, name)(tx, **kwargs)
    ty.backward(torch.tensor(g))
    # PyTorch rounds some constants to float32 even in float64 (celu's 1 / alpha,
    # hardsigmoid's 1 / 6): float64 agrees to 1e-7, not to the oracle's 1e-10.
    rtol = 1e-7 if dtype == F64 else None
    y = run_op(forward, x, backend=backend, **kwargs)
    assert_close(y, ty.detach().numpy(), dtype=dtype, backend=backend, rtol=rtol, err_msg=name)
    gx = run_op(backward, g, x, backend=backend, **kwargs)
    assert_close(gx, tx.grad.numpy(), dtype=dtype, backend=backend, rtol=rtol, err_msg=name)


# (op, kwargs, x, PyTorch's derivative there): checked against torch 2.13 by hand, and
# again live where torch imports.
KINK_DERIVATIVES = [
    ("hardtanh", {}, [-1.0, 1.0], [0.0, 0.0]),
    ("relu6", {}, [0.0, 6.0], [0.0, 0.0]),
    ("hardsigmoid", {}, [-3.0, 3.0], [0.0, 0.0]),
    ("hardswish", {}, [-3.0, 3.0], [0.0, 1.0]),
    ("elu", {"alpha": 2.0}, [0.0], [2.0]),
    ("selu", {}, [0.0], [1.0507009873554804934193349852946 * 1.6732632423543772848170429916717]),
    ("celu", {"alpha": 2.0}, [0.0], [1.0]),
    ("gelu", {}, [0.0], [0.5]),
    ("silu", {}, [0.0], [0.5]),
    ("mish", {}, [0.0], [0.6]),
    ("softplus", {"beta": 2.0, "threshold": 3.0}, [1.5], [1 / (1 + np.exp(-3.0))]),
]


@pytest.mark.parametrize("name, kwargs, x, expected", KINK_DERIVATIVES,
                         ids=[c[0] for c in KINK_DERIVATIVES])  # fmt: skip
def test_derivative_at_the_kinks_is_pytorchs(backend, name, kwargs, x, expected):
    x = np.array(x)
    gx = run_op(getattr(cnnarray, f"{name}_backward"), np.ones_like(x), x, backend=backend,
                **kwargs)  # fmt: skip
    assert_close(gx, expected, dtype=F64, backend=backend, err_msg=name)
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, requires_grad=True)
    getattr(torch.nn.functional, name)(tx, **kwargs).sum().backward()
    np.testing.assert_allclose(tx.grad.numpy(), expected, rtol=1e-7, err_msg=name)


def test_softplus_is_linear_above_the_threshold_and_the_formula_at_it(backend):
    # beta * x > threshold: exactly x; at beta * x == threshold: still the log formula
    x = np.array([1.5, 1.5000001, 100.0])
    y = run_op(cnnarray.softplus, x, 2.0, 3.0, backend=backend)
    assert_close(y, [np.log1p(np.exp(3.0)) / 2, 1.5000001, 100.0], dtype=F64, backend=backend)


@pytest.mark.parametrize("name", ELEMENTWISE_MORE)
def test_activation_extremes_do_not_overflow_and_nan_propagates(backend, dtype, name):
    forward, backward, ref_forward, ref_backward = _ops(name)
    x = np.array([-1e4, -100.0, -20.0, 20.0, 100.0, 1e4], dtype)
    g = np.ones_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow RuntimeWarning fails the test
        y = run_op(forward, x, backend=backend)
        gx = run_op(backward, g, x, backend=backend)
    assert_close(y, ref_forward(x), dtype=dtype, backend=backend, err_msg=name)
    assert_close(gx, ref_backward(g, x), dtype=dtype, backend=backend, err_msg=name)
    y = cnnarray.to_numpy(run_op(forward, np.array([-1.0, np.nan, 2.0], dtype), backend=backend))
    np.testing.assert_array_equal(np.isnan(y), [False, True, False], err_msg=name)


def test_activation_arguments_are_checked():
    x = np.zeros(3)
    with pytest.raises(ValueError, match=r"min_val must not exceed max_val, got min_val=2.0"):
        cnnarray.hardtanh(x, 2.0, 1.0)
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh', got 'erf'"):
        cnnarray.gelu(x, approximate="erf")
    with pytest.raises(ValueError, match="beta must be a finite positive number, got 0"):
        cnnarray.softplus(x, beta=0)
    with pytest.raises(ValueError, match="alpha of celu must be non-zero"):
        cnnarray.celu(x, alpha=0.0)
    with pytest.raises(TypeError, match="alpha must be a finite number, got 'a'"):
        cnnarray.elu(x, alpha="a")


# --------------------------------------------------------------------------- prelu


@st.composite
def prelu_cases(draw):
    shape = draw(st.sampled_from([(2, 3, 4), (3, 2), (1, 4, 2, 3), (2, 2, 1, 2, 2), (5,), ()]))
    channels = shape[1] if len(shape) >= 2 else 1
    return shape, draw(st.sampled_from(sorted({1, channels}))), draw(seeds)


def _prelu_data(shape, slopes, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x = np.sign(x) * (0.05 + np.abs(x))  # clear of the kink at 0
    return (x.astype(dtype), rng.uniform(-1, 1, slopes).astype(dtype),
            rng.uniform(-1, 1, shape).astype(dtype))  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(case=prelu_cases())
def test_prelu_matches_reference_and_finite_differences(backend, dtype, case):
    x, w, g = _prelu_data(*case, dtype)
    assert_close(run_op(cnnarray.prelu, x, w, backend=backend), ref.prelu(x, w), dtype=dtype,
                 backend=backend)  # fmt: skip
    gx, gw = run_op(cnnarray.prelu_backward, g, x, w, backend=backend)
    want_x, want_w = ref.prelu_backward(g, x, w)
    assert_close(gx, want_x, dtype=dtype, backend=backend)
    assert_close(gw, want_w, dtype=dtype, backend=backend, scale=float(np.abs(x * g).sum()))
    if dtype == F64:
        for i, arg in enumerate((x, w)):

            def objective(v, i=i):
                args = [x, w]
                args[i] = v
                return vjp_objective(cnnarray.prelu(*args, backend=backend), g)

            assert_grad_close((gx, gw)[i], numerical_grad(objective, arg), f"prelu arg {i}")


@pytest.mark.parametrize("shape, slopes", [((2, 3, 4, 5), 3), ((2, 3, 4, 5), 1), ((4, 6), 6)])
def test_prelu_matches_torch_values_and_grads(backend, shape, slopes):
    torch = pytest.importorskip("torch")
    x, w, g = _prelu_data(shape, slopes, 3, np.float64)
    x.flat[0] = 0.0  # at 0 the slope applies, as in PyTorch
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.prelu(tx, tw)
    ty.backward(torch.tensor(g))
    assert_close(run_op(cnnarray.prelu, x, w, backend=backend), ty.detach().numpy(), dtype=F64)
    gx, gw = run_op(cnnarray.prelu_backward, g, x, w, backend=backend)
    assert_close(gx, tx.grad.numpy(), dtype=F64, backend=backend)
    assert_close(gw, tw.grad.numpy(), dtype=F64, backend=backend)


def test_prelu_weight_shape_is_checked():
    with pytest.raises(ValueError, match=r"weight must have shape \(1,\) or \(C,\) = \(3,\) for x "
                                         r"of shape \(2, 3, 4\).*got \(2,\)"):  # fmt: skip
        cnnarray.prelu(np.zeros((2, 3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match=r"= \(1,\) for x of shape \(5,\).*got \(5,\)"):
        cnnarray.prelu(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="grad_out must have the shape of x"):
        cnnarray.prelu_backward(np.zeros((2, 3)), np.zeros((2, 4)), np.zeros(1))


# --------------------------------------------------------------------------- nn layers

LAYERS = [
    ("ELU", {"alpha": 0.5}), ("SELU", {}), ("CELU", {"alpha": 1.5}), ("GELU", {}),
    ("GELU", {"approximate": "tanh"}), ("SiLU", {}), ("Mish", {}), ("Hardswish", {}),
    ("Hardsigmoid", {}), ("ReLU6", {}), ("Hardtanh", {"min_val": -2.0, "max_val": 0.5}),
    ("Softplus", {"beta": 2.0, "threshold": 5.0}), ("Sigmoid", {}), ("Tanh", {}),
]  # fmt: skip


@pytest.mark.parametrize("name, kwargs", LAYERS, ids=[f"{n}{k}" for n, k in LAYERS])
def test_activation_layers_match_torch_and_rebuild_from_spec(name, kwargs):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(4).uniform(-5, 5, (2, 3, 4)).astype(np.float32)
    layer = getattr(nn, name)(**kwargs)
    y = layer(x)
    want = getattr(torch.nn, name)(**kwargs)(torch.tensor(x)).numpy()
    assert_close(y, want, dtype=np.float32)
    twin = nn.from_spec(json.loads(json.dumps(layer.spec())))
    assert repr(twin) == repr(layer)
    np.testing.assert_array_equal(twin(x), y)


def test_prelu_layer_learns_its_slope_like_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 4))
    layer = nn.PReLU(3, init=0.1, dtype="float64")
    assert layer.weight.shape == (3,) and np.all(layer.weight.data == 0.1)
    out = layer(cnnarray.tensor(x))
    (out * out).sum().backward()
    tlayer = torch.nn.PReLU(3, init=0.1).double()
    with torch.no_grad():  # its init went through float32
        tlayer.weight.fill_(0.1)
    tx = torch.tensor(x)
    (tlayer(tx) ** 2).sum().backward()
    assert_close(out.data, tlayer(tx).detach().numpy(), dtype=F64)
    assert_close(layer.weight.grad, tlayer.weight.grad.numpy(), dtype=F64)
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    assert nn.from_spec(layer.spec()).spec() == layer.spec()
    assert nn.PReLU().weight.shape == (1,)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: nn.Hardtanh(1.0, -1.0), "min_val must not exceed max_val"),
        (lambda: nn.GELU("fast"), "approximate must be 'none' or 'tanh'"),
        (lambda: nn.Softplus(beta=-1.0), "beta must be a finite positive number"),
        (lambda: nn.CELU(0.0), "alpha of CELU must be non-zero"),
        (lambda: nn.PReLU(0), "num_parameters must be a positive int, got 0"),
    ],
)
def test_activation_layer_constructors_check_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
