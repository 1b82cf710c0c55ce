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
from ._args import check_int
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


def check_sizes(image_shape: tuple[int, int], stride: int, pool: int) -> tuple[int, int]:
    """Check that ``stride`` and ``pool`` leave maps to pool; return the conv's (H', W').

    Raises
    ------
    ValueError
        Naming the stride or pool at fault and the largest value that fits.
    """
    stride = check_int(stride, "stride", minimum=1)
    pool = check_int(pool, "pool", minimum=1)
    h, w = image_shape
    if min(h, w) < 3:
        raise ValueError(f"the image must be at least 3x3 for the 3x3 filters, got {h}x{w}")
    out_h, out_w = (h - 3) // stride + 1, (w - 3) // stride + 1
    side = min(out_h, out_w)
    if pool <= side:
        return out_h, out_w
    largest_pool = (min(h, w) - 3) + 1  # the conv's output with stride 1
    if pool > largest_pool:
        raise ValueError(f"pool {pool} is larger than the {out_h}x{out_w} maps the 3x3 conv "
                         f"with stride {stride} leaves of the {h}x{w} image: expected a pool "
                         f"of at most {side}")  # fmt: skip
    largest_stride = (min(h, w) - 3) // (pool - 1)
    raise ValueError(f"stride {stride} leaves {out_h}x{out_w} maps of the {h}x{w} image, "
                     f"smaller than the {pool}x{pool} pool: expected a stride of at most "
                     f"{largest_stride} with pool {pool}, or a pool of at most {side}")  # fmt: skip


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
    check_sizes(image.shape, stride, pool)
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
    """Draw every stage's maps in one image (format by suffix, e.g. PNG): a row per stage,
    a column per filter."""
    from .plots import demo_grid, figure_bytes, figure_format

    fmt = figure_format(path)
    atomic_write_bytes(path, figure_bytes(demo_grid(stages, FILTER_NAMES), fmt, dpi=80))
    return Path(path)
