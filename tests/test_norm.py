"""batch_norm2d and adaptive_avg_pool2d: oracle, finite differences, PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, assert_grad_close, numerical_grad, run_op

import cnnarray
from cnnarray import reference as ref


def _bn_inputs(rng, dtype):
    x = (rng.standard_normal((3, 4, 5, 2)) * 2 + 1).astype(dtype)
    rm, rv = rng.standard_normal(4).astype(dtype), (rng.random(4) + 0.5).astype(dtype)
    w, b = rng.standard_normal(4).astype(dtype), rng.standard_normal(4).astype(dtype)
    return x, rm, rv, w, b


@pytest.mark.parametrize("training", [True, False], ids=["batch-stats", "running-stats"])
def test_batch_norm2d_matches_the_oracle(backend, dtype, training):
    x, rm, rv, w, b = _bn_inputs(np.random.default_rng(0), dtype)
    y = run_op(cnnarray.batch_norm2d, x, rm.copy(), rv.copy(), w, b, training=training,
               backend=backend)  # fmt: skip
    assert_close(y, ref.batch_norm2d(x, rm, rv, w, b, training), dtype=dtype, backend=backend)
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    got = run_op(cnnarray.batch_norm2d_backward, g, x, rm, rv, w, b, training=training,
                 backend=backend)  # fmt: skip
    for a, d in zip(got, ref.batch_norm2d_backward(g, x, rm, rv, w, b, training), strict=True):
        assert_close(a, d, dtype=dtype, backend=backend)


@pytest.mark.parametrize("training", [True, False], ids=["batch-stats", "running-stats"])
def test_batch_norm2d_backward_matches_finite_differences(training):
    x, rm, rv, w, b = _bn_inputs(np.random.default_rng(2), np.float64)
    g = np.random.default_rng(3).standard_normal(x.shape)

    def loss(**overrides):
        args = {"x": x, "weight": w, "bias": b, **overrides}
        y = cnnarray.batch_norm2d(args["x"], rm.copy(), rv.copy(), args["weight"], args["bias"],
                                  training=training)  # fmt: skip
        return float((y * g).sum())

    gx, gw, gb = cnnarray.batch_norm2d_backward(g, x, rm, rv, w, b, training=training)
    assert_grad_close(gx, numerical_grad(lambda v: loss(x=v), x))
    assert_grad_close(gw, numerical_grad(lambda v: loss(weight=v), w))
    assert_grad_close(gb, numerical_grad(lambda v: loss(bias=v), b))


def test_batch_norm2d_float32_keeps_its_accuracy_when_the_mean_dwarfs_the_spread(backend):
    # Variance from centred values: E[x^2] - mean^2 gets it 4-11 % wrong on these inputs.
    rng = np.random.default_rng(5)
    x = (1000 + rng.standard_normal((8, 3, 16, 16))).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    x64 = x.astype(np.float64)
    y = run_op(cnnarray.batch_norm2d, x, training=True, backend=backend)
    np.testing.assert_allclose(
        cnnarray.to_numpy(y), ref.batch_norm2d(x64, training=True), atol=2e-3
    )
    gx, _, _ = run_op(cnnarray.batch_norm2d_backward, g, x, training=True, backend=backend)
    want = ref.batch_norm2d_backward(g.astype(np.float64), x64, training=True)[0]
    np.testing.assert_allclose(cnnarray.to_numpy(gx), want, atol=2e-3 * np.abs(want).max())


def test_batch_norm2d_updates_running_statistics_like_pytorch():
    torch = pytest.importorskip("torch")
    x, rm, rv, w, b = _bn_inputs(np.random.default_rng(4), np.float64)
    t_rm, t_rv = torch.tensor(rm), torch.tensor(rv)
    y = cnnarray.batch_norm2d(x, rm, rv, w, b, training=True, momentum=0.3)
    ty = torch.nn.functional.batch_norm(torch.tensor(x), t_rm, t_rv, torch.tensor(w),
                                        torch.tensor(b), training=True, momentum=0.3)  # fmt: skip
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm, t_rm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv, t_rv.numpy(), rtol=1e-12)


def test_batch_norm2d_rejects_one_value_per_channel_in_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        cnnarray.batch_norm2d(np.ones((1, 3, 1, 1)), training=True)
    with pytest.raises(ValueError, match="running_mean must have shape"):
        cnnarray.batch_norm2d(np.ones((2, 3, 4, 4)), np.zeros(2), np.ones(3))


@pytest.mark.parametrize("size", [(3, 4), 1, (None, 2), (9, 11)], ids=str)
def test_adaptive_avg_pool2d_matches_oracle_torch_and_finite_differences(backend, dtype, size):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 7, 9)).astype(dtype)
    y = run_op(cnnarray.adaptive_avg_pool2d, x, size, backend=backend)
    assert_close(y, ref.adaptive_avg_pool2d(x, size), dtype=dtype, backend=backend)
    g = rng.standard_normal(cnnarray.to_numpy(y).shape).astype(dtype)
    gx = run_op(cnnarray.adaptive_avg_pool2d_backward, g, x, size, backend=backend)
    assert_close(gx, ref.adaptive_avg_pool2d_backward(g, x, size), dtype=dtype, backend=backend)
    if dtype == np.float64 and backend.name == "cpu":
        numeric = numerical_grad(
            lambda v: float((cnnarray.adaptive_avg_pool2d(v, size) * g).sum()), x
        )
        assert_grad_close(cnnarray.to_numpy(gx), numeric)
        torch = pytest.importorskip("torch")
        ty = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(x), size)
        np.testing.assert_allclose(cnnarray.to_numpy(y), ty.numpy(), rtol=1e-12, atol=1e-12)


def test_adaptive_avg_pool2d_rejects_a_bad_size():
    with pytest.raises(ValueError, match="output_size must be a positive int"):
        cnnarray.adaptive_avg_pool2d(np.ones((1, 1, 4, 4)), 0)
