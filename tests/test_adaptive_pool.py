"""adaptive_avg_pool1d/3d and adaptive_max_pool1d/2d/3d with their backward: against the loop
oracle, finite differences and PyTorch; PyTorch's window rule, the tie rule of the indices,
NaN, and the values-only gradient under return_indices."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, assert_grad_close, numerical_grad, run_op, tie_free, vjp_objective
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import reference as ref

KINDS = [("avg", 1), ("avg", 3), ("max", 1), ("max", 2), ("max", 3)]


def _ops(kind, dims):
    name = f"adaptive_{kind}_pool{dims}d"
    return (getattr(cnnarray, name), getattr(cnnarray, name + "_backward"), getattr(ref, name),
            getattr(ref, name + "_backward"))  # fmt: skip


@st.composite
def adaptive_cases(draw, kind: str, dims: int, max_size: int = 0):
    """(x, output_size): any sizes, outputs smaller or larger than the input, None axes."""
    max_size = max_size or {1: 12, 2: 8, 3: 5}[dims]
    size = [draw(st.integers(1, max_size)) for _ in range(dims)]
    out = [draw(st.one_of(st.none(), st.integers(1, 2 * n))) for n in size]
    lead = draw(st.sampled_from([(2,), (2, 3)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    shape = (*lead, *size)
    x = tie_free(rng, shape, np.float64) if kind == "max" else rng.uniform(-1, 1, shape)
    if dims > 1 and None not in out and draw(st.booleans()):
        return x, out[0] if len(set(out)) == 1 else tuple(out)
    return x, tuple(out) if dims > 1 or out[0] is None else draw(
        st.sampled_from([out[0], (out[0],)])
    )


@pytest.mark.parametrize("kind, dims", KINDS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_adaptive_pool_matches_reference(backend, dtype, kind, dims, data):
    x, size = data.draw(adaptive_cases(kind, dims))
    forward, backward, ref_forward, ref_backward = _ops(kind, dims)
    x = x.astype(dtype)
    y = run_op(forward, x, size, backend=backend)
    desired = ref_forward(x, size)
    assert_close(y, desired, dtype=dtype, backend=backend)
    g = np.random.default_rng(0).uniform(-1, 1, desired.shape).astype(dtype)
    gx = run_op(backward, g, x, size, backend=backend)
    assert_close(gx, ref_backward(g, x, size), dtype=dtype, backend=backend)
    if kind == "max":
        values, idx = run_op(forward, x, size, return_indices=True, backend=backend)
        np.testing.assert_array_equal(cnnarray.to_numpy(values), cnnarray.to_numpy(y))
        np.testing.assert_array_equal(cnnarray.to_numpy(idx),
                                      ref.adaptive_max_pool_indices(x, size, dims))  # fmt: skip
        given_idx = run_op(backward, g, x, size, indices=cnnarray.to_numpy(idx), backend=backend)
        np.testing.assert_array_equal(cnnarray.to_numpy(given_idx), cnnarray.to_numpy(gx))


@pytest.mark.parametrize("kind, dims", KINDS)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_adaptive_pool_backward_matches_finite_differences(backend, kind, dims, data):
    x, size = data.draw(adaptive_cases(kind, dims, max_size={1: 7, 2: 5, 3: 3}[dims]))
    forward, backward, ref_forward, _ = _ops(kind, dims)
    g = np.random.default_rng(1).standard_normal(ref_forward(x, size).shape)
    gx = run_op(backward, g, x, size, backend=backend)
    numeric = numerical_grad(lambda v: vjp_objective(forward(v, size), g), x)
    assert_grad_close(gx, numeric)


@pytest.mark.parametrize("kind, dims", KINDS)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_adaptive_pool_matches_torch(backend, kind, dims, data):
    torch = pytest.importorskip("torch")
    x, size = data.draw(adaptive_cases(kind, dims))
    if dims == 1 and (size is None or size == (None,)):
        size = x.shape[-1]  # torch's 1-D pools take no None
    forward, backward, _, _ = _ops(kind, dims)
    tx = torch.tensor(x, requires_grad=True)
    tforward = getattr(torch.nn.functional, f"adaptive_{kind}_pool{dims}d")
    ty = tforward(tx, size)
    g = np.random.default_rng(2).standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(g))
    assert_close(run_op(forward, x, size, backend=backend), ty.detach().numpy(), dtype=np.float64)
    assert_close(run_op(backward, g, x, size, backend=backend), tx.grad.numpy(), dtype=np.float64)
    if kind == "max":
        _, idx = forward(x, size, return_indices=True)
        _, tidx = tforward(torch.tensor(x), size, return_indices=True)
        np.testing.assert_array_equal(idx, tidx.numpy())


def test_adaptive_windows_follow_pytorchs_floor_and_ceil_rule(backend):
    # L=5 to 3: windows [0, 2), [1, 4), [3, 5) -- they overlap at 1 and 3
    x = np.array([[1.0, 4.0, 2.0, 8.0, 3.0]])
    y = run_op(cnnarray.adaptive_avg_pool1d, x, 3, backend=backend)
    assert_close(y, [[5 / 2, 14 / 3, 11 / 2]], dtype=np.float64, backend=backend)
    y, idx = run_op(cnnarray.adaptive_max_pool1d, x, 3, return_indices=True, backend=backend)
    assert_close(y, [[4.0, 8.0, 8.0]], dtype=np.float64, backend=backend)
    np.testing.assert_array_equal(cnnarray.to_numpy(idx), [[1, 3, 3]])
    # both windows holding the 8 send it their gradient: overlapping windows add up
    gx = run_op(cnnarray.adaptive_max_pool1d_backward, np.ones((1, 3)), x, 3, backend=backend)
    assert_close(gx, [[0.0, 1.0, 0.0, 2.0, 0.0]], dtype=np.float64, backend=backend)


def test_adaptive_max_ties_go_to_the_first_maximum_in_row_major_order(backend):
    x = np.zeros((1, 4, 4))
    x[0, 1:3, 1:3] = 5.0  # one output window (1, 1) holds the four 5s
    y, idx = run_op(cnnarray.adaptive_max_pool2d, x, 1, return_indices=True, backend=backend)
    np.testing.assert_array_equal(cnnarray.to_numpy(idx), [[[5]]])  # (1, 1), not (1, 2) or (2, 1)
    x3 = np.zeros((1, 2, 2, 2))
    x3[0, 1, 0, 1] = x3[0, 0, 1, 0] = 1.0
    _, idx = run_op(cnnarray.adaptive_max_pool3d, x3, 1, return_indices=True, backend=backend)
    np.testing.assert_array_equal(cnnarray.to_numpy(idx), [[[[2]]]])  # (0, 1, 0) before (1, 0, 1)


def test_adaptive_max_nan_wins_its_window(backend):
    x = np.array([[1.0, np.nan, 3.0, np.nan, 2.0]])
    y, idx = run_op(cnnarray.adaptive_max_pool1d, x, 2, return_indices=True, backend=backend)
    assert np.isnan(cnnarray.to_numpy(y)).all()
    np.testing.assert_array_equal(cnnarray.to_numpy(idx), [[1, 3]])


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_adaptive_max_return_indices_under_autograd(backend, dims):
    x = tie_free(np.random.default_rng(dims), (2, 3, *(5,) * dims), np.float64)
    leaf = cnnarray.tensor(x, requires_grad=True, backend=backend)
    y, idx = getattr(cnnarray, f"adaptive_max_pool{dims}d")(leaf, 3, return_indices=True)
    assert y.requires_grad and not idx.requires_grad and idx.dtype == np.int64
    g = cnnarray.asarray(np.random.default_rng(4).standard_normal(y.shape), backend)
    y.backward(g)
    backward = getattr(cnnarray, f"adaptive_max_pool{dims}d_backward")
    assert_close(leaf.grad, cnnarray.to_numpy(backward(g, cnnarray.asarray(x, backend), 3)),
                 dtype=np.float64, backend=backend)  # fmt: skip


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: cnnarray.adaptive_avg_pool1d(np.ones((2, 3, 4, 5)), 2),
         r"x must have shape \(N, C, L\) or \(C, L\), got shape \(2, 3, 4, 5\)"),
        (lambda: cnnarray.adaptive_max_pool3d(np.ones((2, 3, 4, 5)), (2, 2)),
         r"output_size must be a positive int or a 3-tuple"),
        (lambda: cnnarray.adaptive_max_pool1d(np.ones((2, 3)), 1000),
         r"output_size must be at most 64 times the input size"),
        (lambda: cnnarray.adaptive_max_pool2d(np.ones((2, 3, 3)), 2, return_indices="yes"),
         "return_indices must be a bool"),
        (lambda: cnnarray.adaptive_max_pool2d_backward(np.ones((2, 2, 2)), np.ones((2, 3, 3)), 2,
                                                       indices=np.zeros((2, 2), int)),
         r"indices must have shape \(2, 2, 2\), got \(2, 2\)"),
    ],
)  # fmt: skip
def test_adaptive_pool_errors_name_the_argument(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
