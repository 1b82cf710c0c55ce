"""The fast paths of batch norm: statistics handed from the forward to the backward
(return_stats, the layers' tape), and BatchNorm folded into the convolution before it
at inference."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, run_op

import cnnarray
import cnnarray.ops.norm as norm_ops
from cnnarray import nn


def _inputs(rng, shape, dtype=np.float64):
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    return x, rm, rv, w, b


@pytest.mark.parametrize("training", [True, False], ids=["batch-stats", "running-stats"])
@pytest.mark.parametrize(
    "op, shape",
    [("batch_norm2d", (3, 4, 5, 2)), ("batch_norm", (5, 4)), ("batch_norm", (2, 4, 3, 2, 2))],
    ids=["2d", "1d", "3d"],
)
def test_return_stats_gives_the_statistics_the_backward_takes(backend, dtype, op, shape, training):
    x, rm, rv, w, b = _inputs(np.random.default_rng(0), shape, dtype)
    forward, backward = getattr(cnnarray, op), getattr(cnnarray, op + "_backward")
    y, mean, inv_std = run_op(forward, x, rm.copy(), rv.copy(), w, b, training=training,
                              return_stats=True, backend=backend)  # fmt: skip
    assert_close(y, run_op(forward, x, rm.copy(), rv.copy(), w, b, training=training,
                           backend=backend), dtype=dtype, backend=backend)  # fmt: skip
    axes = tuple(i for i in range(x.ndim) if i != 1)
    x64 = x.astype(np.float64)
    want_mean = x64.mean(axis=axes) if training else rm.astype(np.float64)
    want_var = x64.var(axis=axes) if training else rv.astype(np.float64)
    assert_close(mean, want_mean.astype(dtype), dtype=dtype, backend=backend)
    assert_close(
        inv_std, (1 / np.sqrt(want_var + 1e-5)).astype(dtype), dtype=dtype, backend=backend
    )
    g = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    given = run_op(backward, g, x, rm, rv, w, b, training=training,
                   mean=cnnarray.to_numpy(mean), inv_std=cnnarray.to_numpy(inv_std),
                   backend=backend)  # fmt: skip
    again = run_op(backward, g, x, rm, rv, w, b, training=training, backend=backend)
    for a, d in zip(given, again, strict=True):
        assert_close(a, cnnarray.to_numpy(d), dtype=dtype, backend=backend)


def test_backward_uses_the_statistics_given_not_the_updated_running_ones():
    # Training mode updates running_mean/var in place; the stats returned are the batch's.
    x, rm, rv, w, b = _inputs(np.random.default_rng(2), (4, 3, 3, 3))
    g = np.random.default_rng(3).standard_normal(x.shape)
    want = cnnarray.batch_norm2d_backward(g, x, None, None, w, b, training=True)
    _, mean, inv_std = cnnarray.batch_norm2d(x, rm, rv, w, b, training=True, return_stats=True)
    got = cnnarray.batch_norm2d_backward(g, x, rm, rv, w, b, training=True, mean=mean,
                                         inv_std=inv_std)  # fmt: skip
    for a, d in zip(got, want, strict=True):
        np.testing.assert_allclose(a, d, rtol=1e-12, atol=1e-14)


def test_backward_takes_mean_and_inv_std_together():
    x, _, _, w, b = _inputs(np.random.default_rng(4), (2, 3, 2, 2))
    with pytest.raises(ValueError, match="mean and inv_std together.*got only mean"):
        cnnarray.batch_norm2d_backward(x, x, weight=w, mean=np.zeros(3))
    with pytest.raises(ValueError, match="inv_std must have shape"):
        cnnarray.batch_norm_backward(x, x, mean=np.zeros(3), inv_std=np.ones(2))


@pytest.mark.parametrize("layer, shape", [(nn.BatchNorm2d, (4, 3, 5, 5)), (nn.BatchNorm1d, (6, 3))],
                         ids=["2d", "1d"])  # fmt: skip
def test_layer_backward_reuses_the_forward_statistics(monkeypatch, layer, shape):
    # One pass for the statistics per training step, in the forward: the tape keeps them.
    calls = []
    stats = norm_ops._batch_stats
    monkeypatch.setattr(norm_ops, "_batch_stats", lambda *a: calls.append(1) or stats(*a))
    bn = layer(3, dtype="float64")
    x = cnnarray.tensor(np.random.default_rng(5).standard_normal(shape), requires_grad=True)
    g = np.random.default_rng(6).standard_normal(shape)
    rm, rv = bn.running_mean.copy(), bn.running_var.copy()
    (bn(x) * cnnarray.tensor(g)).sum().backward()
    assert len(calls) == 1
    op = cnnarray.batch_norm2d_backward if len(shape) == 4 else cnnarray.batch_norm_backward
    gx, gw, gb = op(g, x.data, rm, rv, bn.weight.data, bn.bias.data, training=True)
    np.testing.assert_allclose(x.grad, gx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.weight.grad, gw, rtol=1e-10)
    np.testing.assert_allclose(bn.bias.grad, gb, rtol=1e-10)
