"""conv1d and conv3d (and their backwards) against the SciPy oracle, finite differences
and PyTorch."""

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
from cnnarray import _args


def _per_axis(draw: Any, dims: int, low: int, high: int) -> Any:
    """An int or a tuple of ``dims`` ints (conv1d also takes a 1-tuple)."""
    if draw(st.booleans()):
        return draw(st.integers(low, high))
    return tuple(draw(st.integers(low, high)) for _ in range(dims))


@st.composite
def nd_cases(draw: Any, dims: int | None = None) -> NdConvCase:
    """conv1d / conv3d calls: strides, paddings (same/valid), dilations, groups, unbatched."""
    dims = draw(st.sampled_from([1, 3])) if dims is None else dims
    top = 3 if dims == 1 else 2  # 3-D stays tiny: the oracle loops over every output
    groups = draw(st.sampled_from([1, 2]))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, top)) for _ in range(dims))
    dilation = _per_axis(draw, dims, 1, 2)
    padding = draw(st.sampled_from(["same", "valid", "numbers"]))
    if padding == "numbers":
        padding = _per_axis(draw, dims, 0, 2)
    stride = 1 if padding == "same" else _per_axis(draw, dims, 1, 3)
    dil = _args._ntuple(dilation, "dilation", dims, minimum=1)
    lo, hi = _args.conv_padding_nd(
        padding, kernel, dil, _args._ntuple(stride, "s", dims, minimum=1)
    )
    size = tuple(draw(st.integers(max(1, d * (k - 1) + 1 - a - b), 8 if dims == 1 else 4))
                 for k, d, a, b in zip(kernel, dil, lo, hi, strict=True))  # fmt: skip
    lead = draw(st.sampled_from([(), (1,), (2,)]))
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    bias = c_out if draw(st.booleans()) else None
    seed = draw(st.integers(0, 2**32 - 1))
    x_shape, w_shape = (*lead, c_in, *size), (c_out, c_in // groups, *kernel)
    return NdConvCase(f"conv{dims}d", x_shape, w_shape, bias, kwargs, seed)


@settings(max_examples=30, deadline=None)
@given(case=nd_cases())
def test_conv_nd_and_backward_match_reference(backend, dtype, case: NdConvCase):
    check_case_against_reference(case, backend, dtype)


@settings(max_examples=8, deadline=None)
@given(case=nd_cases())
def test_conv_nd_backward_matches_finite_differences(backend, case: NdConvCase):
    check_case_finite_differences(case, backend)


def _torch_run(torch, case: NdConvCase, x, w, b, g=None):
    """PyTorch's conv{1,3}d forward, and with ``g`` its gradients (None for no bias)."""
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    fn = getattr(torch.nn.functional, case.name)
    kw = case.kwargs
    ty = fn(tx, tw, tb, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    if g is None:
        return ty.detach().numpy()
    ty.backward(torch.tensor(g))
    return tx.grad.numpy(), tw.grad.numpy(), None if tb is None else tb.grad.numpy()


@settings(max_examples=15, deadline=None)
@given(case=nd_cases())
def test_conv_nd_forward_and_backward_match_torch(case: NdConvCase):
    torch = pytest.importorskip("torch")
    forward, backward, _, _ = case.ops
    x, w, b = case.arrays(np.float64)
    y = forward(x, w, b, **case.kwargs)
    assert_close(y, _torch_run(torch, case, x, w, b), dtype=np.float64)
    g = case.grad_out(y.shape, np.float64)
    grads = backward(g, x, w, b, **case.kwargs)
    for got, want, name in zip(grads, _torch_run(torch, case, x, w, b, g), "xwb", strict=True):
        assert_close(got, want, dtype=np.float64, err_msg=f"grad_{name}")


@pytest.mark.parametrize("dims", [1, 3])
def test_padding_same_with_even_kernel_pads_the_extra_element_after(dims):
    # kernel 2 (4 with dilation... 2): total padding 1 per axis, all of it after the input
    x = np.arange(4.0**dims).reshape((1, 1) + (4,) * dims)
    w = np.zeros((1, 1) + (2,) * dims)
    w[(0, 0) + (1,) * dims] = 1  # picks the element after the window's start
    forward = getattr(cnnarray, f"conv{dims}d")
    y = forward(x, w, padding="same")
    shifted = np.zeros_like(x)
    shifted[(slice(None), slice(None)) + (slice(0, 3),) * dims] = x[
        (slice(None), slice(None)) + (slice(1, 4),) * dims
    ]
    np.testing.assert_array_equal(y, shifted)  # the last element of each axis read padding
    torch = pytest.importorskip("torch")
    fn = getattr(torch.nn.functional, f"conv{dims}d")
    np.testing.assert_array_equal(y, fn(torch.tensor(x), torch.tensor(w), padding="same").numpy())


def test_conv1d_is_conv2d_on_one_row_bit_for_bit():
    rng = np.random.default_rng(4)
    x, w, b = (
        rng.standard_normal((3, 4, 11)),
        rng.standard_normal((6, 2, 3)),
        rng.standard_normal(6),
    )
    kw = {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}
    y = cnnarray.conv1d(x, w, b, **kw)
    y2 = cnnarray.conv2d(x[:, :, None], w[:, :, None], b, (1, 2), (0, 1), (1, 2), 2)
    np.testing.assert_array_equal(y, y2[:, :, 0])


@pytest.mark.parametrize("limit", [1, 2000])
def test_conv3d_workspace_limit_chunks_give_the_same_result(limit):
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((3, 2, 4, 4, 3)), rng.standard_normal((2, 2, 2, 2, 2))
    g = rng.standard_normal((3, 2, 3, 3, 2))
    y = cnnarray.conv3d(x, w, workspace_limit=limit)
    np.testing.assert_allclose(y, cnnarray.conv3d(x, w), rtol=1e-12)
    for got, want in zip(cnnarray.conv3d_backward(g, x, w, workspace_limit=limit),
                         cnnarray.conv3d_backward(g, x, w), strict=True):  # fmt: skip
        assert_close(got, want, dtype=np.float64)


def test_conv3d_input_grad_false_skips_grad_x():
    x, w = np.ones((1, 1, 3, 3, 3)), np.ones((1, 1, 2, 2, 2))
    gx, gw, gb = cnnarray.conv3d_backward(np.ones((1, 1, 2, 2, 2)), x, w, input_grad=False)
    assert gx is None and gb is None
    np.testing.assert_array_equal(gw, np.full((1, 1, 2, 2, 2), 8.0))


@pytest.mark.parametrize(
    "fn, x_shape, w_shape, kwargs, match",
    [
        ("conv1d", (2, 3, 8), (4, 2, 3), {}, r"expected x of shape \(2, 3, 8\) to have 2 channels"),
        ("conv1d", (2, 3, 8, 1), (4, 3, 3), {}, r"x must have shape \(N, C_in, L\) or \(C_in, L\)"),
        ("conv1d", (2, 3, 8), (4, 3, 3), {"stride": (1, 1)},
         r"stride must be an int or a tuple of 1 int, got \(1, 1\)"),
        ("conv1d", (2, 3, 8), (4, 3, 3), {"padding": "same", "stride": 2}, "requires stride=1"),
        ("conv1d", (2, 3, 2), (4, 3, 3), {}, r"kernel of size \(3,\) after dilation is larger"),
        ("conv3d", (2, 3, 4, 4, 4), (4, 3, 2, 2), {},
         r"weight must have shape \(C_out, C_in/groups, kd, kh, kw\)"),
        ("conv3d", (3, 4, 4, 4), (4, 1, 2, 2, 2), {"groups": 3}, r"groups=3 must divide .*C_out=4"),
        ("conv3d", (2, 3, 4, 4, 4), (4, 3, 2, 2, 2), {"padding": (1, 1)},
         r"padding must be an int or a tuple of 3 ints"),
    ],
)  # fmt: skip
def test_conv_nd_errors_name_argument_expectation_and_value(fn, x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(cnnarray, fn)(np.zeros(x_shape), np.zeros(w_shape), **kwargs)


def test_conv_nd_backward_checks_grad_out_shape():
    with pytest.raises(ValueError, match=r"grad_out must have shape \(2, 4, 6\), got \(2, 4, 5\)"):
        cnnarray.conv1d_backward(np.zeros((2, 4, 5)), np.zeros((2, 3, 8)), np.zeros((4, 3, 3)))
    with pytest.raises(ValueError, match=r"grad_out must have shape \(4, 2, 2, 2\)"):
        cnnarray.conv3d_backward(np.zeros((4, 2, 2)), np.zeros((3, 3, 3, 3)),
                                 np.zeros((4, 3, 2, 2, 2)))  # fmt: skip


@pytest.mark.parametrize("dims", [1, 3])
def test_conv_nd_autograd_calls_its_backward(dims):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2) + (4,) * dims)
    w, b = rng.standard_normal((3, 2) + (2,) * dims), rng.standard_normal(3)
    leaves = [cnnarray.tensor(a, requires_grad=True) for a in (x, w, b)]
    forward = getattr(cnnarray, f"conv{dims}d")
    y = forward(*leaves, stride=2, padding=1)
    g = rng.standard_normal(y.shape)
    y.backward(cnnarray.tensor(g))
    direct = getattr(cnnarray, f"conv{dims}d_backward")(g, x, w, b, stride=2, padding=1)
    for leaf, want in zip(leaves, direct, strict=True):
        assert_close(leaf.grad, want, dtype=np.float64)


# --------------------------------------------------------------------------- layers

LAYERS = [
    ("Conv1d", {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2,
                "padding": 2, "groups": 2, "padding_mode": "reflect"}, (2, 4, 9)),
    ("Conv1d", {"in_channels": 2, "out_channels": 3, "kernel_size": 4, "padding": "same",
                "padding_mode": "circular", "bias": False}, (2, 7)),
    ("Conv2d", {"in_channels": 2, "out_channels": 3, "kernel_size": (3, 2), "padding": (1, 2),
                "dilation": (1, 2), "padding_mode": "replicate"}, (2, 2, 5, 6)),
    ("Conv2d", {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "padding": "same",
                "padding_mode": "reflect"}, (1, 2, 4, 5)),
    ("Conv3d", {"in_channels": 2, "out_channels": 2, "kernel_size": 2, "stride": (1, 2, 1),
                "padding": 1}, (2, 2, 3, 4, 3)),
    ("Conv3d", {"in_channels": 2, "out_channels": 4, "kernel_size": (2, 3, 2), "padding": 1,
                "groups": 2, "padding_mode": "circular"}, (1, 2, 3, 3, 4)),
]  # fmt: skip


@pytest.mark.parametrize("name, config, x_shape", LAYERS, ids=[f"{n}-{i}" for i, (n, _, _) in
                                                               enumerate(LAYERS)])  # fmt: skip
def test_conv_layers_match_torch_with_every_padding_mode(name, config, x_shape):
    torch = pytest.importorskip("torch")
    ours = getattr(cnnarray.nn, name)(**config, dtype="float64", seed=0)
    theirs = getattr(torch.nn, name)(**config, dtype=torch.float64)
    x = np.random.default_rng(1).uniform(-1, 1, x_shape)
    compare_layer_with_torch(torch, ours, theirs, x)


@pytest.mark.parametrize("name, config, x_shape", LAYERS[::2] + LAYERS[1:2],
                         ids=["Conv1d", "Conv2d", "Conv3d", "Conv1d-circular"])  # fmt: skip
def test_conv_layer_spec_and_state_dict_round_trip(name, config, x_shape):
    layer = getattr(cnnarray.nn, name)(**config, seed=0)
    spec = json.loads(json.dumps(layer.spec()))
    assert spec["args"].get("padding_mode", "zeros") == config.get("padding_mode", "zeros")
    twin = cnnarray.nn.from_spec(spec, seed=5)
    twin.load_state_dict(layer.state_dict())
    assert twin.spec() == spec and repr(twin) == repr(layer)
    x = np.random.default_rng(2).uniform(-1, 1, x_shape).astype(np.float32)
    np.testing.assert_array_equal(twin(x).data, layer(x).data)


def test_conv_layer_init_follows_torch_bounds():
    layer = cnnarray.nn.Conv3d(4, 6, (3, 2, 2), groups=2, seed=0)
    bound = 1 / np.sqrt(2 * 3 * 2 * 2)  # fan_in = in_channels / groups * prod(kernel)
    assert layer.weight.shape == (6, 2, 3, 2, 2) and layer.bias.shape == (6,)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.8 * bound


def test_conv_layer_rejects_unknown_padding_mode():
    with pytest.raises(
        ValueError, match="padding_mode of Conv1d must be one of 'zeros', 'reflect', 're"
    ):
        cnnarray.nn.Conv1d(1, 1, 3, padding_mode="edge")


def test_conv1d_input_grad_false_skips_grad_x_and_autograd_uses_it():
    x, w = np.ones((1, 2, 5)), np.ones((3, 2, 2))
    gx, gw, _ = cnnarray.conv1d_backward(np.ones((1, 3, 4)), x, w, input_grad=False)
    assert gx is None
    np.testing.assert_array_equal(gw, np.full((3, 2, 2), 4.0))
    leaf = cnnarray.tensor(w, requires_grad=True)
    cnnarray.conv1d(x, leaf).sum().backward()
    np.testing.assert_array_equal(leaf.grad, gw)
