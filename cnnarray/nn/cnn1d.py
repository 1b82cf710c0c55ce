"""A 1-D convolutional classifier for signals (N, C, L).

Blocks of ``Conv1d - BatchNorm1d - ReLU - MaxPool1d(2)``, then global average
pooling over the length and a Linear layer to the classes. The module defines
``forward`` only: autograd differentiates it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _args
from .activation import ReLU
from .container import Sequential
from .conv import Conv1d
from .init import make_rng
from .linear import Flatten, Linear
from .module import Module, register
from .normalization import BatchNorm1d
from .pooling import AdaptiveAvgPool1d, MaxPool1d

__all__ = ["CNN1d"]


@register
class CNN1d(Module):
    """1-D CNN: ``[Conv1d(k, pad k//2, no bias) - BN - ReLU - MaxPool1d(2)]`` per width, then head.

    ``features`` holds the blocks (each halves the length, rounding down);
    ``avgpool`` is AdaptiveAvgPool1d(1), then ``flatten`` and ``fc`` (Linear
    from the last width to the classes).

    Parameters
    ----------
    widths : sequence of int, default (16, 32)
        Channels of each block; the input length must be at least ``2**len(widths)``.
    kernel_size : int, default 5
        Odd, so that the padding ``kernel_size // 2`` keeps the length.
    in_channels : int, default 1
    num_classes : int, default 4
    backend, dtype, seed, rng
        As in :class:`~cnnarray.nn.Conv1d`; one generator draws all weights in order.

    Shapes
    ------
    input (N, in_channels, L) -> logits (N, num_classes).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnarray import nn
    >>> model = nn.CNN1d((4, 8), in_channels=2, num_classes=3, seed=0)
    >>> model(np.zeros((5, 2, 32), "float32")).shape
    (5, 3)
    """

    _config_names = ("widths", "kernel_size", "in_channels", "num_classes")

    def __init__(
        self,
        widths: Sequence[int] = (16, 32),
        kernel_size: int = 5,
        in_channels: int = 1,
        num_classes: int = 4,
        *,
        backend: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        if isinstance(widths, str) or not isinstance(widths, Sequence) or not widths:
            raise ValueError(
                f"widths must be a non-empty sequence of positive ints, got {widths!r}"
            )
        self.widths = [_args.check_int(w, f"widths[{i}]", minimum=1) for i, w in enumerate(widths)]
        self.kernel_size = _args.check_int(kernel_size, "kernel_size", minimum=1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (to keep the length), got {kernel_size}")
        self.in_channels = _args.check_int(in_channels, "in_channels", minimum=1)
        self.num_classes = _args.check_int(num_classes, "num_classes", minimum=1)
        kw = {"backend": backend, "dtype": dtype, "rng": make_rng(seed, rng)}
        layers: list[Module] = []
        channels = in_channels
        for width in self.widths:
            layers += [
                Conv1d(channels, width, kernel_size, padding=kernel_size // 2, bias=False, **kw),
                BatchNorm1d(width, backend=backend, dtype=dtype),
                ReLU(),
                MaxPool1d(2),
            ]
            channels = width
        self.features = Sequential(*layers)
        self.avgpool = AdaptiveAvgPool1d(1)
        self.flatten = Flatten()
        self.fc = Linear(channels, num_classes, **kw)

    def forward(self, x: Any) -> Any:
        shape, least = tuple(x.shape), 2 ** len(self.widths)
        if len(shape) != 3 or shape[2] < least:
            raise ValueError(
                f"CNN1d with {len(self.widths)} blocks expects input (N, C, L) with L >= {least}, "
                f"got shape {shape}"
            )
        return self.fc(self.flatten(self.avgpool(self.features(x))))

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "dtype": self.fc.weight.dtype.name}
