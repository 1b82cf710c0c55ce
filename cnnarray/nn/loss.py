"""Loss modules, as ``torch.nn``'s: each calls one loss of :mod:`cnnarray.ops` with its options.

``criterion(input, target)`` takes Tensors (the result is a Tensor loss to call
``.backward()`` on) or arrays. With arrays the target is a constant:
``criterion.backward()`` returns the gradient with respect to ``input`` alone,
ready for ``model.backward``. Class weights (``weight``, ``pos_weight``) are
buffers: ``to()`` moves them, ``state_dict()`` saves them, and the spec holds
their values, so ``from_spec`` rebuilds the same loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _args
from ..backend import to_numpy
from ..ops import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from ._layer import _setup
from .module import Module, register

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "MSELoss",
    "NLLLoss",
    "SmoothL1Loss",
]


class _Loss(Module):
    """A loss module: ``forward(input, target)`` is ``_op(input, target, **options)``.

    A subclass names the op, its options (``_config_names``, passed under the
    same names) and the buffers among them (``_weights``: arrays kept on the
    module's backend, listed in the spec by value with their ``dtype``).
    """

    _op: Callable[..., Any]
    _weights: tuple[str, ...] = ()

    _reductions: tuple[str, ...] = ("mean", "sum", "none")

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in self._reductions:
            raise ValueError(f"reduction must be one of {self._reductions}, got {reduction!r}")
        self.reduction = reduction

    def _set_weights(self, backend: Any, dtype: Any, **weights: Any) -> None:
        """Keep each given weight as a buffer of ``dtype`` on ``backend``; None stays None."""
        target, self._dtype, _ = _setup(backend, dtype)
        for name, value in weights.items():
            if value is None:
                setattr(self, name, None)
                continue
            with target.activate():
                self.register_buffer(name, target.xp.asarray(to_numpy(value), dtype=self._dtype))

    def _config(self) -> dict[str, Any]:
        config = super()._config()
        if self._weights:
            for name in self._weights:
                value = getattr(self, name)
                config[name] = None if value is None else to_numpy(value).tolist()
            config["dtype"] = self._dtype.name
        return config

    def _options(self) -> dict[str, Any]:
        names = (*self._weights, *self._config_names)
        return {name: getattr(self, name) for name in names}

    def __call__(self, input: Any, target: Any) -> Any:
        # by keyword: Module.__call__ then leaves the target alone (no leaf requiring grad)
        return super().__call__(input, target=target)

    def forward(self, input: Any, target: Any) -> Any:
        return self._op(input, target, **self._options())


@register
class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits against class indices or probabilities. See
    ops.cross_entropy.

    Parameters
    ----------
    weight : array_like, shape (C,), optional
        A weight per class.
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float in [0, 1], default 0.0
    dtype : {"float32", "float64"}, default "float32"
        Of the weight, which must match the logits'.
    backend : str, optional
        Where the weight lives (default "cpu"); ``to()`` moves it.

    See Also
    --------
    torch.nn.CrossEntropyLoss
    """

    _op = staticmethod(cross_entropy)
    _weights = ("weight",)
    _config_names = ("ignore_index", "reduction", "label_smoothing")

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        dtype: Any = "float32",
        backend: Any = None,
    ) -> None:
        super().__init__(reduction)
        self.ignore_index = _args.check_int(ignore_index, "ignore_index")
        self.label_smoothing = _args.check_real(label_smoothing, "label_smoothing", low=0, high=1)
        self._set_weights(backend, dtype, weight=weight)


@register
class NLLLoss(_Loss):
    """Negative log-likelihood of class indices under log-probabilities. See ops.nll_loss.

    Parameters
    ----------
    weight, ignore_index, reduction, dtype, backend
        As for :class:`CrossEntropyLoss`.

    See Also
    --------
    torch.nn.NLLLoss
    """

    _op = staticmethod(nll_loss)
    _weights = ("weight",)
    _config_names = ("ignore_index", "reduction")

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        *,
        dtype: Any = "float32",
        backend: Any = None,
    ) -> None:
        super().__init__(reduction)
        self.ignore_index = _args.check_int(ignore_index, "ignore_index")
        self._set_weights(backend, dtype, weight=weight)


@register
class BCELoss(_Loss):
    """Binary cross-entropy of probabilities, each log clamped at -100. See
    ops.binary_cross_entropy.

    Parameters
    ----------
    weight : array_like, optional
        Rescales each element's loss; broadcasts to the input's shape.
    reduction : {"mean", "sum", "none"}, default "mean"
    dtype, backend
        Of the weight, as for :class:`CrossEntropyLoss`.

    See Also
    --------
    torch.nn.BCELoss
    """

    _op = staticmethod(binary_cross_entropy)
    _weights = ("weight",)
    _config_names = ("reduction",)

    def __init__(
        self, weight: Any = None, reduction: str = "mean", *, dtype: Any = "float32",
        backend: Any = None,
    ) -> None:  # fmt: skip
        super().__init__(reduction)
        self._set_weights(backend, dtype, weight=weight)


@register
class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of sigmoid(logits), computed stably. See
    ops.binary_cross_entropy_with_logits.

    Parameters
    ----------
    weight : array_like, optional
        Rescales each element's loss; broadcasts to the input's shape.
    reduction : {"mean", "sum", "none"}, default "mean"
    pos_weight : array_like, optional
        Weight of the positive term, e.g. one per class; broadcasts to the input's shape.
    dtype, backend
        Of the weights, as for :class:`CrossEntropyLoss`.

    See Also
    --------
    torch.nn.BCEWithLogitsLoss
    """

    _op = staticmethod(binary_cross_entropy_with_logits)
    _weights = ("weight", "pos_weight")
    _config_names = ("reduction",)

    def __init__(
        self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None, *,
        dtype: Any = "float32", backend: Any = None,
    ) -> None:  # fmt: skip
        super().__init__(reduction)
        self._set_weights(backend, dtype, weight=weight, pos_weight=pos_weight)


@register
class MSELoss(_Loss):
    """Squared error ``(input - target) ** 2``, reduced. See ops.mse_loss.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"

    See Also
    --------
    torch.nn.MSELoss
    """

    _op = staticmethod(mse_loss)
    _config_names = ("reduction",)


@register
class L1Loss(_Loss):
    """Absolute error ``|input - target|``, reduced. See ops.l1_loss.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"

    See Also
    --------
    torch.nn.L1Loss
    """

    _op = staticmethod(l1_loss)
    _config_names = ("reduction",)


@register
class SmoothL1Loss(_Loss):
    """Squared error below ``beta``, absolute error above. See ops.smooth_l1_loss.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"
    beta : float >= 0, default 1.0

    See Also
    --------
    torch.nn.SmoothL1Loss
    """

    _op = staticmethod(smooth_l1_loss)
    _config_names = ("reduction", "beta")

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        self.beta = _args.check_real(beta, "beta", low=0)


@register
class HuberLoss(_Loss):
    """Squared error below ``delta``, ``delta`` times the absolute error above. See
    ops.huber_loss.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"
    delta : float > 0, default 1.0

    See Also
    --------
    torch.nn.HuberLoss
    """

    _op = staticmethod(huber_loss)
    _config_names = ("reduction", "delta")

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        self.delta = _args.check_real(delta, "delta", low=0, low_open=True)


@register
class KLDivLoss(_Loss):
    """Kullback-Leibler divergence of the target from log-probabilities. See ops.kl_div.

    Parameters
    ----------
    reduction : {"mean", "batchmean", "sum", "none"}, default "mean"
        "batchmean" divides by the batch size: the divergence's mean over samples.
    log_target : bool, default False

    See Also
    --------
    torch.nn.KLDivLoss
    """

    _op = staticmethod(kl_div)
    _config_names = ("reduction", "log_target")
    _reductions = ("mean", "batchmean", "sum", "none")

    def __init__(self, reduction: str = "mean", log_target: bool = False) -> None:
        super().__init__(reduction)
        self.log_target = _args.check_bool(log_target, "log_target")
