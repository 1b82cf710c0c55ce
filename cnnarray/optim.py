"""Optimisers (SGD, Adam, AdamW) and learning-rate schedules, with PyTorch's update rules.

An optimiser updates each :class:`~cnnarray.nn.Parameter`'s ``.data`` in place
from its ``.grad``, with the array module the parameter lives in (NumPy or
CuPy), so it works unchanged on every backend. Parameters can be passed as
one list or as PyTorch-style groups, ``[{"params": [...], "lr": 0.1}, ...]``,
whose entries override the defaults.

``state_dict()`` holds the per-parameter state (momentum buffers, moment
estimates, step counts) and the hyperparameters; ``load_state_dict()`` puts
them back, copying arrays to where each parameter lives, so that a training
run can resume exactly.

Examples
--------
>>> from cnnarray import nn, optim
>>> model = nn.Linear(3, 2, seed=0)
>>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
>>> sched = optim.StepLR(opt, step_size=10, gamma=0.5)
>>> sched.get_last_lr()
[0.1]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from . import _args
from .backend import array_namespace, backend_of
from .nn.module import Parameter

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "LRScheduler",
    "Optimizer",
    "StepLR",
]


class Optimizer:
    """Base class: parameter groups, ``zero_grad``, ``step`` and state (de)serialisation.

    Subclasses define ``_check(group)`` to validate hyperparameters and
    ``_update(param, grad, group, state)`` to change ``param.data`` in place.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Parameter, dict[str, Any]] = {}
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: Mapping[str, Any]) -> None:
        """Add a group ``{"params": [...], hyperparameter: value, ...}``."""
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"a parameter group must be a dict with 'params', got {group!r}")
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"optimizer can only update nn.Parameter objects, got {type(p).__name__}"
                )
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter appears more than once in the optimizer's groups")
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(
                f"unknown hyperparameters {sorted(unknown)} for {type(self).__name__}; "
                f"known: {sorted(self.defaults)}"
            )
        full = {**self.defaults, **group, "params": params}
        self._check(full)
        self.param_groups.append(full)

    def _check(self, group: dict[str, Any]) -> None:
        _args.check_real(group["lr"], "lr", low=0)
        _args.check_real(group["weight_decay"], "weight_decay", low=0)

    def _update(self, p: Parameter, grad: Any, group: dict[str, Any], state: dict) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Reset the gradient of every parameter to None."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient (those with ``grad=None`` are skipped)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    with backend_of(p.data).activate():
                        self._update(p, p.grad, group, self.state.setdefault(p, {}))

    def _params(self) -> list[Parameter]:
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self) -> dict[str, Any]:
        """Return ``{"state": {index: {name: array or int}}, "param_groups": [...]}``.

        Parameters are numbered in group order, as in PyTorch; each group
        lists its hyperparameters and the indices of its parameters. Arrays are
        the optimiser's own, not copies.
        """
        index = {id(p): i for i, p in enumerate(self._params())}
        groups = [
            {
                **{k: v for k, v in g.items() if k != "params"},
                "params": [index[id(p)] for p in g["params"]],
            }
            for g in self.param_groups
        ]
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if s}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyperparameters and per-parameter state saved by :meth:`state_dict`.

        The optimiser must have been built over the same parameters (same
        group sizes and shapes). Arrays are copied to each parameter's backend.

        Raises
        ------
        ValueError
            If the groups, parameter counts or array shapes do not match.
        """
        groups, saved = state_dict.get("param_groups"), state_dict.get("state")
        if not isinstance(groups, list) or not isinstance(saved, Mapping):
            raise ValueError("state_dict must have a 'param_groups' list and a 'state' mapping")
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(groups)} parameter groups, this optimizer has "
                f"{len(self.param_groups)}"
            )
        for i, (g, own) in enumerate(zip(groups, self.param_groups, strict=True)):
            if len(g["params"]) != len(own["params"]):
                raise ValueError(
                    f"parameter group {i} of state_dict has {len(g['params'])} parameters, "
                    f"this optimizer's has {len(own['params'])}"
                )
        params = self._params()
        new_state: dict[Parameter, dict[str, Any]] = {}
        for key, entries in saved.items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(f"state_dict has state for parameter {i}, out of range")
            p = params[i]
            new_state[p] = {}
            for name, value in entries.items():
                if hasattr(value, "shape") and value.ndim > 0:
                    if tuple(value.shape) != p.shape:
                        raise ValueError(
                            f"state {name!r} of parameter {i} has shape {tuple(value.shape)}, "
                            f"expected {p.shape}"
                        )
                    value = backend_of(p.data).asarray(value, dtype=p.dtype).copy()
                elif hasattr(value, "shape"):  # a 0-d array, e.g. a step count from a file
                    value = value.item()
                new_state[p][name] = value
        for g, own in zip(groups, self.param_groups, strict=True):
            own.update({k: v for k, v in g.items() if k != "params"})
        self.state = new_state


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay.

    With ``g = grad + weight_decay * p``:
    ``buf = momentum * buf + (1 - dampening) * g`` (``buf = g`` on the first step),
    then ``p -= lr * (g + momentum * buf)`` with Nesterov, ``p -= lr * buf``
    without, ``p -= lr * g`` when ``momentum = 0``.

    Parameters
    ----------
    params : iterable of Parameter, or of dict (parameter groups)
    lr : float
    momentum : float, default 0
    dampening : float, default 0
    weight_decay : float, default 0
    nesterov : bool, default False
        Needs ``momentum > 0`` and ``dampening = 0``.

    See Also
    --------
    torch.optim.SGD
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
        super().__init__(params, defaults)

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        _args.check_real(group["momentum"], "momentum", low=0)
        _args.check_real(group["dampening"], "dampening", low=0)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"nesterov momentum needs momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def _update(self, p: Parameter, grad: Any, group: dict[str, Any], state: dict) -> None:
        momentum, wd = group["momentum"], group["weight_decay"]
        if wd:
            grad = grad + wd * p.data
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        p.data -= group["lr"] * grad


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with L2 weight decay added to the gradient.

    With ``g = grad + weight_decay * p`` and ``t`` the step count:
    ``m = beta1 * m + (1 - beta1) * g``, ``v = beta2 * v + (1 - beta2) * g**2``,
    ``p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``.

    Parameters
    ----------
    params : iterable of Parameter, or of dict (parameter groups)
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0

    See Also
    --------
    torch.optim.Adam, AdamW
    """

    _decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        _args.check_real(group["eps"], "eps", low=0)
        betas = group["betas"]
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        group["betas"] = tuple(
            _args.check_real(b, f"betas[{i}]", low=0, high=1, high_open=True)
            for i, b in enumerate(betas)
        )

    def _update(self, p: Parameter, grad: Any, group: dict[str, Any], state: dict) -> None:
        xp = array_namespace(p.data)
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        if not state:
            state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        if self._decoupled:
            p.data *= 1 - lr * wd
        elif wd:
            grad = grad + wd * p.data
        m += (1 - beta1) * (grad - m)  # torch's lerp
        v *= beta2
        v += (1 - beta2) * grad * grad
        denom = xp.sqrt(v) / math.sqrt(1 - beta2**t) + eps
        p.data -= (lr / (1 - beta1**t)) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter, 2019).

    ``p *= 1 - lr * weight_decay`` first, then the Adam step on the raw gradient.
    Arguments as :class:`Adam`, but ``weight_decay`` defaults to 0.01.

    See Also
    --------
    torch.optim.AdamW
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)


class LRScheduler:
    """Base class: set each group's ``lr`` from its initial value and the epoch count.

    Construction sets epoch 0; each :meth:`step` moves one epoch on. The rate
    is a closed-form function of ``(initial lr, epoch)`` (PyTorch's formulas),
    so it does not drift, and it overrides any manual change of ``lr``.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"expected an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = -1
        self.step()

    def lr_at(self, base_lr: float, epoch: int) -> float:
        """Return the learning rate of epoch ``epoch`` for a group starting at ``base_lr``."""
        raise NotImplementedError

    def step(self) -> None:
        """Move to the next epoch and set every group's ``lr``."""
        self.last_epoch += 1
        self._apply()

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = self.lr_at(base, self.last_epoch)
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """Return the learning rate of each group set by the last step."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Return ``{"last_epoch": int, "base_lrs": [float]}``."""
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Resume at the saved epoch, setting the groups' ``lr`` accordingly."""
        base_lrs = list(state_dict["base_lrs"])
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(
                f"state_dict has {len(base_lrs)} base rates, the optimizer has "
                f"{len(self.optimizer.param_groups)} parameter groups"
            )
        self.base_lrs, self.last_epoch = base_lrs, int(state_dict["last_epoch"])
        self._apply()


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    ``lr = initial_lr * gamma ** (epoch // step_size)``.

    See Also
    --------
    torch.optim.lr_scheduler.StepLR
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _args.check_int(step_size, "step_size", minimum=1)
        self.gamma = _args.check_real(gamma, "gamma", low=0)
        super().__init__(optimizer)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """Anneal the learning rate along a cosine from its initial value to ``eta_min``.

    ``lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``,
    reaching ``eta_min`` at epoch ``T_max`` (and rising again after it, as in PyTorch).

    See Also
    --------
    torch.optim.lr_scheduler.CosineAnnealingLR
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803
        self.T_max = _args.check_int(T_max, "T_max", minimum=1)
        self.eta_min = _args.check_real(eta_min, "eta_min", low=0)
        super().__init__(optimizer)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        cosine = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return self.eta_min + (base_lr - self.eta_min) * cosine
