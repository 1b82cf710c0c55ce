"""What the layer modules share: where parameters are made, and the base of one-op layers."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..backend import get_backend
from . import init
from .module import Module, Parameter


def _setup(backend: Any, dtype: Any, seed: Any = None, rng: Any = None) -> tuple[Any, Any, Any]:
    """Resolve a parametric layer's backend (default "cpu"), dtype and init generator."""
    target = get_backend("cpu" if backend is None else backend)
    return target, init.resolve_dtype(target.xp, dtype), init.make_rng(seed, rng)


def _weight_and_bias(
    shape: tuple[int, ...], bias: bool, backend: Any, dtype: Any, seed: Any, rng: Any,
    bias_size: int | None = None,
) -> tuple[Parameter, Parameter | None]:  # fmt: skip
    """Draw a weight of ``shape`` (out, in, ...) and a bias (out,) or None, PyTorch's way.

    Both from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: the weight as Kaiming-uniform
    with ``a = sqrt(5)``, then the bias, in that order from one generator. A
    transposed convolution's weight is (in, out / groups, ...): its bias has
    ``bias_size`` elements, fan_in still read from the weight as PyTorch does.
    """
    target, dtype, rng = _setup(backend, dtype, seed, rng)
    weight = Parameter(init.kaiming_uniform(shape, rng, dtype, target, a=math.sqrt(5)))
    fan_in, _ = init.calculate_fan_in_and_fan_out(shape)
    bound = 1 / math.sqrt(fan_in)
    size = shape[:1] if bias_size is None else (bias_size,)
    return weight, (Parameter(init.uniform(size, bound, rng, dtype, target)) if bias else None)


class OpLayer(Module):
    """A layer without parameters that is one op of :mod:`cnnarray.ops`.

    ``forward`` returns ``_op(x, **self._op_args())``; autograd records the op
    and calls its ``*_backward``. A subclass names the op (as ``staticmethod``)
    and its constructor arguments (``_config_names``), which the op takes under
    the same names unless it overrides :meth:`_op_args`.
    """

    _op: Callable[..., Any]

    def _op_args(self) -> dict[str, Any]:
        """Keyword arguments of the op: the constructor's, unless the op names them otherwise."""
        return self._config()

    def forward(self, x: Any) -> Any:
        return self._op(x, **self._op_args())
