"""Make a user's image look like the training data, and say when it still does not.

A model only knows the images it was trained on: the bundled digits and MNIST
are light ink on a dark background, centred by mass, filling a known part of
the frame. At training time :func:`describe_inputs` measures these facts (size,
channels, value range, per-channel mean and std, the polarity of the ink, how
much of the frame a glyph fills, where it is centred) and an intensity
histogram with the spread of its distance over the training images; the record
is saved in the checkpoint's spec under ``"preprocess"``. At prediction time
:func:`prepare` applies the same conventions to any image (grayscale, inversion
of dark-on-light drawings, contrast stretch, crop, resize with the aspect kept,
padding, centring by mass), and :func:`out_of_distribution` says why a
prediction should not be trusted (an intensity histogram far from the training
data's, or a low top probability) instead of printing a silent 99 %.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from .images import read_image

__all__ = [
    "MIN_CONFIDENCE",
    "RECORD_FIELDS",
    "describe_inputs",
    "histogram_distance",
    "input_png",
    "load_for_model",
    "out_of_distribution",
    "prediction",
    "prepare",
]

VERSION = 1
# The fields of a record that prepare() reads: every record describe_inputs writes has them,
# so a record without one is damaged, not old (a checkpoint from before records has none).
RECORD_FIELDS = ("size", "channels", "layout", "ink", "fill", "centre")
BINS = 10
# below this top-class probability a prediction is reported as a guess
MIN_CONFIDENCE = 0.5
# a pixel brighter than this (in ink space, background 0, ink 1) is part of the glyph
_INK = 0.2
# training images whose borders are this uniform are glyphs on a plain background
_UNIFORM_BORDER = 0.6
_SAMPLE = 2000


def _border(x: np.ndarray) -> np.ndarray:
    """The pixels on the frame of ``x`` of shape ``(..., H, W)``, shape ``(..., 2H + 2W)``."""
    return np.concatenate([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], axis=-1)


def _histograms(x: np.ndarray) -> np.ndarray:
    """Fraction of the pixels of each image in BINS equal bins over [0, 1]; ``(N, BINS)``."""
    flat = np.clip(x.reshape(len(x), -1), 0.0, 1.0)
    index = np.minimum((flat * BINS).astype(np.int64), BINS - 1)
    counts = np.stack([np.bincount(row, minlength=BINS) for row in index])
    return counts / flat.shape[1]


def _centre_of_mass(g: np.ndarray) -> tuple[float, float]:
    """``(row, column)`` of the intensity-weighted centre of ``g`` of shape ``(H, W)``."""
    total = float(g.sum())
    if total <= 0:
        return (g.shape[0] - 1) / 2, (g.shape[1] - 1) / 2
    rows, cols = np.indices(g.shape)
    return float((g * rows).sum()) / total, float((g * cols).sum()) / total


def describe_inputs(x_train: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """Measure what a model's training images look like, for :func:`prepare` to copy.

    Parameters
    ----------
    x_train : numpy.ndarray, shape (N, C, H, W), float32 in [0, 1]
        The training images (at most 2000 of them, drawn with ``seed``, are measured).
    seed : int, default 0
        Seed of that sample.

    Returns
    -------
    dict
        JSON-able: ``size`` [H, W], ``channels``, ``range`` [0, 1], per-channel
        ``mean`` and ``std``, ``layout`` ("glyph": one channel on a plain
        background, else "natural"), ``ink`` ("light-on-dark", "dark-on-light"
        or None), ``fill`` (median longer side of a glyph's box over the frame),
        ``centre`` ("mass" or "frame"), ``histogram`` (mean fraction of pixels
        in each of 10 intensity bins) and ``histogram_limit`` (99th percentile
        of :func:`histogram_distance` over the training images).
    """
    x = np.asarray(x_train, dtype=np.float32)
    if len(x) > _SAMPLE:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), _SAMPLE, replace=False))]
    n, channels, height, width = x.shape
    record: dict[str, Any] = {
        "version": VERSION,
        "size": [height, width],
        "channels": channels,
        "range": [0.0, 1.0],
        "mean": [float(v) for v in x.mean(axis=(0, 2, 3))],
        "std": [float(v) for v in x.std(axis=(0, 2, 3))],
        "layout": "natural",
        "ink": None,
        "fill": 1.0,
        "centre": "frame",
    }
    border = _border(x.mean(axis=1))
    background = float(np.median(border))
    if channels == 1 and np.mean(np.abs(border - background) < 0.15) > _UNIFORM_BORDER:
        record["layout"] = "glyph"
        record["ink"] = "light-on-dark" if background < 0.5 else "dark-on-light"
        ink = x[:, 0] if background < 0.5 else 1.0 - x[:, 0]
        mask = ink > _INK
        extent = np.maximum(mask.any(axis=2).sum(axis=1), mask.any(axis=1).sum(axis=1))
        record["fill"] = float(np.median(extent[extent > 0]) / max(height, width))
        centres = np.array([_centre_of_mass(g) for g in ink])
        middle = np.array([(height - 1) / 2, (width - 1) / 2])
        # the glyphs sit at the frame's centre by mass (MNIST is made so): copy that
        if np.all(np.abs(centres.mean(axis=0) - middle) < 0.1 * np.array([height, width])):
            record["centre"] = "mass"
    histograms = _histograms(x)
    record["histogram"] = [float(v) for v in histograms.mean(axis=0)]
    distances = 0.5 * np.abs(histograms - histograms.mean(axis=0)).sum(axis=1)
    record["histogram_limit"] = float(np.quantile(distances, 0.99))
    return record


def histogram_distance(x: np.ndarray, record: dict[str, Any]) -> float:
    """Total-variation distance (0 to 1) of the intensities of ``x`` ``(C, H, W)`` from training."""
    return float(0.5 * np.abs(_histograms(x[None])[0] - np.asarray(record["histogram"])).sum())


def prepare(image: np.ndarray, record: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """Convert one image to what the model was trained on, as :func:`describe_inputs` recorded.

    Glyph data (one channel on a plain background): the background is the
    median of the image's frame; an image whose background is on the other
    side of 0.5 from the training data's is inverted (a digit drawn in dark
    ink on white paper, for a model trained on MNIST); the contrast is
    stretched so that the background is 0 and the brightest ink 1; the ink's
    bounding box is cropped, resized with its aspect kept so that its longer
    side fills ``fill`` of the frame, and placed with its centre of mass (or
    its box) at the centre. Natural images: resized with the aspect kept to
    fit the frame and padded with the mean colour of their border.

    Parameters
    ----------
    image : numpy.ndarray, shape (C, H, W), float32 in [0, 1]
        With ``C == record["channels"]``, at any size.
    record : dict
        The checkpoint's ``spec["preprocess"]``.

    Returns
    -------
    x : numpy.ndarray, shape (C, h, w), float32 in [0, 1]
        ``(h, w) == record["size"]``.
    steps : list of str
        What was done, in words (e.g. ``"inverted: dark ink on a light background"``).
    """
    height, width = record["size"]
    if record.get("layout") == "glyph":
        return _prepare_glyph(image[0], record)
    background = _border(image).mean(axis=1)
    planes, steps = [], [f"resized to fit {height}x{width} with the aspect kept, padded"]
    scale = min(height / image.shape[1], width / image.shape[2])
    h = max(1, round(image.shape[1] * scale))
    w = max(1, round(image.shape[2] * scale))
    top, left = (height - h) // 2, (width - w) // 2
    for plane, fill in zip(image, background, strict=True):
        canvas = np.full((height, width), fill, np.float32)
        canvas[top : top + h, left : left + w] = _resize(plane, (h, w))
        planes.append(canvas)
    return np.clip(np.stack(planes), 0.0, 1.0), steps


def _resize(g: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``g`` ``(H, W)`` resized to ``size`` (height, width), antialiased (Pillow, float mode)."""
    from PIL import Image

    if g.shape == size:
        return g.astype(np.float32)
    img = Image.fromarray(np.ascontiguousarray(g, dtype=np.float32))
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.BICUBIC), np.float32)


def _prepare_glyph(g: np.ndarray, record: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    height, width = record["size"]
    steps = []
    background = float(np.median(_border(g)))
    light_background = background >= 0.5
    # work in "ink space": background 0, ink 1; turned back at the end for dark-on-light data
    if light_background:
        g, background = 1.0 - g, 1.0 - background
    if light_background != (record["ink"] == "dark-on-light"):
        steps.append(
            "inverted: dark ink on a light background"
            if light_background
            else "inverted: light ink on a dark background"
        )
    peak = float(g.max())
    if peak - background > 1e-3:
        g = np.clip((g - background) / (peak - background), 0.0, 1.0)
        steps.append("contrast stretched to background 0, ink 1")
    rows, cols = np.nonzero(g > _INK)
    canvas = np.zeros((height, width), np.float32)
    if len(rows):
        g = g[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        side = max(1.0, record["fill"] * max(height, width))
        scale = min(side / max(g.shape), height / g.shape[0], width / g.shape[1])
        h = min(height, max(1, round(g.shape[0] * scale)))
        w = min(width, max(1, round(g.shape[1] * scale)))
        glyph = np.clip(_resize(g, (h, w)), 0.0, 1.0)
        # thin strokes come out grey from a large reduction: training glyphs peak at 1
        glyph /= max(float(glyph.max()), 1e-6)
        steps.append(
            f"ink cropped and resized to {h}x{w} (aspect kept), padded to {height}x{width}"
        )
        if record.get("centre") == "mass":
            cy, cx = _centre_of_mass(glyph)
            top = round((height - 1) / 2 - cy)
            left = round((width - 1) / 2 - cx)
            steps.append("centred by mass")
        else:
            top, left = (height - h) // 2, (width - w) // 2
        top, left = min(max(top, 0), height - h), min(max(left, 0), width - w)
        canvas[top : top + h, left : left + w] = glyph
    else:
        steps.append("no ink found: a blank image")
    if record["ink"] == "dark-on-light":
        canvas = 1.0 - canvas
    return canvas[None], steps


def load_for_model(
    path: str | os.PathLike, input_shape: list[int], record: dict[str, Any] | None
) -> tuple[np.ndarray, list[str]]:
    """Read an image file as the model's input ``(C, H, W)``; return it and the steps taken.

    Without a ``record`` (a checkpoint saved before preprocessing was recorded)
    the image is only converted to the model's channels and resized to its
    input size, as before. Raises what :func:`~cnnarray.data.read_image` raises.
    """
    channels, height, width = input_shape
    if record is None:
        x = read_image(path, grayscale=channels == 1, size=(height, width))
        return x, [f"resized to {height}x{width} (no preprocessing record in the checkpoint)"]
    return prepare(read_image(path, grayscale=channels == 1), record)


def out_of_distribution(
    x: np.ndarray, probabilities: np.ndarray, record: dict[str, Any] | None
) -> list[str]:
    """Say why the prediction for input ``x`` ``(C, H, W)`` should not be trusted (or ``[]``).

    Two signs: the top probability is below :data:`MIN_CONFIDENCE`, or the
    intensity histogram of ``x`` is further from the training data's than
    ``histogram_limit`` (99 % of the training images are closer) by half again.
    """
    reasons = []
    top = float(np.max(probabilities))
    if top < MIN_CONFIDENCE:
        reasons.append(f"low confidence ({top:.0%} < {MIN_CONFIDENCE:.0%})")
    if record is not None and "histogram" in record:
        distance = histogram_distance(x, record)
        limit = 1.5 * record["histogram_limit"]
        if distance > limit:
            reasons.append(
                f"intensities unlike the training data's (histogram distance {distance:.2f} "
                f"> {limit:.2f})"
            )
    return reasons


def prediction(
    image: str,
    x: np.ndarray,
    steps: list[str],
    probabilities: np.ndarray,
    classes: list[str],
    top: int,
    record: dict[str, Any] | None,
) -> dict[str, Any]:
    """The JSON-able report of one image's prediction: top classes, doubts, preprocessing.

    Parameters
    ----------
    image : str
        The file's name.
    x : numpy.ndarray, shape (C, H, W)
        The input the model saw.
    steps : list of str
        What :func:`load_for_model` did to the image.
    probabilities : numpy.ndarray, shape (num_classes,)
        The model's softmax output.
    classes : list of str
        Class names.
    top : int
        Number of classes reported, most probable first.
    record : dict or None
        The checkpoint's ``spec["preprocess"]``.
    """
    order = [int(i) for i in np.argsort(-probabilities)[:top]]
    return {
        "image": image,
        "top": [{"class": classes[i], "probability": float(probabilities[i])} for i in order],
        "unreliable": out_of_distribution(x, probabilities, record),
        "preprocessing": steps,
    }


def input_png(x: np.ndarray, *, min_side: int = 128) -> bytes:
    """PNG bytes of the inputs ``x`` ``(N, C, H, W)`` in [0, 1], side by side, pixels enlarged.

    Each image is scaled up by a whole factor (nearest neighbour) to at least
    ``min_side`` pixels, so an 8x8 input stays readable; a 2-pixel gap separates images.
    """
    from PIL import Image

    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    n, channels, height, width = x.shape
    factor = max(1, -(-min_side // max(height, width)))
    tiles = np.repeat(np.repeat(x, factor, axis=2), factor, axis=3)
    gap = 2
    sheet = np.full((channels, height * factor, n * (width * factor + gap) - gap), 0.5, np.float32)
    for i, tile in enumerate(tiles):
        start = i * (width * factor + gap)
        sheet[:, :, start : start + width * factor] = tile
    pixels = np.round(sheet * 255).astype(np.uint8)
    img = Image.fromarray(pixels[0] if channels == 1 else pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()
