"""Pictures of what a trained CNN learned: first-layer filters and activation maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import nn
from .backend import Backend, to_numpy
from .io import atomic_write_bytes


def layers_in_order(model: nn.Module) -> list[nn.Module]:
    """The layers a Sequential model applies, nested Sequentials expanded (e.g. vgg_small)."""
    if not isinstance(model, nn.Sequential):
        return [model]
    return [leaf for child in model.children() for leaf in layers_in_order(child)]


def first_conv(model: nn.Module) -> nn.Conv2d:
    """Return the first Conv2d the model applies."""
    for layer in layers_in_order(model):
        if isinstance(layer, nn.Conv2d):
            return layer
    raise ValueError("the model has no Conv2d layer to visualise")


def activations(model: nn.Module, backend: Backend, x: np.ndarray) -> list[tuple[str, Any]]:
    """Run ``x`` (1, C, H, W) through the model in eval mode; return (layer, maps) pairs of
    every layer up to the first pooling layer after the first conv."""
    model.eval()
    out, maps = backend.asarray(x), []
    for layer in layers_in_order(model):
        out = layer(out)
        if out.ndim != 4:
            break
        maps.append((type(layer).__name__, to_numpy(out[0])))
        if isinstance(layer, nn.MaxPool2d | nn.AvgPool2d) and len(maps) > 1:
            break
    return maps


def save_filters_and_maps(model: nn.Module, backend: Backend, x: np.ndarray,
                          path: str | Path, title: str) -> Path:  # fmt: skip
    """Draw the first conv's filters (first input channel, or RGB) and the image's maps.

    The file's format follows its suffix (``.png``, ``.jpg``, ``.pdf``, ...).
    """
    from .plots import figure_bytes, figure_format, filters_and_maps

    fmt = figure_format(path)  # before any work: a bad suffix costs nothing
    weights = to_numpy(first_conv(model).weight.data)  # (C_out, C_in, kh, kw)
    fig = filters_and_maps(x[0], weights, activations(model, backend, x), title)
    atomic_write_bytes(path, figure_bytes(fig, fmt))
    return Path(path)
