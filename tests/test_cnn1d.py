"""CNN1d / cnn1d_small: shapes, refused inputs, spec round trip, gradients against central
differences and torch autograd, and a training run on the synthetic signals to a stated
accuracy."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from helpers import assert_grad_close, numerical_grad, train_adam
from test_model_grads import compare_with_torch

import cnnarray
from cnnarray import nn
from cnnarray.backend import to_numpy
from cnnarray.data.synthetic import SIGNAL_CLASSES, make_signals


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_cnn1d_gives_class_logits(backend):
    model = nn.cnn1d_small(3, 5, 40, seed=0).to(backend)
    out = model(backend.asarray(_x((4, 3, 40)).astype("float32")))
    assert out.shape == (4, 5) and out.dtype == np.float32
    assert [name for name, _ in model.named_children()] == [
        "features", "avgpool", "flatten", "fc"]  # fmt: skip


def test_cnn1d_refuses_bad_inputs_and_arguments():
    model = nn.CNN1d((2, 2), seed=0)
    with pytest.raises(ValueError, match=r"L >= 4, got shape \(1, 1, 3\)"):
        model(np.zeros((1, 1, 3), "float32"))
    with pytest.raises(ValueError, match=r"L >= 4, got shape \(1, 8\)"):
        model(np.zeros((1, 8), "float32"))
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        nn.CNN1d(kernel_size=4)
    with pytest.raises(ValueError, match="widths must be a non-empty sequence"):
        nn.CNN1d(widths=())
    with pytest.raises(ValueError, match="needs input_size of at least 8, got 6"):
        nn.cnn1d_small(input_size=6)


def test_cnn1d_spec_round_trip():
    model = nn.cnn1d_small(2, 3, 32, widths=(4, 6), kernel_size=3, seed=1)
    spec = model.spec()
    assert spec == {"type": "CNN1d", "args": {"widths": [4, 6], "kernel_size": 3,
                                              "in_channels": 2, "num_classes": 3,
                                              "dtype": "float32"}}  # fmt: skip
    twin = nn.from_spec(spec, seed=5)
    twin.load_state_dict(model.state_dict())
    x = _x((3, 2, 32)).astype("float32")
    model.eval(), twin.eval()
    np.testing.assert_array_equal(to_numpy(twin(x)), to_numpy(model(x)))


def test_cnn1d_gradients_match_central_differences():
    model = nn.CNN1d((2, 3), kernel_size=3, in_channels=1, num_classes=3, dtype="float64", seed=0)
    x, y = _x((3, 1, 9)), np.array([0, 2, 1])
    xt = cnnarray.tensor(x.copy(), requires_grad=True)
    cnnarray.cross_entropy(model(xt), y).backward()
    numeric = numerical_grad(lambda v: cnnarray.cross_entropy(model(v), y), x)
    assert_grad_close(xt.grad, numeric, "grad of the input")


def test_cnn1d_loss_and_gradients_match_torch(backend):
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    model = nn.CNN1d((3, 4), kernel_size=5, in_channels=2, num_classes=3, dtype="float64", seed=0)
    layers = []
    for c_in, c_out in ((2, 3), (3, 4)):
        layers += [tnn.Conv1d(c_in, c_out, 5, padding=2, bias=False), tnn.BatchNorm1d(c_out),
                   tnn.ReLU(), tnn.MaxPool1d(2)]  # fmt: skip
    twin = tnn.Sequential(OrderedDict(features=tnn.Sequential(*layers),
                                      avgpool=tnn.AdaptiveAvgPool1d(1), flatten=tnn.Flatten(),
                                      fc=tnn.Linear(4, 3))).to(torch.float64)  # fmt: skip
    twin.load_state_dict({k: torch.tensor(to_numpy(v)) for k, v in model.state_dict().items()})
    compare_with_torch(torch, model, _x((4, 2, 13)), np.array([0, 1, 2, 1]), backend, twin)


#: What the training test reaches, with margin (measured: see the test).
SIGNALS_MIN_ACCURACY = 0.90


def test_cnn1d_small_learns_to_tell_the_synthetic_waveforms_apart():
    # 1024 signals of length 128, 15 epochs: ~2 s on one core. Held-out: 256 signals from
    # another seed. Measured: accuracy 0.945 (chance: 0.25).
    x, y = make_signals(1024, 128, seed=0)
    x_test, y_test = make_signals(256, 128, seed=1)
    model = nn.cnn1d_small(1, len(SIGNAL_CLASSES), 128, seed=0)
    train_adam(model, x, y, epochs=15, batch_size=32, lr=1e-2)
    accuracy = float(np.mean(to_numpy(model.eval()(x_test)).argmax(axis=1) == y_test))
    assert accuracy >= SIGNALS_MIN_ACCURACY, accuracy
