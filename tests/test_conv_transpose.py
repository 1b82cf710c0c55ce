"""conv_transpose1d/2d/3d and their backwards against the scatter oracle, finite
differences and PyTorch."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from helpers import (
    NdConvCase,
    assert_close,
    check_case_against_reference,
    check_case_finite_differences,
    compare_layer_with_torch,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnarray


@st.composite
def transpose_cases(draw: Any) -> NdConvCase:
    """Strides, paddings, output paddings (below stride or dilation), dilations, groups,
    odd sizes and unbatched inputs, in 1, 2 and 3 dimensions."""
    dims = draw(st.sampled_from([1, 2, 3]))
    top = 3 if dims < 3 else 2
    groups = draw(st.sampled_from([1, 2]))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel, stride, dilation, padding, extra, size = [], [], [], [], [], []
    for _ in range(dims):
        k, s, d = draw(st.integers(1, top)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
        n = draw(st.integers(1, 4 if dims < 3 else 3))
        e = draw(st.integers(0, max(s, d) - 1))
        full = (n - 1) * s + d * (k - 1) + 1 + e
        p = draw(st.integers(0, min(2, (full - 1) // 2)))  # leaves at least one output
        for seq, v in zip((kernel, stride, dilation, padding, extra, size),
                          (k, s, d, p, e, n), strict=True):  # fmt: skip
            seq.append(v)
    lead = draw(st.sampled_from([(), (1,), (2,)]))
    kwargs = {"stride": tuple(stride), "padding": tuple(padding), "output_padding": tuple(extra),
              "groups": groups, "dilation": tuple(dilation)}  # fmt: skip
    seed = draw(st.integers(0, 2**32 - 1))
    x_shape, w_shape = (*lead, c_in, *size), (c_in, c_out // groups, *kernel)
    bias = c_out if draw(st.booleans()) else None
    return NdConvCase(f"conv_transpose{dims}d", x_shape, w_shape, bias, kwargs, seed)


@settings(max_examples=30, deadline=None)
@given(case=transpose_cases())
def test_conv_transpose_and_backward_match_reference(backend, dtype, case: NdConvCase):
    check_case_against_reference(case, backend, dtype)


@settings(max_examples=8, deadline=None)
@given(case=transpose_cases())
def test_conv_transpose_backward_matches_finite_differences(backend, case: NdConvCase):
    check_case_finite_differences(case, backend)


@settings(max_examples=15, deadline=None)
@given(case=transpose_cases())
def test_conv_transpose_forward_and_backward_match_torch(case: NdConvCase):
    torch = pytest.importorskip("torch")
    forward, backward, _, _ = case.ops
    x, w, b = case.arrays(np.float64)
    kw = case.kwargs
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    fn = getattr(torch.nn.functional, case.name)
    ty = fn(tx, tw, tb, kw["stride"], kw["padding"], kw["output_padding"], kw["groups"],
            kw["dilation"])  # fmt: skip
    y = forward(x, w, b, **kw)
    assert_close(y, ty.detach().numpy(), dtype=np.float64)
    g = case.grad_out(y.shape, np.float64)
    ty.backward(torch.tensor(g))
    gx, gw, gb = backward(g, x, w, b, **kw)
    assert_close(gx, tx.grad.numpy(), dtype=np.float64, err_msg="grad_x")
    assert_close(gw, tw.grad.numpy(), dtype=np.float64, err_msg="grad_weight")
    assert_close(gb, None if tb is None else tb.grad.numpy(), dtype=np.float64, err_msg="grad_b")


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_conv_transpose_is_the_adjoint_of_the_convolution(dims):
    # <conv_transpose(x), z> == <x, conv(z)>: the transposed map, with the same weight
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((2, 4) + (3,) * dims), rng.standard_normal((4, 3) + (2,) * dims)
    kw = {"stride": 2, "padding": 1, "dilation": 1}
    y = getattr(cnnarray, f"conv_transpose{dims}d")(x, w, **kw)
    z = rng.standard_normal(y.shape)
    conv = cnnarray.conv2d if dims == 2 else getattr(cnnarray, f"conv{dims}d")
    np.testing.assert_allclose(np.sum(y * z), np.sum(x * conv(z, w, **kw)), rtol=1e-12)


def test_output_padding_adds_size_at_the_end_only():
    # stride 2: inputs of size 7 and 8 both convolve (k=3, p=1) to size 4; output_padding
    # picks 8, the extra last element receiving only the scatter that reaches it
    x, w = np.ones((1, 1, 4)), np.ones((1, 1, 3))
    y7 = cnnarray.conv_transpose1d(x, w, stride=2, padding=1)
    y8 = cnnarray.conv_transpose1d(x, w, stride=2, padding=1, output_padding=1)
    assert y7.shape == (1, 1, 7) and y8.shape == (1, 1, 8)
    np.testing.assert_array_equal(y8[..., :7], y7)
    np.testing.assert_array_equal(y8, [[[1, 2, 1, 2, 1, 2, 1, 1]]])
    assert cnnarray.conv1d(y8, w, stride=2, padding=1).shape == x.shape
    torch = pytest.importorskip("torch")
    want = torch.nn.functional.conv_transpose1d(torch.tensor(x), torch.tensor(w), stride=2,
                                                padding=1, output_padding=1)  # fmt: skip
    np.testing.assert_array_equal(y8, want.numpy())


def test_output_padding_may_reach_the_dilation_when_stride_is_one():
    # PyTorch's rule: output_padding < stride OR < dilation
    x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    y = cnnarray.conv_transpose2d(x, w, dilation=2, output_padding=1)
    assert y.shape == (1, 1, 6, 6)
    np.testing.assert_array_equal(y[0, 0, -1], 0)  # nothing scatters to the extra row
    torch = pytest.importorskip("torch")
    want = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), dilation=2,
                                                output_padding=1)  # fmt: skip
    np.testing.assert_array_equal(y, want.numpy())


@pytest.mark.parametrize(
    "fn, x_shape, w_shape, kwargs, match",
    [
        ("conv_transpose1d", (1, 2, 4), (2, 1, 3), {"stride": 2, "output_padding": 2},
         r"output_padding must be smaller than either stride or dilation .* got "
         r"output_padding=\(2,\), stride=\(2,\), dilation=\(1,\)"),
        ("conv_transpose2d", (1, 2, 4, 4), (2, 1, 3, 3), {"padding": "same"},
         r"padding of a transposed convolution must be an int or a tuple of 2 ints"),
        ("conv_transpose2d", (1, 3, 4, 4), (2, 1, 3, 3), {},
         r"expected x of shape \(1, 3, 4, 4\) to have 2 channels, but got 3"),
        ("conv_transpose3d", (1, 3, 2, 2, 2), (3, 1, 1, 1, 1), {"groups": 2},
         r"groups=2 must divide the number of input channels weight.shape\[0\]=3"),
        ("conv_transpose1d", (1, 1, 1), (1, 1, 1), {"padding": 1},
         r"output of size \(-1,\) is empty"),
        ("conv_transpose2d", (4,), (2, 1, 3, 3), {},
         r"x must have shape \(N, C_in, H, W\) or \(C_in, H, W\)"),
    ],
)  # fmt: skip
def test_conv_transpose_errors_name_argument_expectation_and_value(fn, x_shape, w_shape, kwargs,
                                                                   match):  # fmt: skip
    with pytest.raises(ValueError, match=match):
        getattr(cnnarray, fn)(np.zeros(x_shape), np.zeros(w_shape), **kwargs)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_conv_transpose_autograd_calls_its_backward(dims):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 2) + (3,) * dims)
    w, b = rng.standard_normal((2, 3) + (2,) * dims), rng.standard_normal(3)
    leaves = [cnnarray.tensor(a, requires_grad=True) for a in (x, w, b)]
    name = f"conv_transpose{dims}d"
    y = getattr(cnnarray, name)(*leaves, stride=2, output_padding=1)
    g = rng.standard_normal(y.shape)
    y.backward(cnnarray.tensor(g))
    direct = getattr(cnnarray, name + "_backward")(g, x, w, b, stride=2, output_padding=1)
    for leaf, want in zip(leaves, direct, strict=True):
        assert_close(leaf.grad, want, dtype=np.float64)


# --------------------------------------------------------------------------- layers

LAYERS = [
    ("ConvTranspose1d", {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2,
                         "padding": 1, "output_padding": 1, "groups": 2}, (2, 4, 5)),
    ("ConvTranspose2d", {"in_channels": 2, "out_channels": 3, "kernel_size": (3, 2),
                         "stride": (2, 1), "padding": (1, 0), "dilation": (1, 2),
                         "bias": False}, (2, 2, 3, 4)),
    ("ConvTranspose3d", {"in_channels": 2, "out_channels": 2, "kernel_size": 2, "stride": 2,
                         "output_padding": (1, 0, 1)}, (2, 3, 2, 2)),
]  # fmt: skip


@pytest.mark.parametrize("name, config, x_shape", LAYERS, ids=[n for n, _, _ in LAYERS])
def test_conv_transpose_layers_match_torch(name, config, x_shape):
    torch = pytest.importorskip("torch")
    ours = getattr(cnnarray.nn, name)(**config, dtype="float64", seed=0)
    theirs = getattr(torch.nn, name)(**config, dtype=torch.float64)
    assert ours.weight.shape == tuple(theirs.weight.shape)
    x = np.random.default_rng(1).uniform(-1, 1, x_shape)
    compare_layer_with_torch(torch, ours, theirs, x)


@pytest.mark.parametrize("name, config, x_shape", LAYERS, ids=[n for n, _, _ in LAYERS])
def test_conv_transpose_layer_spec_and_state_dict_round_trip(name, config, x_shape):
    layer = getattr(cnnarray.nn, name)(**config, seed=0)
    spec = json.loads(json.dumps(layer.spec()))
    twin = cnnarray.nn.from_spec(spec, seed=5)
    twin.load_state_dict(layer.state_dict())
    assert twin.spec() == spec and repr(twin) == repr(layer)
    x = np.random.default_rng(2).uniform(-1, 1, x_shape).astype(np.float32)
    np.testing.assert_array_equal(twin(x).data, layer(x).data)


def test_conv_transpose_layer_bias_has_out_channels_and_torch_bound():
    layer = cnnarray.nn.ConvTranspose2d(4, 6, 3, groups=2, seed=0)
    assert layer.weight.shape == (4, 3, 3, 3) and layer.bias.shape == (6,)
    bound = 1 / np.sqrt(3 * 3 * 3)  # fan_in from the weight: out_channels / groups * k * k
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"padding_mode": "reflect"}, "padding_mode of ConvTranspose1d must be 'zeros'"),
        ({"stride": 2, "output_padding": 2}, "output_padding must be smaller than either"),
        ({"padding": "same"}, "padding must be an int"),
    ],
)
def test_conv_transpose_layer_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cnnarray.nn.ConvTranspose1d(2, 2, 3, **kwargs)
