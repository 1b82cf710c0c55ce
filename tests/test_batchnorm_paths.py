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


@pytest.mark.parametrize(
    "layer, shape",
    [(nn.BatchNorm2d, (4, 3, 5, 5)), (nn.BatchNorm3d, (2, 3, 2, 2, 2))],
    ids=["2d", "3d"],
)
def test_the_tape_keeps_the_statistics_not_the_output(layer, shape):
    # The output is the next layer's input, freed once that layer is done with it.
    x = cnnarray.tensor(np.random.default_rng(16).standard_normal(shape).astype(np.float32),
                        requires_grad=True)  # fmt: skip
    kept = layer(3)(x)._node.out
    assert kept[0] is None and [a.shape for a in kept[1:]] == [(3,), (3,)]


# -- BatchNorm folded into the convolution before it, at inference ----------------------------


def _randomise_batchnorms(model, rng):
    """Running statistics and affine parameters away from their initial 0 / 1."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean[...] = rng.standard_normal(c)
            m.running_var[...] = rng.random(c) + 0.5
            if m.affine:
                m.weight.data[...] = rng.standard_normal(c)
                m.bias.data[...] = rng.standard_normal(c)
    return model.eval()


@pytest.fixture
def bn_calls(monkeypatch):
    """How many times a BatchNorm2d ran its own forward."""
    calls = []
    forward = nn.BatchNorm2d.forward
    monkeypatch.setattr(
        nn.BatchNorm2d, "forward", lambda self, x: calls.append(1) or forward(self, x)
    )
    return calls


def _unfolded(monkeypatch, model, x):
    import cnnarray.nn._fold as fold
    import cnnarray.nn.container as container

    with monkeypatch.context() as m:
        m.setattr(fold, "foldable", lambda *a: False)
        m.setattr(container, "foldable", lambda *a: False)
        return model(x)


def _models():
    return {
        "vgg_small": (
            lambda: nn.models.vgg_small(1, 10, 8, widths=(4, 8), hidden=16, seed=0),
            (5, 1, 8, 8),
        ),
        "resnet20": (
            lambda: nn.models.resnet20(seed=0),
            (10, 3, 32, 32),
        ),  # all large enough to fold
        "bottleneck-imagenet-stem": (
            lambda: nn.ResNet("bottleneck", [1, 1], [4, 8], stem="imagenet", seed=0),
            (6, 3, 32, 32),
        ),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_folded_inference_equals_the_unfolded_layers(monkeypatch, bn_calls, name):
    make, shape = _models()[name]
    model = _randomise_batchnorms(make(), np.random.default_rng(7))
    x = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
    want = _unfolded(monkeypatch, model, x)
    bn_calls.clear()
    got = model(x)
    assert not bn_calls  # every BatchNorm2d was folded into its convolution
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize(
    "conv_kw",
    [{"bias": True, "stride": 2, "padding": 1}, {"groups": 2, "dilation": 2, "padding": "same"},
     {"padding": 1, "padding_mode": "reflect", "bias": True}],
    ids=["bias-stride", "groups-dilation", "reflect"],
)  # fmt: skip
@pytest.mark.parametrize("affine", [True, False])
def test_folding_covers_the_convolution_and_batchnorm_options(
    monkeypatch, bn_calls, conv_kw, affine
):
    model = nn.Sequential(nn.Conv2d(4, 6, 3, seed=1, dtype="float64", **conv_kw),
                          nn.BatchNorm2d(6, affine=affine, dtype="float64"))  # fmt: skip
    _randomise_batchnorms(model, np.random.default_rng(9))
    x = np.random.default_rng(10).standard_normal((3, 4, 9, 9))
    want = _unfolded(monkeypatch, model, x)
    bn_calls.clear()
    np.testing.assert_allclose(model(x), want, rtol=1e-12, atol=1e-12)
    assert not bn_calls


def test_folded_weights_follow_parameter_and_statistics_changes(monkeypatch):
    model = _randomise_batchnorms(
        nn.Sequential(
            nn.Conv2d(2, 3, 3, seed=0, dtype="float64"), nn.BatchNorm2d(3, dtype="float64")
        ),
        np.random.default_rng(11),
    )
    x = np.random.default_rng(12).standard_normal((4, 2, 6, 6))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    first = model(x)
    assert sorted(model.state_dict()) == sorted(before)  # nothing folded is kept or saved
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    model[1].running_mean += 1.5  # in place, as training and load_state_dict do
    model[0].weight.data *= 2
    model[1].bias.data -= 1
    second = model(x)
    np.testing.assert_allclose(second, _unfolded(monkeypatch, model, x), rtol=1e-12, atol=1e-12)
    assert not np.allclose(second, first)


def test_no_folding_in_training_or_when_gradients_are_recorded(bn_calls):
    model = nn.Sequential(nn.Conv2d(2, 3, 3, seed=0), nn.BatchNorm2d(3))
    x = np.random.default_rng(13).standard_normal((4, 2, 6, 6)).astype(np.float32)
    model(x)  # training mode: batch statistics
    assert len(bn_calls) == 1
    model.eval()
    xt = cnnarray.tensor(x, requires_grad=True)
    model(xt).sum().backward()  # eval mode, but recorded: the layers' own ops
    assert len(bn_calls) == 2 and xt.grad is not None and model[0].weight.grad is not None
    with cnnarray.no_grad():
        model(xt)
    assert len(bn_calls) == 2


def test_no_folding_where_the_unfolded_layers_would_refuse_or_it_costs_more(bn_calls):
    wrong = nn.Sequential(nn.Conv2d(2, 3, 3, seed=0), nn.BatchNorm2d(4)).eval()
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4\) expected x with 4 channels"):
        wrong(np.zeros((2, 2, 5, 5), np.float32))
    model = nn.Sequential(nn.Conv2d(64, 3, 3, seed=0), nn.BatchNorm2d(3)).eval()
    model(np.zeros((1, 64, 5, 5), np.float32))  # 9 outputs per filter of 576 weights
    assert len(bn_calls) == 2


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (3, 2, 5, 7)], ids=["rows-of-256", "rows-of-35"])
def test_float32_channel_sums_by_blas_match_the_oracle(shape):
    # float32 sums rows by BLAS: (1, L) @ (L, 1) products from L = 128, einsum below.
    from cnnarray import reference as ref

    x, rm, rv, w, b = _inputs(np.random.default_rng(14), shape, np.float32)
    x += 50  # a mean well away from 0
    g = np.random.default_rng(15).standard_normal(shape).astype(np.float32)
    y, mean, inv_std = cnnarray.batch_norm2d(x, rm, rv, w, b, training=True, return_stats=True)
    assert_close(y, ref.batch_norm2d(x, None, None, w, b, True), dtype=np.float32)
    got = cnnarray.batch_norm2d_backward(g, x, None, None, w, b, training=True, mean=mean,
                                         inv_std=inv_std)  # fmt: skip
    for a, d in zip(got, ref.batch_norm2d_backward(g, x, None, None, w, b, True), strict=True):
        assert_close(a, d, dtype=np.float32)
