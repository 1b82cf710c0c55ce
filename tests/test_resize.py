"""interpolate and its backward against the loop oracle, finite differences and PyTorch;
the nn.Upsample layers.

Named tests pin the rules that are easy to get subtly wrong: align_corners,
nearest against nearest-exact, the step taken from scale_factor or from the
sizes, PyTorch's 2-D nearest shortcuts, and the cubic kernel's border.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_close, assert_grad_close, numerical_grad, run_op, vjp_objective
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import nn
from cnnarray import reference as ref

F64 = np.dtype(np.float64)
_MODE_NDIM = {"nearest": 3, "nearest-exact": 3, "area": 3, "linear": 3, "bilinear": 4,
              "bicubic": 4, "trilinear": 5}  # fmt: skip
_SPATIAL = {3: (7,), 4: (5, 6), 5: (3, 4, 5)}

# (mode, x shape, keyword arguments): every mode, up and down, size and scale_factor
CASES = [
    ("nearest", (2, 3, 7), {"size": 11}),
    ("nearest", (1, 2, 5, 6), {"scale_factor": (1.7, 0.5)}),
    ("nearest", (1, 2, 3, 4, 5), {"scale_factor": 1.5}),
    ("nearest-exact", (2, 2, 7), {"scale_factor": 0.6}),
    ("nearest-exact", (1, 2, 5, 6), {"size": (9, 4)}),
    ("nearest-exact", (1, 1, 3, 4, 2), {"size": (2, 5, 3)}),
    ("area", (2, 2, 9), {"size": 4}),
    ("area", (1, 2, 7, 5), {"size": (3, 8)}),
    ("area", (1, 1, 4, 5, 3), {"scale_factor": (0.5, 0.7, 2.0)}),
    ("linear", (2, 3, 6), {"scale_factor": 1.7}),
    ("linear", (2, 3, 6), {"size": 4, "align_corners": True}),
    ("bilinear", (1, 2, 5, 6), {"size": (8, 3)}),
    ("bilinear", (1, 2, 5, 6), {"scale_factor": 2.3, "align_corners": True}),
    ("bilinear", (1, 1, 4, 7), {"scale_factor": (1.3, 0.45), "recompute_scale_factor": True}),
    ("bicubic", (1, 2, 5, 4), {"size": (8, 3)}),
    ("bicubic", (1, 2, 4, 5), {"scale_factor": (1.6, 0.7), "align_corners": True}),
    ("trilinear", (1, 2, 3, 4, 5), {"size": (5, 3, 6)}),
    ("trilinear", (1, 1, 3, 3, 4), {"scale_factor": 1.4, "align_corners": True}),
]


def _ids(cases):
    return [f"{mode}-{len(shape) - 2}d-{sorted(kw.items())}" for mode, shape, kw in cases]


def _x(shape, dtype, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)


@pytest.mark.parametrize(("mode", "shape", "kwargs"), CASES, ids=_ids(CASES))
def test_interpolate_matches_reference(backend, dtype, mode, shape, kwargs):
    x = _x(shape, dtype)
    y = run_op(cnnarray.interpolate, x, mode=mode, backend=backend, **kwargs)
    desired = ref.interpolate(x, mode=mode, **kwargs)
    assert_close(y, desired, dtype=dtype, backend=backend, err_msg="forward")
    g = _x(desired.shape, dtype, seed=1)
    gx = run_op(cnnarray.interpolate_backward, g, x, mode=mode, backend=backend, **kwargs)
    desired_grad = ref.interpolate_backward(g, x, mode=mode, **kwargs)
    assert_close(gx, desired_grad, dtype=dtype, backend=backend, err_msg="grad")


# one small case per mode and align_corners: differences cost one forward per input element
GRAD_CASES = [
    ("nearest", (1, 2, 5), {"scale_factor": 1.6}),
    ("nearest-exact", (1, 1, 3, 4), {"size": (5, 2)}),
    ("area", (1, 1, 5, 3), {"size": (2, 4)}),
    ("linear", (1, 2, 5), {"size": 7}),
    ("bilinear", (1, 1, 3, 4), {"scale_factor": (1.5, 0.6), "align_corners": True}),
    ("bicubic", (1, 1, 4, 3), {"size": (6, 5)}),
    ("trilinear", (1, 1, 2, 3, 3), {"size": (3, 2, 4)}),
]


@pytest.mark.parametrize(("mode", "shape", "kwargs"), GRAD_CASES, ids=_ids(GRAD_CASES))
def test_interpolate_backward_matches_finite_differences(backend, mode, shape, kwargs):
    x = _x(shape, F64, seed=2)
    y = cnnarray.interpolate(x, mode=mode, **kwargs)
    g = _x(y.shape, F64, seed=3)
    gx = run_op(cnnarray.interpolate_backward, g, x, mode=mode, backend=backend, **kwargs)
    numeric = numerical_grad(
        lambda v: vjp_objective(cnnarray.interpolate(v, mode=mode, **kwargs), g), x
    )
    assert_grad_close(gx, numeric, f"{mode} {kwargs}")


@st.composite
def resize_calls(draw):
    """A mode, an input shape, and size or scale_factor (non-integer too, up and down)."""
    mode = draw(st.sampled_from(sorted(_MODE_NDIM)))
    ndim = _MODE_NDIM[mode] if mode not in ("nearest", "nearest-exact", "area") else None
    ndim = ndim or draw(st.sampled_from([3, 4, 5]))
    dims = ndim - 2
    sizes = tuple(draw(st.integers(1, 6 if dims < 3 else 3)) for _ in range(dims))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), *sizes)
    kwargs = {}
    if draw(st.booleans()):
        kwargs["size"] = tuple(draw(st.integers(1, 7 if dims < 3 else 4)) for _ in range(dims))
    else:
        per_axis = draw(st.booleans())
        factors = [draw(st.sampled_from([0.5, 0.7, 1.0, 1.25, 1.5, 2.0, 2.1, 3.0]))
                   for _ in range(dims if per_axis else 1)]  # fmt: skip
        lengths = sizes if per_axis else (min(sizes),)
        factors = [f if n * f >= 1 else 1.0 for n, f in zip(lengths, factors, strict=True)]
        kwargs["scale_factor"] = tuple(factors) if per_axis else factors[0]
        kwargs["recompute_scale_factor"] = draw(st.sampled_from([None, False, True]))
    if mode in ("linear", "bilinear", "bicubic", "trilinear"):
        kwargs["align_corners"] = draw(st.sampled_from([None, False, True]))
    return mode, shape, kwargs, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=40, deadline=None)
@given(call=resize_calls())
def test_interpolate_random_calls_match_reference(backend, call):
    mode, shape, kwargs, seed = call
    x = _x(shape, F64, seed)
    y = run_op(cnnarray.interpolate, x, mode=mode, backend=backend, **kwargs)
    desired = ref.interpolate(x, mode=mode, **kwargs)
    assert_close(y, desired, dtype=F64, backend=backend, err_msg=f"{mode} {kwargs}")
    g = _x(desired.shape, F64, seed + 1)
    gx = run_op(cnnarray.interpolate_backward, g, x, mode=mode, backend=backend, **kwargs)
    assert_close(gx, ref.interpolate_backward(g, x, mode=mode, **kwargs), dtype=F64,
                 backend=backend, err_msg=f"grad {mode} {kwargs}")  # fmt: skip


# --------------------------------------------------------------------------- PyTorch

TORCH_CASES = [
    *CASES,
    ("nearest", (1, 2, 4, 5), {"scale_factor": 2}),
    ("nearest", (1, 1, 4, 5), {"scale_factor": (2.1, 1.2)}),  # PyTorch's 2-D shortcuts
    ("nearest-exact", (1, 2, 4, 5, 3), {"scale_factor": (0.5, 1.7, 2.0)}),
    ("area", (2, 2, 10, 9), {"scale_factor": 0.35}),
    ("linear", (1, 2, 5), {"scale_factor": 1.2}),  # unchanged size: copied
    ("bilinear", (1, 2, 1, 6), {"size": (4, 1), "align_corners": True}),
    ("bicubic", (1, 2, 6, 7), {"scale_factor": 0.55}),
    ("bicubic", (1, 1, 1, 3), {"size": (3, 9)}),
    ("trilinear", (1, 2, 2, 3, 4), {"scale_factor": (2.5, 0.7, 1.0)}),
]


@pytest.mark.parametrize(("mode", "shape", "kwargs"), TORCH_CASES, ids=_ids(TORCH_CASES))
def test_interpolate_matches_torch(dtype, mode, shape, kwargs):
    torch = pytest.importorskip("torch")
    x = _x(shape, dtype, seed=4)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.interpolate(tx, mode=mode, **kwargs)
    g = _x(tuple(ty.shape), dtype, seed=5)
    ty.backward(torch.tensor(g))
    y = cnnarray.interpolate(x, mode=mode, **kwargs)
    assert_close(y, ty.detach().numpy(), dtype=dtype, err_msg="forward vs torch")
    gx = cnnarray.interpolate_backward(g, x, mode=mode, **kwargs)
    assert_close(gx, tx.grad.numpy(), dtype=dtype, err_msg="grad vs torch")


@pytest.mark.parametrize(
    ("mode", "shape", "kwargs"),
    [
        ("nearest", (1, 1, 5), {"scale_factor": 2.1}),  # 10 = 2 * 5, but the step is 1 / 2.1
        ("nearest", (1, 1, 3, 2, 4), {"scale_factor": 1.2}),  # sizes unchanged, step 1 / 1.2
        ("bicubic", (1, 1, 3, 4), {"scale_factor": 1.2}),
    ],  # fmt: skip
)
def test_gradient_is_the_forwards_own_where_pytorchs_backward_takes_a_shortcut(mode, shape, kwargs):
    """In these cases PyTorch's backward copies (or halves indices) where its forward
    applied the formula, and fails its own gradcheck; cnnarray matches PyTorch's forward
    and differentiates it."""
    torch = pytest.importorskip("torch")
    x = _x(shape, F64, seed=6)
    y = cnnarray.interpolate(x, mode=mode, **kwargs)
    ty = torch.nn.functional.interpolate(torch.tensor(x), mode=mode, **kwargs)
    assert_close(y, ty.numpy(), dtype=F64, err_msg="forward vs torch")
    g = _x(y.shape, F64, seed=7)
    numeric = numerical_grad(
        lambda v: vjp_objective(cnnarray.interpolate(v, mode=mode, **kwargs), g), x
    )
    assert_grad_close(cnnarray.interpolate_backward(g, x, mode=mode, **kwargs), numeric)


# --------------------------------------------------------------------------- named rules


def test_align_corners_true_puts_corners_on_corners_false_uses_half_pixels():
    x = np.array([[[0.0, 1.0, 2.0]]])  # a ramp: the result is the source coordinate
    corners = cnnarray.interpolate(x, size=5, mode="linear", align_corners=True)
    np.testing.assert_allclose(corners[0, 0], [0.0, 0.5, 1.0, 1.5, 2.0])
    # (o + 0.5) * 3 / 5 - 0.5 = -0.2, 0.4, 1.0, 1.6, 2.2: clamped to the first and last pixel
    centres = cnnarray.interpolate(x, size=5, mode="linear", align_corners=False)
    np.testing.assert_allclose(centres[0, 0], [0.0, 0.4, 1.0, 1.6, 2.0])
    default = cnnarray.interpolate(x, size=5, mode="linear")
    np.testing.assert_array_equal(default, centres)
    # a single output pixel reads the first input with align_corners, the centre without
    np.testing.assert_allclose(
        cnnarray.interpolate(x, size=1, mode="linear", align_corners=True)[0, 0], [0.0]
    )
    np.testing.assert_allclose(cnnarray.interpolate(x, size=1, mode="linear")[0, 0], [1.0])


def test_nearest_floors_the_output_index_nearest_exact_its_centre():
    x = np.arange(4.0).reshape(1, 1, 4)
    # down 4 -> 3, step 4/3: floor(o * step) vs floor((o + 0.5) * step)
    assert cnnarray.interpolate(x, size=3)[0, 0].tolist() == [0, 1, 2]
    assert cnnarray.interpolate(x, size=3, mode="nearest-exact")[0, 0].tolist() == [0, 2, 3]
    x = np.arange(2.0).reshape(1, 1, 2)
    # up 2 -> 5, step 0.4: the old rule shifts the image left by half a step
    assert cnnarray.interpolate(x, size=5)[0, 0].tolist() == [0, 0, 0, 1, 1]
    assert cnnarray.interpolate(x, size=5, mode="nearest-exact")[0, 0].tolist() == [0, 0, 1, 1, 1]


def test_scale_factor_gives_the_step_unless_recomputed_from_the_sizes():
    x = np.arange(5.0).reshape(1, 1, 5)  # 5 * 1.7 -> 8 outputs
    by_factor = cnnarray.interpolate(x, scale_factor=1.7, mode="linear")  # step 1 / 1.7
    by_size = cnnarray.interpolate(x, size=8, mode="linear")  # step 5 / 8
    recomputed = cnnarray.interpolate(
        x, scale_factor=1.7, mode="linear", recompute_scale_factor=True
    )
    assert by_factor.shape == by_size.shape == (1, 1, 8)
    np.testing.assert_array_equal(recomputed, by_size)
    # the ramp shows the source coordinates: (o + 0.5) * step - 0.5, clamped at 0
    o = np.arange(8)
    np.testing.assert_allclose(by_factor[0, 0], np.clip((o + 0.5) / 1.7 - 0.5, 0, 4))
    np.testing.assert_allclose(by_size[0, 0], np.clip((o + 0.5) * 5 / 8 - 0.5, 0, 4))


def test_nearest_2d_copies_unchanged_and_halves_doubled_axes_like_pytorch():
    x = np.arange(5.0).reshape(1, 1, 1, 5)
    # 2-D: 5 * 2.1 -> 10 = 2 * 5 reads o // 2; 1-D: the formula, floor(o / 2.1)
    assert cnnarray.interpolate(x, scale_factor=(1, 2.1))[0, 0, 0].tolist() == [
        0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # fmt: skip
    assert cnnarray.interpolate(x[0], scale_factor=2.1)[0, 0].tolist() == [
        0, 0, 0, 1, 1, 2, 2, 3, 3, 4]  # fmt: skip
    x = np.arange(3.0).reshape(1, 1, 3, 1)
    assert cnnarray.interpolate(x, scale_factor=(1.2, 1))[0, 0, :, 0].tolist() == [0, 1, 2]
    assert cnnarray.interpolate(x[..., 0], scale_factor=1.2)[0, 0].tolist() == [0, 0, 1]


def test_bicubic_uses_a_minus_075_and_clamps_border_taps():
    # Keys' kernel with A = -0.75 at t = 0.5: (-0.09375, 0.59375, 0.59375, -0.09375)
    x = np.zeros((1, 1, 1, 6))
    x[..., 3] = 1.0
    # size 6 -> 3: step 2, sources (o + 0.5) * 2 - 0.5 = 0.5, 2.5, 4.5
    y = cnnarray.interpolate(x, size=(1, 3), mode="bicubic")
    np.testing.assert_allclose(y[0, 0, 0], [0.0, 0.59375, -0.09375])
    # a constant stays constant at the border: the taps past it are clamped, not zero
    ones = np.ones((1, 1, 3, 4))
    for align_corners in (False, True):
        up = cnnarray.interpolate(ones, size=(7, 9), mode="bicubic", align_corners=align_corners)
        np.testing.assert_allclose(up, 1.0, rtol=1e-14)
    # and it overshoots a step (negative lobes), unlike bilinear
    step = np.repeat(np.array([0.0, 0.0, 1.0, 1.0]), 1).reshape(1, 1, 1, 4)
    up = cnnarray.interpolate(step, size=(1, 12), mode="bicubic")
    assert up.min() < 0 and up.max() > 1


def test_area_is_adaptive_average_pooling():
    x = _x((2, 3, 9, 7), F64, seed=8)
    np.testing.assert_allclose(
        cnnarray.interpolate(x, size=(4, 3), mode="area"),
        cnnarray.adaptive_avg_pool2d(x, (4, 3)),
        rtol=1e-13,
    )


def test_a_nan_reaches_only_the_outputs_that_read_it():
    x = np.zeros((1, 1, 6, 6))
    x[0, 0, 0, 0] = np.nan
    y = cnnarray.interpolate(x, size=(12, 12), mode="bilinear")
    assert np.isnan(y[0, 0, :2, :2]).all() and not np.isnan(y[0, 0, 3:, :]).any()
    g = np.zeros((1, 1, 3, 3))
    g[0, 0, 2, 2] = np.nan
    gx = cnnarray.interpolate_backward(g, x, size=(3, 3), mode="area")
    assert np.isnan(gx[0, 0, 4:, 4:]).all() and not np.isnan(gx[0, 0, :4, :]).any()


def test_integer_input_and_unchanged_size_give_a_new_float_array():
    x = np.arange(6).reshape(1, 2, 3)
    y = cnnarray.interpolate(x, size=3)
    assert y.dtype == np.float32 and y.tolist() == x.tolist()
    x = x.astype(np.float64)
    y = cnnarray.interpolate(x, size=3, mode="area")
    assert y is not x and not np.shares_memory(x, y)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"size": 4, "scale_factor": 2}, ValueError, "exactly one of size and scale_factor"),
        ({}, ValueError, "exactly one of size and scale_factor"),
        (
            {"size": 4, "align_corners": True},
            ValueError,
            "align_corners can only be set with the interpolating modes.*mode='nearest'",
        ),
        ({"size": 4, "mode": "area", "align_corners": False}, ValueError, "mode='area'"),
        (
            {"size": 4, "mode": "bilinear"},
            ValueError,
            r"mode='bilinear' needs 4-D input \(N, C, H, W\), got x of shape \(1, 2, 5\)",
        ),
        ({"size": 4, "mode": "trilinear"}, ValueError, "needs 5-D input"),
        ({"size": 4, "mode": "cubic"}, ValueError, "mode must be one of.*got 'cubic'"),
        ({"size": (4, 4)}, ValueError, r"size must be one value or 1 .*got \(4, 4\) \(2 values"),
        ({"scale_factor": (2, 2)}, ValueError, "scale_factor must be one value or 1"),
        ({"size": 0}, ValueError, "size must be an int from 1"),
        ({"size": 2.5}, TypeError, "size must be an int"),
        ({"scale_factor": 0}, ValueError, r"scale_factor must be a number in \(0, 1024\], got 0$"),
        (
            {"scale_factor": float("inf")},
            ValueError,
            r"in \(0, 1024\], got inf",
        ),
        (
            {"size": 5 * 1024 + 1},
            ValueError,
            r"at most 1024 times x's .*got \(5121,\)",
        ),
        ({"scale_factor": 0.1}, ValueError, r"scale_factor=0.1 gives output size \(0,\)"),
        ({"size": 4, "recompute_scale_factor": True}, ValueError, "not meaningful"),
        (
            {"size": 4, "mode": "linear", "align_corners": 1},
            TypeError,
            "align_corners must be a bool",
        ),
    ],  # fmt: skip
)
def test_interpolate_argument_errors(kwargs, error, match):
    x = np.zeros((1, 2, 5))
    with pytest.raises(error, match=match):
        cnnarray.interpolate(x, **kwargs)
    if "size" in kwargs or "scale_factor" in kwargs:  # the backward checks the same first
        with pytest.raises(error, match=match):
            cnnarray.interpolate_backward(np.zeros((1, 2, 4)), x, **kwargs)


def test_interpolate_input_errors():
    with pytest.raises(TypeError, match="grad_out must be an array, got None"):
        cnnarray.interpolate_backward(None, np.zeros((1, 2, 5)), size=3)
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, L\).*got shape \(5,\)"):
        cnnarray.interpolate(np.zeros(5), size=3)
    with pytest.raises(ValueError, match=r"non-empty spatial axes, got shape \(1, 1, 0\)"):
        cnnarray.interpolate(np.zeros((1, 1, 0)), size=3)
    with pytest.raises(
        ValueError, match=r"at most 2147483647 elements, got shape \(1, 1, 65536, 65536\)"
    ):
        cnnarray.interpolate(np.zeros((1, 1, 64, 64)), scale_factor=1024)
    with pytest.raises(ValueError, match=r"grad_out must have shape \(1, 2, 3\), got \(1, 2, 4\)"):
        cnnarray.interpolate_backward(np.zeros((1, 2, 4)), np.zeros((1, 2, 5)), size=3)


# --------------------------------------------------------------------------- autograd, nn


def test_interpolate_autograd_gives_the_ops_backward(backend):
    x = _x((1, 2, 4, 5), F64, seed=9)
    leaf = cnnarray.tensor(cnnarray.asarray(x, backend), requires_grad=True)
    kwargs = {"scale_factor": (1.5, 0.8), "mode": "bicubic", "align_corners": True}
    out = cnnarray.interpolate(leaf, **kwargs)
    g = _x(out.shape, F64, seed=10)
    out.backward(cnnarray.asarray(g, backend))
    assert out.grad_fn.name == "interpolate"
    direct = cnnarray.interpolate_backward(g, x, **kwargs)
    assert_close(leaf.grad, direct, dtype=F64, backend=backend)


@pytest.mark.parametrize(
    ("layer", "kwargs"),
    [
        (nn.Upsample(scale_factor=1.5, mode="bilinear"), {"scale_factor": 1.5, "mode": "bilinear"}),
        (nn.Upsample(size=(3, 7), mode="nearest-exact"), {"size": (3, 7), "mode": "nearest-exact"}),
        (nn.UpsamplingNearest2d(scale_factor=2), {"scale_factor": 2.0}),
        (
            nn.UpsamplingBilinear2d(size=(6, 3)),
            {"size": (6, 3), "mode": "bilinear", "align_corners": True},
        ),
    ],  # fmt: skip
)
def test_upsample_layers_call_interpolate_and_rebuild_from_spec(layer, kwargs):
    x = _x((2, 3, 4, 5), F64, seed=11)
    np.testing.assert_array_equal(layer(x), cnnarray.interpolate(x, **kwargs))
    spec = json.loads(json.dumps(layer.spec()))
    twin = nn.from_spec(spec)
    assert type(twin) is type(layer) and twin.spec() == spec
    np.testing.assert_array_equal(twin(x), layer(x))
    leaf = cnnarray.tensor(x, requires_grad=True)
    layer(leaf).sum().backward()
    assert leaf.grad.shape == x.shape


def test_upsample_layers_match_torch():
    torch = pytest.importorskip("torch")
    x = _x((1, 2, 4, 5), F64, seed=12)
    pairs = [
        (nn.UpsamplingBilinear2d(scale_factor=2), torch.nn.UpsamplingBilinear2d(scale_factor=2)),
        (nn.UpsamplingNearest2d(size=(5, 9)), torch.nn.UpsamplingNearest2d(size=(5, 9))),
        (nn.Upsample(scale_factor=0.75, mode="bicubic"),
         torch.nn.Upsample(scale_factor=0.75, mode="bicubic")),
    ]  # fmt: skip
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).numpy(), rtol=1e-12)


def test_upsample_checks_its_arguments_when_built():
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        nn.Upsample()
    with pytest.raises(ValueError, match="align_corners can only be set"):
        nn.Upsample(scale_factor=2, align_corners=True)
    with pytest.raises(ValueError, match="mode must be one of"):
        nn.Upsample(size=3, mode="bilinar")
    assert repr(nn.UpsamplingNearest2d(scale_factor=2)) == (
        "UpsamplingNearest2d(size=None, scale_factor=2.0)"
    )
