"""Ready-made networks: LeNet-5, a small CNN for 8x8 digits, a small VGG, ResNets, a MobileNet;
a small U-Net for segmentation and a small 1-D CNN for signals.

Every builder takes ``in_channels``, ``num_classes``, ``input_size``,
``backend``, ``dtype`` and ``seed`` (one generator feeds all layers in order,
so a seed fixes the whole model) and returns a :class:`~cnnarray.nn.Sequential`
or a registered model class (:class:`~cnnarray.nn.ResNet`,
:class:`~cnnarray.nn.MobileNet`), whose :meth:`~cnnarray.nn.Module.spec`
rebuilds it without the builder. :data:`MODELS` lists the image classifiers,
:data:`SEGMENTATION_MODELS` the per-pixel ones (logits (N, K, H, W)) and
:data:`SIGNAL_MODELS` those of 1-D signals (N, C, L); :func:`build_model`
builds any of them by name.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from .. import _args
from .activation import ReLU
from .cnn1d import CNN1d
from .container import Sequential
from .conv import Conv2d
from .dropout import Dropout
from .init import make_rng
from .linear import Flatten, Linear
from .mobilenet import MobileNet
from .module import Module
from .normalization import BatchNorm2d
from .pooling import MaxPool2d
from .resnet import ResNet
from .unet import UNet

__all__ = [
    "MODELS",
    "SEGMENTATION_MODELS",
    "SIGNAL_MODELS",
    "build_model",
    "cnn1d_small",
    "lenet5",
    "mobilenet_small",
    "resnet8",
    "resnet18",
    "resnet20",
    "small_cnn",
    "unet_small",
    "vgg_small",
]


def _pool_out(size: int) -> int:
    return size // 2


def _check_sizes(in_channels: Any, num_classes: Any, input_size: Any) -> None:
    _args.check_int(in_channels, "in_channels", minimum=1)
    _args.check_int(num_classes, "num_classes", minimum=1)
    _args.check_int(input_size, "input_size", minimum=1)


def lenet5(
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int = 28,
    *,
    backend: Any = None,
    dtype: Any = "float32",
    seed: int | None = None,
) -> Sequential:
    """Build LeNet-5 (LeCun et al., 1998) with ReLU and max pooling.

    ``Conv(6, 5x5) - ReLU - MaxPool(2) - Conv(16, 5x5) - ReLU - MaxPool(2) - Flatten -
    Linear(120) - ReLU - Linear(84) - ReLU - Linear(num_classes)``.

    Padding adapts to ``input_size``: the first convolution pads 2 ("same")
    below 32 pixels, so 28x28 MNIST behaves like the original 32x32 input, and
    the second pads 2 when the map reaching it is smaller than 10 pixels, so
    that small images such as 8x8 digits still fit (8 -> 8 -> 4 -> 4 -> 2,
    64 features into the first Linear). Sizes 28 and 32 give the classic
    16 * 5 * 5 = 400 features.

    Parameters
    ----------
    in_channels : int, default 1
    num_classes : int, default 10
    input_size : int, default 28
        Height and width of the (square) input images; at least 4.
    backend, dtype, seed
        Where the weights live, their dtype, and the seed of their initialisation.
    """
    _check_sizes(in_channels, num_classes, input_size)
    pad1 = 0 if input_size >= 32 else 2
    size1 = _pool_out(input_size + 2 * pad1 - 4)
    pad2 = 0 if size1 >= 10 else 2
    size2 = _pool_out(size1 + 2 * pad2 - 4)
    if size1 < 1 or size2 < 1:
        raise ValueError(f"lenet5 needs input_size of at least 4, got {input_size}")
    kw = {"backend": backend, "dtype": dtype, "rng": make_rng(seed)}
    return Sequential(
        Conv2d(in_channels, 6, 5, padding=pad1, **kw),
        ReLU(),
        MaxPool2d(2),
        Conv2d(6, 16, 5, padding=pad2, **kw),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(16 * size2 * size2, 120, **kw),
        ReLU(),
        Linear(120, 84, **kw),
        ReLU(),
        Linear(84, num_classes, **kw),
    )


def small_cnn(
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int = 8,
    *,
    dropout: float = 0.0,
    backend: Any = None,
    dtype: Any = "float32",
    seed: int | None = None,
) -> Sequential:
    """Build a compact CNN for small images such as the 8x8 scikit-learn digits.

    ``Conv(16, 3x3, pad 1) - ReLU - Conv(32, 3x3, pad 1) - ReLU - MaxPool(2) - Flatten -
    Linear(64) - ReLU - [Dropout(dropout)] - Linear(num_classes)``; for 8x8
    inputs the first Linear sees 32 * 4 * 4 = 512 features (about 38k parameters
    in all).

    Parameters
    ----------
    in_channels, num_classes, input_size
        As in :func:`lenet5`; input_size at least 2.
    dropout : float, default 0.0
        Probability of the Dropout before the last layer; 0 leaves it out.
    backend, dtype, seed
        As in :func:`lenet5`.
    """
    _check_sizes(in_channels, num_classes, input_size)
    size = _pool_out(input_size)
    if size < 1:
        raise ValueError(f"small_cnn needs input_size of at least 2, got {input_size}")
    kw = {"backend": backend, "dtype": dtype, "rng": make_rng(seed)}
    layers: list[Module] = [
        Conv2d(in_channels, 16, 3, padding=1, **kw),
        ReLU(),
        Conv2d(16, 32, 3, padding=1, **kw),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(32 * size * size, 64, **kw),
        ReLU(),
    ]
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Linear(64, num_classes, **kw))
    return Sequential(*layers)


def vgg_small(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    *,
    widths: Sequence[int] = (32, 64, 128),
    hidden: int = 256,
    dropout: float = 0.0,
    backend: Any = None,
    dtype: Any = "float32",
    seed: int | None = None,
) -> Sequential:
    """Build a small VGG-style network for 32x32 colour images (CIFAR-10).

    ``features``: for each width, ``[Conv(width, 3x3, pad 1, no bias) - BatchNorm - ReLU] x 2 -
    MaxPool(2)``, halving the size (32 -> 16 -> 8 -> 4 with the default widths);
    ``classifier``: ``Flatten - Linear(hidden) - ReLU - [Dropout] - Linear(num_classes)``.
    Parameter names read like torchvision's: ``features.0.weight``,
    ``classifier.1.bias``.

    Parameters
    ----------
    in_channels, num_classes, input_size
        As in :func:`lenet5`; input_size at least ``2 ** len(widths)``.
    widths : sequence of int, default (32, 64, 128)
        Channels of each block.
    hidden : int, default 256
        Width of the hidden fully connected layer.
    dropout : float, default 0.0
        Probability of the Dropout in the classifier; 0 leaves it out.
    backend, dtype, seed
        As in :func:`lenet5`.
    """
    _check_sizes(in_channels, num_classes, input_size)
    if not widths:
        raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
    for i, width in enumerate(widths):
        _args.check_int(width, f"widths[{i}]", minimum=1)
    size = input_size // 2 ** len(widths)
    if size < 1:
        raise ValueError(
            f"vgg_small with {len(widths)} blocks halves the input {len(widths)} times and "
            f"needs input_size of at least {2 ** len(widths)}, got {input_size}"
        )
    kw = {"backend": backend, "dtype": dtype, "rng": make_rng(seed)}
    features: list[Module] = []
    channels = in_channels
    for width in widths:
        for _ in range(2):
            features += [
                Conv2d(channels, width, 3, padding=1, bias=False, **kw),
                BatchNorm2d(width, backend=backend, dtype=dtype),
                ReLU(),
            ]
            channels = width
        features.append(MaxPool2d(2))
    classifier: list[Module] = [Flatten(), Linear(channels * size * size, hidden, **kw), ReLU()]
    if dropout:
        classifier.append(Dropout(dropout))
    classifier.append(Linear(hidden, num_classes, **kw))
    return Sequential(
        OrderedDict(features=Sequential(*features), classifier=Sequential(*classifier))
    )


def _cifar_resnet(
    depth: int, in_channels: Any, num_classes: Any, input_size: Any, **kw: Any
) -> ResNet:
    """Build the CIFAR ResNet of He et al. (2016) with ``depth = 6 n + 2`` layers."""
    _check_sizes(in_channels, num_classes, input_size)
    n = (depth - 2) // 6
    return ResNet("basic", [n] * 3, [16, 32, 64], "cifar", in_channels, num_classes, **kw)


def resnet8(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    *,
    backend: Any = None,
    dtype: Any = "float32",
    seed: int | None = None,
) -> ResNet:
    """Build ResNet-8: the CIFAR-style ResNet of He et al. (2016) with one block per stage.

    ``Conv(16, 3x3) - BN - ReLU``, then three stages of one :class:`~cnnarray.nn.BasicBlock`
    each, of 16, 32 and 64 channels (the last two halve the size), then global
    average pooling and ``Linear(64, num_classes)``; about 78k parameters. The
    shortcuts that change shape are 1x1 convolutions with BatchNorm (the
    paper's option B). Any input size works (8 -> 8 -> 4 -> 2 for 8x8 digits).

    Parameters
    ----------
    in_channels : int, default 3
    num_classes : int, default 10
    input_size : int, default 32
        Height and width of the inputs; any positive size fits.
    backend, dtype, seed
        As in :func:`lenet5`.
    """
    return _cifar_resnet(8, in_channels, num_classes, input_size, backend=backend, dtype=dtype,
                         seed=seed)  # fmt: skip


def resnet20(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    *,
    backend: Any = None,
    dtype: Any = "float32",
    seed: int | None = None,
) -> ResNet:
    """Build ResNet-20 (He et al., 2016, CIFAR-10): as :func:`resnet8` with three blocks a stage.

    About 0.27M parameters.

    Parameters
    ----------
    in_channels, num_classes, input_size, backend, dtype, seed
        As in :func:`resnet8`.
    """
    return _cifar_resnet(20, in_channels, num_classes, input_size, backend=backend, dtype=dtype,
                         seed=seed)  # fmt: skip


def resnet18(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    *,
    backend: Any = None,
    dtype: Any = "float32",
    seed: int | None = None,
) -> ResNet:
    """Build ResNet-18 as torchvision does: ImageNet stem, BasicBlocks [2, 2, 2, 2], 64..512.

    ``Conv(64, 7x7, stride 2) - BN - ReLU - MaxPool(3, 2, 1)``, four stages of
    two :class:`~cnnarray.nn.BasicBlock` of 64, 128, 256 and 512 channels,
    global average pooling and ``Linear(512, num_classes)``: 11.18M parameters
    for 3 channels and 10 classes, with torchvision's parameter names. The stem
    divides the size by 4 and each later stage by 2 (rounding up), so small
    images end as 1x1 maps; any positive size fits.

    Parameters
    ----------
    in_channels, num_classes, input_size, backend, dtype, seed
        As in :func:`resnet8`.
    """
    _check_sizes(in_channels, num_classes, input_size)
    return ResNet("basic", [2, 2, 2, 2], [64, 128, 256, 512], "imagenet", in_channels,
                  num_classes, backend=backend, dtype=dtype, seed=seed)  # fmt: skip


#: ``(out_channels, stride)`` of the blocks of :func:`mobilenet_small`.
SMALL_MOBILENET_BLOCKS = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1))


def mobilenet_small(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    *,
    backend: Any = None,
    dtype: Any = "float32",
    seed: int | None = None,
) -> MobileNet:
    """Build a small MobileNet v1 (Howard et al., 2017) for images of 8 to 32 pixels.

    ``Conv(16, 3x3) - BN - ReLU`` (stride 1), seven
    :class:`~cnnarray.nn.DepthwiseSeparable` blocks of 32, 64, 64, 128, 128,
    256 and 256 channels (the 2nd, 4th and 6th with stride 2), global average
    pooling and ``Linear(256, num_classes)``: about 0.14M parameters. Any
    input size works (8 -> 8 -> 4 -> 2 -> 1 for 8x8 digits).

    Parameters
    ----------
    in_channels, num_classes, input_size, backend, dtype, seed
        As in :func:`resnet8`.
    """
    _check_sizes(in_channels, num_classes, input_size)
    return MobileNet(SMALL_MOBILENET_BLOCKS, 16, 1, in_channels, num_classes, backend=backend,
                     dtype=dtype, seed=seed)  # fmt: skip


MODELS: dict[str, Callable[..., Module]] = {
    "lenet5": lenet5,
    "small_cnn": small_cnn,
    "vgg_small": vgg_small,
    "resnet8": resnet8,
    "resnet20": resnet20,
    "resnet18": resnet18,
    "mobilenet_small": mobilenet_small,
}


def unet_small(
    in_channels: int = 1,
    num_classes: int = 2,
    input_size: int | None = None,
    *,
    base: int = 8,
    depth: int = 2,
    up: str = "transpose",
    backend: Any = None,
    dtype: Any = "float32",
    seed: int | None = None,
) -> UNet:
    """Build a small :class:`~cnnarray.nn.UNet` for segmentation: logits (N, num_classes, H, W).

    With the defaults: levels of 8, 16 and 32 channels (two poolings), transposed
    convolutions up, about 30k parameters (4 classes).

    Parameters
    ----------
    in_channels : int, default 1
    num_classes : int, default 2
        Classes of each pixel, background included.
    input_size : int, optional
        Height and width of the inputs, if known: checked to be a multiple of
        ``2**depth`` (the model refuses other sizes when it sees them).
    base, depth, up
        As in :class:`~cnnarray.nn.UNet`.
    backend, dtype, seed
        As in :func:`lenet5`.
    """
    _args.check_int(depth, "depth", minimum=1, maximum=8)
    if input_size is not None:
        _check_sizes(in_channels, num_classes, input_size)
        if input_size % 2**depth:
            raise ValueError(
                f"unet_small with depth {depth} needs input_size a multiple of {2**depth}, "
                f"got {input_size}"
            )
    return UNet(in_channels, num_classes, base, depth, up, backend=backend, dtype=dtype,
                seed=seed)  # fmt: skip


def cnn1d_small(
    in_channels: int = 1,
    num_classes: int = 4,
    input_size: int = 128,
    *,
    widths: Sequence[int] = (16, 32, 32),
    kernel_size: int = 5,
    backend: Any = None,
    dtype: Any = "float32",
    seed: int | None = None,
) -> CNN1d:
    """Build a small :class:`~cnnarray.nn.CNN1d` for signals (N, in_channels, input_size).

    Three blocks of 16, 32 and 32 channels (kernel 5, each halving the length),
    global average pooling and a Linear layer: about 8k parameters.

    Parameters
    ----------
    in_channels, num_classes : int
    input_size : int, default 128
        Length L of the signals; at least ``2**len(widths)``.
    widths, kernel_size
        As in :class:`~cnnarray.nn.CNN1d`.
    backend, dtype, seed
        As in :func:`lenet5`.
    """
    _check_sizes(in_channels, num_classes, input_size)
    if isinstance(widths, Sequence) and input_size < 2 ** len(widths):
        raise ValueError(
            f"cnn1d_small with {len(widths)} blocks halves the length {len(widths)} times and "
            f"needs input_size of at least {2 ** len(widths)}, got {input_size}"
        )
    return CNN1d(widths, kernel_size, in_channels, num_classes, backend=backend, dtype=dtype,
                 seed=seed)  # fmt: skip


#: Per-pixel classifiers: logits (N, num_classes, H, W) for images (N, C, H, W).
SEGMENTATION_MODELS: dict[str, Callable[..., Module]] = {"unet_small": unet_small}

#: Classifiers of 1-D signals (N, C, L).
SIGNAL_MODELS: dict[str, Callable[..., Module]] = {"cnn1d_small": cnn1d_small}


def build_model(name: str, **kwargs: Any) -> Module:
    """Build the model listed as ``name`` in :data:`MODELS`, :data:`SEGMENTATION_MODELS` or
    :data:`SIGNAL_MODELS`, with keyword arguments.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnarray import nn
    >>> model = nn.build_model("small_cnn", num_classes=10, seed=0)
    >>> model(np.zeros((2, 1, 8, 8), "float32")).shape
    (2, 10)
    """
    every = {**MODELS, **SEGMENTATION_MODELS, **SIGNAL_MODELS}
    if name not in every:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(every)}")
    return every[name](**kwargs)
