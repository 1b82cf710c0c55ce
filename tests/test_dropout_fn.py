"""The dropout functions: masks from a seed or a generator, whole channels, the backward
through the mask, autograd, the oracle, PyTorch's semantics and the nn layers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_close, assert_grad_close, numerical_grad, run_op, vjp_objective

import cnnarray
from cnnarray import nn
from cnnarray import reference as ref

F64 = np.dtype(np.float64)
# name -> (spatial dims, a batched shape)
FUNCTIONS = {"dropout": (0, (4, 5, 6)), "dropout1d": (1, (4, 6, 5)),
             "dropout2d": (2, (3, 8, 2, 3)), "dropout3d": (3, (2, 8, 2, 2, 2))}  # fmt: skip


def _np(a):
    return cnnarray.to_numpy(a)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("p", [0.25, 0.5, 0.9])
def test_dropout_scales_kept_values_and_zeroes_whole_channels(backend, dtype, name, p):
    spatial, shape = FUNCTIONS[name]
    x = np.random.default_rng(0).uniform(1, 2, shape).astype(dtype)
    y = _np(run_op(getattr(cnnarray, name), x, p, generator=1, backend=backend))
    assert y.dtype == dtype
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / dtype.type(1 - p), rtol=1e-6)
    if spatial:  # one decision per channel: all of a channel's positions agree
        axes = tuple(range(x.ndim - spatial, x.ndim))
        assert np.all(kept.all(axis=axes) | ~kept.any(axis=axes))
    mask = _np(run_op(cnnarray.dropout_mask, x, p, spatial, generator=1, backend=backend))
    assert mask.shape == x.shape[: x.ndim - spatial] + (1,) * spatial
    np.testing.assert_array_equal(np.broadcast_to(mask != 0, x.shape), kept)


def test_the_kept_fraction_is_one_minus_p():
    x = np.ones((200, 500))
    for p in (0.1, 0.5, 0.8):
        kept = (cnnarray.dropout(x, p, generator=2) != 0).mean()
        assert abs(kept - (1 - p)) < 0.01, (p, kept)
    channels = cnnarray.dropout2d(np.ones((100, 100, 2, 2)), 0.3, generator=3)[:, :, 0, 0]
    assert abs((channels != 0).mean() - 0.7) < 0.02


def test_a_seed_repeats_the_mask_and_a_generator_advances():
    x = np.ones((6, 7))
    a, b = cnnarray.dropout(x, generator=11), cnnarray.dropout(x, generator=11)
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(11)
    first, second = cnnarray.dropout(x, generator=rng), cnnarray.dropout(x, generator=rng)
    np.testing.assert_array_equal(first, a)  # the seed's generator, used the same way
    assert not np.array_equal(first, second)
    # the mask is (u >= p) / (1 - p) for u = default_rng(seed).random(shape, dtype)
    u = np.random.default_rng(4).random((6, 7), dtype=np.float32)
    want = (u >= 0.3).astype(np.float32) / np.float32(0.7)
    got = cnnarray.dropout_mask(x.astype(np.float32), 0.3, generator=4)
    np.testing.assert_array_equal(got, want)


def test_a_seed_gives_the_same_mask_on_every_backend(backend):
    x = np.random.default_rng(5).standard_normal((4, 3, 5)).astype(np.float32)
    got = run_op(cnnarray.dropout1d, x, 0.5, generator=9, backend=backend)
    np.testing.assert_array_equal(_np(got), cnnarray.dropout1d(x, 0.5, generator=9))


def test_eval_mode_and_p_zero_return_x_and_p_one_zeroes_everything(backend, dtype):
    x = np.random.default_rng(6).standard_normal((3, 4, 2)).astype(dtype)
    for p, training in ((0.5, False), (0.0, True)):
        y = run_op(cnnarray.dropout2d, x, p, training, backend=backend)
        np.testing.assert_array_equal(_np(y), x)
    y = run_op(cnnarray.dropout, x, 1.0, backend=backend)
    np.testing.assert_array_equal(_np(y), np.zeros_like(x))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_dropout_with_a_mask_matches_the_oracle_and_finite_differences(backend, dtype, name):
    spatial, shape = FUNCTIONS[name]
    rng = np.random.default_rng(7)
    x, g = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    mask = _np(cnnarray.dropout_mask(x, 0.4, spatial, generator=8))
    y = run_op(getattr(cnnarray, name), x, 0.4, mask=mask, backend=backend)
    assert_close(y, ref.dropout(x, 0.4, mask=mask), dtype=dtype, backend=backend)
    gx = run_op(cnnarray.dropout_backward, g, mask, backend=backend)
    assert_close(gx, ref.dropout_backward(g, mask), dtype=dtype, backend=backend)
    if dtype == F64:
        numeric = numerical_grad(
            lambda v: vjp_objective(getattr(cnnarray, name)(v, 0.4, mask=mask), g), x
        )
        assert_grad_close(gx, numeric, name)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_autograd_records_the_mask_it_drew(backend, name):
    spatial, shape = FUNCTIONS[name]
    x = np.random.default_rng(9).standard_normal(shape)
    g = np.random.default_rng(10).standard_normal(shape)
    t = cnnarray.tensor(x, requires_grad=True, backend=backend)
    y = getattr(cnnarray, name)(t, 0.5, generator=np.random.default_rng(12))
    assert y.grad_fn.name == name
    y.backward(cnnarray.asarray(g, backend))
    mask = cnnarray.dropout_mask(x, 0.5, spatial, generator=np.random.default_rng(12))
    assert_close(y.data, x * mask, dtype=F64, backend=backend)
    assert_close(t.grad, g * mask, dtype=F64, backend=backend)
    # not training: the identity, and the gradient passes unchanged
    t.grad = None
    getattr(cnnarray, name)(t, 0.5, training=False).sum().backward()
    assert_close(t.grad, np.ones(shape), dtype=F64, backend=backend)


STRUCTURE = [("dropout1d", (7, 20, 5)), ("dropout2d", (5, 20, 3, 3)),
             ("dropout3d", (4, 20, 2, 2, 2)), ("dropout", (40, 50))]  # fmt: skip


@pytest.mark.parametrize("name, shape", STRUCTURE)
def test_dropout_has_pytorchs_structure(name, shape):
    # torch's masks come from its own generator: compare what a mask may look like
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(13).uniform(1, 2, shape)
    ours = getattr(cnnarray, name)(x, 0.4, generator=14)
    theirs = getattr(torch.nn.functional, name)(torch.tensor(x), 0.4, training=True).numpy()
    for y in (ours, theirs):
        kept = y != 0
        np.testing.assert_allclose(y[kept], x[kept] / 0.6, rtol=1e-12)
        if name != "dropout":
            axes = tuple(range(2, len(shape)))
            assert np.all(kept.all(axis=axes) | ~kept.any(axis=axes))
    want = getattr(torch.nn.functional, name)(torch.tensor(x), 0.4, training=False).numpy()
    np.testing.assert_array_equal(getattr(cnnarray, name)(x, 0.4, False), want)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: cnnarray.dropout(np.ones(3), 1.5), ValueError, r"p must be a number in \[0, 1\]"),
        (lambda: cnnarray.dropout(np.ones(3), generator="seed"), TypeError,
         "generator must be None, an int seed or a random Generator .* got str"),
        (lambda: cnnarray.dropout(np.ones(3), generator=-1), ValueError,
         "generator must be a non-negative int, got -1"),
        (lambda: cnnarray.dropout2d(np.ones((2, 3)), 0.5), ValueError,
         r"x must have shape \(N, C, H, W\) or \(C, H, W\), got shape \(2, 3\)"),
        (lambda: cnnarray.dropout2d(np.ones((2, 3, 4, 4)), mask=np.ones((2, 3, 4, 4))), ValueError,
         r"mask must have shape \(2, 3, 1, 1\), got \(2, 3, 4, 4\)"),
        (lambda: cnnarray.dropout_backward(np.ones((2, 3)), np.ones((3, 3))), ValueError,
         r"mask must have grad_out's shape \(2, 3\) or 1 on the axes it broadcasts over"),
        (lambda: cnnarray.dropout(np.ones(3), training=1), TypeError, "training must be a bool"),
    ],
)  # fmt: skip
def test_dropout_arguments_are_checked(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------- nn layers


def test_nn_dropout_masks_are_the_functions_with_the_layers_generator():
    x = np.random.default_rng(15).standard_normal((8, 9)).astype(np.float32)
    layer = nn.Dropout(0.3, seed=4)
    # the layer's masks: (u >= p) / (1 - p) from default_rng(seed), as before the ops existed
    u = np.random.default_rng(4).random((8, 9), dtype=np.float32)
    want = x * ((u >= 0.3).astype(np.float32) * np.float32(1 / 0.7))
    np.testing.assert_array_equal(layer(x), want)


@pytest.mark.parametrize("name, shape", [("Dropout1d", (3, 6, 4)), ("Dropout2d", (6, 3, 3)),
                                         ("Dropout3d", (2, 6, 2, 2, 2))])  # fmt: skip
def test_channel_dropout_layers_drop_channels_train_and_rebuild(backend, name, shape):
    layer = getattr(nn, name)(0.5, seed=2)
    x = cnnarray.asarray(np.random.default_rng(16).uniform(1, 2, shape), backend)
    y = _np(layer(x))
    kept = y != 0
    axes = tuple(range(len(shape) - int(name[-2]), len(shape)))
    assert np.all(kept.all(axis=axes) | ~kept.any(axis=axes))
    assert 0 < kept.mean() < 1
    g = np.random.default_rng(17).standard_normal(shape)
    gx = _np(layer.backward(cnnarray.asarray(g, backend)))
    np.testing.assert_allclose(gx, np.where(kept, g * 2, 0))
    assert layer.eval()(x) is x
    twin = nn.from_spec(json.loads(json.dumps(layer.spec())))
    assert repr(twin) == repr(layer) == f"{name}(p=0.5, seed=2)"
    # the generator state restores the next mask, as for Dropout
    layer.train()
    state = layer.get_rng_state()
    first = _np(layer(x))
    layer.set_rng_state(state)
    np.testing.assert_array_equal(_np(layer(x)), first)


def test_channel_dropout_layers_match_torch_in_eval():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(18)
    for name, shape in (("Dropout1d", (2, 3, 4)), ("Dropout2d", (2, 3, 4, 4)),
                        ("Dropout3d", (2, 3, 2, 2, 2))):  # fmt: skip
        x = rng.standard_normal(shape)
        ours, theirs = getattr(nn, name)(0.3).eval(), getattr(torch.nn, name)(0.3).eval()
        np.testing.assert_array_equal(ours(x), theirs(torch.tensor(x)).numpy())
