"""Linear layers: ``Linear`` (``x @ weight.T + bias``) and ``Flatten``, which feeds it."""

from __future__ import annotations

from typing import Any

from .. import _args
from ..ops import flatten, linear
from ._layer import OpLayer, _weight_and_bias
from .module import Module, register

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

    _config_names = ("in_features", "out_features")

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
        shape = (out_features, in_features)
        bias = _args.check_bool(bias, "bias")
        self.weight, self.bias = _weight_and_bias(shape, bias, backend, dtype, seed, rng)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "bias": self.bias is not None, "dtype": self.weight.dtype.name}

    def forward(self, x: Any) -> Any:
        return linear(x, self.weight, self.bias)


@register
class Flatten(OpLayer):
    """Merge axes ``start_dim..end_dim``, by default (N, C, H, W) -> (N, C*H*W)."""

    _op = staticmethod(flatten)
    _config_names = ("start_dim", "end_dim")

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = _args.check_int(start_dim, "start_dim")
        self.end_dim = _args.check_int(end_dim, "end_dim")

    def _op_args(self) -> dict[str, Any]:
        return {"start_axis": self.start_dim, "end_axis": self.end_dim}
