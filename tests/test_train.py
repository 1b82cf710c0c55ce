"""The training loop and its checkpoints, on small synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from cnnarray import get_backend, nn
from cnnarray import train as training
from cnnarray.data.datasets import Split
from cnnarray.io import CheckpointError


def _data(shape=(3, 8, 8), n=48, classes=4, seed=0) -> Split:
    """Classes that differ by brightness: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = np.clip(rng.normal(0.15 + 0.2 * y[:, None, None, None], 0.05, (n, *shape)), 0, 1)
    x = x.astype(np.float32)
    return Split(x[: n * 3 // 4], y[: n * 3 // 4], x[n * 3 // 4 :], y[n * 3 // 4 :],
                 [f"c{i}" for i in range(classes)], "synthetic")  # fmt: skip


def test_fit_learns_and_records_history():
    data, cpu = _data(n=240), get_backend("cpu")
    config = training.TrainConfig(model="small_cnn", epochs=8, batch_size=16, lr=3e-3)
    state = training.new_state(config, data, cpu)
    history = training.fit(state, data, cpu)
    assert [h.epoch for h in history] == list(range(1, 9))
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].val_accuracy >= 0.75
    assert training.test(state, data, cpu)["accuracy"] >= 0.75


def test_checkpoint_with_batchnorm_round_trips(tmp_path):
    # vgg_small has BatchNorm2d, whose num_batches_tracked is a 0-d buffer
    data, cpu = _data(shape=(3, 32, 32), n=16), get_backend("cpu")
    config = training.TrainConfig(model="vgg_small", epochs=1, batch_size=8, augment="crop,flip")
    state = training.new_state(config, data, cpu)
    training.fit(state, data, cpu)
    path = training.save(state, tmp_path / "vgg.safetensors")
    model, spec, metadata = training.load_model(path, cpu)
    assert spec["classes"] == data.classes and metadata["epoch"] == 1
    before = state.model.eval()(data.x_test)
    np.testing.assert_array_equal(model(data.x_test), before)
    for name, value in state.model.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[name], value)


def test_resume_continues_like_an_uninterrupted_run(tmp_path):
    data, cpu = _data(), get_backend("cpu")
    config = training.TrainConfig(model="lenet5", epochs=4, batch_size=8, augment="shift")
    straight = training.new_state(config, data, cpu)
    training.fit(straight, data, cpu)

    halted = training.new_state(config, data, cpu)
    training.fit(halted, data, cpu, epochs=2)
    path = training.save(halted, tmp_path / "half.safetensors")
    resumed = training.resume(path, data, cpu)
    assert resumed.epoch == 2
    training.fit(resumed, data, cpu)
    for name, value in straight.model.state_dict().items():
        np.testing.assert_allclose(resumed.model.state_dict()[name], value, rtol=1e-5, atol=1e-6)


def test_resume_refuses_data_of_another_shape(tmp_path):
    data, cpu = _data(), get_backend("cpu")
    state = training.new_state(training.TrainConfig(epochs=1, batch_size=8), data, cpu)
    path = training.save(state, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="inputs of shape"):
        training.resume(path, _data(shape=(1, 8, 8)), cpu)


def test_bad_config_names_the_field():
    data, cpu = _data(), get_backend("cpu")
    for field, value, match in [("optimizer", "rmsprop", "optimizer must be one of"),
                                ("model", "resnet", "model must be one of"),
                                ("epochs", 0, "epochs must be a positive int"),
                                ("augment", "rotate", "augment must be")]:  # fmt: skip
        config = training.TrainConfig(**{field: value})
        with pytest.raises(ValueError, match=match):
            training.new_state(config, data, cpu)


def test_layers_in_order_expands_nested_sequentials():
    from cnnarray.visualize import first_conv, layers_in_order

    model = nn.vgg_small(3, 4, seed=0)
    leaves = layers_in_order(model)
    assert not any(isinstance(layer, nn.Sequential) for layer in leaves)
    assert first_conv(model) is leaves[0]


def test_confusion_matrix_counts_true_by_predicted():
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 2])
    confusion = training.confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert confusion.dtype == np.int64
    assert training.confusion_matrix(y_true[:0], y_pred[:0], 2).sum() == 0


@pytest.mark.parametrize(
    ("y_true", "y_pred", "k", "error", "match"),
    [
        ([0, 1], [0, 1, 1], 2, ValueError, r"y_pred must have the shape of y_true, \(2,\)"),
        ([0, 3], [0, 1], 2, ValueError, r"y_true must hold classes in 0\.\.1, got .* to 3"),
        ([0, 1], [-1, 1], 2, ValueError, r"y_pred must hold classes in 0\.\.1"),
        ([0.0, 1.0], [0, 1], 2, TypeError, "y_true must be an integer array, got dtype float64"),
        ([0, 1], [0, 1], 0, ValueError, "num_classes must be a positive int, got 0"),
    ],
)
def test_confusion_matrix_rejects_bad_labels(y_true, y_pred, k, error, match):
    with pytest.raises(error, match=match):
        training.confusion_matrix(np.array(y_true), np.array(y_pred), k)
