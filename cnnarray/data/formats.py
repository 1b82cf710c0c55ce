"""The dataset file formats, parsed byte by byte against their documented layouts.

MNIST-style IDX files and the records of CIFAR-10's binary version are read
here, never unpickled; a file whose content does not match its format raises
:class:`DatasetError` naming the file and what is wrong with it.
:mod:`cnnarray.data.datasets` assembles them into splits.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DatasetError", "read_idx"]

PathLike = str | os.PathLike


class DatasetError(ValueError):
    """A dataset file or folder exists but its content is not what was expected."""


def check_labels(labels: np.ndarray, num_classes: int, source: object) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise DatasetError(
            f"{source}: labels must be in 0..{num_classes - 1}, found {int(bad[0])} "
            f"({bad.size} label(s) out of range)"
        )


# ---------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)

_IDX_UBYTE = 0x00000800  # magic of an unsigned-byte IDX file, plus its number of dimensions


def _read_bytes(path: Path) -> bytes:
    """Read a file, decompressing it when its name ends in ``.gz``."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: not a valid gzip file ({exc})") from exc


def read_idx(path: PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes, as used by MNIST and Fashion-MNIST.

    The layout is a 4-byte magic number ``0x0000 0x08 ndim`` (0x08 means
    unsigned byte), then ``ndim`` big-endian uint32 dimensions, then the data
    in C order. A name ending in ``.gz`` is decompressed first.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    ndim : int, optional
        Expected number of dimensions: 1 for labels (magic 0x00000801), 3 for
        images (magic 0x00000803). None accepts any unsigned-byte IDX file.

    Returns
    -------
    numpy.ndarray, uint8
        Array of the shape given in the header.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    DatasetError
        If the magic number is wrong or the data size does not match the header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"{path}: file too short for an IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    dims_count = data[3]
    if ndim is not None and magic != _IDX_UBYTE | ndim:
        raise DatasetError(
            f"{path}: wrong magic number 0x{magic:08X}, expected 0x{_IDX_UBYTE | ndim:08X} "
            f"(unsigned-byte IDX with {ndim} dimension(s))"
        )
    if ndim is None and (magic & 0xFFFFFF00 != _IDX_UBYTE or dims_count == 0):
        raise DatasetError(
            f"{path}: wrong magic number 0x{magic:08X}, expected 0x000008NN "
            f"(unsigned-byte IDX with NN dimensions)"
        )
    header_size = 4 + 4 * dims_count
    if len(data) < header_size:
        raise DatasetError(
            f"{path}: truncated header: {dims_count} dimension(s) need {header_size} bytes, "
            f"the file has {len(data)}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims_count))
    expected = int(np.prod(shape, dtype=np.int64))
    actual = len(data) - header_size
    if actual < expected:
        raise DatasetError(
            f"{path}: truncated data: header says shape {shape} ({expected} bytes) "
            f"but only {actual} bytes follow"
        )
    if actual > expected:
        raise DatasetError(
            f"{path}: {actual - expected} unexpected trailing bytes after the "
            f"{expected} bytes of shape {shape}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


# ---------------------------------------------------------------------------
# CIFAR-10 (binary version)

CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then 3 x 32 x 32 pixel bytes (CHW)


def read_cifar_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch: (N, 3, 32, 32) uint8 pixels and int64 labels."""
    data = path.read_bytes()
    if len(data) == 0 or len(data) % CIFAR_RECORD:
        raise DatasetError(
            f"{path}: size {len(data)} bytes is not a positive multiple of the "
            f"{CIFAR_RECORD}-byte CIFAR-10 record (1 label byte + 3072 pixel bytes)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0]
    check_labels(labels, num_classes, path)
    return records[:, 1:].reshape(-1, 3, 32, 32), labels.astype(np.int64)  # pixels are CHW
