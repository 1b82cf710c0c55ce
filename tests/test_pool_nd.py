"""max_pool1d/3d, avg_pool1d/3d and their backward, and the max-pool indices in 1-D to 3-D,
against the N-d loop oracle, finite differences and PyTorch.

Max-pool inputs are tie-free except in the tests that pin the tie policy (the first
maximum of the window in row-major order wins, for the gradient and the indices).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    PoolCase,
    assert_close,
    assert_grad_close,
    numerical_grad,
    pool_has_empty_window,
    run_op,
    tie_free,
    vjp_objective,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import reference as ref


def _ops(kind: str, dims: int):
    name = f"{kind}_pool{dims}d"
    return (getattr(cnnarray, name), getattr(cnnarray, name + "_backward"), getattr(ref, name),
            getattr(ref, name + "_backward"))  # fmt: skip


@st.composite
def pool_nd_cases(draw, kind: str, dims: int, max_size: int | None = None) -> PoolCase:
    """Max/avg pooling calls over ``dims`` axes; max-pool windows always read some input."""
    max_size = max_size or (12 if dims == 1 else 5)
    kernel, stride, padding, dilation, size = [], [], [], [], []
    ceil_mode = draw(st.booleans())
    for _ in range(dims):
        k = draw(st.integers(1, 3))
        s = draw(st.integers(1, 3))
        p = draw(st.integers(0, k // 2))
        d = draw(st.integers(1, 2)) if kind == "max" else 1
        smallest = max(1, d * (k - 1) + 1 - 2 * p)
        n = draw(st.integers(smallest, max(smallest, max_size)))
        assume(not pool_has_empty_window(n, k, s, p, d, ceil_mode))
        for values, v in ((kernel, k), (stride, s), (padding, p), (dilation, d), (size, n)):
            values.append(v)
    same = draw(st.booleans())  # an int for all axes where they agree, else tuples

    def arg(values):
        return values[0] if same and len(set(values)) == 1 else tuple(values)

    default_stride = draw(st.booleans()) and stride == kernel
    kwargs = {"kernel_size": arg(kernel), "padding": arg(padding), "ceil_mode": ceil_mode,
              "stride": None if default_stride else arg(stride)}  # fmt: skip
    if kind == "max":
        kwargs["dilation"] = arg(dilation)
    else:
        kwargs["count_include_pad"] = draw(st.booleans())
        if dims == 3:
            kwargs["divisor_override"] = draw(st.one_of(st.none(), st.integers(1, 5)))
    lead = draw(st.sampled_from([(), (draw(st.integers(1, 2)),)]))  # () is unbatched
    shape = (*lead, draw(st.integers(1, 3)), *size)
    return PoolCase(kind, shape, kwargs, draw(st.integers(0, 2**32 - 1)))


def _check_against_reference(backend, dtype, case: PoolCase, dims: int) -> None:
    forward, backward, ref_forward, ref_backward = _ops(case.kind, dims)
    x = case.x(dtype)
    y = run_op(forward, x, backend=backend, **case.kwargs)
    desired = ref_forward(x, **case.kwargs)
    assert_close(y, desired, dtype=dtype, backend=backend, err_msg="forward")
    g = case.grad_out(desired.shape, dtype)
    gx = run_op(backward, g, x, backend=backend, **case.kwargs)
    assert_close(gx, ref_backward(g, x, **case.kwargs), dtype=dtype, backend=backend,
                 err_msg="grad")  # fmt: skip
    if case.kind == "max":
        # the indices, and the backward given the forward's output, bit for bit
        y2, idx = run_op(forward, x, backend=backend, return_indices=True, **case.kwargs)
        np.testing.assert_array_equal(cnnarray.to_numpy(y2), cnnarray.to_numpy(y))
        batched = x if x.ndim == dims + 2 else x[None]
        want = ref.max_pool_indices(batched, **case.kwargs).reshape(idx.shape)
        np.testing.assert_array_equal(cnnarray.to_numpy(idx), want)
        assert idx.dtype == np.int64
        got = run_op(backward, g, x, backend=backend, output=cnnarray.to_numpy(y), **case.kwargs)
        np.testing.assert_array_equal(cnnarray.to_numpy(got), cnnarray.to_numpy(gx))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("dims", [1, 3])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_pool_nd_matches_reference(backend, dtype, kind, dims, data):
    _check_against_reference(backend, dtype, data.draw(pool_nd_cases(kind, dims)), dims)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("dims", [1, 3])
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_pool_nd_backward_matches_finite_differences(backend, kind, dims, data):
    case = data.draw(pool_nd_cases(kind, dims, max_size=7 if dims == 1 else 4))
    forward, backward, ref_forward, _ = _ops(kind, dims)
    x = case.x(np.float64)  # tie-free for max: values 0.5 apart, far more than eps
    g = case.grad_out(ref_forward(x, **case.kwargs).shape, np.float64)
    gx = run_op(backward, g, x, backend=backend, **case.kwargs)
    numeric = numerical_grad(lambda v: vjp_objective(forward(v, **case.kwargs), g), x)
    assert_grad_close(gx, numeric)


# --------------------------------------------------------------------------- PyTorch


def _torch_pool(torch, kind, dims, x, g, kwargs):
    tx = torch.tensor(x, requires_grad=True)
    y = getattr(torch.nn.functional, f"{kind}_pool{dims}d")(tx, **kwargs)
    y.backward(torch.tensor(g))
    return y.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("dims", [1, 3])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_pool_nd_matches_torch(backend, kind, dims, data):
    torch = pytest.importorskip("torch")
    case = data.draw(pool_nd_cases(kind, dims))
    kernel = np.broadcast_to(case.kwargs["kernel_size"], (dims,))
    # PyTorch's 3-D pools refuse an input smaller than the kernel, even with padding
    assume(dims == 1 or all(np.array(case.x_shape[-3:]) >= kernel))
    forward, backward, _, _ = _ops(kind, dims)
    x = case.x(np.float64)
    y = run_op(forward, x, backend=backend, **case.kwargs)
    g = case.grad_out(tuple(y.shape), np.float64)
    ty, tgx = _torch_pool(torch, kind, dims, x, g, case.kwargs)
    assert_close(y, ty, dtype=np.float64, backend=backend)
    assert_close(run_op(backward, g, x, backend=backend, **case.kwargs), tgx, dtype=np.float64)
    if kind == "max":
        _, idx = forward(x, return_indices=True, **case.kwargs)
        _, tidx = getattr(torch.nn.functional, f"max_pool{dims}d")(
            torch.tensor(x), return_indices=True, **case.kwargs
        )
        np.testing.assert_array_equal(cnnarray.to_numpy(idx), tidx.numpy())


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_max_pool_indices_match_torch_with_padding_dilation_and_ceil_mode(backend, dims):
    torch = pytest.importorskip("torch")
    fn = getattr(cnnarray, f"max_pool{dims}d")
    x = tie_free(np.random.default_rng(dims), (2, 3, *(7,) * dims), np.float64)
    kwargs = {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": (2,) * (dims - 1) + (1,),
              "ceil_mode": True}  # fmt: skip
    y, idx = run_op(fn, x, backend=backend, return_indices=True, **kwargs)
    ty, tidx = getattr(torch.nn.functional, f"max_pool{dims}d")(
        torch.tensor(x), return_indices=True, **kwargs
    )
    assert_close(y, ty.numpy(), dtype=np.float64, backend=backend)
    np.testing.assert_array_equal(cnnarray.to_numpy(idx), tidx.numpy())


# --------------------------------------------------------------------------- PyTorch's rules


def test_ceil_mode_drops_a_last_window_that_starts_in_the_padding(backend):
    # PyTorch keeps a ceil_mode window only if it starts before L + p (in the input or the
    # left padding). L=5, k=2, s=2, p=1: ceil((5 + 2 - 2) / 2) + 1 = 4 windows would start
    # at -1, 1, 3 and 5; the last starts in the right padding: dropped.
    x = np.arange(1.0, 6.0)[None]  # (C=1, L=5)
    y = run_op(cnnarray.max_pool1d, x, 2, 2, 1, ceil_mode=True, backend=backend)
    assert_close(y, [[1.0, 3.0, 5.0]], dtype=np.float64, backend=backend)
    # L=4, k=2, s=3, p=1: ceil((4 + 2 - 2) / 3) + 1 = 3, starts -1, 2 and 5 >= L + p: dropped
    x = np.arange(1.0, 5.0)[None]
    y = run_op(cnnarray.avg_pool1d, x, 2, 3, 1, ceil_mode=True, backend=backend)
    assert_close(y, [[1 / 2, 7 / 2]], dtype=np.float64, backend=backend)
    assert_close(y, ref.avg_pool1d(x, 2, 3, 1, ceil_mode=True), dtype=np.float64)


def test_count_include_pad_counts_padding_but_not_the_ceil_overhang(backend):
    # L=4, k=3, s=2, p=1, ceil: windows [-1, 2), [1, 4), [3, 6): the last reads x[3] and the
    # pad at 4, and the cell at 5 lies past the padded input: divisor 2 with the padding, 1
    # without; the first window holds the pad at -1: divisor 3 with it, 2 without.
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    kwargs = {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}
    y = run_op(cnnarray.avg_pool1d, x, backend=backend, **kwargs)
    assert_close(y, [[3 / 3, 9 / 3, 4 / 2]], dtype=np.float64, backend=backend)
    y = run_op(cnnarray.avg_pool1d, x, count_include_pad=False, backend=backend, **kwargs)
    assert_close(y, [[3 / 2, 9 / 3, 4 / 1]], dtype=np.float64, backend=backend)
    kwargs = {"kernel_size": (1, 1, 3), "stride": (1, 1, 2), "padding": (0, 0, 1),
              "ceil_mode": True}  # fmt: skip
    y = run_op(cnnarray.avg_pool3d, x[None, None], divisor_override=5, backend=backend, **kwargs)
    assert_close(y, [[[[3 / 5, 9 / 5, 4 / 5]]]], dtype=np.float64, backend=backend)


def test_max_pool_ties_the_first_maximum_wins_in_indices_and_gradient(backend):
    x = np.zeros((2, 2, 2, 2))  # (C, D, H, W)
    x[1, 0] = [[1.0, 3.0], [3.0, 3.0]]
    x[1, 1] = 3.0
    y, idx = run_op(cnnarray.max_pool3d, x, 2, return_indices=True, backend=backend)
    np.testing.assert_array_equal(cnnarray.to_numpy(idx).ravel(), [0, 1])  # (d, h, w) row-major
    gx = run_op(cnnarray.max_pool3d_backward, np.ones((2, 1, 1, 1)), x, 2, backend=backend)
    want = np.zeros_like(x)
    want[0, 0, 0, 0] = want[1, 0, 0, 1] = 1
    assert_close(gx, want, dtype=np.float64, backend=backend)
    x1 = np.array([[2.0, 5.0, 5.0, 1.0, 5.0]])
    _, idx = run_op(cnnarray.max_pool1d, x1, 3, 1, 1, return_indices=True, backend=backend)
    np.testing.assert_array_equal(cnnarray.to_numpy(idx), [[1, 1, 1, 2, 4]])


def test_max_pool_indices_of_a_nan_and_of_windows_of_minus_inf(backend):
    # windows [-1, 2), [0, 3), ...: padding never wins, even over -inf; the first NaN does
    x = np.array([[-np.inf, -np.inf, 1.0, np.nan, 2.0, np.nan]])
    y, idx = run_op(cnnarray.max_pool1d, x, 3, 1, 1, return_indices=True, backend=backend)
    np.testing.assert_array_equal(cnnarray.to_numpy(idx), [[0, 2, 3, 3, 3, 5]])
    assert_close(y, ref.max_pool1d(x, 3, 1, 1), dtype=np.float64, backend=backend)
    np.testing.assert_array_equal(ref.max_pool_indices(x[None], 3, 1, 1)[0], [[0, 2, 3, 3, 3, 5]])


# --------------------------------------------------------------------------- autograd, errors


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_max_pool_return_indices_under_autograd_only_values_carry_a_gradient(backend, dims):
    x = tie_free(np.random.default_rng(5), (2, *(5,) * dims), np.float64)
    leaf = cnnarray.tensor(x, requires_grad=True, backend=backend)
    fn = getattr(cnnarray, f"max_pool{dims}d")
    y, idx = fn(leaf, 2, 1, 1, return_indices=True)
    assert y.requires_grad and not idx.requires_grad and idx.dtype == np.int64
    g = np.random.default_rng(6).standard_normal(y.shape)
    y.backward(cnnarray.asarray(g, backend))
    backward = getattr(cnnarray, f"max_pool{dims}d_backward")
    want = backward(cnnarray.asarray(g, backend), cnnarray.asarray(x, backend), 2, 1, 1)
    assert_close(leaf.grad, cnnarray.to_numpy(want), dtype=np.float64, backend=backend)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: cnnarray.max_pool1d(np.zeros((1, 2, 3, 4)), 2),
         r"x must have shape \(N, C, L\) or \(C, L\), got shape \(1, 2, 3, 4\)"),
        (lambda: cnnarray.avg_pool3d(np.zeros((2, 3, 4)), 2),
         r"x must have shape \(N, C, D, H, W\) or \(C, D, H, W\)"),
        (lambda: cnnarray.max_pool3d(np.zeros((1, 4, 4, 4)), (2, 2)),
         r"kernel_size must be an int or a tuple of 3 ints, got \(2, 2\)"),
        (lambda: cnnarray.avg_pool1d(np.zeros((1, 4)), 2, padding=2),
         r"padding must be at most half of kernel_size, got padding=\(2,\)"),
        (lambda: cnnarray.max_pool1d(np.zeros((1, 4)), 2, return_indices=1),
         "return_indices must be a bool"),
        (lambda: cnnarray.max_pool3d(np.zeros((1, 2, 2, 2)), 3), "larger than the padded input"),
        (lambda: cnnarray.avg_pool3d_backward(np.zeros((1, 1, 1, 1)), np.zeros((1, 4, 4, 4)), 2),
         r"grad_out must have shape \(1, 2, 2, 2\)"),
    ],
)  # fmt: skip
def test_pool_nd_errors_name_the_argument(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


# --------------------------------------------------------------------------- LP pooling


@st.composite
def lp_cases(draw, dims: int):
    """(x > 0, kwargs) for lp_pool{dims}d: windows fit the input (no padding in LP pooling);
    an int kernel_size in 1-D, as PyTorch's lp_pool1d takes no tuple."""
    kernel = [draw(st.integers(1, 3)) for _ in range(dims)]
    size = [draw(st.integers(k, 9 if dims < 3 else 5)) for k in kernel]
    kwargs = {"norm_type": draw(st.sampled_from([1.0, 2.0, 1.5, 3])),
              "kernel_size": tuple(kernel) if dims > 1 and draw(st.booleans()) else max(kernel),
              "stride": draw(st.one_of(st.none(), st.integers(1, 3))),
              "ceil_mode": draw(st.booleans())}  # fmt: skip
    if not isinstance(kwargs["kernel_size"], tuple):
        size = [max(n, kwargs["kernel_size"]) for n in size]
    lead = draw(st.sampled_from([(2,), (2, 2)]))
    x = np.random.default_rng(draw(st.integers(0, 2**16))).uniform(0.2, 2, (*lead, *size))
    return x, kwargs


@pytest.mark.parametrize("dims", [1, 2, 3])
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_lp_pool_matches_reference_and_torch(backend, dtype, dims, data):
    x, kwargs = data.draw(lp_cases(dims))
    x = x.astype(dtype)
    forward, backward = (
        getattr(cnnarray, f"lp_pool{dims}d"),
        getattr(cnnarray, f"lp_pool{dims}d_backward"),
    )
    y = run_op(forward, x, backend=backend, **kwargs)
    desired = getattr(ref, f"lp_pool{dims}d")(x, **kwargs)
    assert_close(y, desired, dtype=dtype, backend=backend)
    g = np.random.default_rng(0).uniform(-1, 1, desired.shape).astype(dtype)
    gx = run_op(backward, g, x, backend=backend, **kwargs)
    assert_close(gx, getattr(ref, f"lp_pool{dims}d_backward")(g, x, **kwargs), dtype=dtype,
                 backend=backend)  # fmt: skip
    torch = pytest.importorskip("torch")
    if dtype == np.float64:
        tx = torch.tensor(x, requires_grad=True)
        ty = getattr(torch.nn.functional, f"lp_pool{dims}d")(tx, **kwargs)
        ty.backward(torch.tensor(g))
        assert_close(y, ty.detach().numpy(), dtype=dtype)
        assert_close(gx, tx.grad.numpy(), dtype=dtype)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_lp_pool_backward_matches_finite_differences(backend, dims):
    x = np.random.default_rng(dims).uniform(0.2, 2, (2, *(5,) * dims))
    kwargs = {"norm_type": 2.5, "kernel_size": 2, "stride": 2, "ceil_mode": True}
    forward, backward = (
        getattr(cnnarray, f"lp_pool{dims}d"),
        getattr(cnnarray, f"lp_pool{dims}d_backward"),
    )
    g = np.random.default_rng(7).standard_normal(forward(x, **kwargs).shape)
    gx = run_op(backward, g, x, backend=backend, **kwargs)
    assert_grad_close(gx, numerical_grad(lambda v: vjp_objective(forward(v, **kwargs), g), x))


def test_lp_pool_scales_a_partial_ceil_mode_window_as_pytorch_does(backend):
    # k=2, s=2 over L=5 with ceil_mode: the last window holds x[4] alone; PyTorch computes
    # (K * avg(x ** p)) ** (1/p) with the average over the real cells, so that window is
    # (2 * 5 ** 2) ** (1/2), not |5|; full windows are the 2-norm.
    x = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    y = run_op(cnnarray.lp_pool1d, x, 2, 2, ceil_mode=True, backend=backend)
    assert_close(y, [[5**0.5, 25**0.5, 50**0.5]], dtype=np.float64, backend=backend)
    y = run_op(cnnarray.lp_pool2d, x[None], 1, (1, 2), backend=backend)  # p=1: window sums
    assert_close(y, [[[3.0, 7.0]]], dtype=np.float64, backend=backend)


def test_lp_pool_window_of_zeros_passes_no_gradient(backend):
    x = np.array([[0.0, 0.0, 3.0, 4.0]])
    y = run_op(cnnarray.lp_pool1d, x, 2.0, 2, backend=backend)
    assert_close(y, [[0.0, 5.0]], dtype=np.float64, backend=backend)
    gx = run_op(cnnarray.lp_pool1d_backward, np.ones((1, 2)), x, 2.0, 2, backend=backend)
    assert_close(gx, [[0.0, 0.0, 0.6, 0.8]], dtype=np.float64, backend=backend)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
def test_lp_pool_norm_type_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError, match=r"norm_type must be a finite positive number"):
        cnnarray.lp_pool2d(np.ones((1, 4, 4)), bad, 2)


# --------------------------------------------------------------------------- nn layers

LAYERS = [
    ("MaxPool1d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (2, 3, 9)),
    ("MaxPool3d", {"kernel_size": 2, "dilation": (1, 2, 1)}, (2, 2, 4, 6, 4)),
    ("AvgPool1d", {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
     (2, 3, 9)),
    ("AvgPool3d", {"kernel_size": 2, "divisor_override": 3}, (2, 2, 4, 6, 4)),
    ("AdaptiveAvgPool1d", {"output_size": 4}, (2, 3, 9)),
    ("AdaptiveAvgPool3d", {"output_size": (2, 3, None)}, (2, 2, 4, 6, 4)),
    ("AdaptiveMaxPool1d", {"output_size": 4}, (2, 3, 9)),
    ("AdaptiveMaxPool2d", {"output_size": (2, 3)}, (2, 3, 5, 7)),
    ("AdaptiveMaxPool3d", {"output_size": (2, 3, 3)}, (2, 2, 4, 6, 4)),
    ("LPPool1d", {"norm_type": 2, "kernel_size": 3, "stride": 2}, (2, 3, 9)),
    ("LPPool2d", {"norm_type": 1.5, "kernel_size": 2, "ceil_mode": True}, (2, 3, 5, 7)),
    ("LPPool3d", {"norm_type": 2, "kernel_size": 2}, (2, 2, 4, 6, 4)),
]  # fmt: skip


@pytest.mark.parametrize("name, config, shape", LAYERS, ids=[n for n, _, _ in LAYERS])
def test_pool_layers_match_torch_and_rebuild_from_their_spec(backend, name, config, shape):
    x = np.random.default_rng(0).permutation(np.prod(shape)).reshape(shape) / np.prod(shape) + 0.1
    layer = getattr(cnnarray.nn, name)(**config)
    leaf = cnnarray.tensor(x, requires_grad=True, backend=backend)
    y = layer(leaf)
    g = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(cnnarray.asarray(g, backend))
    rebuilt = cnnarray.nn.from_spec(layer.spec())
    assert type(rebuilt) is type(layer) and rebuilt.spec() == layer.spec()
    assert_close(rebuilt(cnnarray.asarray(x, backend)), cnnarray.to_numpy(y.data), dtype=np.float64)
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(torch.nn, name)(**config)(tx)
    ty.backward(torch.tensor(g))
    assert_close(y.data, ty.detach().numpy(), dtype=np.float64, backend=backend)
    assert_close(leaf.grad, tx.grad.numpy(), dtype=np.float64, backend=backend)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_max_pool_layer_with_indices_feeds_max_unpool(backend, dims):
    x = tie_free(np.random.default_rng(dims), (2, 2, *(4,) * dims), np.float64) + 100  # > 0
    pool = getattr(cnnarray.nn, f"MaxPool{dims}d")(2, return_indices=True)
    unpool = getattr(cnnarray.nn, f"MaxUnpool{dims}d")(2)
    y, idx = pool(cnnarray.asarray(x, backend))
    out = unpool(y, idx, output_size=x.shape)
    # each 2x..x2 window keeps its maximum in place, the rest is zero
    back = cnnarray.to_numpy(getattr(cnnarray, f"max_pool{dims}d")(cnnarray.to_numpy(out), 2))
    np.testing.assert_array_equal(back, cnnarray.to_numpy(y))
    assert np.count_nonzero(cnnarray.to_numpy(out)) == y.size
    assert cnnarray.nn.from_spec(unpool.spec()).spec() == unpool.spec()


def test_cached_geometry_tells_true_from_1_and_keeps_each_calls_checks():
    x = np.ones((1, 1, 4, 4))
    assert cnnarray.max_pool2d(x, 1).shape == (1, 1, 4, 4)  # geometry now cached
    with pytest.raises(TypeError, match=r"kernel_size must be an int or a pair of ints"):
        cnnarray.max_pool2d(x, True)  # True == 1, but a bool is no kernel size
    assert cnnarray.max_pool2d(x, [2, 2]).shape == cnnarray.max_pool2d(x, (2, 2)).shape
    with pytest.raises(ValueError, match="x must not be empty"):
        cnnarray.max_pool2d(np.ones((0, 1, 4, 4)), 1)
