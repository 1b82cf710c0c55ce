"""Image classification datasets as NumPy arrays.

Every loader returns a :class:`Split`: images as float32 arrays of shape
``(N, C, H, W)`` with values in ``[0, 1]`` and labels as int64 arrays. Datasets
with an official train/test split (MNIST, Fashion-MNIST, CIFAR-10) keep it;
the others are split by :func:`train_test_split`, a seeded, per-class
permutation, so the same call always gives the same split.

Files are never unpickled: MNIST-style IDX files and the binary version of
CIFAR-10 are read byte by byte against their documented layouts
(:mod:`cnnarray.data.formats`), and any file that does not match raises
:class:`DatasetError` (or FileNotFoundError) naming the file and what is wrong
with it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _args
from .formats import DatasetError, check_labels, read_cifar_batch, read_idx
from .images import read_image

__all__ = [
    "CIFAR10_CLASSES",
    "DEFAULT_IMAGE_SIZE",
    "DIGITS_CLASSES",
    "FASHION_MNIST_CLASSES",
    "MAX_FOLDER_BYTES",
    "MNIST_CLASSES",
    "DatasetError",
    "Split",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist",
    "read_idx",
    "train_test_split",
]

DIGITS_CLASSES = [str(d) for d in range(10)]
MNIST_CLASSES = DIGITS_CLASSES
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]

PathLike = str | os.PathLike


@dataclass(frozen=True, eq=False)
class Split:
    """A dataset divided into a training and a test set.

    Attributes
    ----------
    x_train : numpy.ndarray, shape (N_train, C, H, W), float32
        Training images, values in ``[0, 1]``.
    y_train : numpy.ndarray, shape (N_train,), int64
        Training labels, ``0 <= y < len(classes)``.
    x_test : numpy.ndarray, shape (N_test, C, H, W), float32
        Test images.
    y_test : numpy.ndarray, shape (N_test,), int64
        Test labels.
    classes : list of str
        Class names; label ``k`` means ``classes[k]``.
    name : str
        Short name of the dataset, e.g. ``"digits"``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    name: str

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape ``(C, H, W)`` of one image, or ``(C, L)`` of one 1-D signal."""
        return tuple(int(v) for v in self.x_train.shape[1:])

    def __repr__(self) -> str:
        kind = "image" if len(self.input_shape) == 3 else "signal"
        return (
            f"Split(name={self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"{kind}={self.input_shape}, classes={self.num_classes})"
        )


# ---------------------------------------------------------------------------
# Splitting


def train_test_split(
    x: np.ndarray, y: np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split ``(x, y)`` deterministically into a training and a test set.

    Each class is split on its own (stratified), taking
    ``round(test_fraction * count)`` of its samples, chosen by a permutation
    from ``numpy.random.default_rng(seed)``, into the test set. Both sets are
    then shuffled with the same generator, so the result depends only on the
    inputs, ``test_fraction`` and ``seed``.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, ...)
        Samples.
    y : numpy.ndarray, shape (N,), integer
        Labels.
    test_fraction : float, default 0.2
        Fraction of each class that goes to the test set, ``0 <= f < 1``.
    seed : int, default 0
        Seed of the permutation.

    Returns
    -------
    x_train, y_train, x_test, y_test : numpy.ndarray

    Examples
    --------
    >>> x = np.arange(10.0).reshape(10, 1)
    >>> y = np.array([0, 1] * 5)
    >>> x_train, y_train, x_test, y_test = train_test_split(x, y, 0.2, seed=0)
    >>> len(y_train), len(y_test)
    (8, 2)
    """
    test_fraction = _args.check_real(test_fraction, "test_fraction", low=0, high=1, high_open=True)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    test_parts = []
    train_parts = []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(test_fraction * len(members)))
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    empty = np.empty(0, dtype=np.intp)
    train = rng.permutation(np.concatenate(train_parts or [empty]))
    test = rng.permutation(np.concatenate(test_parts or [empty]))
    return x[train], y[train], x[test], y[test]


def _to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """Map uint8 pixels to float32 in [0, 1]."""
    out = pixels.astype(np.float32)
    out /= 255.0
    return out


# ---------------------------------------------------------------------------
# scikit-learn digits


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Load scikit-learn's bundled 8x8 handwritten digits (no download).

    The 1797 images have integer values ``0..16``; they are divided by 16.

    Parameters
    ----------
    test_fraction : float, default 0.2
        Fraction of each class kept for the test set (see :func:`train_test_split`).
    seed : int, default 0
        Seed of the split.

    Returns
    -------
    Split
        Images of shape ``(N, 1, 8, 8)``, 10 classes ``"0"`` to ``"9"``.

    See Also
    --------
    sklearn.datasets.load_digits

    Examples
    --------
    >>> data = load_digits()
    >>> data.x_train.shape[1:], data.num_classes
    ((1, 8, 8), 10)
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (np.asarray(bunch.images, dtype=np.float64) / 16.0).astype(np.float32)
    x = x[:, None, :, :]  # (N, 1, 8, 8)
    y = np.asarray(bunch.target, dtype=np.int64)
    return Split(*train_test_split(x, y, test_fraction, seed), list(DIGITS_CLASSES), "digits")


# ---------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)


def _find_file(directory: Path, name: str) -> Path:
    """Return ``directory/name`` or ``directory/name.gz``, whichever exists."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"dataset file not found: {directory / name} (nor {name}.gz)")


def _check_directory(directory: PathLike) -> Path:
    if not isinstance(directory, str | os.PathLike):
        raise TypeError(f"directory must be a str or path, got {type(directory).__name__}")
    # ~ and $VARS as a shell would expand them (it does not after "mnist:"), as torchvision does
    path = Path(os.path.expandvars(os.path.expanduser(os.fspath(directory))))
    if not path.is_dir():
        shown = f"{directory} (= {path})" if os.fspath(directory) != str(path) else str(path)
        raise FileNotFoundError(f"dataset directory not found: {shown}")
    return path


def _load_idx_pair(
    directory: Path, prefix: str, num_classes: int, split: str
) -> tuple[np.ndarray, np.ndarray]:
    images_path = _find_file(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_file(directory, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    if len(images) == 0:
        raise DatasetError(
            f"{images_path}: the {split} split is empty (the header declares 0 images); "
            f"it needs at least one image: replace the file with one that has images"
        )
    if 0 in images.shape[1:]:
        raise DatasetError(
            f"{images_path}: images of size {images.shape[1]}x{images.shape[2]}; "
            f"height and width must be at least 1"
        )
    check_labels(labels, num_classes, labels_path)
    return _to_unit_float(images)[:, None, :, :], labels.astype(np.int64)  # (N, 1, H, W)


def _load_idx_dataset(directory: PathLike, classes: list[str], name: str) -> Split:
    root = _check_directory(directory)
    x_train, y_train = _load_idx_pair(root, "train", len(classes), "training")
    x_test, y_test = _load_idx_pair(root, "t10k", len(classes), "test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            f"{root}: training images are {x_train.shape[2:]} but test images are "
            f"{x_test.shape[2:]} (train-images-idx3-ubyte and t10k-images-idx3-ubyte)"
        )
    return Split(x_train, y_train, x_test, y_test, list(classes), name)


def load_mnist(directory: PathLike) -> Split:
    """Load MNIST from its four IDX files.

    Parameters
    ----------
    directory : str or os.PathLike
        Folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or
        gzipped (``.gz`` appended).

    Returns
    -------
    Split
        The official split (60000 / 10000 images), shape ``(N, 1, 28, 28)``.

    Raises
    ------
    FileNotFoundError
        If the folder or one of the files is missing.
    DatasetError
        If a file is malformed, image and label counts differ, or a label is
        not in ``0..9``; the message names the file.

    See Also
    --------
    read_idx, load_fashion_mnist
    """
    return _load_idx_dataset(directory, MNIST_CLASSES, "mnist")


def load_fashion_mnist(directory: PathLike) -> Split:
    """Load Fashion-MNIST from its four IDX files.

    Same files and format as :func:`load_mnist`; only the class names differ
    (``"T-shirt/top"``, ``"Trouser"``, ...).
    """
    return _load_idx_dataset(directory, FASHION_MNIST_CLASSES, "fashion-mnist")


# ---------------------------------------------------------------------------
# CIFAR-10 (binary version)

_CIFAR_TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
_CIFAR_TEST_FILES = ["test_batch.bin"]


def _read_cifar_files(directory: Path, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    paths = [directory / name for name in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 file(s) not found: {', '.join(missing)}")
    batches = [read_cifar_batch(p, len(CIFAR10_CLASSES)) for p in paths]
    pixels = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return _to_unit_float(pixels), labels


def load_cifar10(directory: PathLike) -> Split:
    """Load the binary version of CIFAR-10.

    Parameters
    ----------
    directory : str or os.PathLike
        Folder holding ``data_batch_1.bin`` ... ``data_batch_5.bin`` and
        ``test_batch.bin`` (the ``cifar-10-batches-bin`` folder of the
        archive, or its parent). Each file is a sequence of 3073-byte records:
        one label byte, then 3072 pixel bytes in ``(3, 32, 32)`` order.
        The Python (pickled) version is not supported: nothing is unpickled.

    Returns
    -------
    Split
        The official split (50000 / 10000 images), shape ``(N, 3, 32, 32)``.

    Raises
    ------
    FileNotFoundError
        If the folder or any of the six files is missing (all are named).
    DatasetError
        If a file's size is not a multiple of 3073 bytes or a label is not in
        ``0..9``; the message names the file.
    """
    root = _check_directory(directory)
    nested = root / "cifar-10-batches-bin"
    if not (root / _CIFAR_TEST_FILES[0]).exists() and nested.is_dir():
        root = nested
    x_train, y_train = _read_cifar_files(root, _CIFAR_TRAIN_FILES)
    x_test, y_test = _read_cifar_files(root, _CIFAR_TEST_FILES)
    return Split(x_train, y_train, x_test, y_test, list(CIFAR10_CLASSES), "cifar10")


# ---------------------------------------------------------------------------
# A folder of images, one sub-folder per class


def _image_files(folder: Path) -> list[Path]:
    from PIL import Image

    extensions = {ext.lower() for ext in Image.registered_extensions()}
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions
    )


#: Height and width that a folder's images are resized to when no size is given.
DEFAULT_IMAGE_SIZE = 32
#: Most bytes a folder's images may take once loaded (float32): 4 GiB, the share of
#: :data:`cnnarray.data.formats.MAX_DATA_BYTES` after conversion to float32.
MAX_FOLDER_BYTES = 4 * 2**30


def _parse_size(size: int | Sequence[int] | None) -> tuple[int, int]:
    """Return ``size`` as ``(height, width)``; None means :data:`DEFAULT_IMAGE_SIZE`."""
    return _args._pair(DEFAULT_IMAGE_SIZE if size is None else size, "size", minimum=1)


def _min_class_size(test_fraction: float) -> int:
    """Fewest images a class needs for ``round(test_fraction * n)`` to be at least 1."""
    n = max(1, math.ceil(0.5 / test_fraction))
    while round(test_fraction * n) < 1:  # round() halves to even: one more may be needed
        n += 1
    return n


def _check_split_sizes(root: Path, split: Split, counts: list[int], test_fraction: float) -> None:
    """Raise DatasetError naming the empty split of a folder dataset and how to fill it."""
    if len(split.y_train) == 0:
        raise DatasetError(
            f"{root}: the training split is empty: test_fraction={test_fraction} puts every "
            f"image of each class (at most {max(counts)}) in the test split; add images to "
            f"each class folder or lower test_fraction"
        )
    if test_fraction > 0 and len(split.y_test) == 0:
        raise DatasetError(
            f"{root}: the test split is empty: with test_fraction={test_fraction} a class needs "
            f"at least {_min_class_size(test_fraction)} images to give one to the test split, "
            f"and the largest class folder has {max(counts)}; add images to the class folders"
        )


def load_image_folder(
    directory: PathLike,
    size: int | tuple[int, int] | None = None,
    grayscale: bool | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """Load a folder of images with one sub-folder per class.

    Class names are the sorted names of the sub-folders (hidden ones are
    skipped); every file whose extension Pillow knows is read as an image, and
    other files are ignored. Every image is resized to ``size``, so the memory
    taken is known before the first image is read; images over Pillow's
    decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) are refused.

    Parameters
    ----------
    directory : str or os.PathLike
        Root folder, e.g. ``root/cat/1.png``, ``root/dog/2.jpg``.
    size : int or (int, int), optional
        Target ``(height, width)`` (an int means a square). Images of another
        size are resized bilinearly. Default: :data:`DEFAULT_IMAGE_SIZE` (32)
        square; never the size of some image in the folder.
    grayscale : bool, optional
        Convert to one channel (True) or three RGB channels (False). Default:
        grayscale when the first image has a single band (mode ``"L"``, ...).
    test_fraction : float, default 0.2
        Fraction of each class kept for the test set (see :func:`train_test_split`).
    seed : int, default 0
        Seed of the split.

    Returns
    -------
    Split
        Images of shape ``(N, 1 or 3, height, width)``; ``name`` is the folder's name.

    Raises
    ------
    FileNotFoundError
        If ``directory`` does not exist.
    DatasetError
        If there are no class folders, a class folder holds no image, an
        image cannot be read, the images would take more than
        :data:`MAX_FOLDER_BYTES`, or the training split (or, with
        ``test_fraction > 0``, the test split) is empty; the message names
        the folder or file.
    """
    root = _check_directory(directory)
    target = _parse_size(size)
    test_fraction = _args.check_real(test_fraction, "test_fraction", low=0, high=1, high_open=True)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DatasetError(f"{root}: no class sub-folders found (expected root/CLASS/IMAGE)")
    files: list[tuple[Path, int]] = []
    counts = []
    for label, folder in enumerate(class_dirs):
        images = _image_files(folder)
        if not images:
            raise DatasetError(f"{folder}: class folder contains no image files")
        files.extend((path, label) for path in images)
        counts.append(len(images))
    needed = len(files) * 3 * target[0] * target[1] * 4  # at most 3 channels of float32
    if needed > MAX_FOLDER_BYTES:
        raise DatasetError(
            f"{root}: {len(files)} images of {target[0]}x{target[1]} pixels need up to "
            f"{needed} bytes as float32, over the limit of {MAX_FOLDER_BYTES} "
            f"(cnnarray.data.datasets.MAX_FOLDER_BYTES); choose a smaller image size"
        )

    x = None
    for i, (path, _) in enumerate(files):
        try:
            image = read_image(path, grayscale=grayscale, size=target, resample="bilinear")
        except (OSError, ValueError) as exc:
            raise DatasetError(str(exc)) from exc
        if x is None:  # the first image sets the channels for the rest
            grayscale = image.shape[0] == 1
            x = np.empty((len(files), *image.shape), dtype=np.float32)
        x[i] = image

    labels = np.array([label for _, label in files], dtype=np.int64)
    classes = [p.name for p in class_dirs]
    split = Split(*train_test_split(x, labels, test_fraction, seed), classes, root.name)
    _check_split_sizes(root, split, counts, test_fraction)
    return split


# ---------------------------------------------------------------------------
# Choosing a dataset by name

_SPEC_FORMS = (
    "'digits', 'shapes[:N]', 'signals[:N]', 'mnist:DIR', 'fashion-mnist:DIR', 'cifar10:DIR' "
    "or 'folder:DIR'"
)


def load_dataset(spec: str, *, image_size: int | tuple[int, int] | None = None) -> Split:
    """Load a dataset described by a short string.

    Parameters
    ----------
    spec : str
        One of ``"digits"``, ``"mnist:DIR"``, ``"fashion-mnist:DIR"``,
        ``"cifar10:DIR"`` or ``"folder:DIR"``, where ``DIR`` is the folder
        holding the files, or the seeded synthetic ``"shapes"`` (segmentation
        masks, :func:`~cnnarray.data.synthetic.load_shapes`) and ``"signals"``
        (1-D, :func:`~cnnarray.data.synthetic.load_signals`), optionally
        ``"shapes:N"`` for N training samples (default
        :data:`~cnnarray.data.synthetic.SYNTHETIC_SIZES`; the test set has N // 4).
        Only the first ``:`` separates the name.
    image_size : int or (int, int), optional
        ``(height, width)`` that the images of a ``folder:DIR`` dataset are
        resized to (an int means a square; default
        :data:`DEFAULT_IMAGE_SIZE`). The other datasets are stored at one
        size and keep it.

    Returns
    -------
    Split

    Raises
    ------
    ValueError
        If the spec names no known dataset or lacks a required ``DIR``, or
        ``image_size`` is not a positive int or pair of them.

    Examples
    --------
    >>> load_dataset("digits").name
    'digits'
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a string such as {_SPEC_FORMS}, got {type(spec).__name__}")
    size = _parse_size(image_size)
    name, sep, directory = spec.partition(":")
    key = name.strip().lower()
    if key == "digits":
        if sep:
            raise ValueError(f"dataset spec 'digits' takes no directory, got {spec!r}")
        return load_digits()
    if key in ("shapes", "signals"):
        from .synthetic import load_synthetic  # it imports Split from here

        return load_synthetic(key, directory if sep else None)
    loaders = {
        "mnist": load_mnist,
        "fashion-mnist": load_fashion_mnist,
        "fashion_mnist": load_fashion_mnist,
        "cifar10": load_cifar10,
        "cifar-10": load_cifar10,
        "folder": load_image_folder,
    }
    if key not in loaders:
        raise ValueError(f"unknown dataset spec {spec!r}; expected {_SPEC_FORMS}")
    if not directory:
        raise ValueError(f"dataset spec {spec!r} needs a directory: expected '{key}:DIR'")
    if key == "folder":
        return load_image_folder(directory, size)
    return loaders[key](directory)
