"""pixel_shuffle / pixel_unshuffle and their backward against the loop oracle, differences,
PyTorch, and each other (they are inverse permutations); the PixelShuffle layers."""

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


def _x(shape, dtype, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)


# (x shape of pixel_shuffle, r): unbatched, batched and with two leading axes
SHAPES = [((8, 2, 3), 2), ((2, 9, 2, 2), 3), ((2, 1, 4, 3, 1), 2), ((1, 3, 2, 2), 1)]


@pytest.mark.parametrize(("shape", "r"), SHAPES)
def test_pixel_shuffle_and_unshuffle_match_reference(backend, dtype, shape, r):
    x = _x(shape, dtype)
    y = run_op(cnnarray.pixel_shuffle, x, r, backend=backend)
    assert_close(y, ref.pixel_shuffle(x, r), dtype=dtype, backend=backend, err_msg="shuffle")
    g = _x(y.shape, dtype, seed=1)
    gx = run_op(cnnarray.pixel_shuffle_backward, g, x, r, backend=backend)
    assert_close(gx, ref.pixel_shuffle_backward(g, x, r), dtype=dtype, backend=backend)
    z = _x(y.shape, dtype, seed=2)  # an input of pixel_unshuffle
    u = run_op(cnnarray.pixel_unshuffle, z, r, backend=backend)
    assert_close(u, ref.pixel_unshuffle(z, r), dtype=dtype, backend=backend, err_msg="unshuffle")
    gu = _x(u.shape, dtype, seed=3)
    gz = run_op(cnnarray.pixel_unshuffle_backward, gu, z, r, backend=backend)
    assert_close(gz, ref.pixel_unshuffle_backward(gu, z, r), dtype=dtype, backend=backend)


def test_pixel_shuffle_index_rule():
    # output [c, h*r + i, w*r + j] is input [c*r*r + i*r + j, h, w]
    x = np.arange(2 * 4 * 2 * 3.0).reshape(2 * 4, 2, 3)
    y = cnnarray.pixel_shuffle(x, 2)
    assert y.shape == (2, 4, 6)
    for c, h, w, i, j in np.ndindex(2, 2, 3, 2, 2):
        assert y[c, h * 2 + i, w * 2 + j] == x[c * 4 + i * 2 + j, h, w]


@settings(max_examples=25, deadline=None)
@given(
    lead=st.lists(st.integers(1, 2), max_size=2).map(tuple),
    c=st.integers(1, 3),
    h=st.integers(1, 3),
    w=st.integers(1, 3),
    r=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_shuffle_and_unshuffle_are_inverse_permutations(backend, lead, c, h, w, r, seed):
    x = _x((*lead, c * r * r, h, w), F64, seed)
    y = run_op(cnnarray.pixel_shuffle, x, r, backend=backend)
    assert y.shape == (*lead, c, h * r, w * r)
    back = run_op(cnnarray.pixel_unshuffle, y, r, backend=backend)
    np.testing.assert_array_equal(cnnarray.to_numpy(back), x)
    np.testing.assert_array_equal(np.sort(cnnarray.to_numpy(y), axis=None), np.sort(x, axis=None))
    # the gradient of a permutation is its inverse applied to grad_out
    gx = run_op(cnnarray.pixel_shuffle_backward, y, x, r, backend=backend)
    np.testing.assert_array_equal(cnnarray.to_numpy(gx), x)


def test_backwards_match_finite_differences():
    x = _x((1, 8, 2, 3), F64, seed=4)
    g = _x((1, 2, 4, 6), F64, seed=5)
    numeric = numerical_grad(lambda v: vjp_objective(cnnarray.pixel_shuffle(v, 2), g), x)
    assert_grad_close(cnnarray.pixel_shuffle_backward(g, x, 2), numeric, "pixel_shuffle")
    numeric = numerical_grad(lambda v: vjp_objective(cnnarray.pixel_unshuffle(v, 2), x), g)
    assert_grad_close(cnnarray.pixel_unshuffle_backward(x, g, 2), numeric, "pixel_unshuffle")


@pytest.mark.parametrize(("shape", "r"), SHAPES)
def test_pixel_shuffle_matches_torch(dtype, shape, r):
    torch = pytest.importorskip("torch")
    x = _x(shape, dtype, seed=6)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.pixel_shuffle(tx, r)
    g = _x(tuple(ty.shape), dtype, seed=7)
    ty.backward(torch.tensor(g))
    assert_close(cnnarray.pixel_shuffle(x, r), ty.detach().numpy(), dtype=dtype)
    assert_close(cnnarray.pixel_shuffle_backward(g, x, r), tx.grad.numpy(), dtype=dtype)
    tz = torch.tensor(g, requires_grad=True)
    tu = torch.nn.functional.pixel_unshuffle(tz, r)
    tu.backward(torch.tensor(x))
    assert_close(cnnarray.pixel_unshuffle(g, r), tu.detach().numpy(), dtype=dtype)
    assert_close(cnnarray.pixel_unshuffle_backward(x, g, r), tz.grad.numpy(), dtype=dtype)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: cnnarray.pixel_shuffle(np.zeros((4, 2)), 2),
            ValueError,
            r"at least 3 axes, got shape \(4, 2\) \(ndim=2\)",
        ),
        (
            lambda: cnnarray.pixel_shuffle(np.zeros((1, 6, 2, 2)), 2),
            ValueError,
            r"channel axis \(-3\) must be divisible by upscale_factor\*\*2 = 4, got 6 channels",
        ),
        (
            lambda: cnnarray.pixel_shuffle(np.zeros((4, 2, 2)), 0),
            ValueError,
            "upscale_factor must be an int from 1",
        ),
        (
            lambda: cnnarray.pixel_shuffle(np.zeros((4, 2, 2)), 2.0),
            TypeError,
            "upscale_factor must be an int",
        ),
        (
            lambda: cnnarray.pixel_unshuffle(np.zeros((1, 5, 4)), 2),
            ValueError,
            r"height \(-2\) must be divisible by downscale_factor=2, got 5",
        ),
        (
            lambda: cnnarray.pixel_unshuffle(np.zeros((1, 4, 3)), 2),
            ValueError,
            r"width \(-1\) must be divisible by downscale_factor=2, got 3",
        ),
        (
            lambda: cnnarray.pixel_shuffle_backward(np.zeros((1, 4, 3)), np.zeros((4, 2, 2)), 2),
            ValueError,
            r"grad_out must have shape \(1, 4, 4\), got \(1, 4, 3\)",
        ),
        (
            lambda: cnnarray.pixel_unshuffle_backward(np.zeros((4, 2, 3)), np.zeros((1, 4, 4)), 2),
            ValueError,
            r"grad_out must have shape \(4, 2, 2\), got \(4, 2, 3\)",
        ),
        (lambda: cnnarray.pixel_shuffle(None, 2), TypeError, "x must be an array, got None"),
        (
            lambda: cnnarray.pixel_unshuffle_backward(None, np.zeros((1, 4, 4)), 2),
            TypeError,
            "grad_out must be an array, got None",
        ),
    ],  # fmt: skip
)
def test_pixel_shuffle_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("op", ["pixel_shuffle", "pixel_unshuffle"])
def test_autograd_gives_the_ops_backward(backend, op):
    x = _x((2, 4, 2, 2), F64, seed=8)
    leaf = cnnarray.tensor(cnnarray.asarray(x, backend), requires_grad=True)
    out = getattr(cnnarray, op)(leaf, 2)
    g = _x(out.shape, F64, seed=9)
    (out * cnnarray.asarray(g, backend)).sum().backward()
    assert out.grad_fn.name == op
    direct = getattr(cnnarray, op + "_backward")(g, x, 2)
    assert_close(leaf.grad, direct, dtype=F64, backend=backend)


def test_pixel_shuffle_layers_round_trip_and_rebuild_from_spec():
    model = nn.Sequential(nn.PixelUnshuffle(2), nn.PixelShuffle(2))
    x = _x((2, 3, 4, 6), F64, seed=10)
    np.testing.assert_array_equal(model(x), x)
    spec = json.loads(json.dumps(model.spec()))
    assert spec["layers"][0] == {"type": "PixelUnshuffle", "args": {"downscale_factor": 2}}
    np.testing.assert_array_equal(nn.from_spec(spec)(x), x)
    assert repr(nn.PixelShuffle(3)) == "PixelShuffle(upscale_factor=3)"
    with pytest.raises(ValueError, match="upscale_factor must be a positive int, got 0"):
        nn.PixelShuffle(0)
