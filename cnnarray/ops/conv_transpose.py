"""Transposed convolutions (1-D, 2-D, 3-D) and their gradients.

``conv_transpose{1,2,3}d(x, weight)`` is the gradient of the convolution
``y = conv(z, weight)`` with respect to its input ``z``, for ``dy = x``: the
weight has the convolution's shape, (C_in, C_out/groups, *kernel) read from
the transposed side. So each of the three is one function of
:mod:`cnnarray.ops._conv_nd`, with the convolution's geometry whose input is
the transposed output:

* forward: ``input_grad`` (col2im of ``W^T @ x``);
* grad_x: ``forward``, the convolution of grad_out with the same weight;
* grad_weight: ``weight_grad`` with the roles swapped (grad_out as the
  convolution's input, x as its output gradient).

One body serves every number of axes (:func:`_transposed` builds the public
pair of each), with PyTorch's argument order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _args
from ..backend import dispatch
from . import _conv_nd

__all__ = [
    "conv_transpose1d",
    "conv_transpose1d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv_transpose3d",
    "conv_transpose3d_backward",
]


def _output_size(
    size: int, kernel: int, stride: int, padding: int, output_padding: int, dilation: int
) -> int:
    """``(size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1``."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _geometry(x: Any, weight: Any, bias: Any, dims: int, stride: Any, padding: Any,
              output_padding: Any, groups: Any, dilation: Any
              ) -> tuple[_conv_nd.NdGeometry, bool]:  # fmt: skip
    """Validate a call; return the geometry of the convolution it transposes (its input
    the transposed output) and whether x is unbatched."""
    n, c_in, c_out, groups, unbatched = _conv_nd.check_channels(x, weight, bias, dims, groups,
                                                                True)  # fmt: skip
    if isinstance(padding, str):
        raise ValueError(
            f"padding of a transposed convolution must be an int or a tuple of {dims} ints "
            f"('same' and 'valid' are not defined for it), got {padding!r}"
        )
    kernel = tuple(int(k) for k in weight.shape[2:])
    # each scales the output: MAX_PADDING keeps an absurd one from a huge allocation
    top = _args.MAX_PADDING
    stride = _args._ntuple(stride, "stride", dims, minimum=1, maximum=top)
    dilation = _args._ntuple(dilation, "dilation", dims, minimum=1, maximum=top)
    pads = _args._ntuple(padding, "padding", dims, minimum=0, maximum=top)
    extra = _args._ntuple(output_padding, "output_padding", dims, minimum=0, maximum=top)
    if any(e >= s and e >= d for e, s, d in zip(extra, stride, dilation, strict=True)):
        raise ValueError(
            f"output_padding must be smaller than either stride or dilation along each axis, "
            f"got output_padding={extra}, stride={stride}, dilation={dilation}"
        )
    size = tuple(int(s) for s in x.shape[-dims:])
    out = tuple(_output_size(*a) for a in
                zip(size, kernel, stride, pads, extra, dilation, strict=True))  # fmt: skip
    if min(out) < 1:
        raise ValueError(
            f"output of size {out} is empty: padding={pads} removes more than the transposed "
            f"convolution of x of shape {tuple(x.shape)} with kernel {kernel} produces"
        )
    _args.check_map_size(out, x.shape, padding=pads, kernel=kernel)
    geo = _conv_nd.NdGeometry(n, c_out, c_in, groups, out, kernel, stride, dilation, pads, pads,
                              size)  # fmt: skip
    return geo, unbatched


_DOC = """Apply a {d}-D transposed convolution ("deconvolution") over a batch{example_of}.

    The gradient of ``conv{d}d`` with respect to its input: each input element
    scatters ``x[n, c] * weight[c, o]`` into the output window it maps to.

    Parameters
    ----------
    x : array, shape (N, C_in, {axes}) or (C_in, {axes})
    weight : array, shape (C_in, C_out / groups, {kernel})
    bias : array, shape (C_out,), optional
    stride, dilation : int or tuple of {d} ints, default 1
    padding : int or tuple of {d} ints, default 0
        Removed from both sides of the output (``dilation * (k - 1) - padding``
        zeros around the input of the equivalent convolution).
    output_padding : int or tuple of {d} ints, default 0
        Extra size on one side (the end) of each axis: picks which of the
        ``stride`` input sizes that convolve to x's size the output has. Must
        be smaller than either stride or dilation.
    groups : int, default 1
    workspace_limit : int, optional
        Byte budget of the column buffer; the batch runs in chunks under it.
    backend : str, optional
        None computes where the inputs live; a name moves them there first.

    Returns
    -------
    array, shape (N, C_out, {outs}) (batch axis dropped for unbatched input)
        ``out = (size - 1) * stride - 2 * padding + dilation * (k - 1) +
        output_padding + 1`` along each axis.

    See Also
    --------
    torch.nn.functional.conv_transpose{d}d, cnnarray.conv{d}d_backward

    Examples
    --------
    >>> import numpy as np, cnnarray
    >>> cnnarray.conv_transpose{d}d(np.ones((1, {ones})), np.ones((1, 1, {twos})), stride=2).shape
    (1, {fours})
    """

_BACKWARD_DOC = """Return the gradients of :func:`conv_transpose{d}d` w.r.t. x, weight and bias.

    Parameters
    ----------
    grad_out : array, shape of ``conv_transpose{d}d(x, weight, ...)``
    x, weight, bias, stride, padding, output_padding, groups, dilation, workspace_limit, backend
        As given to :func:`conv_transpose{d}d`.
    input_grad : bool, default True
        False skips grad_x (returned as None).

    Returns
    -------
    grad_x : array, shape of x, or None when ``input_grad`` is False
        ``conv{d}d(grad_out, weight)``: the convolution that this one transposes.
    grad_weight : array, shape of weight
        The convolution's weight gradient with grad_out as its input and x as
        its output's gradient.
    grad_bias : array, shape of bias, or None when bias is None
    """


def _transposed(dims: int) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Build ``conv_transpose{dims}d`` and its ``_backward``."""

    def forward(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
                output_padding: Any = 0, groups: int = 1, dilation: Any = 1, *,
                workspace_limit: int | None = None, backend: str | None = None) -> Any:  # fmt: skip
        geo, unbatched = _geometry(x, weight, bias, dims, stride, padding, output_padding,
                                   groups, dilation)  # fmt: skip
        xp, x, weight, bias, _ = _conv_nd.batched(x, weight, bias)
        y = _conv_nd.input_grad(xp, x, weight, geo, workspace_limit)
        if bias is not None:
            y += bias.reshape((-1,) + (1,) * dims)
        return y[0] if unbatched else y

    def backward(grad_out: Any, x: Any, weight: Any, bias: Any = None, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, dilation: Any = 1,
                 *, workspace_limit: int | None = None, input_grad: bool = True,
                 backend: str | None = None) -> tuple[Any, Any, Any]:  # fmt: skip
        geo, unbatched = _geometry(x, weight, bias, dims, stride, padding, output_padding,
                                   groups, dilation)  # fmt: skip
        _args.check_bool(input_grad, "input_grad")
        lead = () if unbatched else (geo.n,)
        _args.check_shape(grad_out, "grad_out", (*lead, geo.c_in, *geo.size))
        xp, x, weight, bias, grad_out = _conv_nd.batched(x, weight, bias, grad_out)
        # the transposed convolution's input is the convolution's grad_out, and back
        gw = _conv_nd.weight_grad(xp, x, grad_out, geo, workspace_limit)
        gb = None if bias is None else grad_out.sum(axis=(0, *range(2, 2 + dims)))
        if not input_grad:
            return None, gw, gb
        gx = _conv_nd.forward(xp, grad_out, weight, None, geo, workspace_limit)
        return gx[0] if unbatched else gx, gw, gb

    axes = ("L",) if dims == 1 else ("D", "H", "W")[3 - dims :]
    forward.__name__ = forward.__qualname__ = f"conv_transpose{dims}d"
    backward.__name__ = backward.__qualname__ = f"conv_transpose{dims}d_backward"
    forward.__doc__ = _DOC.format(
        d=dims, example_of={1: " of sequences", 2: " of images", 3: " of volumes"}[dims],
        axes=", ".join(axes), kernel=", ".join("k" + a.lower() for a in axes),
        outs=", ".join("out_" + a.lower() for a in axes), ones=", ".join(["2"] * dims),
        twos=", ".join(["2"] * dims), fours=", ".join(["4"] * dims),
    )  # fmt: skip
    backward.__doc__ = _BACKWARD_DOC.format(d=dims)
    return dispatch("x", "weight", "bias")(forward), dispatch("grad_out", "x", "weight", "bias")(
        backward
    )


conv_transpose1d, conv_transpose1d_backward = _transposed(1)
conv_transpose2d, conv_transpose2d_backward = _transposed(2)
conv_transpose3d, conv_transpose3d_backward = _transposed(3)
