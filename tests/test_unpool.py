"""max_unpool1d/2d/3d and their backward: against the loop oracle, finite differences and
PyTorch, on the indices the max pools return; PyTorch's output_size range and index checks."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, assert_grad_close, numerical_grad, run_op, tie_free, vjp_objective
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import reference as ref


@st.composite
def unpool_cases(draw, dims: int):
    """(x, kwargs of the pooling, output_size): a tie-free x whose max pool is unpooled."""
    k = draw(st.integers(1, 3))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, k // 2))
    size = tuple(draw(st.integers(k, 6 if dims < 3 else 4)) for _ in range(dims))
    lead = draw(st.sampled_from([(1,), (2, 2)]))  # (C,) unbatched or (N, C)
    x = tie_free(np.random.default_rng(draw(st.integers(0, 2**16))), (*lead, *size), np.float64)
    kwargs = {"kernel_size": k, "stride": draw(st.sampled_from([None, s])), "padding": p}
    # the input's own size undoes a pooling that dropped its last rows; None needs no drop
    full = x.shape if len(lead) == 2 else size  # PyTorch takes (N, C, *size) too
    return x, kwargs, draw(st.sampled_from([None, size, full]))


def _pooled(x, dims, kwargs):
    y, idx = getattr(cnnarray, f"max_pool{dims}d")(x, return_indices=True, **kwargs)
    return y, idx


@pytest.mark.parametrize("dims", [1, 2, 3])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_max_unpool_matches_reference_and_torch(backend, dtype, dims, data):
    x, kwargs, output_size = data.draw(unpool_cases(dims))
    y, idx = _pooled(x, dims, kwargs)
    if output_size is None and int(idx.max()) >= np.prod(
        [(n - 1) * (kwargs["stride"] or kwargs["kernel_size"]) - 2 * kwargs["padding"]
         + kwargs["kernel_size"] for n in y.shape[-dims:]]
    ):  # fmt: skip
        output_size = x.shape[-dims:]  # the default size is too small for these indices
    y = y.astype(dtype)
    op, back = (
        getattr(cnnarray, f"max_unpool{dims}d"),
        getattr(cnnarray, f"max_unpool{dims}d_backward"),
    )
    args = {**kwargs, "output_size": output_size}
    out = run_op(op, y, idx, backend=backend, **args)
    desired = getattr(ref, f"max_unpool{dims}d")(y, idx, **args)
    assert_close(out, desired, dtype=dtype, backend=backend)
    g = np.random.default_rng(1).uniform(-1, 1, desired.shape).astype(dtype)
    gx = run_op(back, g, y, idx, backend=backend, **args)
    assert_close(gx, getattr(ref, f"max_unpool{dims}d_backward")(g, y, idx, **args), dtype=dtype,
                 backend=backend)  # fmt: skip
    torch = pytest.importorskip("torch")
    if dtype == np.float64:
        ty = torch.tensor(y, requires_grad=True)
        tout = getattr(torch.nn.functional, f"max_unpool{dims}d")(ty, torch.tensor(idx), **args)
        tout.backward(torch.tensor(g))
        assert_close(out, tout.detach().numpy(), dtype=dtype)
        assert_close(gx, ty.grad.numpy(), dtype=dtype)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_max_unpool_backward_matches_finite_differences(backend, dims):
    x = tie_free(np.random.default_rng(dims), (2, 2, *(4,) * dims), np.float64)
    y, idx = _pooled(x, dims, {"kernel_size": 2})
    op, back = (
        getattr(cnnarray, f"max_unpool{dims}d"),
        getattr(cnnarray, f"max_unpool{dims}d_backward"),
    )
    g = np.random.default_rng(3).standard_normal(x.shape)
    gx = run_op(back, g, y, idx, 2, backend=backend)
    numeric = numerical_grad(lambda v: vjp_objective(op(v, idx, 2), g), y)
    assert_grad_close(gx, numeric)


def test_max_unpool_puts_each_pooled_maximum_back_at_its_place(backend):
    x = np.array(
        [[[1.0, 5.0, 2.0, 2.0], [0.0, 3.0, 4.0, 9.0], [7.0, 1.0, 8.0, 1.0]]]
    )  # fmt: skip  (C=1, H=3, W=4)
    y, idx = run_op(cnnarray.max_pool2d, x, 2, return_indices=True, backend=backend)
    np.testing.assert_array_equal(cnnarray.to_numpy(idx), [[[1, 7]]])  # (0, 1) and (1, 3)
    out = run_op(cnnarray.max_unpool2d, cnnarray.to_numpy(y), cnnarray.to_numpy(idx), 2,
                 output_size=(3, 4), backend=backend)  # fmt: skip
    want = np.zeros((1, 3, 4))
    want[0, 0, 1], want[0, 1, 3] = 5.0, 9.0
    assert_close(out, want, dtype=np.float64, backend=backend)
    # without output_size the unpooled map is (2 - 1) * 2 + 2 = 2 rows: the dropped row is lost
    assert run_op(cnnarray.max_unpool2d, y, idx, 2, backend=backend).shape == (1, 2, 4)


def test_max_unpool_output_size_must_be_within_a_stride_of_the_default():
    y, idx = np.ones((1, 1, 2)), np.array([[[0, 2]]])
    for size in (3, 4, 5):  # default (2 - 1) * 2 + 2 = 4, stride 2: strictly between 2 and 6
        assert cnnarray.max_unpool1d(y, idx, 2, output_size=[size]).shape == (1, 1, size)
    for size in (2, 6):
        with pytest.raises(ValueError, match=r"output_size must be strictly between 2 and 6"):
            cnnarray.max_unpool1d(y, idx, 2, output_size=(size,))
    with pytest.raises(ValueError, match=r"output_size must have 1 or 3 entries, got \(4, 4\)"):
        cnnarray.max_unpool1d(y, idx, 2, output_size=(4, 4))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: cnnarray.max_unpool1d(np.ones((1, 1, 2)), np.array([[[0, 4]]]), 2),
         ValueError, r"indices must lie in \[0, 4\) .* got values from 0 to 4"),
        (lambda: cnnarray.max_unpool1d(np.ones((1, 1, 2)), np.array([[[-1, 1]]]), 2),
         ValueError, r"indices must lie in \[0, 4\)"),
        (lambda: cnnarray.max_unpool2d(np.ones((1, 2, 2)), np.zeros((1, 2, 2)), 2),
         TypeError, "indices must have an integer dtype, got float64"),
        (lambda: cnnarray.max_unpool2d(np.ones((1, 2, 2)), np.zeros((1, 2), int), 2),
         ValueError, r"indices must have the shape of x, \(1, 2, 2\), got \(1, 2\)"),
        (lambda: cnnarray.max_unpool3d(np.ones((1, 2, 2)), np.zeros((1, 2, 2), int), 2),
         ValueError, r"x must have shape \(N, C, D, H, W\) or \(C, D, H, W\)"),
        (lambda: cnnarray.max_unpool1d_backward(np.ones((1, 1, 3)), np.ones((1, 1, 2)),
                                                np.array([[[0, 1]]]), 2),
         ValueError, r"grad_out must have shape \(1, 1, 4\), got \(1, 1, 3\)"),
    ],
)  # fmt: skip
def test_max_unpool_errors_name_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_max_unpool_under_autograd_matches_its_backward(backend):
    x = tie_free(np.random.default_rng(8), (2, 3, 4, 4), np.float64)
    leaf = cnnarray.tensor(x, requires_grad=True, backend=backend)
    y, idx = cnnarray.max_pool2d(leaf, 2, return_indices=True)
    out = cnnarray.max_unpool2d(y, idx, 2)
    g = cnnarray.asarray(np.random.default_rng(9).standard_normal(x.shape), backend)
    out.backward(g)
    # pool then unpool keeps each window's maximum where it was: the gradient is g there
    mask = cnnarray.to_numpy(cnnarray.max_unpool2d(np.ones(y.shape), idx.data, 2))
    assert_close(leaf.grad, cnnarray.to_numpy(g) * mask, dtype=np.float64, backend=backend)
