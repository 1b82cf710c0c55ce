"""U-Net for per-pixel classification (Ronneberger et al., 2015), small enough for the CPU.

An encoder of convolution blocks and 2x2 max pooling, a bottleneck block, and
a decoder that upsamples (transposed convolution, or bilinear upsampling and a
3x3 convolution), concatenates the encoder's map of the same size along the
channels (the skip connection) and applies another block; a 1x1 convolution
gives the class logits of every pixel. The module defines ``forward`` only:
autograd differentiates it.
"""

from __future__ import annotations

from typing import Any

from .. import _args
from ..autograd import cat
from .activation import ReLU
from .container import Sequential
from .conv import Conv2d, ConvTranspose2d
from .init import make_rng
from .module import Module, register
from .normalization import BatchNorm2d
from .pooling import MaxPool2d
from .upsampling import Upsample

__all__ = ["UP_MODES", "UNet", "conv_block"]

#: How the decoder doubles the size of its maps.
UP_MODES = ("transpose", "bilinear")


def conv_block(in_channels: int, out_channels: int, kw: dict[str, Any]) -> Sequential:
    """Return ``[Conv2d(3x3, pad 1, no bias) - BatchNorm2d - ReLU] x 2``; ``kw`` as in conv_bn."""
    layers: list[Module] = []
    for c_in in (in_channels, out_channels):
        layers += [
            Conv2d(c_in, out_channels, 3, padding=1, bias=False, **kw),
            BatchNorm2d(out_channels, backend=kw["backend"], dtype=kw["dtype"]),
            ReLU(),
        ]
    return Sequential(*layers)


@register
class UNet(Module):
    """U-Net: encoder blocks and max pooling, bottleneck, upsampling, skip concatenation, head.

    Level ``i`` (0 at the top) has ``base * 2**i`` channels. ``encoder.i`` is a
    :func:`conv_block` whose output is kept for the skip connection and then
    max-pooled (2x2); ``bottleneck`` is the block at level ``depth``;
    ``upsample.i`` takes level ``i + 1`` up to level ``i`` (ConvTranspose2d(2, stride 2), or
    Upsample(scale 2, bilinear) and Conv2d(3x3)), and ``decoder.i`` is a block on
    ``cat([skip_i, upsampled], axis=1)`` (2 ``base * 2**i`` channels); ``head``
    is a 1x1 convolution to the classes.

    Parameters
    ----------
    in_channels : int, default 1
    num_classes : int, default 2
        K, the classes of each pixel (background counts as one).
    base : int, default 8
        Channels of the top level.
    depth : int, default 2
        Number of poolings; the input's height and width must be multiples of
        ``2**depth`` (other sizes are refused with a ValueError).
    up : {"transpose", "bilinear"}, default "transpose"
    backend, dtype, seed, rng
        As in :class:`~cnnarray.nn.Conv2d`; one generator draws all weights in
        order (encoder, bottleneck, upsampling and decoder from the top, head).

    Shapes
    ------
    input (N, in_channels, H, W) -> logits (N, num_classes, H, W).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnarray import nn
    >>> model = nn.UNet(1, 3, base=4, depth=2, seed=0)
    >>> model(np.zeros((2, 1, 8, 12), "float32")).shape
    (2, 3, 8, 12)
    """

    _config_names = ("in_channels", "num_classes", "base", "depth", "up")

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base: int = 8,
        depth: int = 2,
        up: str = "transpose",
        *,
        backend: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        self.in_channels = _args.check_int(in_channels, "in_channels", minimum=1)
        self.num_classes = _args.check_int(num_classes, "num_classes", minimum=1)
        self.base = _args.check_int(base, "base", minimum=1)
        self.depth = _args.check_int(depth, "depth", minimum=1, maximum=8)
        if up not in UP_MODES:
            raise ValueError(f"up must be one of {UP_MODES}, got {up!r}")
        self.up = up
        kw = {"backend": backend, "dtype": dtype, "rng": make_rng(seed, rng)}
        widths = [base * 2**i for i in range(depth + 1)]
        inputs = [in_channels, *widths[:-2]]  # the encoder's blocks: inputs[i] -> widths[i]
        self.encoder = Sequential(*(conv_block(inputs[i], widths[i], kw) for i in range(depth)))
        self.pool = MaxPool2d(2)
        self.bottleneck = conv_block(widths[-2], widths[-1], kw)
        self.upsample = Sequential(*(self._up(widths[i + 1], widths[i], kw) for i in range(depth)))
        self.decoder = Sequential(*(conv_block(2 * widths[i], widths[i], kw) for i in range(depth)))
        self.head = Conv2d(base, num_classes, 1, **kw)

    def _up(self, in_channels: int, out_channels: int, kw: dict[str, Any]) -> Module:
        if self.up == "transpose":
            return ConvTranspose2d(in_channels, out_channels, 2, stride=2, **kw)
        return Sequential(Upsample(scale_factor=2, mode="bilinear"),
                          Conv2d(in_channels, out_channels, 3, padding=1, **kw))  # fmt: skip

    def _check_input(self, x: Any) -> None:
        shape = tuple(x.shape)
        if len(shape) != 4:
            raise ValueError(f"UNet expects input (N, C, H, W), got shape {shape}")
        step = 2**self.depth
        if shape[2] % step or shape[3] % step:
            raise ValueError(
                f"UNet with depth {self.depth} halves the input {self.depth} times, so height "
                f"and width must be multiples of {step}; got input of shape {shape} (pad or "
                f"crop it, or lower depth)"
            )

    def forward(self, x: Any) -> Any:
        self._check_input(x)
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for i in reversed(range(self.depth)):
            x = self.decoder[i](cat([skips[i], self.upsample[i](x)], axis=1))
        return self.head(x)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "dtype": self.head.weight.dtype.name}
