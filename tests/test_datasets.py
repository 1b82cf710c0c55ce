"""Tests of cnnarray.data.datasets: parsers on small files written here, and every bad-file case."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnarray.data.datasets import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    DatasetError,
    Split,
    load_cifar10,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_image_folder,
    load_mnist,
    read_idx,
    train_test_split,
)
from cnnarray.data.images import read_image

# ---------------------------------------------------------------------------
# helpers that write small dataset files


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, extra: bytes = b"") -> Path:
    """Write ``array`` (uint8) as an IDX file, gzipped when ``path`` ends in .gz."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x00000800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes() + extra
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def make_mnist(folder: Path, n_train: int = 6, n_test: int = 4, size: int = 5, gz: bool = False):
    """Write the four MNIST files with random content; return the arrays written."""
    rng = np.random.default_rng(1)
    suffix = ".gz" if gz else ""
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        arrays[prefix] = (images, labels)
    return arrays


def make_cifar(folder: Path, per_file: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write the six CIFAR-10 binary files; return (pixels, labels) per file."""
    rng = np.random.default_rng(2)
    written = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, size=per_file, dtype=np.uint8)
        pixels = rng.integers(0, 256, size=(per_file, 3, 32, 32), dtype=np.uint8)
        records = np.concatenate([labels[:, None], pixels.reshape(per_file, -1)], axis=1)
        (folder / name).write_bytes(records.tobytes())
        written[name] = (pixels, labels)
    return written


def make_image_folder(root: Path, counts: dict[str, int], mode: str = "L", size=(6, 4)) -> Path:
    """Write ``counts[cls]`` PNGs of ``size`` (width, height) per class folder."""
    rng = np.random.default_rng(3)
    for cls, count in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(pixels, mode=mode).save(root / cls / f"{i:02d}.png")
    return root


# ---------------------------------------------------------------------------
# train_test_split and digits


def test_train_test_split_is_deterministic_stratified_and_disjoint():
    x = np.arange(100)
    y = np.repeat(np.arange(4), 25)
    first = train_test_split(x, y, 0.2, seed=5)
    second = train_test_split(x, y, 0.2, seed=5)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    x_train, y_train, x_test, y_test = first
    assert np.bincount(y_test).tolist() == [5, 5, 5, 5]
    assert sorted(np.concatenate([x_train, x_test]).tolist()) == list(range(100))
    np.testing.assert_array_equal(y_train, y[x_train])
    other = train_test_split(x, y, 0.2, seed=6)
    assert not np.array_equal(other[2], x_test)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_train_test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(np.zeros(4), np.zeros(4), fraction)


def test_train_test_split_rejects_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        train_test_split(np.zeros(4), np.zeros(3))


def test_load_digits():
    data = load_digits()
    assert isinstance(data, Split)
    assert data.name == "digits"
    assert data.x_train.shape[1:] == (1, 8, 8) == data.input_shape
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert len(data.x_train) + len(data.x_test) == 1797
    assert len(data.x_test) == pytest.approx(0.2 * 1797, abs=10)
    assert 0.0 <= data.x_train.min() and data.x_train.max() == 1.0
    assert data.classes == [str(d) for d in range(10)] and data.num_classes == 10
    again = load_digits()
    np.testing.assert_array_equal(data.y_test, again.y_test)
    np.testing.assert_array_equal(data.x_test, again.x_test)
    assert "digits" in repr(data)


# ---------------------------------------------------------------------------
# IDX / MNIST


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array)
    np.testing.assert_array_equal(read_idx(path, ndim=3), array)
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist(tmp_path, gz):
    written = make_mnist(tmp_path, gz=gz)
    data = load_mnist(tmp_path)
    assert data.name == "mnist" and data.classes == [str(d) for d in range(10)]
    assert data.x_train.shape == (6, 1, 5, 5) and data.x_test.shape == (4, 1, 5, 5)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    np.testing.assert_allclose(data.x_train[:, 0], written["train"][0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_test, written["t10k"][1])


def test_load_fashion_mnist_names_classes(tmp_path):
    make_mnist(tmp_path)
    data = load_fashion_mnist(tmp_path)
    assert data.name == "fashion-mnist"
    assert data.classes == FASHION_MNIST_CLASSES and data.classes[9] == "Ankle boot"


def test_mnist_missing_file_is_named(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_mnist_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_mnist(tmp_path / "nowhere")


def test_mnist_wrong_magic(tmp_path):
    make_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 5, 5)), magic=0x00000801)
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.*magic.*0x00000801"):
        load_mnist(tmp_path)


def test_mnist_labels_with_image_magic(tmp_path):
    make_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(6), magic=0x00000803)
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.*magic"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_truncated_data(tmp_path, gz):
    make_mnist(tmp_path, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = tmp_path / name
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    raw = raw[:-7]
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DatasetError, match=rf"{name}.*truncated"):
        load_mnist(tmp_path)


def test_mnist_truncated_header(tmp_path):
    make_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.*truncated header"):
        load_mnist(tmp_path)


def test_mnist_trailing_bytes(tmp_path):
    make_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4), extra=b"\x00\x01")
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.*2 unexpected trailing"):
        load_mnist(tmp_path)


def test_mnist_empty_file(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_mnist_corrupt_gzip(tmp_path):
    make_mnist(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz.*gzip"):
        load_mnist(tmp_path)


def test_mnist_count_mismatch_names_both_files(tmp_path):
    make_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5))
    with pytest.raises(DatasetError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte" in message and "train-labels-idx1-ubyte" in message
    assert "6 images" in message and "5 labels" in message


def test_mnist_label_out_of_range(tmp_path):
    make_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 3, 10, 2]))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.*0\.\.9.*found 10"):
        load_mnist(tmp_path)


def test_mnist_train_test_image_size_mismatch(tmp_path):
    make_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 6, 6)))
    with pytest.raises(DatasetError, match="training images"):
        load_mnist(tmp_path)


# ---------------------------------------------------------------------------
# CIFAR-10


def test_load_cifar10(tmp_path):
    written = make_cifar(tmp_path)
    data = load_cifar10(tmp_path)
    assert data.name == "cifar10" and data.classes == CIFAR10_CLASSES
    assert data.x_train.shape == (15, 3, 32, 32) and data.x_test.shape == (3, 3, 32, 32)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    pixels, labels = written["data_batch_2.bin"]
    # records keep file order: data_batch_2 holds train images 3..5, stored channel-first
    np.testing.assert_allclose(data.x_train[3:6], pixels / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_train[3:6], labels)
    np.testing.assert_array_equal(data.y_test, written["test_batch.bin"][1])


def test_cifar10_accepts_the_archive_parent_folder(tmp_path):
    nested = tmp_path / "cifar-10-batches-bin"
    nested.mkdir()
    make_cifar(nested, per_file=1)
    assert len(load_cifar10(tmp_path).y_train) == 5


def test_cifar10_missing_files_are_all_named(tmp_path):
    make_cifar(tmp_path, per_file=1)
    (tmp_path / "data_batch_3.bin").unlink()
    (tmp_path / "data_batch_5.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"data_batch_3\.bin.*data_batch_5\.bin"):
        load_cifar10(tmp_path)


def test_cifar10_bad_size(tmp_path):
    make_cifar(tmp_path, per_file=2)
    path = tmp_path / "data_batch_4.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"data_batch_4\.bin.*3073"):
        load_cifar10(tmp_path)


def test_cifar10_empty_file(tmp_path):
    make_cifar(tmp_path, per_file=1)
    (tmp_path / "test_batch.bin").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"test_batch\.bin"):
        load_cifar10(tmp_path)


def test_cifar10_label_out_of_range(tmp_path):
    make_cifar(tmp_path, per_file=2)
    path = tmp_path / "test_batch.bin"
    data = bytearray(path.read_bytes())
    data[3073] = 12  # label byte of the second record
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"test_batch\.bin.*found 12"):
        load_cifar10(tmp_path)


# ---------------------------------------------------------------------------
# image folders


def test_load_image_folder_grayscale(tmp_path):
    root = make_image_folder(tmp_path / "shapes", {"square": 5, "circle": 5})
    data = load_image_folder(root, size=(4, 6), test_fraction=0.2)
    assert data.name == "shapes"
    assert data.classes == ["circle", "square"]
    assert data.x_train.shape == (8, 1, 4, 6) and data.x_test.shape == (2, 1, 4, 6)
    assert sorted(data.y_test.tolist()) == [0, 1]
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    # every loaded image is one of the files, scaled to [0, 1]
    files = {
        np.asarray(Image.open(p)).tobytes(): label
        for label, cls in enumerate(data.classes)
        for p in (root / cls).iterdir()
    }
    for image, label in zip(data.x_train, data.y_train, strict=True):
        key = np.rint(image[0] * 255).astype(np.uint8).tobytes()
        assert files[key] == label


def test_load_image_folder_rgb_resize_and_channels(tmp_path):
    root = make_image_folder(tmp_path / "rgb", {"a": 3, "b": 2}, mode="RGB", size=(5, 7))
    data = load_image_folder(root, test_fraction=0.0)  # default size: 32 x 32
    assert data.x_train.shape == (5, 3, 32, 32) and data.x_test.shape == (0, 3, 32, 32)
    assert load_image_folder(root, size=(7, 5), test_fraction=0.0).x_train.shape == (5, 3, 7, 5)
    resized = load_image_folder(root, size=(4, 3), grayscale=True, test_fraction=0.0)
    assert resized.x_train.shape == (5, 1, 4, 3)
    square = load_image_folder(root, size=8, test_fraction=0.0)
    assert square.x_train.shape == (5, 3, 8, 8)


def test_load_image_folder_mixed_sizes_take_the_declared_size_not_the_first(tmp_path):
    root = make_image_folder(tmp_path / "mixed", {"a": 1}, size=(4, 4))
    make_image_folder(root, {"b": 1}, size=(9, 5))
    data = load_image_folder(root, test_fraction=0.0, grayscale=False)
    assert data.x_train.shape == (2, 3, 32, 32)
    data = load_image_folder(root, size=(5, 9), test_fraction=0.0, grayscale=False)
    assert data.x_train.shape == (2, 3, 5, 9)


def test_load_image_folder_ignores_non_images_and_hidden(tmp_path):
    root = make_image_folder(tmp_path / "r", {"a": 2, "b": 2})
    (root / "a" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    data = load_image_folder(root, test_fraction=0.0)
    assert data.classes == ["a", "b"] and len(data.y_train) == 4


def test_load_image_folder_unreadable_image_is_named(tmp_path):
    root = make_image_folder(tmp_path / "r", {"a": 2, "b": 2})
    (root / "b" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(DatasetError, match=r"broken\.png"):
        load_image_folder(root)


def test_load_image_folder_truncated_image_is_named(tmp_path):
    root = make_image_folder(tmp_path / "r", {"a": 1}, size=(32, 32))
    path = root / "a" / "00.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DatasetError, match=r"00\.png"):
        load_image_folder(root)


def test_load_image_folder_empty_class_folder(tmp_path):
    root = make_image_folder(tmp_path / "r", {"a": 2})
    (root / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty.*no image"):
        load_image_folder(root)


def test_load_image_folder_without_classes(tmp_path):
    (tmp_path / "r").mkdir()
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_image_folder(tmp_path / "r")


def test_load_image_folder_missing_and_bad_size(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_image_folder(tmp_path / "missing")
    root = make_image_folder(tmp_path / "r", {"a": 1})
    with pytest.raises(ValueError, match="size"):
        load_image_folder(root, size=(0, 4))


def test_read_image_keeps_single_band_images_gray_and_scales_to_unit(tmp_path):
    pixels = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    Image.fromarray(pixels).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.shape == (1, 4, 6) and image.dtype == np.float32
    np.testing.assert_array_equal(image[0], pixels.astype(np.float32) / 255.0)
    assert read_image(tmp_path / "g.png", grayscale=False).shape == (3, 4, 6)


def test_read_image_rgb_to_channels_first_gray_and_resized(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "c.png")
    image = read_image(tmp_path / "c.png")
    np.testing.assert_array_equal(image, pixels.transpose(2, 0, 1).astype(np.float32) / 255.0)
    assert read_image(tmp_path / "c.png", grayscale=True).shape == (1, 5, 7)
    assert read_image(tmp_path / "c.png", size=(3, 2)).shape == (3, 3, 2)


def test_read_image_square_crops_the_centre(tmp_path):
    pixels = np.zeros((4, 8), np.uint8)
    pixels[:, 2:6] = 255  # the centre square is white, the margins black
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = read_image(tmp_path / "wide.png", square=True)
    assert image.shape == (1, 4, 4) and image.min() == 1.0
    assert read_image(tmp_path / "wide.png", square=True, size=(2, 2)).shape == (1, 2, 2)


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.png does not exist"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.png is not a readable image"):
        read_image(tmp_path / "notes.png")
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(ValueError, match="resample must be one of"):
        read_image(tmp_path / "ok.png", resample="cubic")
    with pytest.raises(ValueError, match=r"size\[1\] must be a positive int, got 0"):
        read_image(tmp_path / "ok.png", size=(2, 0))


# ---------------------------------------------------------------------------
# load_dataset


def test_load_dataset_specs(tmp_path):
    assert load_dataset("digits").name == "digits"
    (tmp_path / "m").mkdir()
    make_mnist(tmp_path / "m")
    assert load_dataset(f"mnist:{tmp_path / 'm'}").name == "mnist"
    assert load_dataset(f"fashion-mnist:{tmp_path / 'm'}").name == "fashion-mnist"
    (tmp_path / "c").mkdir()
    make_cifar(tmp_path / "c", per_file=1)
    assert load_dataset(f"cifar10:{tmp_path / 'c'}").name == "cifar10"
    make_image_folder(tmp_path / "f", {"x": 3, "y": 3})
    assert load_dataset(f"folder:{tmp_path / 'f'}").classes == ["x", "y"]
    assert load_dataset(f"folder:{tmp_path / 'f'}").input_shape == (1, 32, 32)
    assert load_dataset(f"folder:{tmp_path / 'f'}", image_size=(6, 5)).input_shape == (1, 6, 5)
    # datasets stored at a fixed size keep it
    assert load_dataset(f"mnist:{tmp_path / 'm'}", image_size=9).input_shape == (1, 5, 5)


@pytest.mark.parametrize("spec", ["imagenet", "mnist", "mnist:", "digits:here", ""])
def test_load_dataset_bad_specs(spec):
    with pytest.raises(ValueError, match="mnist:DIR|takes no directory"):
        load_dataset(spec)


def test_load_dataset_unknown_lists_valid_forms():
    with pytest.raises(ValueError) as info:
        load_dataset("svhn:/data")
    for form in ("digits", "mnist:DIR", "fashion-mnist:DIR", "cifar10:DIR", "folder:DIR"):
        assert form in str(info.value)


def test_load_dataset_rejects_non_string():
    with pytest.raises(TypeError, match="spec"):
        load_dataset(42)  # type: ignore[arg-type]
