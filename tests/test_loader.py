"""Tests of cnnarray.data.loader.DataLoader."""

from __future__ import annotations

import numpy as np
import pytest

from cnnarray.backend import available_backends, backend_of
from cnnarray.data import DataLoader, RandomHorizontalFlip

BACKENDS = ["cpu"] + (["cuda"] if "cuda" in available_backends() else [])


def make_data(n: int = 10):
    x = np.arange(n * 2 * 3 * 3, dtype=np.float32).reshape(n, 2, 3, 3)
    y = np.arange(n, dtype=np.int64)
    return x, y


@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last", "sizes"),
    [
        (10, 4, False, [4, 4, 2]),
        (10, 4, True, [4, 4]),
        (8, 4, False, [4, 4]),
        (8, 4, True, [4, 4]),
        (3, 5, False, [3]),
        (3, 5, True, []),
        (0, 2, False, []),
    ],
)
def test_batch_sizes_and_len(n, batch_size, drop_last, sizes):
    x, y = make_data(n)
    loader = DataLoader(x, y, batch_size=batch_size, drop_last=drop_last)
    assert len(loader) == len(sizes)
    assert [len(yb) for _, yb in loader] == sizes


def test_without_shuffle_batches_are_in_order():
    x, y = make_data(10)
    batches = list(DataLoader(x, y, batch_size=3))
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in batches]), x)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in batches]), y)


def test_shuffle_covers_every_sample_once_and_keeps_pairs():
    x, y = make_data(23)
    loader = DataLoader(x, y, batch_size=5, shuffle=True, seed=0)
    seen = []
    for xb, yb in loader:
        np.testing.assert_array_equal(xb, x[yb])
        seen.extend(yb.tolist())
    assert sorted(seen) == list(range(23))
    assert seen != list(range(23))


def test_shuffle_redraws_every_epoch_and_is_reproducible():
    x, y = make_data(50)
    loader = DataLoader(x, y, batch_size=50, shuffle=True, seed=7)
    epochs = [next(iter(loader))[1].tolist() for _ in range(3)]
    assert loader.epoch == 3
    assert epochs[0] != epochs[1] != epochs[2]
    other = DataLoader(x, y, batch_size=50, shuffle=True, seed=7)
    assert [next(iter(other))[1].tolist() for _ in range(3)] == epochs
    different = DataLoader(x, y, batch_size=50, shuffle=True, seed=8)
    assert next(iter(different))[1].tolist() != epochs[0]


def test_epoch_order_does_not_depend_on_earlier_epochs_being_finished():
    x, y = make_data(30)
    full = DataLoader(x, y, batch_size=4, shuffle=True, seed=1)
    list(full)
    second_full = [yb.tolist() for _, yb in full]
    partial = DataLoader(x, y, batch_size=4, shuffle=True, seed=1)
    next(iter(partial))  # abandon epoch 0 after one batch
    assert [yb.tolist() for _, yb in partial] == second_full


def test_setting_epoch_replays_it():
    x, y = make_data(20)
    loader = DataLoader(x, y, batch_size=20, shuffle=True, seed=3)
    first = [yb.tolist() for _, yb in loader]
    list(loader)
    loader.epoch = 0
    assert [yb.tolist() for _, yb in loader] == first


def test_seed_none_still_shuffles():
    x, y = make_data(40)
    loader = DataLoader(x, y, batch_size=40, shuffle=True)
    assert sorted(next(iter(loader))[1].tolist()) == list(range(40))


@pytest.mark.parametrize("backend", BACKENDS)
def test_batches_go_to_the_backend(backend):
    x, y = make_data(6)
    loader = DataLoader(x, y, batch_size=4, backend=backend)
    for xb, yb in loader:
        assert backend_of(xb).name == backend and backend_of(yb).name == backend
        assert xb.dtype == np.float32 and yb.dtype == np.int64


def test_no_backend_leaves_numpy_arrays():
    x, y = make_data(6)
    xb, yb = next(iter(DataLoader(x, y, batch_size=4)))
    assert isinstance(xb, np.ndarray) and isinstance(yb, np.ndarray)


def test_lists_are_accepted():
    loader = DataLoader([[1.0], [2.0], [3.0]], [0, 1, 0], batch_size=2)
    assert [yb.tolist() for _, yb in loader] == [[0, 1], [0]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_transform_runs_on_the_batch_device_with_a_seeded_rng(backend):
    x, y = make_data(12)
    calls = []

    def record(xb, rng):
        calls.append(backend_of(xb).name)
        return xb + rng.random()

    a = [xb for xb, _ in DataLoader(x, y, batch_size=5, seed=4, backend=backend, transform=record)]
    b = [xb for xb, _ in DataLoader(x, y, batch_size=5, seed=4, backend=backend, transform=record)]
    assert calls == [backend] * 6
    for xa, xb in zip(a, b, strict=True):
        assert not np.array_equal(np.asarray(xa.tolist()), x[: len(xa)])
        np.testing.assert_array_equal(np.asarray(xa.tolist()), np.asarray(xb.tolist()))


def test_transform_with_augmentation_keeps_labels():
    x, y = make_data(8)
    loader = DataLoader(x, y, batch_size=8, seed=0, transform=RandomHorizontalFlip(p=1.0))
    xb, yb = next(iter(loader))
    np.testing.assert_array_equal(xb, x[..., ::-1])
    np.testing.assert_array_equal(yb, y)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"batch_size": 0}, ValueError, r"batch_size must be a positive int, got 0"),
        ({"batch_size": -3}, ValueError, r"batch_size.*got -3"),
        ({"batch_size": 2.0}, TypeError, r"batch_size.*got 2\.0 \(float\)"),
        ({"batch_size": True}, TypeError, r"batch_size.*got True \(bool\)"),
        ({"shuffle": "yes"}, TypeError, r"shuffle must be a bool, got 'yes' \(str\)"),
        ({"drop_last": 1}, TypeError, r"drop_last must be a bool, got 1 \(int\)"),
        ({"seed": -1}, ValueError, r"seed.*got -1"),
        ({"seed": 1.5}, TypeError, r"seed.*float"),
        ({"transform": "flip"}, TypeError, r"transform must be a callable"),
        ({"backend": "tpu"}, ValueError, r"backend"),
    ],
)
def test_bad_arguments(kwargs, error, pattern):
    x, y = make_data(4)
    with pytest.raises(error, match=pattern):
        DataLoader(x, y, **kwargs)


def test_length_mismatch_names_both_lengths():
    x, y = make_data(4)
    with pytest.raises(ValueError, match=r"len\(x\)=4 and len\(y\)=3"):
        DataLoader(x, y[:3])


def test_scalar_inputs_are_rejected():
    with pytest.raises(ValueError, match="leading sample axis"):
        DataLoader(np.float32(1.0), np.int64(0))


def test_repr_mentions_sizes():
    x, y = make_data(10)
    text = repr(DataLoader(x, y, batch_size=4))
    assert "samples=10" in text and "batches=3" in text
