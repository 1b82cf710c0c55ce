"""Pictures of what a trained CNN learned: first-layer filters and activation maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import nn
from .backend import Backend, to_numpy
from .io import save_figure


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
    """Draw the first conv's filters (first input channel, or RGB) and the image's maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conv = first_conv(model)
    weights = to_numpy(conv.weight.data)  # (C_out, C_in, kh, kw)
    maps = activations(model, backend, x)
    n = min(weights.shape[0], 16)  # a readable grid: the first 16 filters and maps
    rows = 2 + len(maps)
    fig, axes = plt.subplots(rows, n + 1, figsize=(1.6 * (n + 1), 1.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    image = x[0]
    axes[0, 0].imshow(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0),
                      cmap="gray")  # fmt: skip
    axes[0, 0].set_title(f"input {tuple(image.shape)}", fontsize=7)
    for k in range(n):
        w = weights[k]
        if w.shape[0] == 3:
            w = (w - w.min()) / (np.ptp(w) + 1e-12)
            axes[1, k + 1].imshow(w.transpose(1, 2, 0))
        else:
            axes[1, k + 1].imshow(w[0], cmap="bwr", vmin=-abs(w).max(), vmax=abs(w).max())
        axes[1, k + 1].set_title(f"filter {k}\n{tuple(w.shape)}", fontsize=7)
    axes[1, 0].text(0.5, 0.5, f"conv1 filters\n{tuple(weights.shape)}", ha="center",
                    va="center", fontsize=8)  # fmt: skip
    for r, (name, m) in enumerate(maps, start=2):
        axes[r, 0].text(0.5, 0.5, f"{name}\n{tuple(m.shape)}", ha="center", va="center",
                        fontsize=8)  # fmt: skip
        for k in range(min(n, m.shape[0])):
            axes[r, k + 1].imshow(m[k], cmap="viridis")
            axes[r, k + 1].set_title(f"map {k} {tuple(m[k].shape)}", fontsize=6)
    fig.suptitle(f"first-layer filters and activation maps of {title}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
