"""The one image reader: a file opened with Pillow, as float32 ``(C, H, W)`` in ``[0, 1]``.

Image folders (:func:`cnnarray.data.load_image_folder`), the images given to
``cnnarray predict`` and ``visualize``, and the demo's photograph all come
through :func:`read_image`, so every image is converted the same way.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from .._args import check_int

__all__ = ["read_image"]

# Pillow modes with one band: read as grayscale when the caller does not choose
_SINGLE_BAND_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_RESAMPLING = ("nearest", "bilinear", "bicubic", "lanczos")


def read_image(
    path: str | os.PathLike,
    *,
    grayscale: bool | None = None,
    size: tuple[int, int] | None = None,
    square: bool = False,
    resample: str = "bicubic",
) -> np.ndarray:
    """Read an image file as float32 ``(C, H, W)`` with values in ``[0, 1]``.

    The steps, in order: convert to one channel (Pillow mode ``"L"``) or three
    (``"RGB"``), centre-crop to a square when ``square``, resize to ``size``
    when it differs, divide the 8-bit values by 255.

    Parameters
    ----------
    path : str or os.PathLike
        Any file Pillow can open (PNG, JPEG, ...).
    grayscale : bool, optional
        One channel (True) or three (False). Default: one for images with a
        single band (modes ``"1"``, ``"L"``, ``"I"``, ``"F"``, ...), else three.
    size : (int, int), optional
        Target ``(height, width)``. Default: the image's own size.
    square : bool, default False
        Centre-crop to the largest square first (the longer side loses equal
        margins, the extra pixel of an odd difference at the end).
    resample : {"bicubic", "bilinear", "nearest", "lanczos"}
        Pillow's filter for the resize.

    Returns
    -------
    numpy.ndarray, shape (1 or 3, H, W), float32

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If Pillow cannot read the file as an image (unknown format,
        truncated, more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``, ...); the
        message names the file and Pillow's reason.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> path = f"{tempfile.mkdtemp()}/gray.png"
    >>> Image.fromarray(np.full((4, 6), 255, np.uint8)).save(path)
    >>> read_image(path, size=(2, 3)).shape, float(read_image(path).max())
    ((1, 2, 3), 1.0)
    """
    from PIL import Image

    if resample not in _RESAMPLING:
        raise ValueError(f"resample must be one of {_RESAMPLING}, got {resample!r}")
    if size is not None:
        size = (check_int(size[0], "size[0]", minimum=1), check_int(size[1], "size[1]", minimum=1))
    try:
        with Image.open(path) as img:
            img.load()
            if grayscale is None:
                grayscale = img.mode in _SINGLE_BAND_MODES
            img = img.convert("L" if grayscale else "RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except Image.DecompressionBombError as exc:  # not an OSError: Pillow's size limit
        raise ValueError(f"{path} is too large to read safely: {exc}") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        # UnidentifiedImageError is an OSError; Pillow's decoders report a broken file
        # (e.g. a PNG chunk with a bad length) as SyntaxError, EOFError or struct.error
        raise ValueError(f"{path} is not a readable image: {exc}") from exc
    if square:
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if size is not None and (img.height, img.width) != size:
        img = img.resize((size[1], size[0]), Image.Resampling[resample.upper()])
    pixels = np.asarray(img, dtype=np.float32) / 255.0
    # (H, W) for "L", (H, W, 3) for "RGB"
    return pixels[None] if grayscale else pixels.transpose(2, 0, 1)
