"""Pooling layers: ``MaxPool2d``, ``AvgPool2d`` and ``AdaptiveAvgPool2d``, over the pool ops."""

from __future__ import annotations

from typing import Any

from .. import _args
from ..ops import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)
from .module import Module, register

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "MaxPool2d"]


@register
class MaxPool2d(Module):
    """Max pooling; arguments as :func:`cnnarray.ops.max_pool2d` (stride defaults to kernel_size).

    See Also
    --------
    torch.nn.MaxPool2d
    """

    def __init__(
        self,
        kernel_size: _args.IntPair,
        stride: _args.IntPair | None = None,
        padding: _args.IntPair = 0,
        dilation: _args.IntPair = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = _args._pair(kernel_size, "kernel_size", minimum=1)
        self.stride = (
            self.kernel_size if stride is None else _args._pair(stride, "stride", minimum=1)
        )
        self.padding = _args._pair(padding, "padding", minimum=0)
        self.dilation = _args._pair(dilation, "dilation", minimum=1)
        self.ceil_mode = _args.check_bool(ceil_mode, "ceil_mode")

    def _config(self) -> dict[str, Any]:
        return {
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "ceil_mode": self.ceil_mode,
        }

    def forward(self, x: Any) -> Any:
        y = max_pool2d(x, **self._config())
        self._save(x, y)  # y: the window maxima, not computed again in backward
        return y

    def backward(self, grad: Any) -> Any:
        x, y = self._saved()
        return max_pool2d_backward(grad, x, **self._config(), output=y)


@register
class AvgPool2d(Module):
    """Average pooling; arguments as :func:`cnnarray.ops.avg_pool2d`.

    See Also
    --------
    torch.nn.AvgPool2d
    """

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
        self.kernel_size = _args._pair(kernel_size, "kernel_size", minimum=1)
        self.stride = (
            self.kernel_size if stride is None else _args._pair(stride, "stride", minimum=1)
        )
        self.padding = _args._pair(padding, "padding", minimum=0)
        self.ceil_mode = _args.check_bool(ceil_mode, "ceil_mode")
        self.count_include_pad = _args.check_bool(count_include_pad, "count_include_pad")
        self.divisor_override = divisor_override

    def _config(self) -> dict[str, Any]:
        return {
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "ceil_mode": self.ceil_mode,
            "count_include_pad": self.count_include_pad,
            "divisor_override": self.divisor_override,
        }

    def forward(self, x: Any) -> Any:
        self._save(x)
        return avg_pool2d(x, **self._config())

    def backward(self, grad: Any) -> Any:
        (x,) = self._saved()
        return avg_pool2d_backward(grad, x, **self._config())


@register
class AdaptiveAvgPool2d(Module):
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

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        super().__init__()
        self.output_size = _args.check_output_size(output_size)

    def _config(self) -> dict[str, Any]:
        return {"output_size": self.output_size}

    def forward(self, x: Any) -> Any:
        self._save(x)
        return adaptive_avg_pool2d(x, self.output_size)

    def backward(self, grad: Any) -> Any:
        (x,) = self._saved()
        return adaptive_avg_pool2d_backward(grad, x, self.output_size)
