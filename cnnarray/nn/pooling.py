"""Pooling layers: ``MaxPool2d``, ``AvgPool2d`` and ``AdaptiveAvgPool2d``, over the pool ops."""

from __future__ import annotations

from typing import Any

from .. import _args
from ..ops import adaptive_pool, pool
from ._layer import OpLayer
from .module import Module, register

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "MaxPool2d"]


def _window(
    kernel_size: Any, stride: Any, padding: Any
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Return ``kernel_size, stride, padding`` as pairs; stride defaults to the kernel size."""
    kernel = _args._pair(kernel_size, "kernel_size", minimum=1)
    step = kernel if stride is None else _args._pair(stride, "stride", minimum=1)
    return kernel, step, _args._pair(padding, "padding", minimum=0)


@register
class MaxPool2d(Module):
    """Max pooling; arguments as :func:`cnnarray.ops.max_pool2d` (stride defaults to kernel_size).

    See Also
    --------
    torch.nn.MaxPool2d
    """

    _config_names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")

    def __init__(
        self,
        kernel_size: _args.IntPair,
        stride: _args.IntPair | None = None,
        padding: _args.IntPair = 0,
        dilation: _args.IntPair = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = _window(kernel_size, stride, padding)
        self.dilation = _args._pair(dilation, "dilation", minimum=1)
        self.ceil_mode = _args.check_bool(ceil_mode, "ceil_mode")

    def forward(self, x: Any) -> Any:
        return pool.max_pool2d(x, **self._config())


@register
class AvgPool2d(OpLayer):
    """Average pooling; arguments as :func:`cnnarray.ops.avg_pool2d`.

    See Also
    --------
    torch.nn.AvgPool2d
    """

    _op = staticmethod(pool.avg_pool2d)
    _config_names = (
        "kernel_size",
        "stride",
        "padding",
        "ceil_mode",
        "count_include_pad",
        "divisor_override",
    )

    def __init__(
        self,
        kernel_size: _args.IntPair,
        stride: _args.IntPair | None = None,
        padding: _args.IntPair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = _window(kernel_size, stride, padding)
        self.ceil_mode = _args.check_bool(ceil_mode, "ceil_mode")
        self.count_include_pad = _args.check_bool(count_include_pad, "count_include_pad")
        self.divisor_override = (
            None
            if divisor_override is None
            else _args.check_int(divisor_override, "divisor_override", minimum=1)
        )


@register
class AdaptiveAvgPool2d(OpLayer):
    """Average pooling to a fixed output size, whatever the input size.

    See :func:`cnnarray.ops.adaptive_avg_pool2d`.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        ``(out_h, out_w)``; None keeps that input size.

    See Also
    --------
    torch.nn.AdaptiveAvgPool2d
    """

    _op = staticmethod(adaptive_pool.adaptive_avg_pool2d)
    _config_names = ("output_size",)

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        super().__init__()
        self.output_size = _args.check_output_size(output_size)
