"""Tests of cnnarray.io: round trips, atomic writes and every damaged-file case."""

from __future__ import annotations

import ast
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from cnnarray import io as checkpoint_io
from cnnarray.backend import asarray, available_backends
from cnnarray.io import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint

SPEC = {"layers": [{"type": "Conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3}]}
METADATA = {"epoch": 3, "accuracy": 0.9375, "history": [1.5, 0.7]}


def make_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "conv.weight": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
        "conv.bias": np.zeros(4, dtype=np.float32),
        "fc.weight": rng.standard_normal((10, 16)),
        "steps": np.array([12], dtype=np.int64),
        "mask": np.array([True, False]),
    }


def header_of(path: Path) -> tuple[int, dict]:
    """Return (header length, parsed header JSON) of a safetensors file."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return length, json.loads(data[8 : 8 + length])


def rewrite_metadata(path: Path, *, sign: bool = True, **changes: str | None) -> None:
    """Re-save ``path`` with its header metadata edited (None deletes a key).

    ``sign``: recompute the digest, as a forger would, to reach the checks behind it.
    """
    with safetensors.safe_open(path, framework="numpy") as f:
        metadata = dict(f.metadata())
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    if sign and checkpoint_io.DIGEST_KEY in metadata:
        metadata[checkpoint_io.DIGEST_KEY] = checkpoint_io._sign(metadata, tensors)
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "model.safetensors", make_tensors(), SPEC, METADATA)


# ---------------------------------------------------------------------------
# round trips


def test_round_trip(saved):
    tensors, spec, metadata = load_checkpoint(saved)
    expected = make_tensors()
    assert sorted(tensors) == sorted(expected)
    for name, array in expected.items():
        assert tensors[name].dtype == array.dtype and tensors[name].shape == array.shape
        np.testing.assert_array_equal(tensors[name], array)
        assert tensors[name].flags.writeable
    assert spec == SPEC and metadata == METADATA


def test_header_holds_json_spec_metadata_and_version(saved):
    _, header = header_of(saved)
    meta = header["__metadata__"]
    assert meta["cnnarray.format"] == FORMAT_VERSION
    assert json.loads(meta["cnnarray.spec"]) == SPEC
    assert json.loads(meta["cnnarray.metadata"]) == METADATA


def test_metadata_defaults_to_empty(tmp_path):
    path = save_checkpoint(str(tmp_path / "m.safetensors"), {"w": np.ones(2)}, {"a": 1})
    assert load_checkpoint(path)[1:] == ({"a": 1}, {})


def test_empty_tensors_and_non_contiguous_and_big_endian(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", {}, SPEC)
    assert load_checkpoint(path)[0] == {}
    base = np.arange(24, dtype=">f4").reshape(4, 6)
    path = save_checkpoint(tmp_path / "m.safetensors", {"t": base[:, ::2]}, SPEC)
    tensors, _, _ = load_checkpoint(path)
    np.testing.assert_array_equal(tensors["t"], base[:, ::2])


@pytest.mark.skipif("cuda" not in available_backends(), reason="needs a CUDA device")
def test_cupy_tensors_are_saved_from_the_device(tmp_path):
    weight = np.arange(6, dtype=np.float32)
    path = save_checkpoint(tmp_path / "m.safetensors", {"w": asarray(weight, "cuda")}, SPEC)
    np.testing.assert_array_equal(load_checkpoint(path)[0]["w"], weight)


def test_file_is_readable_by_plain_safetensors(saved):
    loaded = safetensors.numpy.load_file(saved)
    np.testing.assert_array_equal(loaded["conv.bias"], np.zeros(4, dtype=np.float32))


def test_overwrite_replaces_and_keeps_permissions(saved):
    os.chmod(saved, 0o640)
    save_checkpoint(saved, {"w": np.ones(3)}, {"v": 2})
    tensors, spec, _ = load_checkpoint(saved)
    assert list(tensors) == ["w"] and spec == {"v": 2}
    assert saved.stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------------------
# atomicity


def test_failed_replace_keeps_the_old_file_and_leaves_no_temp(saved, monkeypatch):
    before = saved.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(checkpoint_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        save_checkpoint(saved, {"w": np.ones(3)}, {"other": True})
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.safetensors"]
    assert load_checkpoint(saved)[1] == SPEC


def test_failed_fsync_leaves_no_temp_and_no_target(tmp_path, monkeypatch):
    def broken_fsync(fd):
        raise OSError("fsync failed")

    monkeypatch.setattr(checkpoint_io.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        save_checkpoint(tmp_path / "new.safetensors", {"w": np.ones(3)}, SPEC)
    assert list(tmp_path.iterdir()) == []


def test_save_into_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_checkpoint(tmp_path / "nope" / "m.safetensors", {"w": np.ones(1)}, SPEC)


# ---------------------------------------------------------------------------
# bad arguments to save


@pytest.mark.parametrize(
    ("tensors", "spec", "metadata", "pattern"),
    [
        ([np.ones(2)], SPEC, None, "tensors must be a dict"),
        ({1: np.ones(2)}, SPEC, None, "tensor names must be strings"),
        ({"w": np.array(["a"])}, SPEC, None, r"tensors\['w'\] has dtype"),
        ({"w": np.ones(2, dtype=complex)}, SPEC, None, r"tensors\['w'\] has dtype"),
        ({"w": np.ones(2)}, [1, 2], None, "spec must be a dict"),
        ({"w": np.ones(2)}, {"a": np.ones(2)}, None, "spec must be JSON-serialisable"),
        ({"w": np.ones(2)}, SPEC, {"when": object()}, "metadata must be JSON-serialisable"),
    ],
)
def test_save_rejects_bad_arguments(tmp_path, tensors, spec, metadata, pattern):
    with pytest.raises(TypeError, match=pattern):
        save_checkpoint(tmp_path / "m.safetensors", tensors, spec, metadata)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# bad files


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"not found: .*absent\.safetensors"):
        load_checkpoint(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("keep", [0, 5, 8, 40, -1])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*not a readable safetensors"):
        load_checkpoint(saved)


def test_flipped_header_bytes(saved):
    data = bytearray(saved.read_bytes())
    data[8] ^= 0xFF  # first byte of the JSON header: '{' becomes garbage
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_checkpoint(saved)


def test_tampered_tensor_offsets(saved):
    length, header = header_of(saved)
    data = saved.read_bytes()
    text = data[8 : 8 + length].decode()
    start, end = header["conv.bias"]["data_offsets"]
    text = text.replace(f"[{start},{end}]", f"[{start},{end + 4}]", 1)
    new_header = text.encode()
    saved.write_bytes(struct.pack("<Q", len(new_header)) + new_header + data[8 + length :])
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_checkpoint(saved)


def test_flipped_tensor_bytes_fail_the_checksum(saved):
    data = bytearray(saved.read_bytes())
    data[-3] ^= 0x01  # inside the last tensor's data: safetensors alone cannot notice
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*checksum"):
        load_checkpoint(saved)


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("these are my training notes, not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"notes\.safetensors.*not a readable"):
        load_checkpoint(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.safetensors"):
        load_checkpoint(path)


def test_plain_safetensors_without_spec(tmp_path):
    path = tmp_path / "plain.safetensors"
    path.write_bytes(safetensors.numpy.save({"w": np.ones(2)}))
    with pytest.raises(CheckpointError, match=r"plain\.safetensors.*no 'cnnarray.spec'"):
        load_checkpoint(path)


def test_missing_spec_key(saved):
    rewrite_metadata(saved, **{"cnnarray.spec": None})
    with pytest.raises(CheckpointError, match="not a cnnarray checkpoint"):
        load_checkpoint(saved)


@pytest.mark.parametrize("version", ["2", "0.9", None])
def test_unsupported_format_version(saved, version):
    rewrite_metadata(saved, **{"cnnarray.format": version})
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*unsupported.*version"):
        load_checkpoint(saved)


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("cnnarray.spec", "{not json", "not valid JSON"),
        ("cnnarray.metadata", "[1, 2", "not valid JSON"),
        ("cnnarray.spec", "[1, 2]", "must be a JSON object, got list"),
    ],
)
def test_bad_json(saved, key, value, pattern):
    rewrite_metadata(saved, **{key: value})
    with pytest.raises(CheckpointError, match=rf"model\.safetensors.*'{key}'.*{pattern}"):
        load_checkpoint(saved)


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_io_never_uses_pickle():
    source = Path(checkpoint_io.__file__).read_text()
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert not any("pickle" in name or name in {"torch", "joblib"} for name in imported)
    assert "pickle" not in source.replace("Nothing here uses pickle", "")
    assert "np.load(" not in source and "allow_pickle" not in source


def test_io_writes_bytes_and_never_draws():
    tree = ast.parse(Path(checkpoint_io.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}  # fmt: skip
    imported |= {node.module for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}  # fmt: skip
    assert not any(name.startswith(("matplotlib", "plots", "PIL")) for name in imported)


def test_zero_d_tensors_keep_their_shape(tmp_path):
    # BatchNorm2d's num_batches_tracked is a 0-d int64 buffer
    path = tmp_path / "scalar.safetensors"
    save_checkpoint(path, {"count": np.array(7, np.int64), "w": np.ones(3, np.float32)}, {})
    tensors, _, _ = load_checkpoint(path)
    assert tensors["count"].shape == () and int(tensors["count"]) == 7
