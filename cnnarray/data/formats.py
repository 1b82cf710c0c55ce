"""The dataset file formats, parsed byte by byte against their documented layouts.

MNIST-style IDX files and the records of CIFAR-10's binary version are read
here, never unpickled; a file whose content does not match its format raises
:class:`DatasetError` naming the file and what is wrong with it.
:mod:`cnnarray.data.datasets` assembles them into splits.

Every reader is bounded by what the file declares: the header (or, for
CIFAR-10, the file size) gives the number of data bytes, which is checked
against :data:`MAX_DATA_BYTES` and against the file before exactly that many
bytes are read; a ``.gz`` file, whose decompressed size is only known once
read, is first checked against the most its compressed size can inflate to
(:data:`DEFLATE_MAX_RATIO`), then decompressed as a stream in chunks of
:data:`READ_CHUNK` bytes, never past the declared size plus one byte, so
neither a header that declares more than the stream holds nor a small file
that inflates to gigabytes makes an allocation larger than the data read.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .._args import check_int

__all__ = ["DEFLATE_MAX_RATIO", "MAX_DATA_BYTES", "READ_CHUNK", "DatasetError", "read_idx"]

PathLike = str | os.PathLike

#: Most data bytes (after decompression) one dataset file may declare: 1 GiB. The images become
#: float32, four times as large, so this keeps one file's share of memory near 4 GiB. MNIST's
#: largest file holds 47 MB, CIFAR-10's 31 MB. Raise it here or per call (``max_bytes=``).
MAX_DATA_BYTES = 2**30
#: Most bytes a DEFLATE stream inflates to per compressed byte (zlib's documented limit,
#: 1032:1, reached by long runs of one byte), so a ``.gz`` file of ``S`` bytes holds at most
#: ``DEFLATE_MAX_RATIO * S`` bytes, whatever its members.
DEFLATE_MAX_RATIO = 1032
#: Bytes decompressed at a time from a ``.gz`` file: its data grows by at most this much
#: beyond what the stream really held.
READ_CHUNK = 16 * 2**20


class DatasetError(ValueError):
    """A dataset file or folder exists but its content is not what was expected."""


def check_labels(labels: np.ndarray, num_classes: int, source: object) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise DatasetError(
            f"{source}: labels must be in 0..{num_classes - 1}, found {int(bad[0])} "
            f"({bad.size} label(s) out of range)"
        )


def _byte_limit(max_bytes: int | None) -> int:
    if max_bytes is None:
        return MAX_DATA_BYTES
    return check_int(max_bytes, "max_bytes", minimum=0)


def _size(n: int) -> str:
    """``n`` bytes, with its size in KiB/MiB/GiB/... when that is shorter to read."""
    if n < 1024:
        return f"{n} bytes"
    unit = min((n.bit_length() - 1) // 10, 6)  # 1 for KiB, 2 for MiB, ...
    return f"{n} bytes ({n / 1024**unit:.1f} {'KMGTPE'[unit - 1]}iB)"


def _over_limit(path: Path, what: str, declared: int, limit: int) -> DatasetError:
    return DatasetError(
        f"{path}: {what} declares {_size(declared)} of data, over the limit of {_size(limit)} "
        f"(cnnarray.data.formats.MAX_DATA_BYTES, or max_bytes=)"
    )


def _read_chunked(f: BinaryIO, count: int) -> np.ndarray:
    """Read up to ``count`` bytes of a stream of unknown length, ``READ_CHUNK`` at a time.

    Memory grows with what the stream yields, not with ``count``: a header that declares
    a gigabyte over a stream of a kilobyte allocates a kilobyte.
    """
    data = bytearray()
    while len(data) < count:
        chunk = f.read(min(READ_CHUNK, count - len(data)))
        if not chunk:
            break
        data += chunk
    return np.frombuffer(data, dtype=np.uint8)  # writable: a bytearray's memory


def _read_into(f: BinaryIO, count: int) -> np.ndarray:
    """Read up to ``count`` bytes of ``f`` into a new uint8 array; shorter only at end of file."""
    out = np.empty(count, dtype=np.uint8)
    view = memoryview(out)
    filled = 0
    while filled < count:
        got = f.readinto(view[filled:])
        if not got:
            break
        filled += got
    return out[:filled]


# ---------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)

_IDX_UBYTE = 0x00000800  # magic of an unsigned-byte IDX file, plus its number of dimensions


def read_idx(
    path: PathLike, ndim: int | None = None, *, max_bytes: int | None = None
) -> np.ndarray:
    """Read an IDX file of unsigned bytes, as used by MNIST and Fashion-MNIST.

    The layout is a 4-byte magic number ``0x0000 0x08 ndim`` (0x08 means
    unsigned byte), then ``ndim`` big-endian uint32 dimensions, then the data
    in C order. A name ending in ``.gz`` is decompressed as a stream. Only the
    bytes the header declares are read (after checking them against
    ``max_bytes`` and the file), and one more to detect trailing data.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    ndim : int, optional
        Expected number of dimensions: 1 for labels (magic 0x00000801), 3 for
        images (magic 0x00000803). None accepts any unsigned-byte IDX file.
    max_bytes : int, optional
        Most data bytes the header may declare (after decompression).
        Default: :data:`MAX_DATA_BYTES` (1 GiB).

    Returns
    -------
    numpy.ndarray, uint8
        Array of the shape given in the header.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    DatasetError
        If the magic number is wrong, the header declares more than
        ``max_bytes``, or the data size does not match the header; the
        message names the file.
    """
    path = Path(path)
    limit = _byte_limit(max_bytes)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    if path.suffix != ".gz":
        with open(path, "rb") as f:
            return _read_idx_stream(f, path, ndim, limit, path.stat().st_size)
    try:
        with gzip.open(path, "rb") as f:
            return _read_idx_stream(f, path, ndim, limit, None, path.stat().st_size)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: not a valid gzip file ({exc})") from exc


def _read_idx_stream(
    f: BinaryIO,
    path: Path,
    ndim: int | None,
    limit: int,
    file_size: int | None,
    gz_size: int | None = None,
) -> np.ndarray:
    """Parse an IDX stream; ``file_size`` is the byte count of an uncompressed file, else None;
    ``gz_size`` that of a compressed one."""
    head = f.read(4)
    if len(head) < 4:
        raise DatasetError(f"{path}: file too short for an IDX header ({len(head)} bytes)")
    magic = int.from_bytes(head, "big")
    dims_count = head[3]
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
    dims = f.read(4 * dims_count)
    if len(dims) < 4 * dims_count:
        raise DatasetError(
            f"{path}: truncated header: {dims_count} dimension(s) need {header_size} bytes, "
            f"the file has {4 + len(dims)}"
        )
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(dims_count))
    expected = math.prod(shape)  # a Python int: no overflow, whatever the header says
    if expected > limit:
        raise _over_limit(path, f"the header's shape {shape}", expected, limit)
    if file_size is not None and file_size - header_size < expected:
        raise DatasetError(
            f"{path}: truncated data: header says shape {shape} ({_size(expected)}) "
            f"but only {_size(file_size - header_size)} follow"
        )
    if gz_size is not None and header_size + expected > DEFLATE_MAX_RATIO * gz_size:
        raise DatasetError(
            f"{path}: truncated data: header says shape {shape} ({_size(expected)}) but a "
            f"gzip file of {_size(gz_size)} inflates to at most "
            f"{_size(DEFLATE_MAX_RATIO * gz_size)}"
        )
    data = _read_into(f, expected) if file_size is not None else _read_chunked(f, expected)
    if len(data) < expected:
        raise DatasetError(
            f"{path}: truncated data: header says shape {shape} ({_size(expected)}) "
            f"but only {_size(len(data))} follow"
        )
    if f.read(1):
        # the rest is not read: a compressed file may inflate without end
        extra = "" if file_size is None else f"{file_size - header_size - expected} "
        raise DatasetError(
            f"{path}: {extra}unexpected trailing bytes after the {expected} bytes of shape {shape}"
        )
    return data.reshape(shape)


# ---------------------------------------------------------------------------
# CIFAR-10 (binary version)

CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then 3 x 32 x 32 pixel bytes (CHW)


def read_cifar_batch(
    path: Path, num_classes: int, *, max_bytes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch: (N, 3, 32, 32) uint8 pixels and int64 labels.

    The file has no header: its size, checked against ``max_bytes`` (default
    :data:`MAX_DATA_BYTES`) before any byte is read, declares the records.
    """
    limit = _byte_limit(max_bytes)
    size = path.stat().st_size
    if size == 0 or size % CIFAR_RECORD:
        raise DatasetError(
            f"{path}: size {size} bytes is not a positive multiple of the "
            f"{CIFAR_RECORD}-byte CIFAR-10 record (1 label byte + 3072 pixel bytes)"
        )
    if size > limit:
        raise _over_limit(path, f"its size ({size // CIFAR_RECORD} records)", size, limit)
    with open(path, "rb") as f:
        data = _read_into(f, size)
        changed = len(data) < size or f.read(1)
    if changed:
        raise DatasetError(f"{path}: the file changed size while it was read ({size} bytes before)")
    records = data.reshape(-1, CIFAR_RECORD)
    labels = records[:, 0]
    check_labels(labels, num_classes, path)
    return records[:, 1:].reshape(-1, 3, 32, 32), labels.astype(np.int64)  # pixels are CHW
