"""Normalisation layers: ``BatchNorm2d``, over :func:`cnnarray.ops.batch_norm2d`."""

from __future__ import annotations

from typing import Any

from .. import _args
from ..autograd import Tensor
from ..ops import batch_norm2d
from ._layer import _setup
from .init import constant
from .module import Module, Parameter, register

__all__ = ["BatchNorm2d"]


@register
class BatchNorm2d(Module):
    """Normalise each channel of (N, C, H, W) inputs, then scale and shift.

    In training mode the batch's mean and biased variance over (N, H, W)
    normalise the input, and the running statistics move towards them:
    ``running = (1 - momentum) * running + momentum * batch``, with the
    unbiased variance ``var * n / (n - 1)``, ``n = N * H * W``, as in PyTorch
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
    torch.nn.BatchNorm2d
    """

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
        _args.check_ndim(x, "x", (4,), f"(N, {self.num_features}, H, W)")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm2d({self.num_features}) expected x with {self.num_features} "
                f"channels, got x of shape {tuple(x.shape)}"
            )
        if x.dtype.kind in "iu":
            return Tensor(x.data.astype(self._dtype))
        if x.dtype != self._dtype:
            raise TypeError(
                f"x has dtype {x.dtype} but the parameters of BatchNorm2d are {self._dtype}; "
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
        return batch_norm2d(x, *running, self.weight, self.bias, training=batch_stats,
                            momentum=factor or 0.0, eps=self.eps)  # fmt: skip
