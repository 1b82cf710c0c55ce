"""Checkpoints as safetensors files: named tensors plus a JSON spec and metadata.

A checkpoint is an ordinary ``.safetensors`` file, readable by any safetensors
implementation. Its header metadata (a string-to-string map) holds:

``"cnnarray.format"``
    The format version, currently ``"1"``.
``"cnnarray.spec"``
    JSON of the architecture, enough to rebuild the model.
``"cnnarray.metadata"``
    JSON of anything else worth keeping: epoch, metrics, optimiser settings...
``"cnnarray.digest"``
    SHA-256 over the whole header (every metadata entry but this one, every
    tensor's name, dtype and shape) and every tensor's bytes, so that a file
    changed anywhere after saving (one flipped bit in a class name, a spec
    edited to ask for a larger model) is refused. It is required, and it is
    checked before the spec or metadata are parsed and before any tensor is
    allocated. Files written before it existed (with only ``"cnnarray.sha256"``
    over the tensors) are refused unless the caller opts in with
    ``load_checkpoint(path, allow_unsigned=True)``; :func:`upgrade_checkpoint`
    re-saves such a file, once, with the digest.

Reading is bounded: the header may hold at most :data:`MAX_HEADER_BYTES`, JSON
may nest at most :data:`MAX_JSON_DEPTH` deep (checked by a scan before any
parser recurses), and the tensor table must describe exactly the bytes the
file holds, so nothing larger than the file is ever allocated. Every problem
is a :class:`CheckpointError` of one line that names the file.

Nothing here uses pickle: loading a checkpoint never runs code from the file.
Saving is atomic: the file is written under a temporary name in the same
folder, ``.NAME.PID-RANDOM.tmp`` (PID: the writing process), flushed to disk,
then renamed over the target, so a crash leaves either the old checkpoint or
the new one, never half of one. A process killed mid-save (kill -9) leaves its
temporary file behind; the next save to the same target removes such files
once their writer is no longer running and they are a minute old (or, whoever
wrote them, an hour old). Loading never deletes anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import safetensors
import safetensors.numpy

from ._atomic import atomic_write_bytes, check_writable, remove_stale_temps
from .backend import to_numpy

__all__ = [
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "MAX_JSON_DEPTH",
    "CheckpointError",
    "atomic_write_bytes",
    "check_json_depth",
    "check_writable",
    "load_checkpoint",
    "remove_stale_temps",
    "save_checkpoint",
    "upgrade_checkpoint",
]

FORMAT_VERSION = "1"
FORMAT_KEY = "cnnarray.format"
SPEC_KEY = "cnnarray.spec"
METADATA_KEY = "cnnarray.metadata"
DIGEST_KEY = "cnnarray.digest"
#: The tensors-only SHA-256 of files saved before DIGEST_KEY (read with allow_unsigned=True).
LEGACY_DIGEST_KEY = "cnnarray.sha256"

#: Largest header (tensor table plus the JSON spec and metadata) read, in bytes.
MAX_HEADER_BYTES = 16 * 2**20
#: Deepest nesting of JSON arrays and objects read (a model spec needs about 20).
MAX_JSON_DEPTH = 64
# safetensors dtype codes read and written (little-endian, as the format stores them)
_DTYPES = {
    "BOOL": np.dtype("?"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}
_DIGEST_PREFIX = b"cnnarray.digest/1\n"
_CHUNK = 2**20
# a JSON string (escapes included): what a bracket-depth scan must skip
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, or not a cnnarray checkpoint."""


def check_json_depth(text: str | bytes, what: str, *, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise ValueError if the JSON ``text`` nests arrays and objects deeper than ``limit``.

    A scan of the brackets outside strings, run before ``json.loads``, whose
    recursion would otherwise end in RecursionError on deep input.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    codes = np.frombuffer(_JSON_STRING.sub(b'""', data), np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
    steps -= np.isin(codes, (ord("]"), ord("}")))
    depth = int(np.cumsum(steps).max()) if len(steps) else 0
    if depth > limit:
        raise ValueError(f"{what} nests JSON {depth} deep, more than the limit of {limit}")


def _tensor_digest(tensors: Mapping[str, np.ndarray]) -> str:
    """Return the hex SHA-256 of the tensors' names, dtypes, shapes and bytes (legacy files)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        # ascontiguousarray alone would turn a 0-d array into shape (1,)
        array = np.ascontiguousarray(array).reshape(array.shape)
        head = json.dumps([name, array.dtype.name, list(array.shape)])
        digest.update(head.encode())
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def _digest(
    header: Mapping[str, str], table: Mapping[str, tuple[str, list[int]]], data: Iterator[Any]
) -> str:
    """Return the hex SHA-256 of a checkpoint: header entries, tensor table, tensor bytes.

    Parameters
    ----------
    header : dict of str to str
        The header metadata; its DIGEST_KEY entry, if any, is left out.
    table : dict of str to (str, list of int)
        Each tensor's safetensors dtype code and shape.
    data : iterator of bytes-like
        The tensors' bytes, in sorted name order.
    """
    digest = hashlib.sha256(_DIGEST_PREFIX)
    head = {
        "header": {k: v for k, v in header.items() if k != DIGEST_KEY},
        "tensors": {name: [code, list(shape)] for name, (code, shape) in table.items()},
    }
    digest.update(json.dumps(head, sort_keys=True, separators=(",", ":")).encode())
    for chunk in data:
        digest.update(chunk)
    return digest.hexdigest()


def _sign(header: Mapping[str, str], arrays: Mapping[str, np.ndarray]) -> str:
    """Return the digest of a checkpoint about to be written from ``header`` and ``arrays``."""
    table = {name: (_CODES[a.dtype], list(a.shape)) for name, a in arrays.items()}
    data = (arrays[name].reshape(-1).view(np.uint8) for name in sorted(arrays))
    return _digest(header, table, data)


def _to_little_endian(name: str, value: Any) -> np.ndarray:
    try:
        array = to_numpy(value)
    except Exception as exc:
        raise TypeError(f"tensors[{name!r}] must be an array, got {type(value).__name__}") from exc
    if array.dtype.kind not in "biuf" or array.dtype.newbyteorder("<") not in _CODES:
        raise TypeError(
            f"tensors[{name!r}] has dtype {array.dtype}; only bool, integer and "
            f"floating-point tensors can be saved"
        )
    # safetensors stores little-endian data; convert here so the digest sees the same bytes
    # (reshape: ascontiguousarray makes 0-d arrays 1-d; counters such as
    # BatchNorm's num_batches_tracked are 0-d)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).reshape(array.shape)


def _to_json(value: Any, name: str) -> str:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be JSON-serialisable: {exc}") from exc


def save_checkpoint(
    path: PathLike,
    tensors: Mapping[str, Any],
    spec: Mapping[str, Any],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save tensors, an architecture spec and metadata to a safetensors file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Target file (conventionally ``*.safetensors``); its folder must exist.
        An existing file is replaced only once the new one is complete.
    tensors : dict of str to array
        Named NumPy or CuPy arrays (CuPy arrays are copied to the host) of a
        bool, integer or floating-point dtype.
    spec : dict
        JSON-serialisable description of the architecture.
    metadata : dict, optional
        JSON-serialisable training information (epoch, metrics, ...).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    TypeError
        If a tensor is not an array of a supported dtype, or ``spec`` or
        ``metadata`` is not a JSON-serialisable dict.
    FileNotFoundError
        If the folder of ``path`` does not exist.

    See Also
    --------
    load_checkpoint, safetensors.numpy.save

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> file = save_checkpoint(f"{folder}/m.safetensors", {"w": np.ones(3)}, {"layers": []})
    >>> load_checkpoint(file)[1]
    {'layers': []}
    """
    path = Path(path)
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a dict of name -> array, got {type(tensors).__name__}")
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, got {type(name).__name__} {name!r}")
        arrays[name] = _to_little_endian(name, value)
    header = {
        FORMAT_KEY: FORMAT_VERSION,
        SPEC_KEY: _to_json(spec, "spec"),
        METADATA_KEY: _to_json({} if metadata is None else metadata, "metadata"),
    }
    header[DIGEST_KEY] = _sign(header, arrays)
    try:
        data = safetensors.numpy.save(arrays, metadata=header)
    except safetensors.SafetensorError as exc:
        raise TypeError(f"cannot serialise tensors for {path}: {exc}") from exc
    atomic_write_bytes(path, data)
    return path


def _damaged(path: Path, detail: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: not a readable safetensors file (truncated or damaged?): {detail}"
    )


def _read_header(path: Path, f: IO[bytes], size: int) -> dict[str, Any]:
    """Read and parse the safetensors header of the open file ``f`` of ``size`` bytes, bounded."""
    prefix = f.read(8)
    if len(prefix) < 8:
        raise _damaged(path, f"{size} bytes, less than the 8 that give the header's length")
    length = int.from_bytes(prefix, "little")
    if length > MAX_HEADER_BYTES:
        raise _damaged(
            path, f"its header claims {length} bytes, more than the limit of {MAX_HEADER_BYTES}"
        )
    if 8 + length > size:
        raise _damaged(path, f"its header claims {length} bytes but the file has {size}")
    raw = f.read(length)
    try:
        check_json_depth(raw, "the header")
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _damaged(path, f"bad header: {exc}") from exc
    if not isinstance(header, dict):
        raise _damaged(path, f"the header is a JSON {type(header).__name__}, not an object")
    return header


def _is_count(value: Any) -> bool:
    """Whether a parsed JSON value is a non-negative integer (``type`` rules out ``true``)."""
    return type(value) is int and value >= 0


def _tensor_table(
    path: Path, header: dict[str, Any], data_size: int
) -> tuple[dict[str, str], dict[str, tuple[str, list[int], int, int]]]:
    """Check the header; return its metadata and ``name -> (dtype, shape, start, nbytes)``.

    The tensors must tile the ``data_size`` bytes after the header exactly, each
    as long as its dtype and shape say, so that none claims more than the file holds.
    """
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _damaged(path, "'__metadata__' must map strings to strings")
    table, spans = {}, []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _damaged(path, f"tensor {name!r} needs exactly dtype, shape and data_offsets")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if code not in _DTYPES:
            raise _damaged(
                path, f"tensor {name!r} has dtype {code!r}; cnnarray reads {list(_DTYPES)}"
            )
        if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
            raise _damaged(path, f"tensor {name!r} has shape {shape!r}, not a list of sizes")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_count(n) for n in offsets) or offsets[0] > offsets[1]):  # fmt: skip
            raise _damaged(path, f"tensor {name!r} has data_offsets {offsets!r}")
        nbytes = math.prod(shape) * _DTYPES[code].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise _damaged(
                path, f"tensor {name!r} of shape {shape} and dtype {code} takes {nbytes} bytes, "
                f"its offsets {offsets} give {offsets[1] - offsets[0]}"
            )  # fmt: skip
        table[name] = (code, shape, offsets[0], nbytes)
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise _damaged(path, f"tensor {name!r} starts at byte {begin}, expected {end}")
        end = stop
    if end != data_size:
        raise _damaged(path, f"the tensors take {end} bytes of data, the file holds {data_size}")
    return metadata, table


def _chunks(f: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    """Yield the ``length`` bytes of ``f`` from ``start``, a chunk at a time."""
    f.seek(start)
    while length > 0:
        chunk = f.read(min(length, _CHUNK))
        if not chunk:
            raise OSError("the file changed while it was read")
        length -= len(chunk)
        yield chunk


def _read_into(f: IO[bytes], start: int, array: np.ndarray) -> np.ndarray:
    """Fill the new C-contiguous ``array`` with its bytes from ``f`` at ``start``; return it."""
    f.seek(start)
    if array.size and f.readinto(array.reshape(-1).view(np.uint8)) != array.nbytes:
        raise OSError("the file changed while it was read")
    return array


def _parse_json(path: Path, header: Mapping[str, str], key: str) -> dict[str, Any]:
    try:
        check_json_depth(header[key], f"entry {key!r} of the header")
        value = json.loads(header[key])
    except ValueError as exc:  # JSONDecodeError, too deep, an int of too many digits
        raise CheckpointError(
            f"{path}: entry {key!r} of the header is not valid JSON ({exc})"
        ) from exc
    if not isinstance(value, dict):
        raise CheckpointError(
            f"{path}: entry {key!r} of the header must be a JSON object, got {type(value).__name__}"
        )
    return value


def load_checkpoint(
    path: PathLike, *, allow_unsigned: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    In this order: the header is read (at most :data:`MAX_HEADER_BYTES`, JSON
    at most :data:`MAX_JSON_DEPTH` deep) and its tensor table checked against
    the file's size; the digest over header and tensors is checked, reading
    the file in chunks; only then are the spec and metadata parsed and the
    tensors allocated (no more bytes than the file holds).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.safetensors`` file.
    allow_unsigned : bool, default False
        Accept a file without the ``"cnnarray.digest"`` entry (written by an
        older cnnarray; its tensors-only checksum is still checked when
        present). Only for files you trust: nothing then protects the spec
        and metadata. :func:`upgrade_checkpoint` re-saves such a file with
        the digest, after which this is not needed.

    Returns
    -------
    tensors : dict of str to numpy.ndarray
        The saved arrays, on the host, writable.
    spec : dict
        The architecture spec.
    metadata : dict
        The training metadata (empty when none was saved).

    Raises
    ------
    CheckpointError
        If the file is missing, is not a valid safetensors file (truncated,
        damaged header, a header or JSON over the limits), lacks the cnnarray
        spec or the digest, has an unsupported format version or bad JSON,
        or does not match its digest. The message (one line) names the file
        and the problem.

    See Also
    --------
    save_checkpoint, upgrade_checkpoint, safetensors.safe_open
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header = _read_header(path, f, size)
            start = f.tell()
            meta, table = _tensor_table(path, header, size - start)
            _check_identity(path, meta, allow_unsigned)
            if DIGEST_KEY in meta:
                order = sorted(table)
                data = (c for n in order for c in _chunks(f, start + table[n][2], table[n][3]))
                if _digest(meta, {n: t[:2] for n, t in table.items()}, data) != meta[DIGEST_KEY]:
                    raise CheckpointError(
                        f"{path}: header or tensor data do not match the checksum in the header "
                        f"(the file was damaged or modified after saving)"
                    )
            spec = _parse_json(path, meta, SPEC_KEY)
            metadata = _parse_json(path, meta, METADATA_KEY) if METADATA_KEY in meta else {}
            tensors = {
                name: _read_into(f, start + offset, np.empty(shape, _DTYPES[code]))
                for name, (code, shape, offset, _) in table.items()
            }
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the file: {exc}") from exc
    legacy = meta.get(LEGACY_DIGEST_KEY)
    if DIGEST_KEY not in meta and legacy is not None and _tensor_digest(tensors) != legacy:
        raise CheckpointError(
            f"{path}: tensor data do not match the checksum in the header "
            f"(the file was damaged or modified after saving)"
        )
    return tensors, spec, metadata


def _check_identity(path: Path, meta: Mapping[str, str], allow_unsigned: bool) -> None:
    """Refuse a file that is not a cnnarray checkpoint of this format, or has no digest."""
    if SPEC_KEY not in meta:
        raise CheckpointError(
            f"{path}: not a cnnarray checkpoint: its header metadata has no {SPEC_KEY!r} entry"
        )
    version = meta.get(FORMAT_KEY)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported checkpoint format version {version!r}; this cnnarray reads "
            f"version {FORMAT_VERSION!r}"
        )
    if DIGEST_KEY not in meta and not allow_unsigned:
        raise CheckpointError(
            f"{path}: no {DIGEST_KEY!r} entry, so its spec and metadata cannot be verified (saved "
            f"by an older cnnarray, or edited); if you trust the file, re-save it once with "
            f'python -c "from cnnarray.io import upgrade_checkpoint; '
            f"upgrade_checkpoint('{path}')\""
        )


def upgrade_checkpoint(path: PathLike, out: PathLike | None = None) -> Path:
    """Re-save a checkpoint of an older cnnarray (no ``"cnnarray.digest"``) with the digest.

    Only for files you trust: their spec and metadata are taken as they are.

    Parameters
    ----------
    path : str or os.PathLike
        The old checkpoint (its tensors-only checksum, if any, is checked).
    out : str or os.PathLike, optional
        Where to write the upgraded file (default: over ``path``, atomically).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    tensors, spec, metadata = load_checkpoint(path, allow_unsigned=True)
    return save_checkpoint(path if out is None else out, tensors, spec, metadata)
