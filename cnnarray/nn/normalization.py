"""Normalisation layers: ``BatchNorm1d/2d/3d`` over :func:`cnnarray.ops.batch_norm`
(``batch_norm2d`` for 2d), ``GroupNorm``, ``LayerNorm`` and ``InstanceNorm1d/2d/3d``."""

from __future__ import annotations

from typing import Any

from .. import _args
from ..autograd import Tensor
from ..ops import batch_norm, batch_norm2d, group_norm, instance_norm, layer_norm
from ._layer import _setup
from .init import constant
from .module import Module, Parameter, register

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
]


def _scale_and_shift(
    shape: tuple[int, ...], weight: bool, bias: bool, dtype: Any, target: Any
) -> tuple[Parameter | None, Parameter | None]:
    """The learned affine of a normalisation: weight (init 1) and bias (init 0), or None."""
    return (Parameter(constant(shape, 1, dtype, target)) if weight else None,
            Parameter(constant(shape, 0, dtype, target)) if bias else None)  # fmt: skip


class _NormBase(Module):
    """Normalise each channel of (N, C, *) inputs, then scale and shift.

    The base of BatchNorm1d/2d/3d (and of the InstanceNorms, whose statistics
    are per sample: see :class:`InstanceNorm2d`). In training mode the batch's mean and
    biased variance over every axis but C normalise the input, and the running
    statistics move towards them:
    ``running = (1 - momentum) * running + momentum * batch``, with the
    unbiased variance ``var * n / (n - 1)``, ``n = x.size / C``, as in PyTorch
    (``momentum=None``: a cumulative average). In evaluation mode the running
    statistics are used.

    Parameters
    ----------
    num_features : int
        Channels C.
    eps : float, default 1e-5
    momentum : float or None, default 0.1
    affine : bool, default True
        Learn ``weight`` (init 1) and ``bias`` (init 0).
    track_running_stats : bool, default True
        Keep the buffers ``running_mean`` (init 0), ``running_var`` (init 1) and
        ``num_batches_tracked``; without them batch statistics are used in both modes.
    backend, dtype
        As in :class:`Conv2d`.

    See Also
    --------
    torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d
    """

    _op: Any = staticmethod(batch_norm)
    _ndims: tuple[int, ...] = (4,)
    _spatial = ", H, W"  # the axes after C, for messages
    _config_names = ("num_features", "eps", "momentum", "affine", "track_running_stats")

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        backend: Any = None,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        self.num_features = _args.check_int(num_features, "num_features", minimum=1)
        self.eps = _args.check_real(eps, "eps", low=0, low_open=True)
        self.momentum = (
            momentum if momentum is None else _args.check_real(momentum, "momentum", low=0, high=1)
        )
        self.affine = _args.check_bool(affine, "affine")
        self.track_running_stats = _args.check_bool(track_running_stats, "track_running_stats")
        target, dtype, _ = _setup(backend, dtype)
        shape = (self.num_features,)
        self.weight, self.bias = _scale_and_shift(shape, affine, affine, dtype, target)
        if track_running_stats:
            self.register_buffer("running_mean", constant(shape, 0, dtype, target))
            self.register_buffer("running_var", constant(shape, 1, dtype, target))
            count = constant((), 0, target.xp.dtype("int64"), target)
            self.register_buffer("num_batches_tracked", count)
        self._dtype = dtype

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "dtype": self._dtype.name}

    def _check(self, x: Tensor, channel_axis: int = 1) -> Tensor:
        """Check x's layout and channels; return it in the parameters' dtype (ints cast)."""
        _args.check_ndim(x, "x", self._ndims, f"(N, {self.num_features}{self._spatial})")
        if x.shape[channel_axis] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expected x with {self.num_features} "
                f"channels, got x of shape {tuple(x.shape)}"
            )
        return _cast_like(self, x, self._dtype)


class _BatchNorm(_NormBase):
    """The batch norms: statistics over the batch in training mode."""

    def forward(self, x: Any) -> Any:
        x = self._check(x)
        batch_stats = self.training or not self.track_running_stats
        factor = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        running = (self.running_mean, self.running_var) if self.track_running_stats else (None,) * 2
        # Running statistics are updated in place, so state_dict() arrays handed out stay live.
        # The statistics returned are kept by the tape for the backward, which then
        # does not compute them again.
        return self._op(x, *running, self.weight, self.bias, training=batch_stats,
                        momentum=factor or 0.0, eps=self.eps, return_stats=True)[0]  # fmt: skip


@register
class BatchNorm1d(_BatchNorm):
    """:class:`BatchNorm2d` for (N, C) or (N, C, L) inputs: statistics over (N,) or (N, L).

    See Also
    --------
    torch.nn.BatchNorm1d
    """

    _ndims = (2, 3)
    _spatial = "[, L]"


@register
class BatchNorm2d(_BatchNorm):
    """Normalise each channel of (N, C, H, W) inputs over (N, H, W), then scale and shift.

    Parameters and running statistics as in the base class: ``num_features``
    (C), ``eps=1e-5``, ``momentum=0.1`` (None: a cumulative average),
    ``affine=True``, ``track_running_stats=True``, ``backend``, ``dtype``.

    See Also
    --------
    torch.nn.BatchNorm2d
    """

    _op = staticmethod(batch_norm2d)
    _spatial = ", H, W"


@register
class BatchNorm3d(_BatchNorm):
    """:class:`BatchNorm2d` for (N, C, D, H, W) inputs: statistics over (N, D, H, W).

    See Also
    --------
    torch.nn.BatchNorm3d
    """

    _ndims = (5,)
    _spatial = ", D, H, W"


class _InstanceNorm(_NormBase):
    """The instance norms: each (sample, channel) normalised over its positions.

    ``affine`` and ``track_running_stats`` default to False, as in PyTorch.
    With running statistics, training mode updates them (``momentum`` as in
    batch norm, the batch value the mean over the samples; ``momentum=None``
    leaves them unchanged, as PyTorch's InstanceNorm) and evaluation mode
    normalises with them. Unbatched input (no N axis) is taken as one sample.
    Input with other than ``num_features`` channels is a ValueError even
    without ``affine`` (PyTorch only warns then).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        *,
        backend: Any = None,
        dtype: Any = "float32",
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         backend=backend, dtype=dtype)  # fmt: skip

    def forward(self, x: Any) -> Any:
        unbatched = x.ndim == min(self._ndims)
        x = self._check(x, channel_axis=0 if unbatched else 1)
        if unbatched:
            x = x.reshape(1, *x.shape)
        running = (self.running_mean, self.running_var) if self.track_running_stats else (None,) * 2
        y = instance_norm(x, *running, self.weight, self.bias,
                          use_input_stats=self.training or not self.track_running_stats,
                          momentum=self.momentum or 0.0, eps=self.eps)  # fmt: skip
        return y.reshape(*y.shape[1:]) if unbatched else y


@register
class InstanceNorm1d(_InstanceNorm):
    """Normalise each channel of each (N, C, L) or (C, L) sample over L.

    See Also
    --------
    torch.nn.InstanceNorm1d
    """

    _ndims = (2, 3)
    _spatial = ", L"


@register
class InstanceNorm2d(_InstanceNorm):
    """Normalise each channel of each (N, C, H, W) or (C, H, W) sample over (H, W).

    Parameters
    ----------
    num_features : int
        Channels C.
    eps : float, default 1e-5
    momentum : float or None, default 0.1
    affine : bool, default False
        Learn a per-channel ``weight`` (init 1) and ``bias`` (init 0).
    track_running_stats : bool, default False
        Keep ``running_mean``, ``running_var`` (and ``num_batches_tracked``, as
        PyTorch's state dict has it) and normalise with them in evaluation mode.
    backend, dtype
        As in :class:`Conv2d`.

    See Also
    --------
    torch.nn.InstanceNorm2d
    """

    _ndims = (3, 4)
    _spatial = ", H, W"


@register
class InstanceNorm3d(_InstanceNorm):
    """Normalise each channel of each (N, C, D, H, W) or (C, D, H, W) sample over (D, H, W).

    See Also
    --------
    torch.nn.InstanceNorm3d
    """

    _ndims = (4, 5)
    _spatial = ", D, H, W"


def _cast_like(layer: Module, x: Tensor, dtype: Any) -> Tensor:
    """x in the layer's parameter dtype: integers cast, the other float dtype refused."""
    if x.dtype.kind in "iu":
        return Tensor(x.data.astype(dtype))
    if x.dtype != dtype:
        raise TypeError(
            f"x has dtype {x.dtype} but the parameters of {type(layer).__name__} are {dtype}; "
            f"cast one of them"
        )
    return x


@register
class GroupNorm(Module):
    """Normalise each group of channels of each sample, then scale and shift per channel.

    Parameters
    ----------
    num_groups : int
        G, dividing ``num_channels``.
    num_channels : int
        C of the (N, C, *) inputs.
    eps : float, default 1e-5
    affine : bool, default True
        Learn a per-channel ``weight`` (init 1) and ``bias`` (init 0).
    backend, dtype
        As in :class:`Conv2d`.

    See Also
    --------
    torch.nn.GroupNorm, cnnarray.ops.group_norm
    """

    _config_names = ("num_groups", "num_channels", "eps", "affine")

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        *,
        backend: Any = None,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        self.num_groups = _args.check_int(num_groups, "num_groups", minimum=1)
        self.num_channels = _args.check_int(num_channels, "num_channels", minimum=1)
        if self.num_channels % self.num_groups:
            raise ValueError(
                f"num_groups must divide num_channels={self.num_channels}, got {num_groups}"
            )
        self.eps = _args.check_real(eps, "eps", low=0, low_open=True)
        self.affine = _args.check_bool(affine, "affine")
        target, dtype, _ = _setup(backend, dtype)
        shape = (self.num_channels,)
        self.weight, self.bias = _scale_and_shift(shape, affine, affine, dtype, target)
        self._dtype = dtype

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "dtype": self._dtype.name}

    def forward(self, x: Any) -> Any:
        if x.ndim >= 2 and x.shape[1] != self.num_channels:
            raise ValueError(
                f"GroupNorm({self.num_groups}, {self.num_channels}) expected x with "
                f"{self.num_channels} channels, got x of shape {tuple(x.shape)}"
            )
        x = _cast_like(self, x, self._dtype)
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


@register
class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` axes, then scale and shift elementwise.

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing axes of x to normalise over.
    eps : float, default 1e-5
    elementwise_affine : bool, default True
        Learn ``weight`` (init 1) and, with ``bias``, ``bias`` (init 0), both of
        shape ``normalized_shape``.
    bias : bool, default True
    backend, dtype
        As in :class:`Conv2d`.

    See Also
    --------
    torch.nn.LayerNorm, cnnarray.ops.layer_norm
    """

    _config_names = ("normalized_shape", "eps", "elementwise_affine")

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        *,
        backend: Any = None,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        dims = (
            normalized_shape if isinstance(normalized_shape, tuple | list) else (normalized_shape,)
        )
        self.normalized_shape = tuple(
            _args.check_int(d, "normalized_shape", minimum=1) for d in dims
        )
        if not self.normalized_shape:
            raise ValueError("normalized_shape must name at least one axis, got ()")
        self.eps = _args.check_real(eps, "eps", low=0, low_open=True)
        self.elementwise_affine = _args.check_bool(elementwise_affine, "elementwise_affine")
        self._has_bias = _args.check_bool(bias, "bias")
        target, dtype, _ = _setup(backend, dtype)
        shape = self.normalized_shape
        affine = self.elementwise_affine
        self.weight, self.bias = _scale_and_shift(shape, affine, affine and bias, dtype, target)
        self._dtype = dtype

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "bias": self._has_bias, "dtype": self._dtype.name}

    def forward(self, x: Any) -> Any:
        x = _cast_like(self, x, self._dtype)
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
