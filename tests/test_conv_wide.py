"""conv2d's backward for stride-1 outputs smaller than the input: ``col2im_wide``.

The grad columns are laid on the padded input's row pitch (``wide_dy``) and
added back as one sum of shifted rows; every read past an output row, before
a row or after it must land on a zero. Both column layouts, with and without
the forward's ColumnCache, and with scratch memory filled with NaN first.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, run_op

import cnnarray
from cnnarray import reference as ref
from cnnarray.backend import debug_workspace

CASES = [
    ((3, 4, 9, 8), (6, 4, 3, 3), {}),  # "valid"
    ((2, 6, 14, 14), (16, 6, 5, 5), {}),  # LeNet-5's second layer
    ((2, 3, 7, 9), (4, 3, 5, 5), {"padding": 1}),  # padding short of "same"
    ((2, 2, 8, 7), (3, 2, 3, 2), {"padding": (0, 2), "dilation": (2, 1)}),
    ((2, 4, 6, 6), (4, 2, 3, 3), {"dilation": 2, "groups": 2}),
    ((3, 2, 4, 5), (2, 2, 4, 5), {}),  # one output per image: every tap reads a guard
    ((1, 1, 5, 5), (1, 1, 2, 2), {"padding": (1, 0)}),  # taller output than "valid"
]
IDS = ["valid", "lenet5-conv2", "pad-short", "asym-dilated", "groups", "1x1-out", "pad-h-only"]


@pytest.mark.parametrize("cached", [False, True], ids=["no-cache", "cache"])
@pytest.mark.parametrize("layout", ["per_image", "channel_major"])
@pytest.mark.parametrize("x_shape, w_shape, params", CASES, ids=IDS)
def test_wide_col2im_matches_the_oracle(
    monkeypatch, backend, layout, cached, x_shape, w_shape, params
):
    from cnnarray.ops import _conv_plan, _im2col

    per_image = layout == "per_image"
    monkeypatch.setattr(_conv_plan, "use_per_image", lambda geo, training=False: per_image)
    monkeypatch.setattr(_conv_plan, "use_fft", lambda *args: False)
    calls = []
    wide = _im2col.col2im_wide
    monkeypatch.setattr(_im2col, "col2im_wide", lambda *a, **k: calls.append(1) or wide(*a, **k))
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    want_y = ref.conv2d(x, w, b, **params)
    g = rng.standard_normal(want_y.shape)
    xs, ws, bs, gs = (backend.asarray(a) for a in (x, w, b, g))
    cache = cnnarray.ColumnCache() if cached else None
    with debug_workspace():  # scratch memory starts as NaN: any unwritten read shows
        y = cnnarray.conv2d(xs, ws, bs, cache=cache, **params)
        got = cnnarray.conv2d_backward(gs, xs, ws, bs, cache=cache, **params)
    assert_close(y, want_y, dtype=np.float64, backend=backend)
    for a, d, name in zip(got, ref.conv2d_backward(g, x, w, b, **params), "xwb", strict=True):
        assert_close(a, d, dtype=np.float64, backend=backend, err_msg=f"grad_{name}")
    assert calls, "the wide path was not taken"


def test_wide_path_in_float32_and_chunks(backend):
    # float32 against the float64 oracle, and a workspace limit that splits the batch
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 10, 12)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 5)).astype(np.float32)
    g = rng.standard_normal((5, 4, 8, 8)).astype(np.float32)
    got = run_op(cnnarray.conv2d_backward, g, x, w, None, backend=backend, workspace_limit=4096)
    want = ref.conv2d_backward(g, x, w, None)
    assert_close(got[0], want[0], dtype=np.float32, backend=backend)
    assert_close(got[1], want[1], dtype=np.float32, backend=backend)


@pytest.mark.parametrize("layout", ["per_image", "channel_major"])
@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("bad", ["x-inf", "x-nan", "w-nan", "w-inf"])
def test_wide_rows_keep_inf_and_nan_where_ieee_puts_them(monkeypatch, backend, layout, bad):
    # The grad columns' entries past each output row are weights times dY's zeros:
    # an inf or NaN weight (or pixel) must not reach sums it is no part of, so the
    # gradients equal the loops' entry for entry.
    from cnnarray.ops import _conv_plan

    per_image = layout == "per_image"
    monkeypatch.setattr(_conv_plan, "use_per_image", lambda geo, training=False: per_image)
    monkeypatch.setattr(_conv_plan, "use_fft", lambda *args: False)
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal((2, 2, 6, 7)), rng.standard_normal((3, 2, 3, 3))
    value = np.inf if bad.endswith("inf") else np.nan
    if bad.startswith("x"):
        x[0, 1, 2, 6] = value  # right edge: tap columns 0 and 1 never read it
    else:
        w[1, 0, 2, 0] = value
    params = {"padding": (1, 0)} if per_image else {}  # both smaller than "same"
    g = rng.standard_normal(ref.conv2d(x, w, None, **params).shape)
    got = run_op(cnnarray.conv2d_backward, g, x, w, None, backend=backend, **params)
    want = ref.conv2d_backward(g, x, w, None, **params)
    for a, d, name in zip(got[:2], want[:2], "xw", strict=True):
        a = cnnarray.to_numpy(a)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(d), err_msg=f"NaN of grad_{name}")
        np.testing.assert_array_equal(np.isinf(a), np.isinf(d), err_msg=f"inf of grad_{name}")
        ok = np.isfinite(d)
        assert_close(a[ok], d[ok], dtype=np.float64, backend=backend)
