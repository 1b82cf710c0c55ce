"""Pooling layers over 1-D, 2-D and 3-D maps, over the pool ops: max, average, adaptive,
LP pooling and max unpooling, with PyTorch's class names and constructor arguments."""

from __future__ import annotations

from typing import Any

from .. import _args, ops
from ._layer import OpLayer
from .module import Module, register

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "LPPool1d",
    "LPPool2d",
    "LPPool3d",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
]

IntOrTuple = int | tuple[int, ...]


def _window(
    kernel_size: Any, stride: Any, padding: Any, dims: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Return ``kernel_size, stride, padding`` as ``dims``-tuples; stride defaults to the kernel."""
    kernel = _args._ntuple(kernel_size, "kernel_size", dims, minimum=1)
    step = kernel if stride is None else _args._ntuple(stride, "stride", dims, minimum=1)
    return kernel, step, _args._ntuple(padding, "padding", dims, minimum=0)


class _MaxPoolNd(OpLayer):
    """Max pooling over ``_dims`` axes; arguments as :func:`cnnarray.ops.max_pool2d`."""

    _dims: int
    _config_names = ("kernel_size", "stride", "padding", "dilation", "return_indices",
                     "ceil_mode")  # fmt: skip

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = _window(
            kernel_size, stride, padding, self._dims
        )
        self.dilation = _args._ntuple(dilation, "dilation", self._dims, minimum=1)
        self.return_indices = _args.check_bool(return_indices, "return_indices")
        self.ceil_mode = _args.check_bool(ceil_mode, "ceil_mode")


@register
class MaxPool1d(_MaxPoolNd):
    """Max pooling over (N, C, L); see :func:`cnnarray.ops.max_pool1d` and torch.nn.MaxPool1d."""

    _dims, _op = 1, staticmethod(ops.max_pool1d)


@register
class MaxPool2d(_MaxPoolNd):
    """Max pooling; arguments as :func:`cnnarray.ops.max_pool2d` (stride defaults to kernel_size).

    With ``return_indices`` the layer returns ``(out, indices)``, for :class:`MaxUnpool2d`.

    See Also
    --------
    torch.nn.MaxPool2d
    """

    _dims, _op = 2, staticmethod(ops.max_pool2d)


@register
class MaxPool3d(_MaxPoolNd):
    """Max pooling over (N, C, D, H, W); see :func:`cnnarray.ops.max_pool3d` and
    torch.nn.MaxPool3d."""

    _dims, _op = 3, staticmethod(ops.max_pool3d)


class _AvgPoolNd(OpLayer):
    """Average pooling over ``_dims`` axes; arguments as :func:`cnnarray.ops.avg_pool2d`."""

    _dims: int
    _config_names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                     "divisor_override")  # fmt: skip

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = _window(
            kernel_size, stride, padding, self._dims
        )
        self.ceil_mode = _args.check_bool(ceil_mode, "ceil_mode")
        self.count_include_pad = _args.check_bool(count_include_pad, "count_include_pad")
        self.divisor_override = (
            None
            if divisor_override is None
            else _args.check_int(divisor_override, "divisor_override", minimum=1)
        )


@register
class AvgPool1d(_AvgPoolNd):
    """Average pooling over (N, C, L); see :func:`cnnarray.ops.avg_pool1d` and
    torch.nn.AvgPool1d (which has no ``divisor_override``)."""

    _dims, _op = 1, staticmethod(ops.avg_pool1d)
    _config_names = _AvgPoolNd._config_names[:-1]

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)


@register
class AvgPool2d(_AvgPoolNd):
    """Average pooling; arguments as :func:`cnnarray.ops.avg_pool2d`.

    See Also
    --------
    torch.nn.AvgPool2d
    """

    _dims, _op = 2, staticmethod(ops.avg_pool2d)


@register
class AvgPool3d(_AvgPoolNd):
    """Average pooling over (N, C, D, H, W); see :func:`cnnarray.ops.avg_pool3d` and
    torch.nn.AvgPool3d."""

    _dims, _op = 3, staticmethod(ops.avg_pool3d)


class _AdaptiveAvgPoolNd(OpLayer):
    _dims: int
    _config_names = ("output_size",)

    def __init__(self, output_size: int | tuple[int | None, ...]) -> None:
        super().__init__()
        self.output_size = _args.check_output_size(output_size, self._dims)


@register
class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """Average pooling to a fixed length; see :func:`cnnarray.ops.adaptive_avg_pool1d` and
    torch.nn.AdaptiveAvgPool1d."""

    _dims, _op = 1, staticmethod(ops.adaptive_avg_pool1d)


@register
class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
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

    _dims, _op = 2, staticmethod(ops.adaptive_avg_pool2d)


@register
class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """Average pooling to a fixed (D, H, W); see :func:`cnnarray.ops.adaptive_avg_pool3d`
    and torch.nn.AdaptiveAvgPool3d."""

    _dims, _op = 3, staticmethod(ops.adaptive_avg_pool3d)


class _AdaptiveMaxPoolNd(OpLayer):
    _dims: int
    _config_names = ("output_size", "return_indices")

    def __init__(
        self, output_size: int | tuple[int | None, ...], return_indices: bool = False
    ) -> None:
        super().__init__()
        self.output_size = _args.check_output_size(output_size, self._dims)
        self.return_indices = _args.check_bool(return_indices, "return_indices")


@register
class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """Max pooling to a fixed length; see :func:`cnnarray.ops.adaptive_max_pool1d` and
    torch.nn.AdaptiveMaxPool1d."""

    _dims, _op = 1, staticmethod(ops.adaptive_max_pool1d)


@register
class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """Max pooling to a fixed (H, W); see :func:`cnnarray.ops.adaptive_max_pool2d` and
    torch.nn.AdaptiveMaxPool2d."""

    _dims, _op = 2, staticmethod(ops.adaptive_max_pool2d)


@register
class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """Max pooling to a fixed (D, H, W); see :func:`cnnarray.ops.adaptive_max_pool3d` and
    torch.nn.AdaptiveMaxPool3d."""

    _dims, _op = 3, staticmethod(ops.adaptive_max_pool3d)


class _LPPoolNd(OpLayer):
    _dims: int
    _config_names = ("norm_type", "kernel_size", "stride", "ceil_mode")

    def __init__(
        self,
        norm_type: float,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.norm_type = _args.check_real(norm_type, "norm_type", low=0, low_open=True,
                                          finite=True)  # fmt: skip
        self.kernel_size, self.stride, _ = _window(kernel_size, stride, 0, self._dims)
        self.ceil_mode = _args.check_bool(ceil_mode, "ceil_mode")


@register
class LPPool1d(_LPPoolNd):
    """Power-average pooling over (N, C, L); see :func:`cnnarray.ops.lp_pool1d` and
    torch.nn.LPPool1d."""

    _dims, _op = 1, staticmethod(ops.lp_pool1d)


@register
class LPPool2d(_LPPoolNd):
    """Power-average pooling; see :func:`cnnarray.ops.lp_pool2d` and torch.nn.LPPool2d."""

    _dims, _op = 2, staticmethod(ops.lp_pool2d)


@register
class LPPool3d(_LPPoolNd):
    """Power-average pooling over (N, C, D, H, W); see :func:`cnnarray.ops.lp_pool3d` and
    torch.nn.LPPool3d."""

    _dims, _op = 3, staticmethod(ops.lp_pool3d)


class _MaxUnpoolNd(Module):
    """Max unpooling over ``_dims`` axes: ``forward(x, indices, output_size=None)``."""

    _dims: int
    _op: Any
    _config_names = ("kernel_size", "stride", "padding")

    def __init__(
        self, kernel_size: IntOrTuple, stride: IntOrTuple | None = None, padding: IntOrTuple = 0
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = _window(
            kernel_size, stride, padding, self._dims
        )

    def forward(self, x: Any, indices: Any, output_size: Any = None) -> Any:
        return self._op(x, indices, **self._config(), output_size=output_size)


@register
class MaxUnpool1d(_MaxUnpoolNd):
    """Put pooled maxima back in place; see :func:`cnnarray.ops.max_unpool1d` and
    torch.nn.MaxUnpool1d."""

    _dims, _op = 1, staticmethod(ops.max_unpool1d)


@register
class MaxUnpool2d(_MaxUnpoolNd):
    """Put pooled maxima back in place; see :func:`cnnarray.ops.max_unpool2d` and
    torch.nn.MaxUnpool2d."""

    _dims, _op = 2, staticmethod(ops.max_unpool2d)


@register
class MaxUnpool3d(_MaxUnpoolNd):
    """Put pooled maxima back in place; see :func:`cnnarray.ops.max_unpool3d` and
    torch.nn.MaxUnpool3d."""

    _dims, _op = 3, staticmethod(ops.max_unpool3d)
