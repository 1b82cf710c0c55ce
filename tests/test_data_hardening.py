"""Hostile and careless dataset files: a clean DatasetError naming the file, in bounded memory.

Regression tests for issue 19, items 3 (gzip bomb), 4 (image folders), 9 (empty splits) and
11 (messages). The reads that used to allocate gigabytes run in a subprocess whose address
space is capped (``resource.RLIMIT_AS``) a little above what the imports take, so a read
that is not bounded fails with MemoryError instead of passing slowly.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnarray.cli import app
from cnnarray.data import (
    DatasetError,
    formats,
    load_dataset,
    load_image_folder,
    read_idx,
    read_image,
)

# Address space a capped read may take above what the interpreter holds after its imports.
HEADROOM = 768 * 2**20


def run_capped(code: str, timeout: float = 60) -> dict:
    """Run ``code`` in a fresh interpreter under an address-space cap; return its JSON line.

    ``code`` runs after ``cnnarray.data`` and Pillow are imported and the cap is set; it
    prints one JSON object as its last line.
    """
    prologue = textwrap.dedent(
        f"""
        import json, resource
        import cnnarray.data, PIL.Image
        from cnnarray.data import DatasetError
        with open("/proc/self/status") as f:
            size = int(f.read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size + {HEADROOM}, size + {HEADROOM}))
        """
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def outcome(call: str) -> str:
    """Code that runs ``call`` and prints which exception it raised, and its message."""
    return f"""
    try:
        {call}
        out = {{"raised": None}}
    except DatasetError as exc:
        out = {{"raised": "DatasetError", "message": str(exc)}}
    except BaseException as exc:
        out = {{"raised": type(exc).__name__, "message": str(exc)[:300]}}
    print(json.dumps(out))
    """


def idx_header(shape: tuple[int, ...]) -> bytes:
    return bytes([0, 0, 8, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)


def write_gzip_bomb(path: Path, header: bytes, zeros: int) -> None:
    """Write ``header`` and then ``zeros`` zero bytes, gzipped, in about ``zeros / 1000`` bytes.

    A gzip file may hold several members, read as one stream: one member of 64 MiB of
    zeros is compressed once and repeated, so a 3 GiB bomb takes a fraction of a second.
    """
    block = 64 * 2**20
    member = gzip.compress(bytes(block), compresslevel=9)
    with open(path, "wb") as f:
        f.write(gzip.compress(header))
        for _ in range(zeros // block):
            f.write(member)
        f.write(gzip.compress(bytes(zeros % block)))


# ---------------------------------------------------------------------------
# item 3: gzip bomb; item 11: sizes and names in the messages


def test_gzip_bomb_after_a_small_header_is_trailing_data_in_bounded_memory(tmp_path):
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    write_gzip_bomb(bomb, idx_header((2, 28, 28)), 3 * 2**30)
    assert bomb.stat().st_size < 4 * 2**20  # 3 GiB of zeros in ~3 MB
    out = run_capped(outcome(f"cnnarray.data.read_idx({str(bomb)!r}, ndim=3)"))
    assert out["raised"] == "DatasetError", out
    assert str(bomb) in out["message"] and "unexpected trailing bytes" in out["message"]
    assert "1568 bytes of shape (2, 28, 28)" in out["message"]


def test_gzip_bomb_whose_header_declares_gigabytes_is_refused_before_reading(tmp_path):
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    write_gzip_bomb(bomb, idx_header((3072, 1024, 1024)), 3 * 2**30)
    out = run_capped(outcome(f"cnnarray.data.read_idx({str(bomb)!r}, ndim=3)"))
    assert out["raised"] == "DatasetError", out
    assert (
        f"{bomb}: the header's shape (3072, 1024, 1024) declares 3221225472 bytes"
        in (out["message"])
    )
    assert "over the limit of 1073741824 bytes (1.0 GiB)" in out["message"]


def test_a_gz_header_declaring_more_than_its_stream_holds_allocates_nothing(tmp_path):
    """Under the byte limit (1e9 <= 1 GiB) but more than 150 compressed bytes can inflate to:
    a MemoryError under the cap before (the declared size was allocated, then read into)."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_header((1000, 1000, 1000)) + bytes(100), mtime=0))
    out = run_capped(outcome(f"cnnarray.data.read_idx({str(path)!r}, ndim=3)"))
    assert out["raised"] == "DatasetError", out
    assert out["message"].startswith(
        f"{path}: truncated data: header says shape (1000, 1000, 1000) (1000000000 bytes (953.7 "
        f"MiB)) but a gzip file of {path.stat().st_size} bytes inflates to at most"
    )


def test_a_gz_stream_shorter_than_its_header_is_read_in_bounded_chunks(tmp_path):
    """The declared 1e9 bytes pass the ratio check (a megabyte of noise could inflate to a
    gigabyte), but the stream holds 1 MiB: memory follows the stream, not the header."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    noise = np.random.default_rng(0).integers(0, 256, 2**20, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(idx_header((1000, 1000, 1000)) + noise, mtime=0))
    assert formats.DEFLATE_MAX_RATIO * path.stat().st_size > 10**9
    out = run_capped(outcome(f"cnnarray.data.read_idx({str(path)!r}, ndim=3)"))
    assert out["raised"] == "DatasetError", out
    assert out["message"] == (
        f"{path}: truncated data: header says shape (1000, 1000, 1000) (1000000000 bytes "
        f"(953.7 MiB)) but only 1048576 bytes (1.0 MiB) follow"
    )
    small = tmp_path / "labels.gz"  # a valid file still reads, across chunk boundaries
    small.write_bytes(gzip.compress(idx_header((5000,)) + bytes(range(250)) * 20, mtime=0))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(formats, "READ_CHUNK", 7)
        labels = read_idx(small, ndim=1)
    assert labels.flags.writeable and labels.tolist() == list(range(250)) * 20


def test_the_byte_limit_is_adjustable(tmp_path, monkeypatch):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx_header((1000,)) + bytes(1000)))
    assert read_idx(path, ndim=1).shape == (1000,)
    with pytest.raises(DatasetError, match=r"labels\.gz.*1000 bytes.*over the limit of 999"):
        read_idx(path, ndim=1, max_bytes=999)
    monkeypatch.setattr(formats, "MAX_DATA_BYTES", 100)
    with pytest.raises(DatasetError, match="over the limit of 100 bytes"):
        read_idx(path, ndim=1)
    with pytest.raises(ValueError, match="max_bytes must be a non-negative int, got -1"):
        read_idx(path, ndim=1, max_bytes=-1)


def test_a_truncated_gzip_stream_names_the_file(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_header((50,)) + bytes(50))[:-12])
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz"):
        read_idx(path, ndim=1)


@pytest.mark.parametrize("gz", [False, True])
def test_overflowing_idx_dimensions_quote_the_real_declared_size(tmp_path, gz):
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    data = idx_header((60000, 2**31, 2**31)) + bytes(100)
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DatasetError) as info:
        read_idx(path, ndim=3)
    message = str(info.value)
    assert message.startswith(f"{path}: the header's shape (60000, 2147483648, 2147483648)")
    assert f"declares {60000 * 2**62} bytes" in message  # not an int64 that wrapped to 0


def test_a_raw_idx_file_shorter_than_its_header_says_is_not_read(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_header((1000, 1000, 1000)) + bytes(10))
    with pytest.raises(DatasetError, match=r"truncated data.*1000000000 bytes.*only 10 bytes"):
        read_idx(path, ndim=3)


def test_a_cifar_file_over_the_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    with open(path, "wb") as f:  # sparse: no disk used, but stat says 1.2 GB
        f.truncate(formats.CIFAR_RECORD * 400_000)
    call = f"cnnarray.data.formats.read_cifar_batch(__import__('pathlib').Path({str(path)!r}), 10)"
    out = run_capped(outcome(call))
    assert out["raised"] == "DatasetError", out
    assert out["message"].startswith(f"{path}: its size (400000 records) declares 1229200000")
    with pytest.raises(DatasetError, match="over the limit of 3073 bytes"):
        formats.read_cifar_batch(path, 10, max_bytes=3073)


def test_every_malformed_file_is_named(tmp_path):
    cases = {
        "a-idx1-ubyte": b"\x00\x00\x08",
        "b-idx1-ubyte": idx_header((3,)) + b"\x00",
        "c-idx1-ubyte": idx_header((1,)) + b"\x00\x00",
        "d-idx1-ubyte.gz": b"not gzip",
        "e-idx1-ubyte.gz": gzip.compress(b"\x00\x00\x08\x01\x00"),
        "f-idx1-ubyte": b"\x00\x00\x09\x01" + bytes(8),
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DatasetError) as info:
            read_idx(path, ndim=1)
        assert str(path) in str(info.value), name


# ---------------------------------------------------------------------------
# item 4: image folders


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_blank_png(path: Path, width: int, height: int) -> None:
    """Write an all-black grayscale PNG of any size without holding its pixels in memory."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def write_png_header_only(path: Path, width: int, height: int) -> None:
    """Write a PNG whose header declares ``width x height`` and whose data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(bytes(10)))
        + png_chunk(b"IEND", b"")
    )


def small_folder(root: Path, per_class: int = 3, size: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i:02d}.png")
    return root


def test_a_huge_first_image_does_not_set_the_size_of_the_others(tmp_path):
    root = small_folder(tmp_path / "f", per_class=10, size=5)
    write_blank_png(root / "a" / "00.png", 12000, 12000)  # legal, 144 MB of pixels
    code = f"""
    import warnings
    warnings.simplefilter("ignore")  # Pillow warns about images over 89 M pixels
    data = cnnarray.data.load_image_folder({str(root)!r}, test_fraction=0.2)
    print(json.dumps({{"shape": list(data.x_train.shape[1:]), "n": len(data.y_train)}}))
    """
    assert run_capped(code) == {"shape": [1, 32, 32], "n": 16}  # not (20, 1, 12000, 12000)


def test_a_huge_png_header_is_a_dataset_error_naming_the_file(tmp_path):
    root = small_folder(tmp_path / "f")
    write_png_header_only(root / "b" / "huge.png", 100_000, 100_000)
    with pytest.raises(DatasetError, match=rf"{root / 'b' / 'huge.png'} is too large to read"):
        load_image_folder(root)


def test_a_png_with_a_broken_chunk_is_a_value_error_naming_the_file(tmp_path):
    # the pixel data split over two chunks, the second one's type bytes corrupted: Pillow
    # raises SyntaxError while decoding
    data = zlib.compress(bytes(17 * 16))
    ihdr = struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0)
    path = tmp_path / "broken.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", data[:5])
        + png_chunk(b"\xf65\xf7\xf9", data[5:])
        + png_chunk(b"IEND", b"")
    )
    with pytest.raises(ValueError, match=rf"{path} is not a readable image"):
        read_image(path)


def test_folder_images_take_the_declared_size(tmp_path):
    root = small_folder(tmp_path / "f", size=9)
    assert load_image_folder(root).input_shape == (1, 32, 32)
    assert load_image_folder(root, size=(5, 7)).input_shape == (1, 5, 7)
    assert load_dataset(f"folder:{root}", image_size=12).input_shape == (1, 12, 12)


def test_a_folder_too_large_for_memory_is_refused_before_reading(tmp_path):
    root = small_folder(tmp_path / "f")
    with pytest.raises(DatasetError, match=rf"{root}: 6 images of 20000x20000 pixels need"):
        load_image_folder(root, size=20000)


# ---------------------------------------------------------------------------
# item 9: empty splits


def test_a_folder_with_one_image_per_class_names_the_empty_test_split(tmp_path):
    root = small_folder(tmp_path / "f", per_class=1)
    with pytest.raises(DatasetError) as info:
        load_image_folder(root)
    assert str(info.value) == (
        f"{root}: the test split is empty: with test_fraction=0.2 a class needs at least 3 "
        "images to give one to the test split, and the largest class folder has 1; add images "
        "to the class folders"
    )
    assert len(load_image_folder(root, test_fraction=0.0).y_train) == 2  # asked for no test set


def test_a_test_fraction_that_leaves_no_training_image_names_the_training_split(tmp_path):
    root = small_folder(tmp_path / "f", per_class=1)
    with pytest.raises(DatasetError, match=rf"{root}: the training split is empty"):
        load_image_folder(root, test_fraction=0.9)


@pytest.mark.parametrize(("prefix", "split"), [("train", "training"), ("t10k", "test")])
def test_an_idx_set_with_0_images_names_the_empty_split(tmp_path, prefix, split):
    for p, n in (("train", 3), ("t10k", 2)):
        n = 0 if p == prefix else n
        (tmp_path / f"{p}-images-idx3-ubyte").write_bytes(idx_header((n, 4, 4)) + bytes(16 * n))
        (tmp_path / f"{p}-labels-idx1-ubyte").write_bytes(idx_header((n,)) + bytes(n))
    with pytest.raises(DatasetError) as info:
        load_dataset(f"mnist:{tmp_path}")
    assert str(info.value).startswith(
        f"{tmp_path / f'{prefix}-images-idx3-ubyte'}: the {split} split is empty "
        "(the header declares 0 images)"
    )


runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_train_on_a_folder_with_an_empty_test_split_is_a_clean_error(tmp_path):
    root = small_folder(tmp_path / "f", per_class=1)
    result = invoke("train", "-d", "cpu", "--dataset", f"folder:{root}", "--epochs", "1",
                    "--out", str(tmp_path / "m.safetensors"))  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "the test split is empty" in " ".join(result.output.replace("│", " ").split())
    assert "concatenate" not in result.output


def test_train_image_size_sets_the_model_input_and_evaluate_follows_it(tmp_path):
    root = small_folder(tmp_path / "f", per_class=5, size=9)
    model = tmp_path / "m.safetensors"
    result = invoke("train", "-d", "cpu", "--dataset", f"folder:{root}", "--epochs", "1",
                    "--image-size", "12", "--out", str(model), "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    from cnnarray.io import load_checkpoint

    assert load_checkpoint(model)[1]["input_shape"] == [1, 12, 12]
    # the checkpoint may not choose a path to read (issue 19 item 1): the user names the folder,
    # and evaluate loads it at the model's input size
    result = invoke("evaluate", str(model), "-d", "cpu", "--dataset", f"folder:{root}")
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    result = invoke("train", "-d", "cpu", "--dataset", f"folder:{root}", "--image-size", "0")
    assert result.exit_code == 2 and "--image-size" in result.output
