"""The tutorial walkthrough on a real photograph: filters, ReLU, pooling.

``cnnarray demo`` loads a grayscale 512x512 image (by default the photograph of
Grace Hopper that matplotlib ships, so nothing is downloaded), applies a bank
of filters (edge detectors and random ones) with a chosen stride, then ReLU,
max pooling and average pooling, and draws input, activation maps and pooled
maps in one PNG grid with their shapes in the titles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import ops
from .backend import Backend, to_numpy
from .data.images import read_image
from .io import atomic_write_bytes

FILTER_NAMES = ("vertical edges (Sobel x)", "horizontal edges (Sobel y)", "Laplacian",
                "random 1", "random 2")  # fmt: skip


def default_image_path() -> Path:
    """Return the path of the sample photograph that matplotlib ships."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def load_grayscale(path: str | Path | None = None, size: int = 512) -> np.ndarray:
    """Load an image as float32 grayscale in [0, 1], centre-cropped and resized to size x size."""
    path = default_image_path() if path is None else path
    return read_image(path, grayscale=True, size=(size, size), square=True)[0]


def filter_bank(seed: int = 0) -> np.ndarray:
    """Return five 3x3 filters, shape (5, 1, 3, 3): Sobel x, Sobel y, Laplacian, two random."""
    sobel_x = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
    laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
    rng = np.random.default_rng(seed)
    random = rng.standard_normal((2, 3, 3)).astype(np.float32) / 3
    return np.stack([sobel_x, sobel_x.T, laplacian, *random])[:, None]


@dataclass
class Stage:
    """One step of the walkthrough: its name, output (NumPy) and time on the device."""

    name: str
    output: np.ndarray
    seconds: float


def run_demo(
    backend: Backend, image: np.ndarray, stride: int = 1, pool: int = 2, seed: int = 0
) -> list[Stage]:
    """Run conv (stride ``stride``) -> ReLU -> max pool and avg pool (``pool`` x ``pool``).

    Parameters
    ----------
    backend : Backend
        Where to compute.
    image : array, shape (H, W)
        Grayscale image.

    Returns
    -------
    list of Stage
        input (1, H, W), conv (F, H', W'), relu, max pool, avg pool, with
        ``H' = floor((H - 3) / stride) + 1`` (no padding).
    """
    filters = backend.asarray(filter_bank(seed))
    x = backend.asarray(image[None])  # (1, H, W): one channel, unbatched
    stages = [Stage("input", image[None], 0.0)]

    def timed(name: str, f: Callable[[], Any]) -> Any:
        f()  # warm-up: kernel compilation on CUDA, page faults on the CPU
        backend.synchronize()
        start = time.perf_counter()
        out = f()
        backend.synchronize()
        stages.append(Stage(name, to_numpy(out), time.perf_counter() - start))
        return out

    y = timed(f"conv 3x3, stride {stride}", lambda: ops.conv2d(x, filters, stride=stride))
    a = timed("ReLU", lambda: ops.relu(y))
    timed(f"max pool {pool}x{pool}", lambda: ops.max_pool2d(a, pool))
    timed(f"avg pool {pool}x{pool}", lambda: ops.avg_pool2d(a, pool))
    return stages


def save_grid(stages: list[Stage], path: str | Path) -> Path:
    """Draw every stage's maps as one PNG: a row per stage, a column per filter."""
    from .plots import demo_grid, png_bytes

    atomic_write_bytes(path, png_bytes(demo_grid(stages, FILTER_NAMES), dpi=80))
    return Path(path)
