"""Checkpoints as safetensors files: named tensors plus a JSON spec and metadata.

A checkpoint is an ordinary ``.safetensors`` file, readable by any safetensors
implementation. Its header metadata (a string-to-string map) holds:

``"cnnarray.format"``
    The format version, currently ``"1"``.
``"cnnarray.spec"``
    JSON of the architecture, enough to rebuild the model.
``"cnnarray.metadata"``
    JSON of anything else worth keeping: epoch, metrics, optimiser settings...
``"cnnarray.sha256"``
    SHA-256 over every tensor's name, dtype, shape and bytes, so that a file
    damaged inside the tensor data (which safetensors itself cannot notice)
    is rejected on load.

Nothing here uses pickle: loading a checkpoint never runs code from the file.
Saving is atomic: the file is written under a temporary name in the same
folder, flushed to disk, then renamed over the target, so a crash leaves
either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy

from .backend import to_numpy

__all__ = ["FORMAT_VERSION", "CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT_VERSION = "1"
FORMAT_KEY = "cnnarray.format"
SPEC_KEY = "cnnarray.spec"
METADATA_KEY = "cnnarray.metadata"
DIGEST_KEY = "cnnarray.sha256"

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, or not a cnnarray checkpoint."""


def _tensor_digest(tensors: Mapping[str, np.ndarray]) -> str:
    """Return the hex SHA-256 of the tensors' names, dtypes, shapes and little-endian bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        # ascontiguousarray alone would turn a 0-d array into shape (1,)
        array = np.ascontiguousarray(array).reshape(array.shape)
        head = json.dumps([name, array.dtype.name, list(array.shape)])
        digest.update(head.encode())
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def _to_little_endian(name: str, value: Any) -> np.ndarray:
    try:
        array = to_numpy(value)
    except Exception as exc:
        raise TypeError(f"tensors[{name!r}] must be an array, got {type(value).__name__}") from exc
    if array.dtype.kind not in "biuf":
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


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    # NamedTemporaryFile creates the file with mode 0o600; give the result the
    # permissions of the file it replaces, or the usual ones for a new file.
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_current_umask()
    tmp = tempfile.NamedTemporaryFile(
        mode="wb", delete=False, dir=folder, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, mode)
        os.replace(tmp.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    # Persist the rename itself; not possible on every platform (e.g. Windows).
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_writable(path: str | os.PathLike, *, folder: bool = False) -> Path:
    """Raise ValueError in one line unless ``path`` can be written; return it as a Path.

    For a file: its folder exists and may be written in, and the path is not a
    folder. With ``folder=True`` (a folder created on demand): the path is a
    writable folder, or the nearest folder above it that exists is writable.
    Meant to run before long work whose result goes to ``path``.
    """
    path = Path(path)
    if folder:
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ValueError(f"cannot write in {path}: {existing} is not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"cannot write in {path}: no permission to write in {existing}")
        return path
    parent = path.parent
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder")
    if not parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: no permission to write in folder {parent}")
    return path


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
        DIGEST_KEY: _tensor_digest(arrays),
    }
    try:
        data = safetensors.numpy.save(arrays, metadata=header)
    except safetensors.SafetensorError as exc:
        raise TypeError(f"cannot serialise tensors for {path}: {exc}") from exc
    atomic_write_bytes(path, data)
    return path


def _parse_json(path: Path, header: Mapping[str, str], key: str) -> dict[str, Any]:
    try:
        value = json.loads(header[key])
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path}: entry {key!r} of the header is not valid JSON ({exc})"
        ) from exc
    if not isinstance(value, dict):
        raise CheckpointError(
            f"{path}: entry {key!r} of the header must be a JSON object, got {type(value).__name__}"
        )
    return value


def load_checkpoint(path: PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.safetensors`` file.

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
        damaged header), lacks the cnnarray spec, has an unsupported format
        version or bad JSON, or its tensor data do not match the stored
        checksum. The message names the file and the problem.

    See Also
    --------
    save_checkpoint, safetensors.safe_open
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        with safetensors.safe_open(path, framework="numpy") as f:
            header = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (safetensors.SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors file (truncated or damaged?): {exc}"
        ) from exc

    if SPEC_KEY not in header:
        raise CheckpointError(
            f"{path}: not a cnnarray checkpoint: its header metadata has no {SPEC_KEY!r} entry"
        )
    version = header.get(FORMAT_KEY)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported checkpoint format version {version!r}; this cnnarray reads "
            f"version {FORMAT_VERSION!r}"
        )
    spec = _parse_json(path, header, SPEC_KEY)
    metadata = _parse_json(path, header, METADATA_KEY) if METADATA_KEY in header else {}
    expected = header.get(DIGEST_KEY)
    if expected is not None and _tensor_digest(tensors) != expected:
        raise CheckpointError(
            f"{path}: tensor data do not match the checksum in the header "
            f"(the file was damaged or modified after saving)"
        )
    tensors = {name: a if a.flags.writeable else a.copy() for name, a in tensors.items()}
    return tensors, spec, metadata
