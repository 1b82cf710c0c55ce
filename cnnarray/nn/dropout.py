"""Dropout layers: ``Dropout`` and ``Dropout1d/2d/3d`` (whole channels), over the
functions of :mod:`cnnarray.ops.dropout`, each layer with its own mask generator;
autograd records the mask the op drew.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import _args
from ..backend import array_namespace
from ..ops import dropout, dropout1d, dropout2d, dropout3d
from .module import Module, register

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d"]


@register
class Dropout(Module):
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).

    Identity in evaluation mode. The mask comes from ``xp.random.default_rng(seed)``
    of the input's array module, created on the first call on each backend.

    Parameters
    ----------
    p : float in [0, 1], default 0.5
    seed : int, optional
        Seed of the mask generator, for reproducible runs.

    See Also
    --------
    torch.nn.Dropout
    """

    _op: ClassVar[Any] = staticmethod(dropout)

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        super().__init__()
        self.p = _args.check_real(p, "p", low=0, high=1)
        self.seed = seed if seed is None else _args.check_int(seed, "seed", minimum=0)
        self._rng: Any = None
        self._rng_xp: Any = None
        self._pending_state: dict | None = None

    def get_rng_state(self) -> dict | None:
        """Return the mask generator's state as a JSON-able dict, or None.

        None before the first call in training mode (the generator does not
        exist yet; it will start from ``seed``) and for generators whose state
        is not a plain dict (CuPy's keeps it on the device).
        """
        if self._rng is None:
            return self._pending_state
        state = getattr(self._rng.bit_generator, "state", None)
        return state if isinstance(state, dict) else None

    def set_rng_state(self, state: dict | None) -> None:
        """Continue the masks from a state returned by :meth:`get_rng_state`.

        Applied to the generator of the next call (created then if needed), so
        it works before the module has seen its backend.
        """
        self._pending_state = state
        self._rng, self._rng_xp = None, None

    def _config(self) -> dict[str, Any]:
        return {"p": self.p} if self.seed is None else {"p": self.p, "seed": self.seed}

    def _generator(self, xp: Any) -> Any:
        """The mask generator of ``xp``, created (from ``seed`` or a set state) on first use."""
        if self._rng_xp is not xp:
            self._rng, self._rng_xp = xp.random.default_rng(self.seed), xp
            if self._pending_state is not None:
                self._rng.bit_generator.state = self._pending_state
                self._pending_state = None
        return self._rng

    def forward(self, x: Any) -> Any:
        if not self.training or self.p == 0:
            return x
        return self._op(x, self.p, True, generator=self._generator(array_namespace(x.data)))


@register
class Dropout1d(Dropout):
    """Zero whole channels of (N, C, L) or (C, L) inputs with probability p; scale the
    rest by 1/(1-p). Arguments and generator as :class:`Dropout`.

    See Also
    --------
    torch.nn.Dropout1d, cnnarray.ops.dropout1d
    """

    _op: ClassVar[Any] = staticmethod(dropout1d)


@register
class Dropout2d(Dropout):
    """Zero whole channels of (N, C, H, W) or (C, H, W) inputs with probability p; scale
    the rest by 1/(1-p). Arguments and generator as :class:`Dropout`.

    See Also
    --------
    torch.nn.Dropout2d, cnnarray.ops.dropout2d
    """

    _op: ClassVar[Any] = staticmethod(dropout2d)


@register
class Dropout3d(Dropout):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) inputs with probability p;
    scale the rest by 1/(1-p). Arguments and generator as :class:`Dropout`.

    See Also
    --------
    torch.nn.Dropout3d, cnnarray.ops.dropout3d
    """

    _op: ClassVar[Any] = staticmethod(dropout3d)
