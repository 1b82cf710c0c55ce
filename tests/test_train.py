"""The training loop and its checkpoints, on small synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from cnnarray import callbacks, get_backend, nn
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
        np.testing.assert_array_equal(resumed.model.state_dict()[name], value)
    assert [(h.train_loss, h.val_loss) for h in resumed.history] == [
        (h.train_loss, h.val_loss) for h in straight.history
    ]


def _with_dropout(config, data, cpu):
    """A run of a small_cnn with dropout: its masks draw from a generator of their own."""
    state = training.new_state(config, data, cpu)
    model = nn.build_model("small_cnn", in_channels=3, num_classes=4, input_size=8, seed=0,
                           dropout=0.5)  # fmt: skip
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.seed = 5  # unseeded masks differ between the two runs from the start
    state.model = model
    state.spec["model"] = model.spec()
    state.optimizer = training.build_optimizer(config, model)
    state.scheduler = training.build_scheduler(config, state.optimizer)
    return state


def test_resume_with_dropout_is_bit_identical(tmp_path):
    data, cpu = _data(), get_backend("cpu")
    config = training.TrainConfig(epochs=3, batch_size=8, seed=1)
    straight = _with_dropout(config, data, cpu)
    training.fit(straight, data, cpu)
    halted = _with_dropout(config, data, cpu)
    training.fit(halted, data, cpu, epochs=1)
    resumed = training.resume(training.save(halted, tmp_path / "d.safetensors"), data, cpu)
    training.fit(resumed, data, cpu)
    for name, value in straight.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[name], value)


def test_dropout_rng_state_round_trips():
    drop = nn.Dropout(0.5, seed=3)
    x = np.ones((4, 6), np.float32)
    drop(x)
    state = drop.get_rng_state()
    expected = drop(x)
    other = nn.Dropout(0.5, seed=99)
    other.set_rng_state(state)
    np.testing.assert_array_equal(other(x), expected)


def test_validation_split_is_seeded_and_leaves_the_test_set_alone():
    data = _data(n=80)
    x_tr, y_tr, x_val, y_val = training.split_validation(data, 0.25, seed=0)
    assert (len(y_tr), len(y_val)) == (45, 15)
    again = training.split_validation(data, 0.25, seed=0)
    np.testing.assert_array_equal(again[3], y_val)
    other = training.split_validation(data, 0.25, seed=1)
    assert not np.array_equal(other[2], x_val)
    rows = {r.tobytes() for r in np.concatenate([x_tr, x_val])}
    assert rows == {r.tobytes() for r in data.x_train}
    assert len(training.split_validation(data, 0.0, seed=0)[3]) == 0
    with pytest.raises(ValueError, match="leaves none to train on"):
        training.split_validation(_data(n=4), 0.9, seed=0)


def test_patience_stops_when_the_validation_loss_does_not_improve():
    data, cpu = _data(), get_backend("cpu")
    state = training.new_state(training.TrainConfig(epochs=10, batch_size=8, patience=2), data,
                               cpu)  # fmt: skip
    losses = [1.0, 0.5, 0.6, 0.7]
    state.history = [training.EpochStats(i + 1, 1, 0.5, v, 0.5, 1, 1, 1e-3)
                     for i, v in enumerate(losses)]  # fmt: skip
    assert state.best.epoch == 2 and state.stopped_early
    assert len(training.fit(state, data, cpu)) == 4  # nothing more to train
    state.history.pop()
    assert not state.stopped_early


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("lr", float("inf"), "lr must be a finite positive number, got inf"),
     ("lr", float("nan"), "lr must be a finite positive number, got nan"),
     ("lr", 0.0, "lr must be a finite positive number, got 0.0"),
     ("weight_decay", -1.0, "weight_decay must be a finite non-negative number"),
     ("weight_decay", float("inf"), "weight_decay must be a finite non-negative number"),
     ("momentum", 1.0, r"momentum must be a number in \[0, 1\)"),
     ("label_smoothing", -0.1, "label_smoothing must be"),
     ("val_split", 1.0, "val_split must be"),
     ("patience", 0, "patience must be a positive int")],
)  # fmt: skip
def test_training_numbers_are_checked(field, value, match):
    with pytest.raises(ValueError, match=match):
        training.TrainConfig(**{field: value}).validate()


def test_each_optimizer_has_its_own_default_lr():
    for name, lr in training.LEARNING_RATES.items():
        config = training.TrainConfig(optimizer=name)
        config.validate()
        assert config.lr == lr
    assert training.LEARNING_RATES["sgd"] > training.LEARNING_RATES["adamw"]


def test_resume_applies_more_epochs_and_a_new_lr_and_refuses_other_changes(tmp_path):
    data, cpu = _data(), get_backend("cpu")
    state = training.new_state(training.TrainConfig(epochs=2, batch_size=8), data, cpu)
    training.fit(state, data, cpu)
    path = training.save(state, tmp_path / "m.safetensors")
    resumed = training.resume(path, data, cpu, epochs=4, changes={"lr": 0.01, "batch_size": 8})
    assert resumed.config.epochs == 4 and resumed.config.lr == 0.01
    assert resumed.scheduler.base_lrs == [0.01]
    with pytest.raises(training.ResumeConflict, match=r"model='lenet5' \(saved: 'small_cnn'\)"):
        training.resume(path, data, cpu, changes={"model": "lenet5", "batch_size": 8})
    with pytest.raises(ValueError, match="at least the 2 epochs already done"):
        training.resume(path, data, cpu, epochs=1)


def test_checkpointing_writes_every_n_epochs_the_best_and_on_interrupt(tmp_path):
    data, cpu = _data(), get_backend("cpu")
    state = training.new_state(training.TrainConfig(epochs=3, batch_size=8), data, cpu)
    out = tmp_path / "m.safetensors"
    saver = callbacks.Checkpointing(state, out, every=2, best_path=callbacks.best_path(out))
    assert callbacks.best_path(out).name == "m.best.safetensors"
    written = []

    def end(stats):
        saver.epoch_end(state)
        written.append((saver.saved_epoch, out.exists()))

    training.fit(state, data, cpu, training.Callbacks(on_epoch_end=end))
    assert written == [(None, False), (2, True), (2, True)]
    assert training.load_model(out, cpu)[2]["epoch"] == 2
    assert training.load_model(callbacks.best_path(out), cpu)[2]["epoch"] == state.best.epoch
    assert saver.interrupted() == 3
    assert training.load_model(out, cpu)[2]["epoch"] == 3


def test_an_interrupt_in_the_first_epoch_saves_the_initial_state(tmp_path):
    data, cpu = _data(), get_backend("cpu")
    state = training.new_state(training.TrainConfig(epochs=2, batch_size=8), data, cpu)
    initial = {k: v.copy() for k, v in state.model.state_dict().items()}
    saver = callbacks.Checkpointing(state, tmp_path / "m.safetensors")

    def stop(i, loss, acc):
        if i == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.fit(state, data, cpu, training.Callbacks(on_batch=stop))
    assert saver.interrupted() == 0
    model, _, metadata = training.load_model(tmp_path / "m.safetensors", cpu)
    assert metadata["epoch"] == 0
    for name, value in initial.items():
        np.testing.assert_array_equal(model.state_dict()[name], value)


def test_tensorboard_log_writes_event_files(tmp_path):
    pytest.importorskip("tensorboardX", reason="tensorboardX is an optional extra")
    log = callbacks.TensorBoardLog(tmp_path / "runs")
    log.batch(1, 2.0, 0.5)
    log.epoch_end(training.EpochStats(1, 2.0, 0.5, 1.5, 0.6, 1.0, 100.0, 1e-3))
    log.close()
    assert [p.name for p in (tmp_path / "runs").iterdir() if p.name.startswith("events.")]


def test_old_histories_with_test_metrics_still_load():
    stats = training.EpochStats.from_dict({"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5,
                                           "test_loss": 0.9, "test_accuracy": 0.6, "seconds": 1.0,
                                           "images_per_second": 10.0, "lr": 0.1})  # fmt: skip
    assert (stats.val_loss, stats.val_accuracy) == (0.9, 0.6)


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
