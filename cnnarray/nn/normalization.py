"""Normalisation layers: ``BatchNorm1d/2d/3d`` over :func:`cnnarray.ops.batch_norm`
(``batch_norm2d`` for 2d), ``GroupNorm``, ``LayerNorm`` and ``InstanceNorm1d/2d/3d``."""

from __future__ import annotations

from typing import Any

from .. import _args
from ..autograd import Tensor
from ..ops import batch_norm, batch_norm2d
from ._layer import _setup
from .init import constant
from .module import Module, Parameter, register

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]


class _BatchNorm(Module):
    """Normalise each channel of (N, C, *) inputs, then scale and shift.

    The base of BatchNorm1d/2d/3d. In training mode the batch's mean and
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

    _op = staticmethod(batch_norm)
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
        self.weight = Parameter(constant(shape, 1, dtype, target)) if affine else None
        self.bias = Parameter(constant(shape, 0, dtype, target)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", constant(shape, 0, dtype, target))
            self.register_buffer("running_var", constant(shape, 1, dtype, target))
            count = constant((), 0, target.xp.dtype("int64"), target)
            self.register_buffer("num_batches_tracked", count)
        self._dtype = dtype

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "dtype": self._dtype.name}

    def _check(self, x: Tensor) -> Tensor:
        _args.check_ndim(x, "x", self._ndims, f"(N, {self.num_features}{self._spatial})")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expected x with {self.num_features} "
                f"channels, got x of shape {tuple(x.shape)}"
            )
        if x.dtype.kind in "iu":
            return Tensor(x.data.astype(self._dtype))
        if x.dtype != self._dtype:
            raise TypeError(
                f"x has dtype {x.dtype} but the parameters of {type(self).__name__} are "
                f"{self._dtype}; "
                f"cast one of them"
            )
        return x

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
        return self._op(x, *running, self.weight, self.bias, training=batch_stats,
                        momentum=factor or 0.0, eps=self.eps)  # fmt: skip


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
