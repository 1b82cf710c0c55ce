"""Activation layers, each one op of :mod:`cnnarray.ops` (PReLU with a learned slope)."""

from __future__ import annotations

from typing import Any

from .. import _args
from ..ops import (
    celu,
    elu,
    gelu,
    hardsigmoid,
    hardswish,
    hardtanh,
    leaky_relu,
    mish,
    prelu,
    relu,
    relu6,
    selu,
    sigmoid,
    silu,
    softplus,
    tanh,
)
from ._layer import OpLayer, _setup
from .init import constant
from .module import Module, Parameter, register

__all__ = [
    "CELU",
    "ELU",
    "GELU",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "LeakyReLU",
    "Mish",
    "PReLU",
    "ReLU",
    "ReLU6",
    "SELU",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "Tanh",
]


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


@register
class Sigmoid(OpLayer):
    """``1 / (1 + exp(-x))``. See ops.sigmoid."""

    _op = staticmethod(sigmoid)


@register
class Tanh(OpLayer):
    """``tanh(x)``. See ops.tanh."""

    _op = staticmethod(tanh)


@register
class ReLU6(OpLayer):
    """``min(max(x, 0), 6)``. See ops.relu6."""

    _op = staticmethod(relu6)


@register
class Hardtanh(OpLayer):
    """``x`` clipped to ``[min_val, max_val]``. See ops.hardtanh."""

    _op = staticmethod(hardtanh)
    _config_names = ("min_val", "max_val")

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0) -> None:
        super().__init__()
        self.min_val = _args.check_real(min_val, "min_val")
        self.max_val = _args.check_real(max_val, "max_val")
        if self.min_val > self.max_val:
            raise ValueError(f"min_val must not exceed max_val, got {min_val!r} > {max_val!r}")


@register
class Hardsigmoid(OpLayer):
    """``relu6(x + 3) / 6``. See ops.hardsigmoid."""

    _op = staticmethod(hardsigmoid)


@register
class Hardswish(OpLayer):
    """``x * relu6(x + 3) / 6``. See ops.hardswish."""

    _op = staticmethod(hardswish)


@register
class ELU(OpLayer):
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere. See ops.elu."""

    _op = staticmethod(elu)
    _config_names = ("alpha",)

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = _args.check_real(alpha, "alpha", finite=True)


@register
class SELU(OpLayer):
    """``scale * elu(x, alpha)`` with SELU's fixed constants. See ops.selu."""

    _op = staticmethod(selu)


@register
class CELU(OpLayer):
    """``x`` where positive, ``alpha * (exp(x / alpha) - 1)`` elsewhere. See ops.celu."""

    _op = staticmethod(celu)
    _config_names = ("alpha",)

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = _args.check_real(alpha, "alpha", finite=True)
        if self.alpha == 0:
            raise ValueError("alpha of CELU must be non-zero, got 0")


@register
class GELU(OpLayer):
    """``x * Phi(x)``, exact or with the tanh approximation. See ops.gelu."""

    _op = staticmethod(gelu)
    _config_names = ("approximate",)

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate


@register
class SiLU(OpLayer):
    """``x * sigmoid(x)``. See ops.silu."""

    _op = staticmethod(silu)


@register
class Mish(OpLayer):
    """``x * tanh(softplus(x))``. See ops.mish."""

    _op = staticmethod(mish)


@register
class Softplus(OpLayer):
    """``log(1 + exp(beta * x)) / beta``, linear above ``threshold``. See ops.softplus."""

    _op = staticmethod(softplus)
    _config_names = ("beta", "threshold")

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = _args.check_real(beta, "beta", low=0, low_open=True, finite=True)
        self.threshold = _args.check_real(threshold, "threshold")


@register
class PReLU(Module):
    """``x`` where positive, ``weight * x`` elsewhere, the slope learned.

    Parameters
    ----------
    num_parameters : int, default 1
        1 (one slope) or the channel count C of the (N, C, *) inputs.
    init : float, default 0.25
        The slopes' initial value.
    backend, dtype
        As in :class:`Conv2d`.

    See Also
    --------
    torch.nn.PReLU, cnnarray.ops.prelu
    """

    _config_names = ("num_parameters", "init")

    def __init__(
        self,
        num_parameters: int = 1,
        init: float = 0.25,
        *,
        backend: Any = None,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        self.num_parameters = _args.check_int(num_parameters, "num_parameters", minimum=1)
        self.init = _args.check_real(init, "init", finite=True)
        target, dtype, _ = _setup(backend, dtype)
        self.weight = Parameter(constant((self.num_parameters,), self.init, dtype, target))
        self._dtype = dtype

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "dtype": self._dtype.name}

    def forward(self, x: Any) -> Any:
        return prelu(x, self.weight)
