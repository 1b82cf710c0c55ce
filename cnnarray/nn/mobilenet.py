"""Depthwise-separable networks: ``DepthwiseSeparable`` and ``MobileNet`` (Howard et al., 2017).

MobileNet v1 replaces each 3x3 convolution by a depthwise 3x3 convolution
(``groups`` = channels: one filter per channel) and a pointwise 1x1
convolution that mixes the channels, each followed by BatchNorm and ReLU.
The modules define ``forward`` only; weights start as PyTorch's layer
defaults, BatchNorm weights at 1 and biases at 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _args
from ..ops import relu
from .container import Sequential
from .init import make_rng
from .module import register
from .resnet import Block, Net, conv_bn

__all__ = ["V1_BLOCKS", "DepthwiseSeparable", "MobileNet"]

#: The 13 blocks of MobileNet v1 as (out_channels, stride), after its 32-channel stem.
V1_BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip


@register
class DepthwiseSeparable(Block):
    """Depthwise 3x3 convolution, BN, ReLU, then pointwise 1x1 convolution, BN, ReLU.

    ``depthwise`` (groups = in_channels, carries the stride) -> ``bn1`` -> ReLU ->
    ``pointwise`` (in_channels -> out_channels) -> ``bn2`` -> ReLU; both
    convolutions without bias. It costs ``9 C_in + C_in C_out`` weights where
    a 3x3 convolution costs ``9 C_in C_out``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input (N, in_channels, H, W) and the output
        (N, out_channels, H', W'), ``H' = (H - 1) // stride + 1``.
    stride : int, default 1
    backend, dtype, seed, rng
        As in :class:`~cnnarray.nn.Conv2d` (weights drawn depthwise first).
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
        self.depthwise, self.bn1 = conv_bn(in_channels, in_channels, 3, stride, kw, in_channels)
        self.pointwise, self.bn2 = conv_bn(in_channels, out_channels, 1, 1, kw)

    def forward(self, x: Any) -> Any:
        x = relu(self.bn1(self.depthwise(x)))
        return relu(self.bn2(self.pointwise(x)))


def _check_blocks(blocks: Any) -> list[tuple[int, int]]:
    """Return ``blocks``, a non-empty sequence of (out_channels, stride) pairs, as tuples."""
    if isinstance(blocks, str) or not isinstance(blocks, Sequence) or not blocks:
        raise ValueError(
            f"blocks must be a non-empty sequence of (out_channels, stride) pairs, got {blocks!r}"
        )
    pairs = []
    for i, pair in enumerate(blocks):
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"blocks[{i}] must be an (out_channels, stride) pair, got {pair!r}")
        pairs.append((_args.check_int(pair[0], f"blocks[{i}][0] (out_channels)", minimum=1),
                      _args.check_int(pair[1], f"blocks[{i}][1] (stride)", minimum=1)))  # fmt: skip
    return pairs


@register
class MobileNet(Net):
    """MobileNet v1: a convolution stem, depthwise-separable blocks, global pooling, Linear.

    ``conv1`` (3x3, ``stem_width`` channels, stride ``stem_stride``) -> ``bn1``
    -> ReLU -> ``features`` (one :class:`DepthwiseSeparable` per entry of
    ``blocks``) -> ``avgpool`` (AdaptiveAvgPool2d(1)) -> ``flatten`` -> ``fc``.

    Parameters
    ----------
    blocks : sequence of (int, int), default :data:`V1_BLOCKS`
        ``(out_channels, stride)`` of each block.
    stem_width : int, default 32
    stem_stride : int, default 2
        The paper's 2 suits 224x224 images; 1 keeps small images' detail.
    in_channels : int, default 3
    num_classes : int, default 10
    backend, dtype, seed, rng
        As in :class:`~cnnarray.nn.Conv2d`; one generator draws all weights in order.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnarray import nn
    >>> model = nn.MobileNet([(16, 1), (32, 2)], stem_width=8, stem_stride=1, seed=0)
    >>> model(np.zeros((2, 3, 8, 8), "float32")).shape
    (2, 10)
    """

    _config_names = ("blocks", "stem_width", "stem_stride", "in_channels", "num_classes")

    def __init__(
        self,
        blocks: Sequence[tuple[int, int]] = V1_BLOCKS,
        stem_width: int = 32,
        stem_stride: int = 2,
        in_channels: int = 3,
        num_classes: int = 10,
        *,
        backend: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        self.blocks = _check_blocks(blocks)
        self.stem_width = _args.check_int(stem_width, "stem_width", minimum=1)
        self.stem_stride = _args.check_int(stem_stride, "stem_stride", minimum=1)
        self.in_channels = _args.check_int(in_channels, "in_channels", minimum=1)
        self.num_classes = _args.check_int(num_classes, "num_classes", minimum=1)
        kw = {"backend": backend, "dtype": dtype, "rng": make_rng(seed, rng)}
        self.conv1, self.bn1 = conv_bn(in_channels, stem_width, 3, stem_stride, kw)
        features, channels = [], stem_width
        for out_channels, stride in self.blocks:
            features.append(DepthwiseSeparable(channels, out_channels, stride, **kw))
            channels = out_channels
        self.features = Sequential(*features)
        self._add_head(channels, num_classes, kw)

    def forward(self, x: Any) -> Any:
        x = relu(self.bn1(self.conv1(x)))
        return self._head(self.features(x))
