"""1-D and 3-D convolutions (cross-correlation) and their gradients.

conv1d is :func:`cnnarray.ops.conv2d` on (N, C, 1, L): the 2-D fast paths
(layouts, flat shifts, FFT) with one row, after a validation in 1-D terms.
conv3d is im2col by kernel offset and a batched GEMM, from
:mod:`cnnarray.ops._conv_nd`, which the transposed convolutions
(:mod:`cnnarray.ops.conv_transpose`) share.
"""

from __future__ import annotations

from typing import Any

from .. import _args
from ..backend import dispatch
from . import _conv_nd
from .conv import conv2d, conv2d_backward

__all__ = ["conv1d", "conv1d_backward", "conv3d", "conv3d_backward"]


def _as_2d(x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any,
           groups: Any) -> tuple[Any, ...]:  # fmt: skip
    """conv1d's call as conv2d's, with H = 1: validated in 1-D terms first, so errors
    speak of (N, C_in, L). Returns x and weight with the axis H, the 2-D stride,
    padding and dilation, and the 1-D output shape."""
    geo, unbatched = _conv_nd.geometry(x, weight, bias, 1, stride, padding, dilation, groups)
    (s,), (d,) = geo.stride, geo.dilation
    pad = padding if isinstance(padding, str) else (0, geo.lo[0])
    out_shape = (geo.c_out, *geo.out) if unbatched else (geo.n, geo.c_out, *geo.out)
    return x[..., None, :], weight[:, :, None, :], (1, s), pad, (1, d), out_shape


@dispatch("x", "weight", "bias")
def conv1d(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: int | tuple[int] = 1,
    padding: int | tuple[int] | str = 0,
    dilation: int | tuple[int] = 1,
    groups: int = 1,
    *,
    workspace_limit: int | None = None,
    backend: str | None = None,
) -> Any:
    """Apply a 1-D convolution (cross-correlation) over a batch of sequences.

    ``y[n, o, p] = bias[o] + sum_{c, i} weight[o, c, i] * x_pad[n, g * C_in/groups + c,
    p * stride + i * dilation]``, computed by :func:`conv2d` on (N, C_in, 1, L).

    Parameters
    ----------
    x : array, shape (N, C_in, L) or (C_in, L)
    weight : array, shape (C_out, C_in / groups, k)
    bias : array, shape (C_out,), optional
    stride, dilation : int or (int,), default 1
    padding : int, (int,), "valid" or "same", default 0
        Zeros on both sides; ``"same"`` (stride 1 only) keeps L, the extra
        element of an odd total padding on the right, as PyTorch.
    groups : int, default 1
    workspace_limit : int, optional
        As :func:`conv2d`'s.
    backend : str, optional
        None computes where the inputs live; a name moves them there first.

    Returns
    -------
    array, shape (N, C_out, out_l) (batch axis dropped for unbatched input)
        ``out_l = floor((L + pad_left + pad_right - dilation * (k - 1) - 1) / stride) + 1``.

    See Also
    --------
    torch.nn.functional.conv1d, scipy.signal.correlate

    Examples
    --------
    >>> import numpy as np, cnnarray
    >>> cnnarray.conv1d(np.arange(5.0).reshape(1, 5), np.ones((1, 1, 2)))
    array([[1., 3., 5., 7.]])
    """
    x2, w2, stride2, pad2, dilation2, _ = _as_2d(x, weight, bias, stride, padding, dilation, groups)
    y = conv2d(x2, w2, bias, stride2, pad2, dilation2, groups, workspace_limit=workspace_limit)
    return y[..., 0, :]


@dispatch("grad_out", "x", "weight", "bias")
def conv1d_backward(
    grad_out: Any,
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: int | tuple[int] = 1,
    padding: int | tuple[int] | str = 0,
    dilation: int | tuple[int] = 1,
    groups: int = 1,
    *,
    workspace_limit: int | None = None,
    input_grad: bool = True,
    backend: str | None = None,
) -> tuple[Any, Any, Any]:
    """Return the gradients of :func:`conv1d` with respect to x, weight and bias.

    Parameters
    ----------
    grad_out : array, shape of ``conv1d(x, weight, ...)``
    x, weight, bias, stride, padding, dilation, groups, workspace_limit, backend
        As given to :func:`conv1d`.
    input_grad : bool, default True
        False skips grad_x (returned as None).

    Returns
    -------
    (grad_x, grad_weight, grad_bias)
        Shapes of x, weight and bias (grad_x None when ``input_grad`` is False,
        grad_bias None when bias is None), from
        :func:`conv2d_backward` on (N, C, 1, L).
    """
    x2, w2, stride2, pad2, dilation2, out_shape = _as_2d(
        x, weight, bias, stride, padding, dilation, groups
    )
    _args.check_shape(grad_out, "grad_out", out_shape)
    gx, gw, gb = conv2d_backward(grad_out[..., None, :], x2, w2, bias, stride2, pad2, dilation2,
                                 groups, workspace_limit=workspace_limit,
                                 input_grad=input_grad)  # fmt: skip
    return None if gx is None else gx[..., 0, :], gw[:, :, 0, :], gb


@dispatch("x", "weight", "bias")
def conv3d(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: int | tuple[int, int, int] = 1,
    padding: int | tuple[int, int, int] | str = 0,
    dilation: int | tuple[int, int, int] = 1,
    groups: int = 1,
    *,
    workspace_limit: int | None = None,
    backend: str | None = None,
) -> Any:
    """Apply a 3-D convolution (cross-correlation) over a batch of volumes.

    ``y[n, o, p, q, r] = bias[o] + sum_{c, i, j, k} weight[o, c, i, j, k] *
    x_pad[n, g * C_in/groups + c, p * sd + i * dd, q * sh + j * dh, r * sw + k * dw]``:
    im2col by kernel offset and one batched GEMM (:mod:`cnnarray.ops._conv_nd`).

    Parameters
    ----------
    x : array, shape (N, C_in, D, H, W) or (C_in, D, H, W)
    weight : array, shape (C_out, C_in / groups, kd, kh, kw)
    bias : array, shape (C_out,), optional
    stride, dilation : int or (int, int, int), default 1
    padding : int, (int, int, int), "valid" or "same", default 0
        As :func:`conv2d`'s, per axis.
    groups : int, default 1
    workspace_limit : int, optional
        Byte budget of the column buffer: the batch runs in chunks under it
        (default :func:`get_workspace_limit`).
    backend : str, optional
        None computes where the inputs live; a name moves them there first.

    Returns
    -------
    array, shape (N, C_out, out_d, out_h, out_w) (batch axis dropped for unbatched input)
        ``out = floor((size + pad_before + pad_after - dilation * (k - 1) - 1) / stride) + 1``
        along each axis.

    See Also
    --------
    torch.nn.functional.conv3d, scipy.signal.correlate

    Examples
    --------
    >>> import numpy as np, cnnarray
    >>> cnnarray.conv3d(np.ones((1, 3, 3, 3)), np.ones((2, 1, 2, 2, 2))).shape
    (2, 2, 2, 2)
    """
    geo, unbatched = _conv_nd.geometry(x, weight, bias, 3, stride, padding, dilation, groups)
    xp, x, weight, bias, _ = _conv_nd.batched(x, weight, bias)
    y = _conv_nd.forward(xp, x, weight, bias, geo, workspace_limit)
    return y[0] if unbatched else y


@dispatch("grad_out", "x", "weight", "bias")
def conv3d_backward(
    grad_out: Any,
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: int | tuple[int, int, int] = 1,
    padding: int | tuple[int, int, int] | str = 0,
    dilation: int | tuple[int, int, int] = 1,
    groups: int = 1,
    *,
    workspace_limit: int | None = None,
    input_grad: bool = True,
    backend: str | None = None,
) -> tuple[Any, Any, Any]:
    """Return the gradients of :func:`conv3d` with respect to x, weight and bias.

    Parameters
    ----------
    grad_out : array, shape of ``conv3d(x, weight, ...)``
    x, weight, bias, stride, padding, dilation, groups, workspace_limit, backend
        As given to :func:`conv3d`.
    input_grad : bool, default True
        False skips grad_x (returned as None).

    Returns
    -------
    grad_x : array, shape of x, or None when ``input_grad`` is False
        ``col2im(W^T @ dY)``.
    grad_weight : array, shape of weight
        ``dY @ cols^T``, summed over the batch.
    grad_bias : array, shape of bias, or None when bias is None
    """
    geo, unbatched = _conv_nd.geometry(x, weight, bias, 3, stride, padding, dilation, groups)
    _args.check_bool(input_grad, "input_grad")
    _args.check_shape(grad_out, "grad_out", (geo.c_out, *geo.out) if unbatched else
                      (geo.n, geo.c_out, *geo.out))  # fmt: skip
    xp, x, weight, bias, grad_out = _conv_nd.batched(x, weight, bias, grad_out)
    gw = _conv_nd.weight_grad(xp, grad_out, x, geo, workspace_limit)
    gb = None if bias is None else grad_out.sum(axis=(0, 2, 3, 4))
    if not input_grad:
        return None, gw, gb
    gx = _conv_nd.input_grad(xp, grad_out, weight, geo, workspace_limit)
    return gx[0] if unbatched else gx, gw, gb
