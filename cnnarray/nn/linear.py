"""Linear layers: ``Linear`` (``x @ weight.T + bias``) and ``Flatten``, which feeds it."""

from __future__ import annotations

import math
from typing import Any

from .. import _args
from ..ops import flatten, flatten_backward, linear, linear_backward
from . import init
from ._layer import _data, _setup
from .module import Module, Parameter, register

__all__ = ["Flatten", "Linear"]


@register
class Linear(Module):
    """Fully connected layer ``y = x @ weight.T + bias`` over (..., in_features) inputs.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    backend, dtype, seed, rng
        As in :class:`Conv2d`.

    Notes
    -----
    ``weight`` (out_features, in_features) and ``bias`` are drawn from
    ``U(-1/sqrt(in_features), 1/sqrt(in_features))``, as in PyTorch.

    See Also
    --------
    torch.nn.Linear, cnnarray.ops.linear
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        backend: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        self.in_features = _args.check_int(in_features, "in_features", minimum=1)
        self.out_features = _args.check_int(out_features, "out_features", minimum=1)
        target, dtype, rng = _setup(backend, dtype, seed, rng)
        shape = (out_features, in_features)
        self.weight = Parameter(init.kaiming_uniform(shape, rng, dtype, target, a=math.sqrt(5)))
        bound = 1 / math.sqrt(in_features)
        self.bias = (
            Parameter(init.uniform((out_features,), bound, rng, dtype, target)) if bias else None
        )

    def _config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "dtype": self.weight.dtype.name,
        }

    def forward(self, x: Any) -> Any:
        self._save(x)
        return linear(x, self.weight.data, _data(self.bias))

    def backward(self, grad: Any) -> Any:
        (x,) = self._saved()
        gx, gw, gb = linear_backward(grad, x, self.weight.data, _data(self.bias))
        self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx


@register
class Flatten(Module):
    """Merge axes ``start_dim..end_dim``, by default (N, C, H, W) -> (N, C*H*W)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def _config(self) -> dict[str, Any]:
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}

    def forward(self, x: Any) -> Any:
        self._save(x)
        return flatten(x, self.start_dim, self.end_dim)

    def backward(self, grad: Any) -> Any:
        (x,) = self._saved()
        return flatten_backward(grad, x, self.start_dim, self.end_dim)
