"""Residual networks: ``BasicBlock``, ``Bottleneck`` and ``ResNet`` (He et al., 2016).

The blocks and the model follow torchvision's ``torchvision/models/resnet.py``
in structure and in parameter names (``layer1.0.conv1.weight``,
``layer2.0.downsample.0.weight``, ``fc.bias``), so that a state dict maps one
to one onto a PyTorch model built the same way. They define ``forward``
only: the residual sum is plain arithmetic on the children's outputs.

Two stems: "imagenet" (7x7 convolution with stride 2, then 3x3 max pooling
with stride 2, as torchvision) and "cifar" (one 3x3 convolution, as in the
CIFAR-10 networks of He et al.). A shortcut that changes the stride or the
channels is a 1x1 convolution with BatchNorm (the paper's option B).
Weights start as PyTorch's layer defaults; BatchNorm weights at 1, biases at 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _args
from ..ops import relu
from ._fold import conv_bn_forward
from .container import Sequential
from .conv import Conv2d
from .init import make_rng
from .linear import Flatten, Linear
from .module import Module, register
from .normalization import BatchNorm2d
from .pooling import AdaptiveAvgPool2d, MaxPool2d

__all__ = ["BasicBlock", "Block", "Bottleneck", "Net", "ResNet"]


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, kw: dict[str, Any],
    groups: int = 1,
) -> tuple[Conv2d, BatchNorm2d]:  # fmt: skip
    """Return a bias-free ``kernel_size`` convolution ("same" padding at stride 1) and its BN.

    ``kw`` holds ``backend``, ``dtype`` and the shared ``rng``.
    """
    conv = Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups,
                  bias=False, **kw)  # fmt: skip
    return conv, BatchNorm2d(out_channels, backend=kw["backend"], dtype=kw["dtype"])


def _shortcut(in_channels: int, out_channels: int, stride: int, kw: dict[str, Any]) -> Any:
    """Return the 1x1-conv + BN projection when the block changes stride or channels, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    return Sequential(*conv_bn(in_channels, out_channels, 1, stride, kw))


class Block(Module):
    """Base of the blocks: checked arguments, the layers' keyword arguments, the spec's dtype."""

    #: Output channels per unit of the block's width argument.
    expansion = 1

    def _setup(
        self, in_channels: Any, width: Any, width_name: str, stride: Any, backend: Any,
        dtype: Any, seed: Any, rng: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """Check and keep the arguments; return the layers' keyword arguments."""
        self.in_channels = _args.check_int(in_channels, "in_channels", minimum=1)
        setattr(self, width_name, _args.check_int(width, width_name, minimum=1))
        self.stride = _args.check_int(stride, "stride", minimum=1)
        return {"backend": backend, "dtype": dtype, "rng": make_rng(seed, rng)}

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "dtype": self.parameters()[0].dtype.name}


def _residual(out: Any, x: Any, downsample: Module | None) -> Any:
    """Return ``relu(out + x)``, ``x`` passed through ``downsample`` unless it is None."""
    return relu(out + (x if downsample is None else downsample(x)))


class Net(Module):
    """Base of the models: the classifier head and the spec's dtype."""

    def _add_head(self, channels: int, num_classes: int, kw: dict[str, Any]) -> None:
        """Add ``avgpool`` (global average), ``flatten`` and ``fc`` (Linear to the classes)."""
        self.avgpool = AdaptiveAvgPool2d(1)
        self.flatten = Flatten()
        self.fc = Linear(channels, num_classes, **kw)

    def _head(self, x: Any) -> Any:
        """Return the logits (N, num_classes) of the features x (N, C, H, W)."""
        return self.fc(self.flatten(self.avgpool(x)))

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "dtype": self.fc.weight.dtype.name}


@register
class BasicBlock(Block):
    """Residual block of two 3x3 convolutions: ``relu(bn2(conv2(relu(bn1(conv1 x)))) + x)``.

    The first convolution carries the stride. When the stride is not 1 or the
    channels change, the shortcut ``downsample`` is a 1x1 convolution with
    that stride followed by BatchNorm; otherwise it is None (identity).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input (N, in_channels, H, W) and of the output
        (N, out_channels, H', W'), ``H' = (H - 1) // stride + 1``.
    stride : int, default 1
    backend : str, optional
        Where the parameters live (default "cpu").
    dtype : {"float32", "float64"}, default "float32"
    seed : int, optional
    rng : numpy.random.Generator, optional
        Source of the initial weights, drawn for conv1, conv2 and then the
        shortcut's convolution (give at most one of seed and rng).

    See Also
    --------
    torchvision.models.resnet.BasicBlock
    """

    _config_names = ("in_channels", "out_channels", "stride")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        backend: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        kw = self._setup(in_channels, out_channels, "out_channels", stride, backend, dtype, seed,
                         rng)  # fmt: skip
        self.conv1, self.bn1 = conv_bn(in_channels, out_channels, 3, stride, kw)
        self.conv2, self.bn2 = conv_bn(out_channels, out_channels, 3, 1, kw)
        self.downsample = _shortcut(in_channels, out_channels, stride, kw)

    def forward(self, x: Any) -> Any:
        out = relu(conv_bn_forward(self.conv1, self.bn1, x))
        return _residual(conv_bn_forward(self.conv2, self.bn2, out), x, self.downsample)


@register
class Bottleneck(Block):
    """Residual block 1x1 -> 3x3 -> 1x1 that widens its output ``expansion = 4`` times.

    ``conv1`` (1x1) reduces to ``channels``, ``conv2`` (3x3) carries the stride
    (torchvision's "ResNet v1.5" placement; the paper strides the first 1x1),
    ``conv3`` (1x1) expands to ``4 * channels``; each is followed by
    BatchNorm, the first two by ReLU, and the sum with the shortcut by ReLU.

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    channels : int
        Width of the inner convolutions (torchvision's ``planes``); the
        output has ``4 * channels``.
    stride, backend, dtype, seed, rng
        As in :class:`BasicBlock`.

    See Also
    --------
    torchvision.models.resnet.Bottleneck
    """

    expansion = 4
    _config_names = ("in_channels", "channels", "stride")

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        *,
        backend: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        kw = self._setup(in_channels, channels, "channels", stride, backend, dtype, seed, rng)
        out_channels = channels * self.expansion
        self.conv1, self.bn1 = conv_bn(in_channels, channels, 1, 1, kw)
        self.conv2, self.bn2 = conv_bn(channels, channels, 3, stride, kw)
        self.conv3, self.bn3 = conv_bn(channels, out_channels, 1, 1, kw)
        self.downsample = _shortcut(in_channels, out_channels, stride, kw)

    def forward(self, x: Any) -> Any:
        out = relu(conv_bn_forward(self.conv1, self.bn1, x))
        out = relu(conv_bn_forward(self.conv2, self.bn2, out))
        return _residual(conv_bn_forward(self.conv3, self.bn3, out), x, self.downsample)


BLOCKS: dict[str, type[Block]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
STEMS = ("cifar", "imagenet")


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of the strings ``choices``; else a ValueError naming them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_int_list(value: Any, name: str) -> list[int]:
    """Return ``value``, a non-empty sequence of positive ints, as a list."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {value!r}")
    return [_args.check_int(v, f"{name}[{i}]", minimum=1) for i, v in enumerate(value)]


@register
class ResNet(Net):
    """Residual network: stem, stages of residual blocks, global average pooling, Linear.

    ``stem`` ("conv1", "bn1", ReLU and, for "imagenet", "maxpool") ->
    ``layer1`` .. ``layerK`` (Sequentials of ``layers[k]`` blocks of width
    ``widths[k]``; the first block of each stage after the first has stride
    2) -> ``avgpool`` (AdaptiveAvgPool2d(1)) -> ``flatten`` -> ``fc``. Any
    input size works; each stride-2 step maps a size ``s`` to ``(s + 1) // 2``.

    Parameters
    ----------
    block : {"basic", "bottleneck"}
        :class:`BasicBlock` or :class:`Bottleneck` (outputs 4x its width).
    layers : sequence of int
        Blocks per stage, e.g. [2, 2, 2, 2] for ResNet-18, [3, 3, 3] for ResNet-20.
    widths : sequence of int
        Width of each stage (same length as ``layers``); the stem has ``widths[0]``
        channels.
    stem : {"imagenet", "cifar"}, default "imagenet"
        "imagenet": 7x7 convolution with stride 2 and padding 3, BatchNorm, ReLU,
        3x3 max pooling with stride 2 and padding 1 (divides the size by 4);
        "cifar": 3x3 convolution with padding 1, BatchNorm, ReLU (keeps the size).
    in_channels : int, default 3
    num_classes : int, default 10
    backend, dtype, seed, rng
        As in :class:`BasicBlock`; one generator draws all weights in order
        (stem, stages, fc).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnarray import nn
    >>> model = nn.ResNet("basic", [1, 1], [8, 16], stem="cifar", num_classes=3, seed=0)
    >>> model(np.zeros((2, 3, 8, 8), "float32")).shape
    (2, 3)
    >>> [name for name, _ in model.named_parameters()][-4:]
    ['layer2.0.downsample.1.weight', 'layer2.0.downsample.1.bias', 'fc.weight', 'fc.bias']

    See Also
    --------
    torchvision.models.ResNet
    """

    _config_names = ("block", "layers", "widths", "stem", "in_channels", "num_classes")

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        widths: Sequence[int],
        stem: str = "imagenet",
        in_channels: int = 3,
        num_classes: int = 10,
        *,
        backend: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        self.block = check_choice(block, "block", list(BLOCKS))
        self.layers = check_int_list(layers, "layers")
        self.widths = check_int_list(widths, "widths")
        if len(self.widths) != len(self.layers):
            raise ValueError(
                f"widths must give one width per stage of layers={self.layers}, "
                f"got widths={self.widths}"
            )
        self.stem = check_choice(stem, "stem", STEMS)
        self.in_channels = _args.check_int(in_channels, "in_channels", minimum=1)
        self.num_classes = _args.check_int(num_classes, "num_classes", minimum=1)
        kw = {"backend": backend, "dtype": dtype, "rng": make_rng(seed, rng)}
        kernel, stride = (7, 2) if self.stem == "imagenet" else (3, 1)
        self.conv1, self.bn1 = conv_bn(in_channels, self.widths[0], kernel, stride, kw)
        self.maxpool = MaxPool2d(3, 2, 1) if self.stem == "imagenet" else None
        block_cls, channels = BLOCKS[self.block], self.widths[0]
        for k, (count, width) in enumerate(zip(self.layers, self.widths, strict=True)):
            blocks = []
            for i in range(count):
                stride = 2 if k > 0 and i == 0 else 1
                blocks.append(block_cls(channels, width, stride, **kw))
                channels = width * block_cls.expansion
            setattr(self, f"layer{k + 1}", Sequential(*blocks))
        self._add_head(channels, num_classes, kw)

    def stages(self) -> list[Sequential]:
        """Return the stages ``layer1``, ``layer2``, ... in order."""
        return [getattr(self, f"layer{k + 1}") for k in range(len(self.layers))]

    def forward(self, x: Any) -> Any:
        x = relu(conv_bn_forward(self.conv1, self.bn1, x))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for stage in self.stages():
            x = stage(x)
        return self._head(x)
