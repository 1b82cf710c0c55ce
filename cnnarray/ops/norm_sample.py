"""Normalisations with per-sample statistics, forward and backward: group_norm,
layer_norm and instance_norm.

Each standardises rows of x: a row is what one mean and variance are taken
over (a group of channels of one sample, the trailing ``normalized_shape``
axes of one sample, one channel of one sample), then applies the affine
``weight`` and ``bias``. Unlike batch norm, the statistics never mix samples.
The backward of a standardised row is
``dx = inv_std * (gy - mean(gy) - xhat * mean(gy * xhat))``, ``gy`` the
gradient reaching ``xhat``: the two means are the paths through the row's
mean and variance.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _args
from ..backend import array_namespace, dispatch

__all__ = [
    "group_norm",
    "group_norm_backward",
    "instance_norm",
    "instance_norm_backward",
    "layer_norm",
    "layer_norm_backward",
]


def _cast(
    x: Any, params: dict[str, Any], grad_out: Any = None
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Return ``xp``, x, grad_out and the parameters in x's float dtype (None stays None)."""
    if grad_out is not None:
        _args.check_same_shape(grad_out, "grad_out", x, "x")
    xp = array_namespace(x)
    dtype = _args.float_dtype(xp, grad_out=grad_out, x=x, **params)
    cast = {k: None if a is None else a.astype(dtype, copy=False) for k, a in params.items()}
    g = None if grad_out is None else grad_out.astype(dtype, copy=False)
    return xp, x.astype(dtype, copy=False), g, cast


def _check_params(params: dict[str, Any], shape: tuple[int, ...]) -> None:
    for name, a in params.items():
        if a is not None:
            _args.check_shape(a, name, shape)


def _standardize(xp: Any, rows: Any, eps: float) -> tuple[Any, Any, Any, Any]:
    """Over the last axis of ``rows``: ``xhat``, ``inv_std``, mean and biased variance
    (keepdims). Two passes: the centred sum of squares, not E[x^2] - mean^2."""
    mean = rows.mean(axis=-1, keepdims=True)
    centered = rows - mean
    var = (centered * centered).mean(axis=-1, keepdims=True)
    inv_std = 1 / xp.sqrt(var + eps)
    centered *= inv_std
    return centered, inv_std, mean, var


def _standardize_backward(gy: Any, xhat: Any, inv_std: Any) -> Any:
    """The gradient through :func:`_standardize` of the last axis."""
    return inv_std * (
        gy - gy.mean(axis=-1, keepdims=True) - xhat * (gy * xhat).mean(axis=-1, keepdims=True)
    )


def _channel_affine(y3: Any, weight: Any, bias: Any) -> Any:
    """``y3 * weight[c] + bias[c]`` over (N, C, L), in place on y3."""
    if weight is not None:
        y3 *= weight[:, None]
    if bias is not None:
        y3 += bias[:, None]
    return y3


def _channel_affine_backward(g3: Any, xhat3: Any, weight: Any, bias: Any) -> tuple[Any, ...]:
    """gy (the gradient reaching xhat), grad_weight and grad_bias of a per-channel affine."""
    gy = g3 if weight is None else g3 * weight[:, None]
    grad_w = None if weight is None else (g3 * xhat3).sum(axis=(0, 2))
    grad_b = None if bias is None else g3.sum(axis=(0, 2))
    return gy, grad_w, grad_b


# --------------------------------------------------------------------------- group_norm


def _check_group_norm(x: Any, num_groups: Any, params: dict[str, Any], eps: Any) -> int:
    if not hasattr(x, "ndim"):
        raise TypeError(f"x must be an array, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, C, *), got shape {tuple(x.shape)}")
    _args.check_nonempty(x, "x")
    groups = _args.check_int(num_groups, "num_groups", minimum=1)
    c = int(x.shape[1])
    if c % groups:
        raise ValueError(
            f"num_groups must divide the channels C={c} of x of shape {tuple(x.shape)}, "
            f"got {groups}"
        )
    _check_params(params, (c,))
    _args.check_real(eps, "eps", low=0, low_open=True)
    return groups


@dispatch("x", "weight", "bias")
def group_norm(
    x: Any,
    num_groups: int,
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
    *,
    backend: str | None = None,
) -> Any:
    """Normalise each group of channels of each sample, then scale and shift per channel.

    ``y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]``, with mean and
    biased variance over the ``C / num_groups`` channels of the group and all
    their positions, per sample.

    Parameters
    ----------
    x : array, shape (N, C, *)
    num_groups : int
        G, dividing C.
    weight, bias : array, shape (C,), optional
    eps : float, default 1e-5

    Returns
    -------
    array, the shape of x

    See Also
    --------
    torch.nn.functional.group_norm
    """
    params = {"weight": weight, "bias": bias}
    groups = _check_group_norm(x, num_groups, params, eps)
    xp, x, _, p = _cast(x, params)
    n, c = x.shape[0], x.shape[1]
    xhat, _, _, _ = _standardize(xp, x.reshape(n, groups, -1), eps)  # (N, G, C/G * L)
    y = _channel_affine(xhat.reshape(n, c, -1), p["weight"], p["bias"])
    return y.reshape(x.shape)


@dispatch("grad_out", "x", "weight", "bias")
def group_norm_backward(
    grad_out: Any,
    x: Any,
    num_groups: int,
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
    *,
    backend: str | None = None,
) -> tuple[Any, Any, Any]:
    """Return the gradients of :func:`group_norm` with respect to x, weight and bias.

    Returns
    -------
    grad_x : array, the shape of x
    grad_weight, grad_bias : array, shape (C,), or None when weight / bias is None
    """
    params = {"weight": weight, "bias": bias}
    groups = _check_group_norm(x, num_groups, params, eps)
    xp, x, g, p = _cast(x, params, grad_out)
    n, c = x.shape[0], x.shape[1]
    xhat, inv_std, _, _ = _standardize(xp, x.reshape(n, groups, -1), eps)
    gy, grad_w, grad_b = _channel_affine_backward(
        g.reshape(n, c, -1), xhat.reshape(n, c, -1), p["weight"], p["bias"]
    )
    grad_x = _standardize_backward(gy.reshape(n, groups, -1), xhat, inv_std)
    return grad_x.reshape(x.shape), grad_w, grad_b


# --------------------------------------------------------------------------- layer_norm


def _check_layer_norm(
    x: Any, normalized_shape: Any, params: dict[str, Any], eps: Any
) -> tuple[int, ...]:
    if not hasattr(x, "ndim"):
        raise TypeError(f"x must be an array, got {type(x).__name__}")
    dims = (
        (normalized_shape,) if not isinstance(normalized_shape, tuple | list) else normalized_shape
    )
    shape = tuple(_args.check_int(d, "normalized_shape", minimum=1) for d in dims)
    if not shape or x.ndim < len(shape) or tuple(x.shape[x.ndim - len(shape) :]) != shape:
        raise ValueError(
            f"normalized_shape must be a non-empty tail of x's shape {tuple(x.shape)}, "
            f"got {normalized_shape!r}"
        )
    _args.check_nonempty(x, "x")
    _check_params(params, shape)
    _args.check_real(eps, "eps", low=0, low_open=True)
    return shape


@dispatch("x", "weight", "bias")
def layer_norm(
    x: Any,
    normalized_shape: int | tuple[int, ...],
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
    *,
    backend: str | None = None,
) -> Any:
    """Normalise over the trailing ``normalized_shape`` axes, then scale and shift elementwise.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``, with mean and biased
    variance over the last ``len(normalized_shape)`` axes of x.

    Parameters
    ----------
    x : array, shape (*, *normalized_shape)
    normalized_shape : int or tuple of int
        The trailing axes to normalise over.
    weight, bias : array, shape normalized_shape, optional
    eps : float, default 1e-5

    Returns
    -------
    array, the shape of x

    See Also
    --------
    torch.nn.functional.layer_norm
    """
    params = {"weight": weight, "bias": bias}
    shape = _check_layer_norm(x, normalized_shape, params, eps)
    xp, x, _, p = _cast(x, params)
    y, _, _, _ = _standardize(xp, x.reshape(-1, math.prod(shape)), eps)  # (rows, M)
    if p["weight"] is not None:
        y *= p["weight"].reshape(-1)
    if p["bias"] is not None:
        y += p["bias"].reshape(-1)
    return y.reshape(x.shape)


@dispatch("grad_out", "x", "weight", "bias")
def layer_norm_backward(
    grad_out: Any,
    x: Any,
    normalized_shape: int | tuple[int, ...],
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
    *,
    backend: str | None = None,
) -> tuple[Any, Any, Any]:
    """Return the gradients of :func:`layer_norm` with respect to x, weight and bias.

    Returns
    -------
    grad_x : array, the shape of x
    grad_weight, grad_bias : array, shape normalized_shape, or None when weight / bias is None
    """
    params = {"weight": weight, "bias": bias}
    shape = _check_layer_norm(x, normalized_shape, params, eps)
    xp, x, g, p = _cast(x, params, grad_out)
    m = math.prod(shape)
    xhat, inv_std, _, _ = _standardize(xp, x.reshape(-1, m), eps)
    g2 = g.reshape(-1, m)
    w = p["weight"]
    grad_w = None if w is None else (g2 * xhat).sum(axis=0).reshape(shape)
    grad_b = None if p["bias"] is None else g2.sum(axis=0).reshape(shape)
    gy = g2 if w is None else g2 * w.reshape(-1)
    return _standardize_backward(gy, xhat, inv_std).reshape(x.shape), grad_w, grad_b


# --------------------------------------------------------------------------- instance_norm

_INSTANCE_LAYOUT = "(N, C, L), (N, C, H, W) or (N, C, D, H, W)"


def _check_instance_norm(x: Any, params: dict[str, Any], use_input_stats: Any, eps: Any) -> bool:
    _args.check_ndim(x, "x", (3, 4, 5), _INSTANCE_LAYOUT)
    _args.check_nonempty(x, "x")
    _check_params(params, (int(x.shape[1]),))
    _args.check_real(eps, "eps", low=0, low_open=True)
    use_input_stats = _args.check_bool(use_input_stats, "use_input_stats")
    if use_input_stats and math.prod(x.shape[2:]) < 2:
        raise ValueError(
            f"instance_norm needs more than 1 spatial element per channel to use the "
            f"input's statistics, got x of shape {tuple(x.shape)}"
        )
    if not use_input_stats and (params["running_mean"] is None or params["running_var"] is None):
        raise ValueError(
            "instance_norm with use_input_stats=False needs running_mean and running_var, got None"
        )
    return use_input_stats


@dispatch("x", "running_mean", "running_var", "weight", "bias")
def instance_norm(
    x: Any,
    running_mean: Any = None,
    running_var: Any = None,
    weight: Any = None,
    bias: Any = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    backend: str | None = None,
) -> Any:
    """Normalise each channel of each sample over its positions, then scale and shift.

    Parameters
    ----------
    x : array, shape (N, C, L), (N, C, H, W) or (N, C, D, H, W)
    running_mean, running_var : array, shape (C,), optional
        With ``use_input_stats`` they are updated in place, as PyTorch does:
        ``running = (1 - momentum) * running + momentum * batch``, ``batch``
        the mean over the N samples of each instance's mean and unbiased
        variance (``var * n / (n - 1)``, n the positions per channel).
        Without it they normalise the input instead.
    weight, bias : array, shape (C,), optional
    use_input_stats : bool, default True
    momentum : float, default 0.1
    eps : float, default 1e-5

    Returns
    -------
    array, the shape of x

    See Also
    --------
    torch.nn.functional.instance_norm
    """
    params = {"running_mean": running_mean, "running_var": running_var, "weight": weight,
              "bias": bias}  # fmt: skip
    use_input_stats = _check_instance_norm(x, params, use_input_stats, eps)
    xp, x, _, p = _cast(x, params)
    n, c = x.shape[0], x.shape[1]
    x3 = x.reshape(n, c, -1)
    if not use_input_stats:
        scale = 1 / xp.sqrt(p["running_var"] + eps)
        y = (x3 - p["running_mean"][:, None]) * scale[:, None]
        return _channel_affine(y, p["weight"], p["bias"]).reshape(x.shape)
    xhat, _, mean, var = _standardize(xp, x3, eps)  # mean, var: (N, C, 1)
    if running_mean is not None and running_var is not None:
        count = x3.shape[2]
        running_mean *= 1 - momentum
        running_mean += momentum * mean[:, :, 0].mean(axis=0)
        running_var *= 1 - momentum
        running_var += (momentum * count / (count - 1)) * var[:, :, 0].mean(axis=0)
    return _channel_affine(xhat, p["weight"], p["bias"]).reshape(x.shape)


@dispatch("grad_out", "x", "running_mean", "running_var", "weight", "bias")
def instance_norm_backward(
    grad_out: Any,
    x: Any,
    running_mean: Any = None,
    running_var: Any = None,
    weight: Any = None,
    bias: Any = None,
    use_input_stats: bool = True,
    eps: float = 1e-5,
    *,
    backend: str | None = None,
) -> tuple[Any, Any, Any]:
    """Return the gradients of :func:`instance_norm` with respect to x, weight and bias.

    With ``use_input_stats`` each (sample, channel) row is standardised
    (see the module); otherwise the running statistics make it affine,
    ``dx = grad_out * weight / sqrt(running_var + eps)``.

    Returns
    -------
    grad_x : array, the shape of x
    grad_weight, grad_bias : array, shape (C,), or None when weight / bias is None
    """
    params = {"running_mean": running_mean, "running_var": running_var, "weight": weight,
              "bias": bias}  # fmt: skip
    use_input_stats = _check_instance_norm(x, params, use_input_stats, eps)
    xp, x, g, p = _cast(x, params, grad_out)
    n, c = x.shape[0], x.shape[1]
    x3, g3 = x.reshape(n, c, -1), g.reshape(n, c, -1)
    if use_input_stats:
        xhat, inv_std, _, _ = _standardize(xp, x3, eps)
    else:
        inv_std = (1 / xp.sqrt(p["running_var"] + eps))[:, None]
        xhat = (x3 - p["running_mean"][:, None]) * inv_std
    gy, grad_w, grad_b = _channel_affine_backward(g3, xhat, p["weight"], p["bias"])
    grad_x = _standardize_backward(gy, xhat, inv_std) if use_input_stats else gy * inv_std
    return grad_x.reshape(x.shape), grad_w, grad_b
