"""Dropout layers: ``Dropout``.

No op of :mod:`cnnarray.ops` draws random masks, so the layer draws its own
and multiplies by it; autograd records the product.
"""

from __future__ import annotations

from typing import Any

from .. import _args
from ..backend import array_namespace
from .module import Module, register

__all__ = ["Dropout"]


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

    def forward(self, x: Any) -> Any:
        if not self.training or self.p == 0:
            return x
        xp = array_namespace(x.data)
        dtype = _args.float_dtype(xp, x=x.data)
        if self._rng_xp is not xp:
            self._rng, self._rng_xp = xp.random.default_rng(self.seed), xp
            if self._pending_state is not None:
                self._rng.bit_generator.state = self._pending_state
                self._pending_state = None
        keep = self._rng.random(x.shape, dtype=dtype) >= self.p
        mask = keep.astype(dtype) * (1 / (1 - self.p) if self.p < 1 else 0.0)
        return x * mask
