"""Activation layers: ``ReLU`` and ``LeakyReLU``, each one op of :mod:`cnnarray.ops.activation`."""

from __future__ import annotations

from typing import Any

from .. import _args
from ..ops import leaky_relu, leaky_relu_backward, relu, relu_backward
from .module import Module, register

__all__ = ["LeakyReLU", "ReLU"]


@register
class ReLU(Module):
    """``max(x, 0)`` elementwise. See ops.relu."""

    def forward(self, x: Any) -> Any:
        self._save(x)
        return relu(x)

    def backward(self, grad: Any) -> Any:
        (x,) = self._saved()
        return relu_backward(grad, x)


@register
class LeakyReLU(Module):
    """``x`` where positive, ``negative_slope * x`` elsewhere. See ops.leaky_relu."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = _args.check_real(negative_slope, "negative_slope")

    def _config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}

    def forward(self, x: Any) -> Any:
        self._save(x)
        return leaky_relu(x, self.negative_slope)

    def backward(self, grad: Any) -> Any:
        (x,) = self._saved()
        return leaky_relu_backward(grad, x, self.negative_slope)
