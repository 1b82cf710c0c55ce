"""Convolution layers: ``Conv2d``, over :func:`cnnarray.ops.conv2d` and its backward."""

from __future__ import annotations

from typing import Any

from .. import _args
from ..ops import ColumnCache, conv2d
from ._layer import _weight_and_bias
from .module import Module, register

__all__ = ["Conv2d"]


@register
class Conv2d(Module):
    """2-D convolution layer over (N, C_in, H, W) images.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation, groups
        As in :func:`cnnarray.ops.conv2d` (padding may be "same" or "valid").
    bias : bool, default True
    backend : str, optional
        Where the parameters live (default "cpu").
    dtype : {"float32", "float64"}, default "float32"
    seed : int, optional
    rng : numpy.random.Generator, optional
        Source of the initial weights (give at most one of seed and rng).

    Notes
    -----
    ``weight`` has shape (out_channels, in_channels / groups, kh, kw) and is
    drawn, like ``bias``, from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with
    ``fan_in = in_channels / groups * kh * kw``: PyTorch's default
    (Kaiming-uniform with ``a = sqrt(5)``).

    In training mode the layer keeps the forward pass's im2col columns in a
    :class:`cnnarray.ops.ColumnCache` for the backward pass (at most the
    workspace limit, :func:`cnnarray.ops.set_workspace_limit`); evaluation
    mode frees them.

    See Also
    --------
    torch.nn.Conv2d, cnnarray.ops.conv2d
    """

    _config_names = (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
    )

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _args.IntPair,
        stride: _args.IntPair = 1,
        padding: _args.IntPair | str = 0,
        dilation: _args.IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        backend: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        self.in_channels = _args.check_int(in_channels, "in_channels", minimum=1)
        self.out_channels = _args.check_int(out_channels, "out_channels", minimum=1)
        self.groups = _args.check_int(groups, "groups", minimum=1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.kernel_size = _args._pair(kernel_size, "kernel_size", minimum=1)
        self.stride = _args._pair(stride, "stride", minimum=1)
        self.dilation = _args._pair(dilation, "dilation", minimum=1)
        _args.conv_padding(padding, self.kernel_size, self.dilation, self.stride)  # validate
        self.padding = (
            padding if isinstance(padding, str) else _args._pair(padding, "padding", minimum=0)
        )
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        bias = _args.check_bool(bias, "bias")
        self.weight, self.bias = _weight_and_bias(shape, bias, backend, dtype, seed, rng)
        self._columns = ColumnCache()

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "bias": self.bias is not None, "dtype": self.weight.dtype.name}

    def _geometry(self) -> tuple[Any, ...]:
        return self.stride, self.padding, self.dilation, self.groups

    def forward(self, x: Any) -> Any:
        if not self.training:
            self._columns.release()
        cache = self._columns if self.training else None
        return conv2d(x, self.weight, self.bias, *self._geometry(), cache=cache)
