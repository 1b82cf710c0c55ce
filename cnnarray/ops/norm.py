"""Batch normalisation per channel over every axis but the channel axis 1, forward and
backward: :func:`batch_norm` for (N, C), (N, C, L), (N, C, H, W) and (N, C, D, H, W)
inputs, :func:`batch_norm2d` for (N, C, H, W) only (the layer ``BatchNorm2d`` calls it).
Both run the same code."""

from __future__ import annotations

from typing import Any

from .. import _args
from ..backend import array_namespace, dispatch

__all__ = ["batch_norm", "batch_norm2d", "batch_norm2d_backward", "batch_norm_backward"]

# The layouts batch_norm takes: ndim -> shape, for messages.
_LAYOUTS = {2: "(N, C)", 3: "(N, C, L)", 4: "(N, C, H, W)", 5: "(N, C, D, H, W)"}
_ANY_LAYOUT = "(N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W)"


def _check(
    x: Any, params: dict[str, Any], eps: Any, ndims: tuple[int, ...] = (4,)
) -> tuple[Any, Any, dict[str, Any]]:
    """Validate a call; return ``xp``, x and the per-channel arrays in one float dtype."""
    _args.check_ndim(x, "x", ndims, _LAYOUTS[4] if ndims == (4,) else _ANY_LAYOUT)
    _args.check_nonempty(x, "x")
    c = x.shape[1]
    for name, a in params.items():
        if a is not None:
            _args.check_shape(a, name, (c,))
    _args.check_real(eps, "eps", low=0, low_open=True)
    xp = array_namespace(x)
    dtype = _args.float_dtype(xp, x=x, **params)
    cast = {k: None if a is None else a.astype(dtype, copy=False) for k, a in params.items()}
    return xp, x.astype(dtype, copy=False), cast


def _channel_sum(xp: Any, a: Any, b: Any = None) -> Any:
    """Per-channel sum over (N, L) of ``a`` (N, C, L), or of ``a * b`` without a
    temporary: each (image, channel) row first, then the N row sums.

    In float32 the rows go to BLAS, which sums with SIMD partial sums about as
    accurately as NumPy's pairwise ``sum``: a matrix-vector product with ones
    is 3-5x faster than ``sum(axis=2)``, and the batched (1, L) @ (L, 1)
    products 1.6x faster than ``einsum`` for rows of 128 or more (slower
    below). Float64, the precision of the comparisons with PyTorch to 1e-9
    (one of which amplifies rounding a millionfold), keeps NumPy's order.
    """
    fast = a.dtype == xp.float32
    if b is None:
        rows = a @ xp.ones(a.shape[2], dtype=a.dtype) if fast else a.sum(axis=2)
    elif fast and a.shape[2] >= 128:
        rows = (a[:, :, None, :] @ b[:, :, :, None])[:, :, 0, 0]  # (N, C, 1, 1) -> (N, C)
    else:
        rows = xp.einsum("ncl,ncl->nc", a, b)
    return rows.sum(axis=0)


def _batch_stats(xp: Any, x: Any, training: bool, name: str) -> tuple[Any, Any, Any]:
    """Mean, biased variance and ``x - mean`` (as (N, C, L)) of x over (N, *)
    per channel: two passes (the centred sum of squares, not E[x^2] - mean^2,
    which cancels badly when |mean| >> std)."""
    n = x.size // x.shape[1]
    if n < 2 and training:
        raise ValueError(
            f"{name} needs more than 1 value per channel in training mode, "
            f"got x of shape {tuple(x.shape)}"
        )
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    mean = _channel_sum(xp, x3) / n
    centered = xp.subtract(x3, mean[:, None])
    return mean, _channel_sum(xp, centered, centered) / n, centered


def _batch_norm(
    x: Any, running_mean: Any, running_var: Any, weight: Any, bias: Any, training: bool,
    momentum: float, eps: float, ndims: tuple[int, ...], name: str, return_stats: bool = False,
) -> Any:  # fmt: skip
    """The forward of batch_norm and batch_norm2d (``ndims``: the x.ndim allowed)."""
    params = {"running_mean": running_mean, "running_var": running_var, "weight": weight,
              "bias": bias}  # fmt: skip
    xp, x, p = _check(x, params, eps, ndims)
    _args.check_bool(return_stats, "return_stats")
    batch = training or p["running_mean"] is None or p["running_var"] is None
    if batch:
        mean, var, y = _batch_stats(xp, x, training, name)
    else:  # copies: the caller may update the running statistics before the backward
        mean, var = p["running_mean"].copy(), p["running_var"]
    if training and running_mean is not None and running_var is not None:
        n = x.size // x.shape[1]
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += (momentum * n / (n - 1)) * var
    inv_std = 1 / xp.sqrt(var + eps)
    scale = inv_std if p["weight"] is None else inv_std * p["weight"]
    if batch:  # y holds x - mean: scale it in place, then shift
        y *= scale[:, None]
        if p["bias"] is not None:
            y += p["bias"][:, None]
    else:  # y = x * scale + (bias - mean * scale)
        shift = -mean * scale if p["bias"] is None else p["bias"] - mean * scale
        y = xp.multiply(x.reshape(x.shape[0], x.shape[1], -1), scale[:, None])
        y += shift[:, None]
    y = y.reshape(x.shape)
    return (y, mean, inv_std) if return_stats else y


def _batch_norm_backward(
    grad_out: Any, x: Any, running_mean: Any, running_var: Any, weight: Any, bias: Any,
    training: bool, eps: float, ndims: tuple[int, ...], name: str, mean: Any = None,
    inv_std: Any = None,
) -> tuple[Any, Any, Any]:  # fmt: skip
    """The backward of batch_norm and batch_norm2d; ``mean`` and ``inv_std``, when given,
    are the statistics the forward normalised with (else computed again from x or the
    running statistics)."""
    params = {"running_mean": running_mean, "running_var": running_var, "weight": weight,
              "bias": bias, "mean": mean, "inv_std": inv_std}  # fmt: skip
    xp, x, p = _check(x, params, eps, ndims)
    _args.check_same_shape(grad_out, "grad_out", x, "x")
    if (mean is None) != (inv_std is None):
        raise ValueError(
            f"{name}_backward takes mean and inv_std together (the statistics the forward "
            f"returned with return_stats=True), got only {'inv_std' if mean is None else 'mean'}"
        )
    g = grad_out.astype(_args.float_dtype(xp, grad_out=grad_out, x=x), copy=False)
    shape, n = x.shape, x.size // x.shape[1]
    g3, x3 = g.reshape(shape[0], shape[1], -1), x.reshape(shape[0], shape[1], -1)
    batch = training or p["running_mean"] is None or p["running_var"] is None
    mean, inv_std = p["mean"], p["inv_std"]
    if mean is not None:
        centered = xp.subtract(x3, mean[:, None])
    elif batch:
        mean, var, centered = _batch_stats(xp, x, training, name)
        inv_std = 1 / xp.sqrt(var + eps)
    else:
        mean, inv_std = p["running_mean"], 1 / xp.sqrt(p["running_var"] + eps)
        # x - mean only for grad_weight; otherwise just the buffer of grad_x
        centered = xp.subtract(x3, mean[:, None]) if weight is not None else xp.empty_like(g3)
    # centered (x - mean, as (N, C, L)) is a fresh array: it becomes grad_x below
    sum_g = _channel_sum(xp, g3)
    # sum(g * xhat) = sum(g * (x - mean)) * inv_std: grad_weight, and the variance path
    sum_gxhat = _channel_sum(xp, g3, centered) * inv_std if batch or weight is not None else None
    grad_w = None if weight is None else sum_gxhat
    grad_b = None if bias is None else sum_g
    k = inv_std if p["weight"] is None else inv_std * p["weight"]  # dy/dx with fixed stats
    grad_x = centered
    if batch:
        # dx = k * (g - mean(g) - xhat * mean(g * xhat)): per channel
        # k * (g + a * (x - mean) + b), in place over the centred copy
        centered *= (-inv_std * sum_gxhat / n)[:, None]
        centered += (-sum_g / n)[:, None]
        centered += g3
        centered *= k[:, None]
    else:
        xp.multiply(g3, k[:, None], out=grad_x)
    return grad_x.reshape(shape), grad_w, grad_b


@dispatch("x", "running_mean", "running_var", "weight", "bias")
def batch_norm(
    x: Any,
    running_mean: Any = None,
    running_var: Any = None,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    return_stats: bool = False,
    backend: str | None = None,
) -> Any:
    """Normalise each channel, then scale and shift: ``y = (x - mean) / sqrt(var + eps) * w + b``.

    The statistics of channel c are taken over every axis but axis 1: (N,)
    for (N, C) input, (N, L), (N, H, W) or (N, D, H, W) for the others.

    Parameters
    ----------
    x : array, shape (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W)
    running_mean, running_var : array, shape (C,), optional
        Used instead of the batch's statistics when ``training`` is False. In
        training mode they are updated in place, as PyTorch does:
        ``running = (1 - momentum) * running + momentum * batch``, with the
        unbiased batch variance ``var * n / (n - 1)``, ``n = x.size / C``.
        (PyTorch's ``momentum=None``, a cumulative average, is the caller's
        ``momentum = 1 / num_batches_tracked``, as ``nn.BatchNorm1d`` passes.)
    weight, bias : array, shape (C,), optional
        Per-channel scale and shift (gamma, beta).
    training : bool, default False
        Normalise with the batch's mean and (biased) variance.
    momentum : float, default 0.1
    eps : float, default 1e-5
    return_stats : bool, default False
        Also return the per-channel ``mean`` and ``inv_std = 1 / sqrt(var + eps)``
        the normalisation used (the batch's, or the running ones), shape (C,):
        :func:`batch_norm_backward` takes them instead of computing them again.

    Returns
    -------
    array, the shape of x; with ``return_stats``, the triple ``(y, mean, inv_std)``

    See Also
    --------
    torch.nn.functional.batch_norm
    """
    return _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps,
                       (2, 3, 4, 5), "batch_norm", return_stats)  # fmt: skip


@dispatch("grad_out", "x", "running_mean", "running_var", "weight", "bias", "mean", "inv_std")
def batch_norm_backward(
    grad_out: Any,
    x: Any,
    running_mean: Any = None,
    running_var: Any = None,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    eps: float = 1e-5,
    *,
    mean: Any = None,
    inv_std: Any = None,
    backend: str | None = None,
) -> tuple[Any, Any, Any]:
    """Return the gradients of :func:`batch_norm` with respect to x, weight and bias.

    With batch statistics (``training``), ``xhat = (x - mean) * inv_std`` and
    ``dx = inv_std * (g - mean(g) - xhat * mean(g * xhat))`` with
    ``g = grad_out * weight`` and means over every axis but 1: the two means
    are the paths through the batch mean and variance. With running statistics
    the normalisation is affine and ``dx = g * inv_std``. Pass the running
    statistics as they were before the forward call (a training-mode forward
    updates them, but its normalisation used the batch's).

    Parameters
    ----------
    grad_out : array, the shape of x
    x, running_mean, running_var, weight, bias, training, eps
        As given to :func:`batch_norm`.
    mean, inv_std : array, shape (C,), optional
        The statistics the forward returned with ``return_stats=True``: given,
        the backward skips computing them (both or neither).

    Returns
    -------
    grad_x : array, the shape of x
    grad_weight, grad_bias : array, shape (C,), or None when weight / bias is None
    """
    return _batch_norm_backward(grad_out, x, running_mean, running_var, weight, bias, training,
                                eps, (2, 3, 4, 5), "batch_norm", mean, inv_std)  # fmt: skip


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
    return_stats: bool = False,
    backend: str | None = None,
) -> Any:
    """:func:`batch_norm` for (N, C, H, W) input only, statistics over (N, H, W).

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    running_mean, running_var, weight, bias, training, momentum, eps, return_stats
        As in :func:`batch_norm`.

    Returns
    -------
    array, shape (N, C, H, W); with ``return_stats``, ``(y, mean, inv_std)``

    See Also
    --------
    torch.nn.functional.batch_norm
    """
    return _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps,
                       (4,), "batch_norm2d", return_stats)  # fmt: skip


@dispatch("grad_out", "x", "running_mean", "running_var", "weight", "bias", "mean", "inv_std")
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
    mean: Any = None,
    inv_std: Any = None,
    backend: str | None = None,
) -> tuple[Any, Any, Any]:
    """Return the gradients of :func:`batch_norm2d`: :func:`batch_norm_backward` for
    (N, C, H, W) input (``mean`` and ``inv_std`` as there).

    Returns
    -------
    grad_x : array, shape (N, C, H, W)
    grad_weight, grad_bias : array, shape (C,), or None when weight / bias is None
    """
    return _batch_norm_backward(grad_out, x, running_mean, running_var, weight, bias, training,
                                eps, (4,), "batch_norm2d", mean, inv_std)  # fmt: skip
