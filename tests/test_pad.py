"""pad and pad_backward against numpy.pad (the oracle), finite differences and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, assert_grad_close, numerical_grad, run_op, vjp_objective
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import reference as ref

MODES = ["constant", "reflect", "replicate", "circular"]


@st.composite
def pad_cases(draw):
    """(x shape, pad, mode, value, seed) within each mode's limits, negative pads included."""
    mode = draw(st.sampled_from(MODES))
    axes = draw(st.integers(1, 3))
    lead = draw(st.integers(1, 2)) if mode != "constant" else draw(st.integers(0, 2))
    spatial = [draw(st.integers(1, 5)) for _ in range(axes)]
    shape = (*[draw(st.integers(1, 2)) for _ in range(lead)], *spatial)
    pad = []
    for size in reversed(spatial):
        if mode == "reflect":
            lo, hi = -((size - 1) // 2), size - 1
        elif mode == "circular":
            lo, hi = -((size - 1) // 2), (size + 1) // 2
        elif mode == "replicate":
            lo, hi = -((size - 1) // 2), 3
        else:
            lo, hi = -(size // 2), 3
        pad += [draw(st.integers(lo, hi)), draw(st.integers(lo, hi))]
    value = draw(st.sampled_from([0.0, 1.5])) if mode == "constant" else 0.0
    return shape, tuple(pad), mode, value, draw(st.integers(0, 2**32 - 1))


def _data(shape, pad, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, shape).astype(dtype)
    g = rng.uniform(-1, 1, ref.pad(x, pad, "constant").shape).astype(dtype)
    return x, g


@settings(max_examples=40, deadline=None)
@given(case=pad_cases())
def test_pad_and_backward_match_reference(backend, dtype, case):
    shape, pad, mode, value, seed = case
    x, g = _data(shape, pad, seed, dtype)
    y = run_op(cnnarray.pad, x, pad, mode, value, backend=backend)
    assert_close(y, ref.pad(x, pad, mode, value), dtype=dtype, backend=backend)
    gx = run_op(cnnarray.pad_backward, g, shape, pad, mode, backend=backend)
    assert_close(gx, ref.pad_backward(g, shape, pad, mode), dtype=dtype, backend=backend)


@settings(max_examples=25, deadline=None)
@given(case=pad_cases())
def test_pad_matches_torch_forward_and_grad(case):
    torch = pytest.importorskip("torch")
    shape, pad, mode, value, seed = case
    x, g = _data(shape, pad, seed, np.float64)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.pad(tx, pad, mode=mode, value=value if mode == "constant" else None)
    ty.backward(torch.tensor(g))
    assert_close(cnnarray.pad(x, pad, mode, value), ty.detach().numpy(), dtype=np.float64)
    assert_close(cnnarray.pad_backward(g, x, pad, mode), tx.grad.numpy(), dtype=np.float64)


@pytest.mark.parametrize("mode", MODES)
def test_pad_backward_matches_finite_differences(backend, mode):
    x, g = _data((2, 3, 4), (2, -1, 1, 2), 3, np.float64)
    gx = run_op(cnnarray.pad_backward, g, x.shape, (2, -1, 1, 2), mode, backend=backend)
    numeric = numerical_grad(
        lambda v: vjp_objective(cnnarray.pad(v, (2, -1, 1, 2), mode, backend=backend), g), x
    )
    assert_grad_close(gx, numeric)


def test_pad_reads_last_axis_first_and_crops_with_negative_pads():
    x = np.arange(12.0).reshape(3, 4)
    y = cnnarray.pad(x, (1, -2, -1, 0), value=-1)
    np.testing.assert_array_equal(y, [[-1, 4, 5], [-1, 8, 9]])


def test_pad_reflect_does_not_repeat_the_edge_and_replicate_does():
    x = np.arange(4.0).reshape(1, 4)
    np.testing.assert_array_equal(cnnarray.pad(x, (2, 1), "reflect"), [[2, 1, 0, 1, 2, 3, 2]])
    np.testing.assert_array_equal(cnnarray.pad(x, (2, 1), "replicate"), [[0, 0, 0, 1, 2, 3, 3]])
    np.testing.assert_array_equal(cnnarray.pad(x, (2, 1), "circular"), [[2, 3, 0, 1, 2, 3, 0]])


def test_pad_circular_wraps_within_the_cropped_axis_as_torch():
    x = np.arange(5.0).reshape(1, 5)
    np.testing.assert_array_equal(cnnarray.pad(x, (-1, 3), "circular"), [[1, 2, 3, 4, 1, 2, 3]])


def test_pad_replicate_backward_sums_every_copy_of_the_edge():
    gx = cnnarray.pad_backward(np.ones((1, 7)), (1, 4), (3, 0), "replicate")
    np.testing.assert_array_equal(gx, [[4, 1, 1, 1]])


@pytest.mark.parametrize(
    "shape, pad, mode, kwargs, match",
    [
        ((1, 4), (4, 0), "reflect", {}, r"mode='reflect' needs pads smaller .* got pad \(4, 0\)"),
        ((1, 3), (0, 4), "circular", {}, r"wraps once\), got pad \(0, 4\)"),
        ((4,), (1, 1), "reflect", {}, r"needs x with 2 or 3 axes, got shape \(4,\)"),
        ((1, 1, 1, 1, 4), (1, 1), "replicate", {}, r"needs x with 2 or 3 axes"),
        ((2, 3), (1, 1, 1), "constant", {}, r"even number of ints"),
        ((2, 3), (1,) * 6, "constant", {}, r"at most 2 \* x.ndim = 4, got 6"),
        ((2, 3), (1, 1), "edge", {}, r"mode must be one of"),
        ((2, 3), (1, 1), "reflect", {"value": 2.0}, r"mode='reflect' takes no value"),
        ((2, 3), (-2, -2), "constant", {}, r"leaves axis 1 .* with -1 elements"),
        ((2, 3), (1, 1), "constant", {"value": float("nan")}, r"value must be a number"),
    ],
)
def test_pad_errors_name_the_argument_and_value(shape, pad, mode, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cnnarray.pad(np.zeros(shape), pad, mode, **kwargs)


def test_pad_rejects_a_pad_that_is_not_a_tuple_of_ints():
    with pytest.raises(TypeError, match="pad must be a tuple of ints"):
        cnnarray.pad(np.zeros((2, 3)), 1)
    with pytest.raises(TypeError, match="pad must be an int"):
        cnnarray.pad(np.zeros((2, 3)), (1.5, 1))
    with pytest.raises(TypeError, match="x must be an array or a tuple of ints"):
        cnnarray.pad_backward(np.zeros((2, 5)), "ab", (1, 1))
    with pytest.raises(ValueError, match=r"grad_out must have shape \(2, 5\)"):
        cnnarray.pad_backward(np.zeros((2, 4)), (2, 3), (1, 1))


def test_pad_autograd_calls_pad_backward():
    x, g = _data((2, 2, 3), (1, 2, -1, 1), 5, np.float64)
    t = cnnarray.tensor(x, requires_grad=True)
    (cnnarray.pad(t, (1, 2, -1, 1), "reflect") * cnnarray.tensor(g)).sum().backward()
    assert_close(t.grad, cnnarray.pad_backward(g, x.shape, (1, 2, -1, 1), "reflect"),
                 dtype=np.float64)  # fmt: skip
