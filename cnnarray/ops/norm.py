"""Batch normalisation over (N, H, W) per channel, forward and backward."""

from __future__ import annotations

from typing import Any

from .. import _args
from ..backend import array_namespace, dispatch

__all__ = ["batch_norm2d", "batch_norm2d_backward"]


def _check(x: Any, params: dict[str, Any], eps: Any) -> tuple[Any, Any, dict[str, Any]]:
    """Validate a call; return ``xp``, x and the per-channel arrays in one float dtype."""
    _args.check_ndim(x, "x", (4,), "(N, C, H, W)")
    _args.check_nonempty(x, "x")
    c = x.shape[1]
    for name, a in params.items():
        if a is not None:
            _args.check_shape(a, name, (c,))
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not eps > 0:
        raise ValueError(f"eps must be a positive float, got {eps!r}")
    xp = array_namespace(x)
    dtype = _args.float_dtype(xp, x=x, **params)
    cast = {k: None if a is None else a.astype(dtype, copy=False) for k, a in params.items()}
    return xp, x.astype(dtype, copy=False), cast


def _stats(xp: Any, x: Any, running_mean: Any, running_var: Any, training: bool, eps: float):
    """Return (mean, biased var, 1/sqrt(var + eps)) per channel: the batch's or the running."""
    if training or running_mean is None or running_var is None:
        if x.size // x.shape[1] < 2 and training:
            raise ValueError(
                f"batch_norm2d needs more than 1 value per channel in training mode, "
                f"got x of shape {tuple(x.shape)}"
            )
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    else:
        mean, var = running_mean, running_var
    return mean, var, 1 / xp.sqrt(var + eps)


@dispatch("x", "running_mean", "running_var", "weight", "bias")
def batch_norm2d(
    x: Any,
    running_mean: Any = None,
    running_var: Any = None,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    backend: str | None = None,
) -> Any:
    """Normalise each channel, then scale and shift: ``y = (x - mean) / sqrt(var + eps) * w + b``.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    running_mean, running_var : array, shape (C,), optional
        Used instead of the batch's statistics when ``training`` is False. In
        training mode they are updated in place, as PyTorch does:
        ``running = (1 - momentum) * running + momentum * batch``, with the
        unbiased batch variance ``var * n / (n - 1)``, ``n = N * H * W``.
    weight, bias : array, shape (C,), optional
        Per-channel scale and shift (gamma, beta).
    training : bool, default False
        Normalise with the batch's mean and (biased) variance over (N, H, W).
    momentum : float, default 0.1
    eps : float, default 1e-5

    Returns
    -------
    array, shape (N, C, H, W)

    See Also
    --------
    torch.nn.functional.batch_norm
    """
    params = {"running_mean": running_mean, "running_var": running_var, "weight": weight,
              "bias": bias}  # fmt: skip
    xp, x, p = _check(x, params, eps)
    mean, var, inv_std = _stats(xp, x, p["running_mean"], p["running_var"], training, eps)
    if training and running_mean is not None and running_var is not None:
        n = x.size // x.shape[1]
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += (momentum * n / (n - 1)) * var
    scale = inv_std if p["weight"] is None else inv_std * p["weight"]
    y = (x - mean[:, None, None]) * scale[:, None, None]
    if p["bias"] is not None:
        y += p["bias"][:, None, None]
    return y


@dispatch("grad_out", "x", "running_mean", "running_var", "weight", "bias")
def batch_norm2d_backward(
    grad_out: Any,
    x: Any,
    running_mean: Any = None,
    running_var: Any = None,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    eps: float = 1e-5,
    *,
    backend: str | None = None,
) -> tuple[Any, Any, Any]:
    """Return the gradients of :func:`batch_norm2d` with respect to x, weight and bias.

    With batch statistics (``training``), ``xhat = (x - mean) * inv_std`` and
    ``dx = inv_std * (g - mean(g) - xhat * mean(g * xhat))`` with
    ``g = grad_out * weight`` and means over (N, H, W): the two means are the
    paths through the batch mean and variance. With running statistics the
    normalisation is affine and ``dx = g * inv_std``. Pass the running
    statistics as they were before the forward call (a training-mode forward
    updates them, but its normalisation used the batch's).

    Returns
    -------
    grad_x : array, shape (N, C, H, W)
    grad_weight, grad_bias : array, shape (C,), or None when weight / bias is None
    """
    params = {"running_mean": running_mean, "running_var": running_var, "weight": weight,
              "bias": bias}  # fmt: skip
    xp, x, p = _check(x, params, eps)
    _args.check_same_shape(grad_out, "grad_out", x, "x")
    g = grad_out.astype(_args.float_dtype(xp, grad_out=grad_out, x=x), copy=False)
    mean, _, inv_std = _stats(xp, x, p["running_mean"], p["running_var"], training, eps)
    xhat = (x - mean[:, None, None]) * inv_std[:, None, None]
    axes = (0, 2, 3)
    grad_w = None if weight is None else (g * xhat).sum(axis=axes)
    grad_b = None if bias is None else g.sum(axis=axes)
    g_hat = g if p["weight"] is None else g * p["weight"][:, None, None]
    if training or p["running_mean"] is None or p["running_var"] is None:
        g_mean = g_hat.mean(axis=axes, keepdims=True)
        gx_mean = (g_hat * xhat).mean(axis=axes, keepdims=True)
        grad_x = inv_std[:, None, None] * (g_hat - g_mean - xhat * gx_mean)
    else:
        grad_x = g_hat * inv_std[:, None, None]
    return grad_x, grad_w, grad_b
