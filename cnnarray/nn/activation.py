"""Activation layers: ``ReLU`` and ``LeakyReLU``, each one op of :mod:`cnnarray.ops.activation`."""

from __future__ import annotations

from .. import _args
from ..ops import leaky_relu, relu
from ._layer import OpLayer
from .module import register

__all__ = ["LeakyReLU", "ReLU"]


@register
class ReLU(OpLayer):
    """``max(x, 0)`` elementwise. See ops.relu."""

    _op = staticmethod(relu)


@register
class LeakyReLU(OpLayer):
    """``x`` where positive, ``negative_slope * x`` elsewhere. See ops.leaky_relu."""

    _op = staticmethod(leaky_relu)
    _config_names = ("negative_slope",)

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = _args.check_real(negative_slope, "negative_slope")
