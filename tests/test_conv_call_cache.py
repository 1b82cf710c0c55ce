"""conv2d remembers the checks a call passed (a layer makes the same call every step):
a remembered call must give what a fresh one gives, and an invalid one raise every time."""

from __future__ import annotations

import numpy as np
import pytest

import cnnarray
from cnnarray.ops import _conv_geometry, _conv_plan


def test_an_invalid_call_raises_every_time():
    x, w = np.ones((2, 4, 6, 6), np.float32), np.ones((6, 2, 3, 3), np.float32)
    for _ in range(2):
        with pytest.raises(ValueError, match="groups=4 must divide"):
            cnnarray.conv2d(x, w, groups=4)
    for _ in range(2):  # a bool is not an int, though True == 1 and hash(True) == hash(1)
        with pytest.raises(TypeError, match="stride"):
            cnnarray.conv2d(x, w[:, :2].repeat(2, axis=1), stride=True)


def test_a_remembered_geometry_is_the_fresh_one():
    x, w = np.ones((2, 3, 9, 7), np.float32), np.ones((4, 3, 3, 2), np.float32)
    args = (x, w, None, (2, 1), "valid", 1, 1)
    first = _conv_geometry.geometry(*args)
    _conv_geometry._GEOMETRIES.clear()
    assert _conv_geometry.geometry(*args) == first
    assert _conv_geometry.geometry(*args) is _conv_geometry.geometry(*args)


def test_a_lower_workspace_limit_is_checked_again():
    # the padding check passed under the default limit; under a lower one it must refuse
    x, w = np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32)
    cnnarray.conv2d(x, w, padding=500)  # about 44 MB of buffers, under the default limit
    before = cnnarray.get_workspace_limit()
    try:
        cnnarray.set_workspace_limit(_conv_plan.PADDING_MIN_REFUSED)
        with pytest.raises(ValueError, match="padding"):
            cnnarray.conv2d(x, w, padding=500)
    finally:
        cnnarray.set_workspace_limit(before)
