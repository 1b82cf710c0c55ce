"""Datasets, mini-batch loading and augmentation.

Loaders return a :class:`Split` of float32 images ``(N, C, H, W)`` in ``[0, 1]``
and int64 labels; :func:`read_image` reads one image file the same way;
:class:`DataLoader` yields batches on a chosen backend; the transforms in
:mod:`cnnarray.data.augment` run on the batch's device.
"""

from .augment import (
    Compose,
    GaussianNoise,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomShift,
)
from .datasets import (
    CIFAR10_CLASSES,
    DIGITS_CLASSES,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
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
from .images import read_image
from .loader import DataLoader

__all__ = [
    "CIFAR10_CLASSES",
    "DIGITS_CLASSES",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "Compose",
    "DataLoader",
    "DatasetError",
    "GaussianNoise",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomShift",
    "Split",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist",
    "read_idx",
    "read_image",
    "train_test_split",
]
