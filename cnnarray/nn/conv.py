"""Convolution layers: ``Conv1d``, ``Conv2d``, ``Conv3d`` and ``ConvTranspose1d/2d/3d``,
over the functional ops of :mod:`cnnarray.ops`, PyTorch's constructors and defaults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _args
from ..ops import (
    ColumnCache,
    conv1d,
    conv2d,
    conv3d,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    pad,
)
from ._layer import _weight_and_bias
from .module import Module, register

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _Conv(Module):
    """What every convolution layer holds: channels, kernel, stride, dilation, groups and
    the parameters, checked and drawn as PyTorch does; subclasses name ``_dims``, the op
    and whether the weight is transposed (in, out / groups, *kernel)."""

    _dims: int
    _op: Callable[..., Any]
    _transposed = False

    def _setup(self, in_channels: Any, out_channels: Any, kernel_size: Any, stride: Any,
               dilation: Any, groups: Any, bias: Any, padding_mode: Any, backend: Any,
               dtype: Any, seed: Any, rng: Any) -> None:  # fmt: skip
        n = self._dims
        self.in_channels = _args.check_int(in_channels, "in_channels", minimum=1)
        self.out_channels = _args.check_int(out_channels, "out_channels", minimum=1)
        self.groups = _args.check_int(groups, "groups", minimum=1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.kernel_size = _args._ntuple(kernel_size, "kernel_size", n, minimum=1)
        self.stride = _args._ntuple(stride, "stride", n, minimum=1)
        self.dilation = _args._ntuple(dilation, "dilation", n, minimum=1)
        allowed = ("zeros",) if self._transposed else PADDING_MODES
        if padding_mode not in allowed:
            raise ValueError(
                f"padding_mode of {type(self).__name__} must be "
                f"{'' if len(allowed) == 1 else 'one of '}{', '.join(map(repr, allowed))}, "
                f"got {padding_mode!r}"
            )
        self.padding_mode = padding_mode
        if self._transposed:
            shape = (in_channels, out_channels // groups, *self.kernel_size)
        else:
            shape = (out_channels, in_channels // groups, *self.kernel_size)
        bias = _args.check_bool(bias, "bias")
        self.weight, self.bias = _weight_and_bias(shape, bias, backend, dtype, seed, rng,
                                                  bias_size=out_channels)  # fmt: skip

    def _config(self) -> dict[str, Any]:
        config = {**super()._config(), "bias": self.bias is not None}
        if self.padding_mode != "zeros":  # the default stays out: specs read as before
            config["padding_mode"] = self.padding_mode
        return {**config, "dtype": self.weight.dtype.name}


class _ConvNd(_Conv):
    """A convolution layer; ``padding_mode`` other than "zeros" pads with :func:`pad`
    first, then convolves without padding, as PyTorch does."""

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
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        backend: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        self._setup(in_channels, out_channels, kernel_size, stride, dilation, groups, bias,
                    padding_mode, backend, dtype, seed, rng)  # fmt: skip
        n = self._dims
        _args.conv_padding_nd(padding, self.kernel_size, self.dilation, self.stride)  # validate
        self.padding = (
            padding if isinstance(padding, str) else _args._ntuple(padding, "padding", n, minimum=0)
        )
        self._init_state()

    def _init_state(self) -> None:
        """Set up what the layer keeps between calls (nothing by default)."""

    def _pad(self, x: Any) -> tuple[Any, Any]:
        """``x`` and the padding the op adds: with a non-zeros ``padding_mode`` the
        input padded by :func:`cnnarray.ops.pad` (last axis first) and no padding."""
        if self.padding_mode == "zeros":
            return x, self.padding
        lo, hi = _args.conv_padding_nd(self.padding, self.kernel_size, self.dilation, self.stride)
        pads = tuple(v for a, b in zip(reversed(lo), reversed(hi), strict=True) for v in (a, b))
        return pad(x, pads, self.padding_mode), 0

    def forward(self, x: Any) -> Any:
        x, padding = self._pad(x)
        return type(self)._op(x, self.weight, self.bias, self.stride, padding, self.dilation,
                              self.groups)  # fmt: skip


_CONV_DOC = """{d}-D convolution layer over {layout} inputs.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation, groups
        As in :func:`cnnarray.ops.conv{d}d` (padding may be "same" or "valid").
    bias : bool, default True
    padding_mode : {{"zeros", "reflect", "replicate", "circular"}}, default "zeros"
        What the padding holds: zeros, or the input padded by :func:`cnnarray.ops.pad`
        in that mode before a convolution without padding.
    backend : str, optional
        Where the parameters live (default "cpu").
    dtype : {{"float32", "float64"}}, default "float32"
    seed : int, optional
    rng : numpy.random.Generator, optional
        Source of the initial weights (give at most one of seed and rng).

    Notes
    -----
    ``weight`` has shape (out_channels, in_channels / groups, *kernel_size) and
    is drawn, like ``bias``, from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with
    ``fan_in = in_channels / groups * prod(kernel_size)``: PyTorch's default
    (Kaiming-uniform with ``a = sqrt(5)``).{notes}

    See Also
    --------
    torch.nn.Conv{d}d, cnnarray.ops.conv{d}d
    """

_CACHE_NOTE = """

    In training mode the layer keeps the forward pass's im2col columns in a
    :class:`cnnarray.ops.ColumnCache` for the backward pass (at most the
    workspace limit, :func:`cnnarray.ops.set_workspace_limit`); evaluation
    mode frees them."""


@register
class Conv1d(_ConvNd):
    __doc__ = _CONV_DOC.format(d=1, layout="(N, C_in, L)", notes="")
    _dims = 1
    _op = staticmethod(conv1d)


@register
class Conv2d(_ConvNd):
    __doc__ = _CONV_DOC.format(d=2, layout="(N, C_in, H, W)", notes=_CACHE_NOTE)
    _dims = 2
    _op = staticmethod(conv2d)

    def _init_state(self) -> None:
        self._columns = ColumnCache()

    def forward(self, x: Any) -> Any:
        if not self.training:
            self._columns.release()
        cache = self._columns if self.training else None
        x, padding = self._pad(x)
        return conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups,
                      cache=cache)  # fmt: skip


@register
class Conv3d(_ConvNd):
    __doc__ = _CONV_DOC.format(d=3, layout="(N, C_in, D, H, W)", notes="")
    _dims = 3
    _op = staticmethod(conv3d)


class _ConvTransposeNd(_Conv):
    """A transposed convolution layer (``padding_mode`` "zeros" only, as PyTorch)."""

    _transposed = True
    _config_names = (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "output_padding",
        "groups",
        "dilation",  # after bias in the signature, as PyTorch's
    )

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: Any = 1,
        padding_mode: str = "zeros",
        *,
        backend: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        self._setup(in_channels, out_channels, kernel_size, stride, dilation, groups, bias,
                    padding_mode, backend, dtype, seed, rng)  # fmt: skip
        n = self._dims
        self.padding = _args._ntuple(padding, "padding", n, minimum=0)
        self.output_padding = _args._ntuple(output_padding, "output_padding", n, minimum=0)
        if any(e >= s and e >= d for e, s, d in
               zip(self.output_padding, self.stride, self.dilation, strict=True)):  # fmt: skip
            raise ValueError(
                f"output_padding must be smaller than either stride or dilation, got "
                f"output_padding={self.output_padding}, stride={self.stride}, "
                f"dilation={self.dilation}"
            )

    def forward(self, x: Any) -> Any:
        return type(self)._op(x, self.weight, self.bias, self.stride, self.padding,
                              self.output_padding, self.groups, self.dilation)  # fmt: skip


_TRANSPOSE_DOC = """{d}-D transposed convolution layer over {layout} inputs.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, output_padding, groups, dilation
        As in :func:`cnnarray.ops.conv_transpose{d}d`.
    bias : bool, default True
    padding_mode : {{"zeros"}}, default "zeros"
        The only mode, as in PyTorch.
    backend, dtype, seed, rng
        As in :class:`Conv{d}d`.

    Notes
    -----
    ``weight`` has shape (in_channels, out_channels / groups, *kernel_size) and
    ``fan_in = out_channels / groups * prod(kernel_size)`` (read from the weight,
    as PyTorch does) sets the bound of its and the bias's uniform draws.

    See Also
    --------
    torch.nn.ConvTranspose{d}d, cnnarray.ops.conv_transpose{d}d
    """


@register
class ConvTranspose1d(_ConvTransposeNd):
    __doc__ = _TRANSPOSE_DOC.format(d=1, layout="(N, C_in, L)")
    _dims = 1
    _op = staticmethod(conv_transpose1d)


@register
class ConvTranspose2d(_ConvTransposeNd):
    __doc__ = _TRANSPOSE_DOC.format(d=2, layout="(N, C_in, H, W)")
    _dims = 2
    _op = staticmethod(conv_transpose2d)


@register
class ConvTranspose3d(_ConvTransposeNd):
    __doc__ = _TRANSPOSE_DOC.format(d=3, layout="(N, C_in, D, H, W)")
    _dims = 3
    _op = staticmethod(conv_transpose3d)
