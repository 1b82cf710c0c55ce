"""max_pool1d/2d/3d with ``return_indices`` and their backward given ``indices=``: the
indices against the loop oracle on inputs full of ties (the first maximum in row-major
order of the window wins), NaN and -inf, and the gradient through them bit for bit the
gradient the backward finds from x; the MaxPool layers route training through them."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, pool_has_empty_window, run_op
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import reference as ref


@st.composite
def _cases(draw, dims: int):
    """(x, kwargs): a max-pool call over ``dims`` axes on small integers (many ties),
    with a NaN or an inf sometimes; every window reads some input (the N-d oracle's
    backward has no window of padding only; a named test below has one)."""
    kernel, stride, padding, dilation, size = [], [], [], [], []
    ceil_mode = draw(st.booleans())
    for _ in range(dims):
        k, s, d = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
        p = draw(st.integers(0, k // 2))
        smallest = max(1, d * (k - 1) + 1 - 2 * p)
        n = draw(st.integers(smallest, smallest + (6 if dims < 3 else 2)))
        assume(not pool_has_empty_window(n, k, s, p, d, ceil_mode))
        for values, v in ((kernel, k), (stride, s), (padding, p), (dilation, d), (size, n)):
            values.append(v)
    kwargs = {"kernel_size": tuple(kernel), "stride": tuple(stride), "padding": tuple(padding),
              "dilation": tuple(dilation), "ceil_mode": ceil_mode}  # fmt: skip
    lead = draw(st.sampled_from([(), (draw(st.integers(1, 2)),)]))  # () is unbatched
    shape = (*lead, draw(st.integers(1, 3)), *size)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-1, 2, shape).astype(np.float64)  # ties everywhere: -1, 0, 1
    special = draw(st.sampled_from([None, np.nan, -np.inf, np.inf]))
    if special is not None:
        x.reshape(-1)[rng.integers(0, x.size, max(1, x.size // 8))] = special
    return x, kwargs


def _fns(dims: int):
    name = f"max_pool{dims}d"
    return getattr(cnnarray, name), getattr(cnnarray, name + "_backward")


def _check(backend, dims: int, x: np.ndarray, kwargs: dict, dtype=np.float64) -> None:
    forward, backward = _fns(dims)
    x = x.astype(dtype)
    y, idx = run_op(forward, x, backend=backend, return_indices=True, **kwargs)
    batched = x if x.ndim == dims + 2 else x[None]
    want = ref.max_pool_indices(batched, **kwargs).reshape(idx.shape)
    np.testing.assert_array_equal(cnnarray.to_numpy(idx), want)
    plain = run_op(forward, x, backend=backend, **kwargs)
    np.testing.assert_array_equal(cnnarray.to_numpy(y), cnnarray.to_numpy(plain))
    g = np.random.default_rng(1).uniform(-1, 1, y.shape).astype(dtype)
    via_indices = run_op(backward, g, x, backend=backend, indices=cnnarray.to_numpy(idx), **kwargs)
    via_x = run_op(backward, g, x, backend=backend, **kwargs)
    np.testing.assert_array_equal(cnnarray.to_numpy(via_indices), cnnarray.to_numpy(via_x))
    assert_close(via_indices, getattr(ref, f"max_pool{dims}d_backward")(g, x, **kwargs),
                 dtype=dtype, backend=backend)  # fmt: skip


@pytest.mark.parametrize("dims", [1, 2, 3])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_indices_and_their_backward_match_the_oracle_with_ties_nan_and_inf(backend, dims, data):
    x, kwargs = data.draw(_cases(dims))
    _check(backend, dims, x, kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 2},  # tiled: one scatter
        {"kernel_size": 2, "padding": 1},  # tiled over the padded input
        {"kernel_size": 3, "stride": 2, "padding": 1},  # overlapping windows add up
        {"kernel_size": 2, "stride": 3, "dilation": 2},  # gaps between disjoint windows
        {"kernel_size": 3, "stride": 2, "ceil_mode": True},  # a partial last window
    ],
)
def test_all_zero_windows_after_relu_send_the_gradient_to_their_first_element(
    backend, dtype, kwargs
):
    x = np.maximum(np.random.default_rng(3).standard_normal((2, 3, 9, 9)), 0)
    x[:, :, :4, :4] = 0  # whole windows of zeros, as ReLU leaves them
    _check(backend, 2, x, kwargs, dtype)


def test_a_window_of_padding_only_has_index_minus_one_and_no_gradient(backend):
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    kwargs = {"kernel_size": 2, "stride": 1, "padding": 1, "dilation": 3}
    y, idx = run_op(cnnarray.max_pool2d, x, backend=backend, return_indices=True, **kwargs)
    assert cnnarray.to_numpy(idx).tolist() == [[[[-1]]]]
    gx = run_op(cnnarray.max_pool2d_backward, np.ones((1, 1, 1, 1)), x, backend=backend,
                indices=cnnarray.to_numpy(idx), **kwargs)  # fmt: skip
    np.testing.assert_array_equal(cnnarray.to_numpy(gx), np.zeros_like(x))


def test_inf_and_nan_gradients_reach_only_the_maximum_through_indices(backend):
    x = np.random.default_rng(5).permutation(32).reshape(1, 2, 4, 4).astype(np.float32)
    y, idx = cnnarray.max_pool2d(x, 2, return_indices=True)
    g = np.ones_like(y)
    g[0, 0, 0, 0], g[0, 1, 1, 1] = np.inf, np.nan
    gx = run_op(cnnarray.max_pool2d_backward, g, x, 2, indices=idx, backend=backend)
    gx = cnnarray.to_numpy(gx)
    assert np.isposinf(gx).sum() == 1 and np.isnan(gx).sum() == 1
    assert np.count_nonzero(gx == 1) == y.size - 2 and np.count_nonzero(gx == 0) == 32 - y.size


def test_indices_matches_torch_forward_and_gradient():
    torch = pytest.importorskip("torch")
    x = np.maximum(np.random.default_rng(6).standard_normal((2, 3, 11, 11)), 0)
    kwargs = {"kernel_size": 3, "stride": 2, "padding": 1}
    y, idx = cnnarray.max_pool2d(x, return_indices=True, **kwargs)
    t = torch.tensor(x, requires_grad=True)
    ty, tidx = torch.nn.functional.max_pool2d(t, return_indices=True, **kwargs)
    np.testing.assert_array_equal(idx, tidx.numpy())
    g = np.random.default_rng(7).standard_normal(y.shape)
    ty.backward(torch.tensor(g))
    gx = cnnarray.max_pool2d_backward(g, x, indices=idx, **kwargs)
    np.testing.assert_allclose(gx, t.grad.numpy(), rtol=1e-12)


def test_indices_of_the_wrong_shape_or_dtype_are_errors():
    x = np.zeros((1, 1, 4, 4))
    g = np.zeros((1, 1, 2, 2))
    with pytest.raises(ValueError, match="indices"):
        cnnarray.max_pool2d_backward(g, x, 2, indices=np.zeros((1, 1, 2), np.int64))
    with pytest.raises(TypeError, match="indices must be an integer array.*float64"):
        cnnarray.max_pool2d_backward(g, x, 2, indices=np.zeros((1, 1, 2, 2)))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_max_pool_layer_gradient_through_autograd_equals_the_indices_backward(backend, dims):
    x = np.maximum(np.random.default_rng(8).standard_normal((2, 3, *(6,) * dims)), 0)
    forward, backward = _fns(dims)
    leaf = cnnarray.tensor(x, requires_grad=True, backend=backend)
    y = getattr(cnnarray.nn, f"MaxPool{dims}d")(2)(leaf)
    g = np.random.default_rng(9).standard_normal(y.shape)
    y.backward(cnnarray.asarray(g, backend))
    _, idx = forward(x, 2, return_indices=True)  # ties (zeros): the first maximum wins
    np.testing.assert_array_equal(cnnarray.to_numpy(leaf.grad), backward(g, x, 2, indices=idx))
