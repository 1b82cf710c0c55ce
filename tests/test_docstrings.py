"""The examples in the docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "cnnarray.backend",
    "cnnarray.bench",
    "cnnarray.data.augment",
    "cnnarray.data.datasets",
    "cnnarray.data.loader",
    "cnnarray.io",
    "cnnarray.nn",
    "cnnarray.nn.container",
    "cnnarray.nn.models",
    "cnnarray.nn.module",
    "cnnarray.ops.conv",
    "cnnarray.optim",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
    assert result.attempted > 0, f"{name} has no examples: drop it from MODULES"
