"""conv2d and conv2d_backward against the SciPy oracle, finite differences and PyTorch."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from helpers import (
    ConvCase,
    assert_close,
    assert_grad_close,
    conv_cases,
    numerical_grad,
    run_op,
    vjp_objective,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import reference as ref

# --------------------------------------------------------------------------- oracle


@settings(max_examples=50, deadline=None)
@given(case=conv_cases())
def test_conv2d_matches_reference(backend, dtype, case: ConvCase):
    x, w, b = case.arrays(dtype)
    y = run_op(cnnarray.conv2d, x, w, b, backend=backend, **case.kwargs)
    assert_close(y, ref.conv2d(x, w, b, **case.kwargs), dtype=dtype, backend=backend)


@settings(max_examples=40, deadline=None)
@given(case=conv_cases())
def test_conv2d_backward_matches_reference(backend, dtype, case: ConvCase):
    x, w, b = case.arrays(dtype)
    g = case.grad_out(ref.conv2d(x, w, b, **case.kwargs).shape, dtype)
    gx, gw, gb = run_op(cnnarray.conv2d_backward, g, x, w, b, backend=backend, **case.kwargs)
    rx, rw, rb = ref.conv2d_backward(g, x, w, b, **case.kwargs)
    assert_close(gx, rx, dtype=dtype, backend=backend, err_msg="grad_x")
    assert_close(gw, rw, dtype=dtype, backend=backend, err_msg="grad_weight")
    assert_close(gb, rb, dtype=dtype, backend=backend, err_msg="grad_bias")


@settings(max_examples=30, deadline=None)
@given(case=conv_cases())
def test_conv2d_output_shape_matches_result(case: ConvCase):
    x, w, b = case.arrays(np.float64)
    expected = ref.conv2d(x, w, b, **case.kwargs).shape
    assert cnnarray.conv2d_output_shape(case.x_shape, case.w_shape, **case.kwargs) == expected


EXPLICIT = [
    # (x shape, weight shape, kwargs)
    ((2, 3, 7, 7), (4, 3, 3, 3), {}),
    ((2, 3, 7, 7), (4, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((1, 4, 8, 6), (6, 2, 3, 2), {"stride": (2, 1), "padding": (1, 0), "groups": 2}),
    ((1, 4, 9, 9), (4, 1, 3, 3), {"dilation": 2, "padding": "same", "groups": 4}),  # depthwise
    ((2, 2, 6, 5), (3, 2, 2, 4), {"padding": "same"}),  # even kernel: extra pad bottom/right
    ((2, 2, 6, 5), (3, 2, 2, 2), {"padding": "valid", "dilation": (1, 3)}),
    ((3, 5, 5), (2, 3, 1, 1), {}),  # unbatched, 1x1 kernel
    ((6, 7), (3, 2), {"stride": 2, "padding": 2}),  # one image, one filter
    ((1, 1, 4, 4), (1, 1, 4, 4), {}),  # kernel covers the whole image
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs", EXPLICIT)
def test_conv2d_explicit_cases(backend, dtype, x_shape, w_shape, kwargs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(1 if len(w_shape) == 2 else w_shape[0]).astype(dtype)
    y = run_op(cnnarray.conv2d, x, w, b, backend=backend, **kwargs)
    desired = ref.conv2d(x, w, b, **kwargs)
    assert_close(y, desired, dtype=dtype, backend=backend)
    g = rng.standard_normal(desired.shape).astype(dtype)
    grads = run_op(cnnarray.conv2d_backward, g, x, w, b, backend=backend, **kwargs)
    for got, want, name in zip(
        grads, ref.conv2d_backward(g, x, w, b, **kwargs), "xwb", strict=True
    ):
        assert_close(got, want, dtype=dtype, backend=backend, err_msg=f"grad_{name}")


def test_conv2d_docstring_example(backend):
    y = run_op(cnnarray.conv2d, np.arange(16.0).reshape(4, 4), np.ones((3, 3)), backend=backend)
    assert_close(y, [[45.0, 54.0], [81.0, 90.0]], dtype=np.float64, backend=backend)


def test_conv2d_weight_sharing_is_correlation_not_convolution(backend):
    # A delta at the kernel's top-left picks the pixel at the window's top-left.
    x = np.arange(25.0).reshape(5, 5)
    w = np.zeros((3, 3))
    w[0, 0] = 1
    assert_close(run_op(cnnarray.conv2d, x, w, backend=backend), x[:3, :3], dtype=np.float64)


@pytest.mark.parametrize("limit", [1, 3000, None])
def test_conv2d_workspace_limit_chunks_give_same_result(backend, limit):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 2, 6, 6))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    g = rng.standard_normal((5, 3, 4, 4))
    y = run_op(cnnarray.conv2d, x, w, b, workspace_limit=limit, backend=backend)
    assert_close(y, ref.conv2d(x, w, b), dtype=np.float64, backend=backend)
    grads = run_op(cnnarray.conv2d_backward, g, x, w, b, workspace_limit=limit, backend=backend)
    for got, want in zip(grads, ref.conv2d_backward(g, x, w, b), strict=True):
        assert_close(got, want, dtype=np.float64, backend=backend)


def test_workspace_limit_default_roundtrip():
    old = cnnarray.get_workspace_limit()
    try:
        cnnarray.set_workspace_limit(1024)
        assert cnnarray.get_workspace_limit() == 1024
        x, w = np.ones((4, 1, 5, 5)), np.ones((1, 1, 3, 3))
        assert_close(cnnarray.conv2d(x, w), np.full((4, 1, 3, 3), 9.0), dtype=np.float64)
    finally:
        cnnarray.set_workspace_limit(old)


# --------------------------------------------------------------------------- finite differences


@settings(max_examples=15, deadline=None)
@given(case=conv_cases(max_n=2, max_c=2, max_hw=5))
def test_conv2d_backward_matches_finite_differences(backend, case: ConvCase):
    x, w, b = case.arrays(np.float64)
    kw = case.kwargs
    g = case.grad_out(ref.conv2d(x, w, b, **kw).shape, np.float64)
    gx, gw, gb = run_op(cnnarray.conv2d_backward, g, x, w, b, backend=backend, **kw)

    def loss(xx, ww, bb):
        return vjp_objective(cnnarray.conv2d(xx, ww, bb, backend=backend, **kw), g)

    assert_grad_close(gx, numerical_grad(lambda v: loss(v, w, b), x), "grad_x")
    assert_grad_close(gw, numerical_grad(lambda v: loss(x, v, b), w), "grad_weight")
    if b is not None:
        assert_grad_close(gb, numerical_grad(lambda v: loss(x, w, v), b), "grad_bias")


# --------------------------------------------------------------------------- PyTorch


def _torch_conv(torch, x, w, b, stride, padding, dilation, groups):
    """PyTorch conv2d in float64 with autograd; 2-D image/filter get batch and channel axes."""
    image = w.ndim == 2
    tx = torch.tensor(x[None, None] if image else x, requires_grad=True)
    tw = torch.tensor(w[None, None] if image else w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    y = torch.nn.functional.conv2d(tx, tw, tb, stride, padding, dilation, groups)
    return tx, tw, tb, (y[0, 0] if image else y)


@settings(max_examples=30, deadline=None)
@given(case=conv_cases())
def test_conv2d_forward_and_backward_match_torch(backend, case: ConvCase):
    torch = pytest.importorskip("torch")
    x, w, b = case.arrays(np.float64)
    kw = case.kwargs
    tx, tw, tb, ty = _torch_conv(torch, x, w, b, **kw)
    y = run_op(cnnarray.conv2d, x, w, b, backend=backend, **kw)
    assert_close(y, ty.detach().numpy(), dtype=np.float64, backend=backend)
    g = case.grad_out(tuple(ty.shape), np.float64)
    ty.backward(torch.tensor(g))
    gx, gw, gb = run_op(cnnarray.conv2d_backward, g, x, w, b, backend=backend, **kw)
    assert_close(gx, tx.grad.numpy().reshape(x.shape), dtype=np.float64, err_msg="grad_x")
    assert_close(gw, tw.grad.numpy().reshape(w.shape), dtype=np.float64, err_msg="grad_weight")
    assert_close(gb, None if tb is None else tb.grad.numpy(), dtype=np.float64, err_msg="grad_b")


# --------------------------------------------------------------------------- dtype, NaN, inf


def test_conv2d_promotes_integer_images_to_float32(backend):
    x = np.arange(2 * 3 * 5 * 5, dtype=np.uint8).reshape(2, 3, 5, 5)
    w = np.ones((2, 3, 3, 3), dtype=np.int64)
    y = run_op(cnnarray.conv2d, x, w, backend=backend)
    assert_close(y, ref.conv2d(x, w), dtype=np.float32, backend=backend)
    w64 = w.astype(np.float64)
    assert_close(run_op(cnnarray.conv2d, x, w64, backend=backend), ref.conv2d(x, w), dtype="f8")


def _reads(x_mask: np.ndarray, w_shape, **kwargs) -> np.ndarray:
    """Which outputs read a marked input: correlate the mask with an all-ones kernel."""
    return ref.conv2d(x_mask.astype(np.float64), np.ones(w_shape), **kwargs) > 0


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"stride": 2, "padding": 1}, {"dilation": 2, "padding": "same"}, {"padding": (0, 2)}],
)
def test_conv2d_nan_propagates_to_outputs_whose_window_reads_it(backend, dtype, kwargs):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 7, 7)).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    w[0] = 0  # NaN * 0 is still NaN
    x[0, 1, 3, 2] = np.nan
    y = cnnarray.to_numpy(run_op(cnnarray.conv2d, x, w, backend=backend, **kwargs))
    nan_expected = _reads(np.isnan(x), w.shape, **kwargs)
    np.testing.assert_array_equal(np.isnan(y), nan_expected)
    assert nan_expected[0].any() and not nan_expected[1].any()
    clean = np.where(np.isnan(x), 0, x)
    assert_close(
        np.where(nan_expected, 0, y).astype(dtype),
        np.where(nan_expected, 0, ref.conv2d(clean, w, **kwargs)),
        dtype=dtype,
    )


def test_conv2d_inf_propagates(backend):
    x = np.ones((1, 1, 5, 5))
    x[0, 0, 0, 0] = np.inf
    w = np.full((1, 1, 2, 2), 0.5)
    y = cnnarray.to_numpy(run_op(cnnarray.conv2d, x, w, backend=backend))
    assert y[0, 0, 0, 0] == np.inf
    assert np.isfinite(y[0, 0].ravel()[1:]).all()


# --------------------------------------------------------------------------- large batches


@pytest.mark.parametrize("groups", [1, 2])
def test_conv2d_large_batch_matches_per_image_and_reference(backend, dtype, groups):
    # Big enough (im2col of > 2**17 elements) for the CPU backend's threaded copy passes;
    # each image alone is below that, so the per-image calls take the single-thread path.
    rng = np.random.default_rng(10)
    x = rng.standard_normal((8, 8, 20, 20)).astype(dtype)
    w = rng.standard_normal((6, 8 // groups, 3, 3)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    g = rng.standard_normal((8, 6, 20, 20)).astype(dtype)
    kw = {"padding": 1, "groups": groups}
    y = run_op(cnnarray.conv2d, x, w, b, backend=backend, **kw)
    assert_close(y, ref.conv2d(x, w, b, **kw), dtype=dtype, backend=backend)
    grads = run_op(cnnarray.conv2d_backward, g, x, w, b, backend=backend, **kw)
    for got, want, name in zip(grads, ref.conv2d_backward(g, x, w, b, **kw), "xwb", strict=True):
        assert_close(got, want, dtype=dtype, backend=backend, err_msg=f"grad_{name}")
    for i in range(0, 8, 3):
        one = cnnarray.conv2d(x[i], w, b, backend=backend, **kw)
        assert_close(y[i], cnnarray.to_numpy(one), dtype=dtype, err_msg=f"image {i}")
        gx_i, _, _ = cnnarray.conv2d_backward(g[i], x[i], w, b, backend=backend, **kw)
        assert_close(grads[0][i], cnnarray.to_numpy(gx_i), dtype=dtype, err_msg=f"grad {i}")


def test_conv2d_backward_can_skip_the_input_gradient(backend):
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), np.zeros(4)
    g = rng.standard_normal((2, 4, 6, 6))
    args = [backend.asarray(a) for a in (g, x, w, b)]
    full = cnnarray.conv2d_backward(*args, padding=1)
    gx, gw, gb = cnnarray.conv2d_backward(*args, padding=1, input_grad=False)
    assert gx is None
    assert_close(gw, cnnarray.to_numpy(full[1]), dtype=np.float64, backend=backend)
    assert_close(gb, cnnarray.to_numpy(full[2]), dtype=np.float64, backend=backend)


def force_layout(monkeypatch, layout: str) -> None:
    """Make conv2d pick the column layout ``layout`` ("per_image" or
    "channel_major") whatever the sizes."""
    from cnnarray.ops import _conv_plan

    per_image = layout == "per_image"
    monkeypatch.setattr(_conv_plan, "use_per_image", lambda geo, training=False: per_image)


@pytest.mark.parametrize("layout", ["per_image", "channel_major"])
@pytest.mark.parametrize(
    "params",
    [
        {"stride": 1, "padding": 1},
        {"stride": (2, 1), "padding": (0, 2), "dilation": (1, 2), "groups": 2},
        {"padding": "same", "dilation": 2, "groups": 4},
    ],
    ids=["pad1", "stride-dilation-groups", "same-groups4"],
)
def test_both_column_layouts_match_the_oracle(monkeypatch, backend, layout, params):
    # conv2d picks the layout by size; force each one so both stay correct.
    force_layout(monkeypatch, layout)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4, 9, 8))
    w = rng.standard_normal((8, 4 // params.get("groups", 1), 3, 3))
    b = rng.standard_normal(8)
    y = run_op(cnnarray.conv2d, x, w, b, backend=backend, **params)
    assert_close(y, ref.conv2d(x, w, b, **params), dtype=np.float64, backend=backend)
    g = rng.standard_normal(cnnarray.to_numpy(y).shape)
    got = run_op(cnnarray.conv2d_backward, g, x, w, b, backend=backend, **params)
    want = ref.conv2d_backward(g, x, w, b, **params)
    for a, d in zip(got, want, strict=True):
        assert_close(a, d, dtype=np.float64, backend=backend)


def _force_im2col(monkeypatch, im2col: str, words_per_image: int) -> None:
    """Make _im2col_flat mask every image row ("mask"), with a mask of one or two
    images applied a group at a time ("mask-1", "mask-2": 2 of a batch of 3 leaves a
    short last group), or copy and zero ("zero", its path for wide images)."""
    from cnnarray.ops import _im2col

    if im2col == "zero":
        monkeypatch.setattr(_im2col, "MASK_MAX_ROW_BYTES", 0)
        return
    monkeypatch.setattr(_im2col, "MASK_MAX_ROW_BYTES", 1 << 30)
    if im2col != "mask":
        monkeypatch.setattr(_im2col, "MASK_MAX_WORDS", int(im2col[-1]) * words_per_image)


@pytest.mark.parametrize("im2col", ["mask", "mask-1", "mask-2", "zero"])
@pytest.mark.parametrize("layout", ["per_image", "channel_major"])
@pytest.mark.parametrize(
    "x_shape, w_shape, params",
    [
        ((3, 4, 6, 5), (6, 4, 3, 3), {"padding": 1}),
        ((2, 4, 7, 6), (4, 2, 4, 2), {"padding": "same", "groups": 2}),  # even: asymmetric
        ((2, 3, 5, 7), (2, 3, 3, 5), {"padding": "same", "dilation": (2, 1)}),
        ((2, 2, 2, 3), (3, 2, 5, 5), {"padding": 2}),  # kernel larger than the image
        ((3, 1, 1, 4), (2, 1, 3, 3), {"padding": "same", "dilation": 3}),  # taps wrap twice
        ((2, 2, 4, 4), (2, 2, 1, 1), {}),  # 1x1: every tap valid, nothing to zero
    ],
    ids=["pad1", "even-same-groups", "dilated-same", "kernel-gt-image", "wrap-twice", "1x1"],
)
def test_same_size_flat_im2col_and_col2im_match_the_oracle(
    monkeypatch, backend, layout, im2col, x_shape, w_shape, params
):
    from cnnarray.ops import _conv_plan, _im2col

    # Stride 1 with an output the input's size takes im2col_flat (channel-major)
    # and col2im_flat: every tap a flat shift of guarded rows, wrapped reads
    # landing on masked or zeroed entries.
    force_layout(monkeypatch, layout)
    _force_im2col(monkeypatch, im2col, w_shape[2] * w_shape[3] * x_shape[2] * x_shape[3])
    monkeypatch.setattr(_conv_plan, "use_fft", lambda *args: False)
    calls = []
    flat = _im2col.col2im_flat
    monkeypatch.setattr(_im2col, "col2im_flat", lambda *a, **k: calls.append(1) or flat(*a, **k))
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    y = run_op(cnnarray.conv2d, x, w, b, backend=backend, **params)
    assert_close(y, ref.conv2d(x, w, b, **params), dtype=np.float64, backend=backend)
    g = rng.standard_normal(cnnarray.to_numpy(y).shape)
    assert g.shape[2:] == x_shape[2:]
    got = run_op(cnnarray.conv2d_backward, g, x, w, b, backend=backend, **params)
    want = ref.conv2d_backward(g, x, w, b, **params)
    for a, d in zip(got, want, strict=True):
        assert_close(a, d, dtype=np.float64, backend=backend)
    assert calls, "the same-size path was not taken"


@settings(max_examples=40, deadline=None)
@given(case=conv_cases(), im2col=st.sampled_from(["mask", "mask-1", "zero"]))
def test_channel_major_columns_match_the_oracle(backend, dtype, case: ConvCase, im2col):
    from cnnarray.ops import _conv_plan

    # Any geometry through the channel-major column layout, so every same-size
    # one takes the flat im2col (masked, mask whole or per image, or zeroed) and
    # the flat col2im.
    x, w, b = case.arrays(dtype)
    g = case.grad_out(ref.conv2d(x, w, b, **case.kwargs).shape, dtype)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_conv_plan, "use_per_image", lambda geo, training=False: False)
        mp.setattr(_conv_plan, "use_fft", lambda *args: False)
        _force_im2col(mp, im2col, 1)
        y = run_op(cnnarray.conv2d, x, w, b, backend=backend, **case.kwargs)
        grads = run_op(cnnarray.conv2d_backward, g, x, w, b, backend=backend, **case.kwargs)
    assert_close(y, ref.conv2d(x, w, b, **case.kwargs), dtype=dtype, backend=backend)
    for got, want, name in zip(grads, ref.conv2d_backward(g, x, w, b, **case.kwargs), "xwb",
                               strict=True):  # fmt: skip
        assert_close(got, want, dtype=dtype, backend=backend, err_msg=f"grad_{name}")


@pytest.mark.parametrize("im2col", ["mask", "mask-1", "mask-2", "zero"])
def test_flat_im2col_reads_of_padding_stay_zero_whatever_memory_and_pixels_hold(
    monkeypatch, backend, dtype, im2col
):
    from cnnarray.ops import _conv_plan

    # im2col_flat leaves the guards around its flat input uninitialised and ANDs
    # every tap with a mask. With NaN in that scratch memory (debug_workspace)
    # and inf / NaN pixels on the edges of the images (where taps wrap into the
    # neighbouring row or image), exactly the outputs whose window reads a
    # non-finite pixel may be non-finite, and the others match the oracle.
    force_layout(monkeypatch, "channel_major")
    monkeypatch.setattr(_conv_plan, "use_fft", lambda *args: False)
    _force_im2col(monkeypatch, im2col, 9 * 5 * 6)  # 3x3 taps over 5x6 images
    rng = np.random.default_rng(21)
    x = rng.standard_normal((3, 2, 5, 6)).astype(dtype)
    w = (rng.uniform(0.5, 1.5, (4, 2, 3, 3)) * rng.choice([-1, 1], (4, 2, 3, 3))).astype(dtype)
    x[0, 0, :, -1] = np.inf  # the last column: wrapped into by the next row's x = 0
    x[1, 1, 0, :] = np.nan  # the first row: wrapped into by the previous image
    x[2, 0, -1, 0] = -np.inf  # the last pixel of the batch, next to the guard
    with np.errstate(invalid="ignore"), cnnarray.backend.debug_workspace():  # inf - inf in GEMM
        y = cnnarray.to_numpy(run_op(cnnarray.conv2d, x, w, backend=backend, padding=1))
    bad = _reads(~np.isfinite(x), w.shape, padding=1)
    np.testing.assert_array_equal(~np.isfinite(y), bad)
    clean = np.where(np.isfinite(x), x, 0)
    assert_close(np.where(bad, 0, y).astype(dtype),
                 np.where(bad, 0, ref.conv2d(clean, w, padding=1)), dtype=dtype)  # fmt: skip


# --------------------------------------------------------------------------- column cache


@pytest.mark.parametrize("layout", ["per_image", "channel_major"])
@pytest.mark.parametrize(
    "params",
    [{"padding": 1}, {"stride": (2, 1), "padding": (0, 2), "dilation": (1, 2), "groups": 2}],
    ids=["pad1", "stride-dilation-groups"],
)
def test_column_cache_gives_the_oracle_gradients(monkeypatch, backend, dtype, layout, params):
    force_layout(monkeypatch, layout)
    rng = np.random.default_rng(12)
    w_shape = (6, 4 // params.get("groups", 1), 3, 3)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in [(3, 4, 9, 8), w_shape, (6,)])
    xb, wb, bb = (backend.asarray(a) for a in (x, w, b))
    cache = cnnarray.ColumnCache()
    y = cnnarray.conv2d(xb, wb, bb, cache=cache, **params)
    assert cache.nbytes > 0
    g = rng.standard_normal(cnnarray.to_numpy(y).shape).astype(dtype)
    got = cnnarray.conv2d_backward(backend.asarray(g), xb, wb, bb, cache=cache, **params)
    for a, d in zip(got, ref.conv2d_backward(g, x, w, b, **params), strict=True):
        assert_close(a, d, dtype=dtype, backend=backend)


def test_column_cache_is_not_used_for_another_input(backend):
    # Same shapes, different array: the backward must rebuild the columns.
    rng = np.random.default_rng(13)
    x1, x2 = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((2, 3, 6, 6))
    w, g = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((2, 4, 6, 6))
    x1b, x2b, wb, gb = (backend.asarray(a) for a in (x1, x2, w, g))
    cache = cnnarray.ColumnCache()
    cnnarray.conv2d(x1b, wb, padding=1, cache=cache)
    _, gw, _ = cnnarray.conv2d_backward(gb, x2b, wb, padding=1, cache=cache)
    assert_close(gw, ref.conv2d_backward(g, x2, w, padding=1)[1], dtype=np.float64,
                 backend=backend)  # fmt: skip
    # A different geometry with the same x also rebuilds them.
    cnnarray.conv2d(x1b, wb, padding=1, cache=cache)
    g0 = backend.asarray(g[:, :, :4, :4])
    _, gw, _ = cnnarray.conv2d_backward(g0, x1b, wb, padding=0, cache=cache)
    assert_close(gw, ref.conv2d_backward(g[:, :, :4, :4], x1, w)[1], dtype=np.float64,
                 backend=backend)  # fmt: skip


def test_column_cache_is_used_once_and_never_over_the_workspace_limit():
    rng = np.random.default_rng(14)
    x, w = rng.standard_normal((8, 3, 10, 10)), rng.standard_normal((4, 3, 3, 3))
    g = rng.standard_normal((8, 4, 10, 10))
    cache = cnnarray.ColumnCache()
    cnnarray.conv2d(x, w, padding=1, cache=cache)
    # 27 rows of 100 columns per image, or for the grad columns the backward
    # writes there later, 100 + 2 * 16 guard values (3x3, padding 1: largest
    # flat shift 11, rounded up to 16) in float64
    assert cache.nbytes == 8 * 27 * (100 + 2 * 16) * 8
    assert cache._x is x
    first = cnnarray.conv2d_backward(g, x, w, padding=1, cache=cache)
    assert cache._x is None  # used up: x is no longer kept alive
    second = cnnarray.conv2d_backward(g, x, w, padding=1, cache=cache)  # rebuilds
    for a, d in zip(first, second, strict=False):
        np.testing.assert_array_equal(a, d)
    # A batch that needs chunking is not cached: the cache never exceeds the limit.
    cache.release()
    cnnarray.conv2d(x, w, padding=1, cache=cache, workspace_limit=27 * 100 * 8 * 3)
    assert cache.nbytes == 0 and cache._x is None
    with pytest.raises(TypeError, match="cache must be a cnnarray.ColumnCache"):
        cnnarray.conv2d(x, w, cache={})


def test_interrupted_forward_leaves_the_cache_unused(monkeypatch):
    from cnnarray.ops import _im2col

    rng = np.random.default_rng(15)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    cache = cnnarray.ColumnCache()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_im2col, "store_nchw", fail)
    force_layout(monkeypatch, "channel_major")
    with pytest.raises(KeyboardInterrupt):
        cnnarray.conv2d(x, w, padding=1, cache=cache)
    assert cache._x is None


# --------------------------------------------------------------------------- FFT path


@contextlib.contextmanager
def _fft_everywhere():
    """Route every stride-1, dilation-1 conv2d through the FFT path."""
    from cnnarray.ops import _conv_fft

    saved = _conv_fft.FFT_RULES
    _conv_fft.FFT_RULES = ((1, 10**9),)
    try:
        yield
    finally:
        _conv_fft.FFT_RULES = saved


@settings(max_examples=40, deadline=None)
@given(case=conv_cases(max_hw=12))
def test_fft_path_matches_reference(backend, dtype, case: ConvCase):
    x, w, b = case.arrays(dtype)
    kwargs = {**case.kwargs, "stride": 1, "dilation": 1}  # the FFT path's geometry
    with _fft_everywhere():
        y = run_op(cnnarray.conv2d, x, w, b, backend=backend, **kwargs)
        ry = ref.conv2d(x, w, b, **kwargs)
        g = case.grad_out(ry.shape, dtype)
        got = run_op(cnnarray.conv2d_backward, g, x, w, b, backend=backend, **kwargs)
    assert_close(y, ry, dtype=dtype, backend=backend)
    for a, d, name in zip(got, ref.conv2d_backward(g, x, w, b, **kwargs), "xwb", strict=True):
        assert_close(a, d, dtype=dtype, backend=backend, err_msg=f"grad_{name}")


def test_fft_path_input_grad_false_and_finite_differences(backend):
    rng = np.random.default_rng(16)
    x, w, b = rng.standard_normal((2, 3, 9, 7)), rng.standard_normal((4, 3, 4, 3)), np.zeros(4)
    g = rng.standard_normal((2, 4, 9, 7))
    args = [backend.asarray(a) for a in (g, x, w, b)]
    with _fft_everywhere():
        full = cnnarray.conv2d_backward(*args, padding="same")
        gx, gw, _ = cnnarray.conv2d_backward(*args, padding="same", input_grad=False)
        num_x = numerical_grad(lambda xx: vjp_objective(cnnarray.conv2d(
            backend.asarray(xx), args[2], args[3], padding="same"), g), x)  # fmt: skip
    assert gx is None
    assert_close(gw, cnnarray.to_numpy(full[1]), dtype=np.float64, backend=backend)
    assert_grad_close(full[0], num_x)


def test_layout_rule():
    from cnnarray.ops import _conv_geometry, _conv_plan

    def per_image(n, c_in, c_out, size, k, training=False):
        x, w = np.empty((n, c_in, size, size)), np.empty((c_out, c_in, k, k))
        geo = _conv_geometry.geometry(x, w, None, 1, k // 2, 1, 1)
        return _conv_plan.use_per_image(geo, training)

    assert per_image(64, 3, 32, 32, 3)  # K = 27: short reduction
    assert not per_image(16, 64, 128, 8, 3)  # wide weights: 2x faster channel-major
    assert not per_image(8, 32, 64, 16, 3, training=True)
    assert per_image(1, 64, 128, 8, 3) and per_image(1, 64, 128, 8, 3, training=True)
    # LeNet's second layer (6 -> 16 channels, 5x5) at batch 32: per-image alone,
    # channel-major to train (N * K * C_out = 76800, over 2**16: 6 % faster on an EPYC)
    assert per_image(32, 6, 16, 14, 5) and not per_image(32, 6, 16, 14, 5, training=True)
    assert per_image(8, 16, 32, 8, 3, training=True)  # 36864: per-image to train too
    assert not per_image(64, 8, 16, 32, 3)  # narrow weights but 2**20 outputs
    # 1x1 over 64 channels: per-image for a forward alone, channel-major to train
    assert per_image(32, 64, 128, 8, 1) and not per_image(32, 64, 128, 8, 1, training=True)


def test_training_layout_gives_the_oracle(backend):
    # A geometry whose forward alone and training step take different layouts
    # (test_layout_rule): with and without a cache, forward and backward agree.
    rng = np.random.default_rng(18)
    x, w, b = (rng.standard_normal(s) for s in [(32, 64, 8, 8), (128, 64, 1, 1), (128,)])
    g = rng.standard_normal((32, 128, 8, 8))
    xb, wb, bb, gb = (backend.asarray(a) for a in (x, w, b, g))
    expected = ref.conv2d(x, w, b)
    assert_close(cnnarray.conv2d(xb, wb, bb), expected, dtype=np.float64, backend=backend)
    cache = cnnarray.ColumnCache()
    assert_close(cnnarray.conv2d(xb, wb, bb, cache=cache), expected, dtype=np.float64,
                 backend=backend)  # fmt: skip
    assert cache._x is xb
    got = cnnarray.conv2d_backward(gb, xb, wb, bb, cache=cache)
    assert cache._x is None  # the backward read the forward's columns
    for a, d in zip(got, ref.conv2d_backward(g, x, w, b), strict=True):
        assert_close(a, d, dtype=np.float64, backend=backend)


def test_fft_is_chosen_for_large_kernels_over_few_channels(monkeypatch):
    from cnnarray.ops import _conv_fft

    calls = []
    real = _conv_fft.correlate
    monkeypatch.setattr(_conv_fft, "correlate", lambda *a, **k: calls.append(1) or real(*a, **k))
    image = np.random.default_rng(17).standard_normal((64, 64))
    blur = np.full((9, 9), 1 / 81)
    y = cnnarray.conv2d(image, blur, padding="same")  # one image, one filter: FFT
    assert calls == [1]
    np.testing.assert_allclose(y, ref.conv2d(image, blur, padding="same"), atol=1e-12)
    cnnarray.conv2d(image, np.ones((3, 3)))  # 9 taps: im2col
    cnnarray.conv2d(image, blur, stride=2)  # stride 2: im2col
    cnnarray.conv2d(np.ones((8, 3, 16, 16)), np.ones((8, 3, 7, 7)))  # 192 products: im2col
    assert calls == [1]
    # The spectra must fit the workspace limit, else im2col (which can split the batch).
    cnnarray.conv2d(image, blur, workspace_limit=1024)
    assert calls == [1]


@pytest.mark.parametrize("layout", ["per_image", "channel_major"])
@pytest.mark.parametrize("view", ["flipped", "transposed", "broadcast", "strided"])
def test_conv2d_reads_any_strided_input(monkeypatch, backend, view, layout):
    # im2col reads windows through as_strided on x's own strides: views must work.

    force_layout(monkeypatch, layout)
    rng = np.random.default_rng(18)
    base = rng.standard_normal((3, 4, 10, 9))
    x = {
        "flipped": base[..., ::-1],
        "transposed": base.transpose(0, 1, 3, 2),
        "broadcast": np.broadcast_to(base[:1], base.shape),
        "strided": rng.standard_normal((3, 8, 20, 9))[:, ::2, ::2],
    }[view]
    b = rng.standard_normal(5)
    cases = [((3, 2), {"padding": 1}), ((3, 2), {"stride": 2, "dilation": (2, 1)}),
             ((3, 3), {"padding": 1})]  # fmt: skip  # the last: same size (flat col2im)
    for kernel, kwargs in cases:
        w = rng.standard_normal((5, 4, *kernel))
        y = run_op(cnnarray.conv2d, x, w, b, backend=backend, **kwargs)
        assert_close(y, ref.conv2d(np.ascontiguousarray(x), w, b, **kwargs), dtype=np.float64,
                     backend=backend, err_msg=f"{view} {kwargs}")  # fmt: skip
        g = rng.standard_normal(cnnarray.to_numpy(y).shape)
        got = run_op(cnnarray.conv2d_backward, g, x, w, b, backend=backend, **kwargs)
        want = ref.conv2d_backward(g, np.ascontiguousarray(x), w, b, **kwargs)
        for a, d in zip(got, want, strict=True):
            assert_close(a, d, dtype=np.float64, backend=backend, err_msg=f"{view} {kwargs}")
