"""The seeded synthetic datasets: shapes with per-pixel masks, and waveforms."""

from __future__ import annotations

import numpy as np
import pytest

from cnnarray.data.synthetic import (
    SHAPE_CLASSES,
    SIGNAL_CLASSES,
    load_shapes,
    load_signals,
    make_shapes,
    make_signals,
)


def test_shapes_are_seeded_in_range_and_masks_match_the_bright_pixels():
    x, masks = make_shapes(40, 24, noise=0.0, seed=3)
    assert x.shape == (40, 1, 24, 24) and x.dtype == np.float32
    assert masks.shape == (40, 24, 24) and masks.dtype == np.int64
    assert x.min() >= 0 and x.max() <= 1
    # every class occurs, and every image has some shape on it
    assert set(np.unique(masks)) == set(range(len(SHAPE_CLASSES)))
    assert (masks.reshape(40, -1) > 0).any(axis=1).all()
    # without noise, shapes (brightness >= 0.5) and background (<= 0.3) split at 0.4
    np.testing.assert_array_equal(x[:, 0] > 0.4, masks > 0)
    again = make_shapes(40, 24, noise=0.0, seed=3)
    np.testing.assert_array_equal(again[0], x)
    np.testing.assert_array_equal(again[1], masks)
    assert not np.array_equal(make_shapes(40, 24, seed=4)[1], masks)


def test_each_shape_has_its_geometry():
    # one shape per image, no noise: a rectangle fills its bounding box, a circle about pi/4
    # of it, a triangle half
    x, masks = make_shapes(60, 32, max_shapes=1, noise=0.0, seed=0)
    fill = {1: [], 2: [], 3: []}
    for mask in masks:
        kind = int(mask.max())
        rows, cols = np.nonzero(mask)
        box = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        fill[kind].append(len(rows) / box)
    assert np.all(np.array(fill[2]) == 1.0)
    assert 0.7 < np.mean(fill[1]) < 0.85
    assert 0.45 < np.mean(fill[3]) < 0.65


def test_signals_are_balanced_seeded_and_tell_their_class():
    x, y = make_signals(200, 64, noise=0.0, seed=2)
    assert x.shape == (200, 1, 64) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [50] * len(SIGNAL_CLASSES)
    np.testing.assert_array_equal(make_signals(200, 64, noise=0.0, seed=2)[0], x)
    peak = np.abs(x[:, 0]).max(axis=1)
    assert np.all((peak > 0.45) & (peak <= 1.0 + 1e-6))
    # a noiseless square wave takes two values only: +-amplitude
    for signal in x[y == 1, 0]:
        np.testing.assert_allclose(np.abs(signal), np.abs(signal[0]), rtol=1e-6)
    # a chirp crosses zero more often in its second half than in its first
    crossings = np.abs(np.diff(np.sign(x[y == 3, 0]), axis=1)) > 0
    assert np.all(crossings[:, 32:].sum(axis=1) > crossings[:, :31].sum(axis=1))


def test_loaders_give_splits_from_separate_seeds():
    shapes = load_shapes(8, 4, 16, seed=1)
    assert shapes.name == "shapes" and shapes.classes == SHAPE_CLASSES
    assert shapes.y_train.shape == (8, 16, 16) and shapes.x_test.shape == (4, 1, 16, 16)
    np.testing.assert_array_equal(shapes.x_test, make_shapes(4, 16, seed=2)[0])
    signals = load_signals(8, 4, 32)
    assert signals.name == "signals" and signals.num_classes == 4
    assert signals.x_train.shape == (8, 1, 32) and signals.y_test.shape == (4,)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_shapes(0), "n must be"),
        (lambda: make_shapes(4, 4), "size must be"),
        (lambda: make_shapes(4, noise=-1), "noise must be"),
        (lambda: make_signals(4, 8), "length must be"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
