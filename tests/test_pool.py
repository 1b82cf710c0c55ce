"""max_pool2d / avg_pool2d and their backward against the loop oracle, differences and PyTorch.

Max-pool inputs are tie-free (shuffled distinct values) except in the test that pins
the tie policy: a window's gradient goes to its FIRST maximum in row-major order.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    PoolCase,
    assert_close,
    assert_grad_close,
    numerical_grad,
    pool_cases,
    run_op,
    tie_free,
    vjp_objective,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import reference as ref

OPS = {
    "max": (cnnarray.max_pool2d, cnnarray.max_pool2d_backward, ref.max_pool2d,
            ref.max_pool2d_backward),
    "avg": (cnnarray.avg_pool2d, cnnarray.avg_pool2d_backward, ref.avg_pool2d,
            ref.avg_pool2d_backward),
}  # fmt: skip


def _check_against_reference(backend, dtype, case: PoolCase) -> None:
    forward, backward, ref_forward, ref_backward = OPS[case.kind]
    x = case.x(dtype)
    y = run_op(forward, x, backend=backend, **case.kwargs)
    desired = ref_forward(x, **case.kwargs)
    assert_close(y, desired, dtype=dtype, backend=backend, err_msg="forward")
    g = case.grad_out(desired.shape, dtype)
    gx = run_op(backward, g, x, backend=backend, **case.kwargs)
    assert_close(
        gx, ref_backward(g, x, **case.kwargs), dtype=dtype, backend=backend, err_msg="grad"
    )
    if case.kind == "max":  # given the forward's result, the same gradient bit for bit
        _assert_same_with_output(backend, g, x, y, gx, case.kwargs)


def _assert_same_with_output(backend, g, x, y, gx, kwargs) -> None:
    """max_pool2d_backward with ``output=y`` (the window maxima not recomputed) gives ``gx``."""
    y = cnnarray.to_numpy(y)
    got = run_op(cnnarray.max_pool2d_backward, g, x, backend=backend, output=y, **kwargs)
    np.testing.assert_array_equal(cnnarray.to_numpy(got), cnnarray.to_numpy(gx))


@settings(max_examples=60, deadline=None)
@given(case=pool_cases("max"))
def test_max_pool2d_matches_reference(backend, dtype, case: PoolCase):
    _check_against_reference(backend, dtype, case)


@settings(max_examples=60, deadline=None)
@given(case=pool_cases("avg"))
def test_avg_pool2d_matches_reference(backend, dtype, case: PoolCase):
    _check_against_reference(backend, dtype, case)


EXPLICIT = [
    ("max", (2, 3, 6, 6), {"kernel_size": 2}),
    ("max", (2, 3, 7, 7), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("max", (1, 2, 7, 5), {"kernel_size": (3, 2), "stride": (2, 1), "ceil_mode": True}),
    ("max", (3, 8, 8), {"kernel_size": 2, "stride": 1, "dilation": 2, "padding": 1}),
    ("avg", (2, 3, 6, 6), {"kernel_size": 2}),
    ("avg", (2, 3, 7, 7), {"kernel_size": 3, "stride": 2, "padding": 1}),
    (
        "avg",
        (1, 2, 7, 7),
        {
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "ceil_mode": True,
            "count_include_pad": False,
        },
    ),  # fmt: skip
    ("avg", (1, 2, 5, 5), {"kernel_size": 2, "ceil_mode": True, "count_include_pad": True}),
    ("avg", (2, 5, 5), {"kernel_size": 3, "padding": 1, "divisor_override": 2}),
]


@pytest.mark.parametrize("kind, x_shape, kwargs", EXPLICIT)
def test_pool_explicit_cases(backend, dtype, kind, x_shape, kwargs):
    _check_against_reference(backend, dtype, PoolCase(kind, x_shape, kwargs, seed=3))


# --------------------------------------------------------------------------- finite differences


@settings(max_examples=20, deadline=None)
@given(case=pool_cases("max", max_n=2, max_c=2, max_hw=6))
def test_max_pool2d_backward_matches_finite_differences(backend, case: PoolCase):
    _check_finite_differences(backend, case)


@settings(max_examples=20, deadline=None)
@given(case=pool_cases("avg", max_n=2, max_c=2, max_hw=6))
def test_avg_pool2d_backward_matches_finite_differences(backend, case: PoolCase):
    _check_finite_differences(backend, case)


def _check_finite_differences(backend, case: PoolCase) -> None:
    forward, backward, ref_forward, _ = OPS[case.kind]
    x = case.x(np.float64)  # tie-free for max: values 0.5 apart, far more than eps
    g = case.grad_out(ref_forward(x, **case.kwargs).shape, np.float64)
    gx = run_op(backward, g, x, backend=backend, **case.kwargs)
    numeric = numerical_grad(
        lambda v: vjp_objective(forward(v, backend=backend, **case.kwargs), g), x
    )
    assert_grad_close(gx, numeric)


# --------------------------------------------------------------------------- PyTorch


def _torch_pool(torch, case: PoolCase, x: np.ndarray, g: np.ndarray | None = None):
    tx = torch.tensor(x, requires_grad=True)
    fn = torch.nn.functional.max_pool2d if case.kind == "max" else torch.nn.functional.avg_pool2d
    y = fn(tx, **case.kwargs)
    y.backward(torch.ones_like(y) if g is None else torch.tensor(g))
    return y.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("kind", ["max", "avg"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_pool_matches_torch(backend, kind, data):
    torch = pytest.importorskip("torch")
    case = data.draw(pool_cases(kind))
    forward, backward, _, _ = OPS[kind]
    x = case.x(np.float64)
    ty, _ = _torch_pool(torch, case, x)
    g = case.grad_out(ty.shape, np.float64)
    ty, tgx = _torch_pool(torch, case, x, g)
    assert_close(run_op(forward, x, backend=backend, **case.kwargs), ty, dtype=np.float64)
    assert_close(run_op(backward, g, x, backend=backend, **case.kwargs), tgx, dtype=np.float64)


# --------------------------------------------------------------------------- tie policy, NaN


def test_max_pool2d_tie_gradient_goes_to_first_maximum_in_row_major_order(backend):
    # Windows full of ties, overlapping (stride 1) and not, with padding.
    x = np.array(
        [[[[1.0, 3.0, 3.0, 0.0],
           [3.0, 3.0, 2.0, 3.0],
           [0.0, 3.0, 3.0, 3.0],
           [2.0, 2.0, 3.0, 1.0]]]]
    )  # fmt: skip
    expected = {  # (kwargs) -> gradient with grad_out = 1 everywhere
        (2, 2, 0): [[0, 1, 1, 0], [0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]],
        (2, 1, 0): [[0, 2, 1, 0], [1, 1, 0, 1], [0, 2, 1, 0], [0, 0, 0, 0]],
        (3, 2, 1): [[0, 2, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
    }
    torch = _optional_torch()
    for (k, s, p), want in expected.items():
        kwargs = {"kernel_size": k, "stride": s, "padding": p}
        g = np.ones(ref.max_pool2d(x, **kwargs).shape)
        gx = run_op(cnnarray.max_pool2d_backward, g, x, backend=backend, **kwargs)
        desired = np.array(want, dtype=np.float64)[None, None]
        assert_close(gx, desired, dtype=np.float64, backend=backend, err_msg=f"{kwargs}")
        _assert_same_with_output(backend, g, x, ref.max_pool2d(x, **kwargs), gx, kwargs)
        assert_close(ref.max_pool2d_backward(g, x, **kwargs), desired, dtype=np.float64)
        if torch is not None:
            assert_close(_torch_pool(torch, PoolCase("max", x.shape, kwargs, 0), x, g)[1],
                         desired, dtype=np.float64, err_msg=f"torch {kwargs}")  # fmt: skip


def test_max_pool2d_all_equal_window_grad_to_top_left(backend, dtype):
    x = np.zeros((1, 1, 4, 4), dtype)
    gx = run_op(cnnarray.max_pool2d_backward, np.ones((1, 1, 2, 2), dtype), x, 2, backend=backend)
    desired = np.zeros((1, 1, 4, 4))
    desired[..., ::2, ::2] = 1
    assert_close(gx, desired, dtype=dtype, backend=backend)


def _optional_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def test_max_pool2d_window_of_only_padding_is_minus_inf_with_zero_gradient(backend):
    # kernel 2, dilation 3, padding 1 on a 2x2 input: the one window reads cells -1 and 2,
    # both outside the input. No comparison with PyTorch here: its CPU kernel keeps the
    # window's start (-1, -1) as the argmax and its backward writes out of bounds (heap
    # corruption that aborted later tests).
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    kwargs = {"kernel_size": 2, "stride": 1, "padding": 1, "dilation": 3}
    y = run_op(cnnarray.max_pool2d, x, backend=backend, **kwargs)
    assert_close(y, np.full((1, 1, 1, 1), -np.inf), dtype=np.float64, backend=backend)
    gx = run_op(cnnarray.max_pool2d_backward, np.ones((1, 1, 1, 1)), x, backend=backend, **kwargs)
    assert_close(gx, np.zeros_like(x), dtype=np.float64, backend=backend)


def test_reference_max_pool2d_backward_window_of_only_padding():
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    kwargs = {"kernel_size": 2, "stride": 1, "padding": 1, "dilation": 3}
    gx = ref.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, **kwargs)
    np.testing.assert_array_equal(gx, np.zeros_like(x))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_max_pool2d_nan_and_inf_propagate(backend, dtype, value):
    x = tie_free(np.random.default_rng(4), (1, 2, 4, 4), dtype)
    x[0, 1, 2, 3] = value
    y = cnnarray.to_numpy(run_op(cnnarray.max_pool2d, x, 2, backend=backend))
    desired = ref.max_pool2d(x, 2)
    np.testing.assert_array_equal(y, desired.astype(dtype))
    if value == value:  # +-inf: a comparison, nothing special
        assert y[0, 1, 1, 1] == max(value, x[0, 1, 2:, 2:].max())
    else:
        assert np.isnan(y[0, 1, 1, 1]) and np.isnan(y).sum() == 1
    gx = cnnarray.to_numpy(
        run_op(cnnarray.max_pool2d_backward, np.ones_like(y), x, 2, backend=backend)
    )
    assert gx.sum() == y.size  # each window's gradient goes to exactly one element
    _assert_same_with_output(backend, np.ones_like(y), x, y, gx, {"kernel_size": 2})
    if value != value or value == np.inf:
        assert gx[0, 1, 2, 3] == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"kernel_size": 2}, {"kernel_size": 2, "padding": 1}, {"kernel_size": 3, "stride": 1}],
)
def test_max_pool2d_backward_sends_inf_and_nan_grad_only_to_the_maximum(backend, dtype, kwargs):
    x = tie_free(np.random.default_rng(12), (1, 2, 4, 4), dtype)
    shape = ref.max_pool2d(x, **kwargs).shape
    g = np.random.default_rng(13).uniform(-1, 1, shape).astype(dtype)
    g[0, 0, 1, 1], g[0, 1, 1, 0] = np.inf, np.nan  # windows of several real cells
    gx = run_op(cnnarray.max_pool2d_backward, g, x, backend=backend, **kwargs)
    assert_close(gx, ref.max_pool2d_backward(g, x, **kwargs), dtype=dtype, backend=backend)


def test_max_pool2d_backward_output_of_the_wrong_shape_is_a_value_error():
    x = np.zeros((1, 2, 4, 4))
    with pytest.raises(
        ValueError, match=r"output must have shape \(1, 2, 2, 2\), got \(1, 2, 4, 4\)"
    ):
        cnnarray.max_pool2d_backward(np.ones((1, 2, 2, 2)), x, 2, output=x)


def test_avg_pool2d_nan_propagates(backend, dtype):
    x = np.ones((1, 1, 4, 4), dtype)
    x[0, 0, 0, 0] = np.nan
    y = cnnarray.to_numpy(run_op(cnnarray.avg_pool2d, x, 2, backend=backend))
    np.testing.assert_array_equal(np.isnan(y), [[[[True, False], [False, False]]]])


def test_pools_promote_integer_images_to_float32(backend):
    x = np.arange(2 * 6 * 6, dtype=np.int16).reshape(1, 2, 6, 6)
    for forward, ref_forward in [(cnnarray.max_pool2d, ref.max_pool2d),
                                 (cnnarray.avg_pool2d, ref.avg_pool2d)]:  # fmt: skip
        y = run_op(forward, x, 3, backend=backend)
        assert_close(y, ref_forward(x, 3), dtype=np.float32, backend=backend)


# --------------------------------------------------------------------------- large batches


@pytest.mark.parametrize(
    "kind, kwargs",
    [
        ("max", {"kernel_size": 2}),  # windows tile the input
        ("max", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
        ("avg", {"kernel_size": 2}),
        ("avg", {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
    ],
)
def test_pool_large_batch_matches_per_image(backend, dtype, kind, kwargs):
    # 2**17 elements: the CPU backend splits the maps over threads; one image alone does not.
    forward, backward, ref_forward, ref_backward = OPS[kind]
    case = PoolCase(kind, (16, 8, 32, 32), kwargs, seed=11)
    x = case.x(dtype)
    y = run_op(forward, x, backend=backend, **kwargs)
    assert_close(y, ref_forward(x, **kwargs), dtype=dtype, backend=backend)
    g = case.grad_out(tuple(y.shape), dtype)
    gx = run_op(backward, g, x, backend=backend, **kwargs)
    if kind == "avg":  # the max-pool oracle loops per element: too slow at this size
        assert_close(gx, ref_backward(g, x, **kwargs), dtype=dtype, backend=backend)
    for i in (0, 7, 15):
        assert_close(y[i], cnnarray.to_numpy(forward(x[i], backend=backend, **kwargs)),
                     dtype=dtype, err_msg=f"image {i}")  # fmt: skip
        gx_i = backward(g[i], x[i], backend=backend, **kwargs)
        assert_close(gx[i], cnnarray.to_numpy(gx_i), dtype=dtype, err_msg=f"grad {i}")
    torch = _optional_torch()
    if torch is not None and dtype == np.float64:
        ty, tgx = _torch_pool(torch, case, x, cnnarray.to_numpy(g))
        assert_close(y, ty, dtype=dtype)
        assert_close(gx, tgx, dtype=dtype)
