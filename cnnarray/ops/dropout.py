"""Dropout as functions: elementwise (``dropout``) and whole channels (``dropout1d``,
``dropout2d``, ``dropout3d``), with an explicit random generator, and the backward
through the mask.

Inverted dropout: each kept element (or channel) is scaled by ``1 / (1 - p)``,
so the expected output equals the input and evaluation needs no rescaling.
The mask is ``(u >= p) / (1 - p)`` with ``u = generator.random(shape, dtype)``:
from an int seed (or None) the generator is NumPy's on the host, so a seed
gives the same mask on every device; a NumPy or CuPy ``Generator`` is used as
it is, and advances. ``mask=`` replays a mask from :func:`dropout_mask`, and
autograd records the mask it drew, so the backward multiplies by the same one.
"""

from __future__ import annotations

from typing import Any

from .. import _args
from ..backend import array_namespace, dispatch, host_rng

__all__ = [
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "dropout_backward",
    "dropout_mask",
]


def _generator(generator: Any) -> Any:
    """A generator with ``.random(shape, dtype=...)``: NumPy's from None or an int seed."""
    if generator is None:
        return host_rng(None)
    if callable(getattr(generator, "random", None)):
        return generator
    try:
        seed = _args.check_int(generator, "generator", minimum=0)
    except _args.ArgumentTypeError:
        raise _args.ArgumentTypeError(
            f"generator must be None, an int seed or a random Generator (NumPy's or CuPy's), "
            f"got {type(generator).__name__}"
        ) from None
    return host_rng(seed)


def _mask_shape(shape: tuple[int, ...], spatial_dims: int) -> tuple[int, ...]:
    """x's shape with the trailing ``spatial_dims`` axes set to 1: one draw per channel."""
    return tuple(shape[: len(shape) - spatial_dims]) + (1,) * spatial_dims


@dispatch("x")
def dropout_mask(
    x: Any, p: float = 0.5, spatial_dims: int = 0, *, generator: Any = None,
    backend: str | None = None,
) -> Any:  # fmt: skip
    """Draw the mask that dropout multiplies x by: ``(u >= p) / (1 - p)`` (0 where p = 1).

    Parameters
    ----------
    x : array
        Only its shape, float dtype and device are read.
    p : float in [0, 1], default 0.5
        Probability of zeroing an element (or a channel).
    spatial_dims : int, default 0
        0: one draw per element, shape ``x.shape``. k > 0: one per channel,
        the trailing k axes of the mask of length 1 (dropout1d/2d/3d: 1/2/3).
    generator : None, int or Generator, optional
        None: fresh entropy; an int: ``numpy.random.default_rng(seed)``; a NumPy
        or CuPy Generator: drawn from (and advanced).

    Returns
    -------
    array, x's dtype, on x's device
    """
    p = _args.check_real(p, "p", low=0, high=1)
    spatial_dims = _args.check_int(spatial_dims, "spatial_dims", minimum=0, maximum=x.ndim)
    rng = _generator(generator)
    xp = array_namespace(x)
    dtype = _args.float_dtype(xp, x=x)
    u = xp.asarray(rng.random(_mask_shape(x.shape, spatial_dims), dtype=dtype))
    return (u >= p).astype(dtype) * (1 / (1 - p) if p < 1 else 0.0)


def _dropout(x: Any, p: Any, training: Any, generator: Any, mask: Any, spatial_dims: int) -> Any:
    """Dropout of x with one draw per element (spatial_dims 0) or per channel."""
    p = _args.check_real(p, "p", low=0, high=1)
    training = _args.check_bool(training, "training")
    xp = array_namespace(x)
    dtype = _args.float_dtype(xp, x=x, mask=mask)
    x = x.astype(dtype, copy=False)
    if not training or p == 0:
        return x
    if mask is None:
        mask = dropout_mask(x, p, spatial_dims, generator=generator)
    else:
        _args.check_shape(mask, "mask", _mask_shape(x.shape, spatial_dims))
    return x * mask.astype(dtype, copy=False)


@dispatch("x", "mask")
def dropout(
    x: Any, p: float = 0.5, training: bool = True, *, generator: Any = None, mask: Any = None,
    backend: str | None = None,
) -> Any:  # fmt: skip
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Parameters
    ----------
    x : array, any shape
    p : float in [0, 1], default 0.5
    training : bool, default True
        False returns x unchanged (no draw).
    generator : None, int or Generator, optional
        Where the mask comes from (see :func:`dropout_mask`).
    mask : array, shape x.shape, optional
        A mask from :func:`dropout_mask` to use instead of drawing one.

    See Also
    --------
    torch.nn.functional.dropout
    """
    return _dropout(x, p, training, generator, mask, 0)


def _channel_dropout(
    spatial_dims: int, layout: str, x: Any, p: Any, training: Any, generator: Any, mask: Any
) -> Any:
    """Check the (N, C, *S) or unbatched (C, *S) layout, then drop whole channels."""
    _args.check_ndim(x, "x", (spatial_dims + 1, spatial_dims + 2), layout)
    return _dropout(x, p, training, generator, mask, spatial_dims)


@dispatch("x", "mask")
def dropout1d(
    x: Any, p: float = 0.5, training: bool = True, *, generator: Any = None, mask: Any = None,
    backend: str | None = None,
) -> Any:  # fmt: skip
    """Zero whole channels of (N, C, L) or (C, L) input with probability ``p``; scale the
    rest by ``1 / (1 - p)``. Arguments as :func:`dropout`; ``mask`` of shape (N, C, 1).

    See Also
    --------
    torch.nn.functional.dropout1d
    """
    return _channel_dropout(1, "(N, C, L) or (C, L)", x, p, training, generator,
                            mask)  # fmt: skip


@dispatch("x", "mask")
def dropout2d(
    x: Any, p: float = 0.5, training: bool = True, *, generator: Any = None, mask: Any = None,
    backend: str | None = None,
) -> Any:  # fmt: skip
    """Zero whole channels of (N, C, H, W) or (C, H, W) input with probability ``p``;
    scale the rest by ``1 / (1 - p)``. Arguments as :func:`dropout`; ``mask`` of shape
    (N, C, 1, 1).

    See Also
    --------
    torch.nn.functional.dropout2d
    """
    return _channel_dropout(2, "(N, C, H, W) or (C, H, W)", x, p, training,
                            generator, mask)  # fmt: skip


@dispatch("x", "mask")
def dropout3d(
    x: Any, p: float = 0.5, training: bool = True, *, generator: Any = None, mask: Any = None,
    backend: str | None = None,
) -> Any:  # fmt: skip
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) input with probability ``p``;
    scale the rest by ``1 / (1 - p)``. Arguments as :func:`dropout`; ``mask`` of shape
    (N, C, 1, 1, 1).

    See Also
    --------
    torch.nn.functional.dropout3d
    """
    return _channel_dropout(3, "(N, C, D, H, W) or (C, D, H, W)", x, p, training,
                            generator, mask)  # fmt: skip


@dispatch("grad_out", "mask")
def dropout_backward(grad_out: Any, mask: Any = None, *, backend: str | None = None) -> Any:
    """Return ``grad_out * mask``: the gradient of every dropout function, given the mask
    it multiplied by (None: it did not drop, the gradient passes unchanged).

    ``mask`` has grad_out's shape, or length 1 on the axes it broadcasts over.
    """
    xp = array_namespace(grad_out)
    dtype = _args.float_dtype(xp, grad_out=grad_out, mask=mask)
    grad_out = grad_out.astype(dtype, copy=False)
    if mask is None:
        return grad_out
    if mask.ndim != grad_out.ndim or any(
        m not in (1, g) for m, g in zip(mask.shape, grad_out.shape, strict=True)
    ):
        raise ValueError(
            f"mask must have grad_out's shape {tuple(grad_out.shape)} or 1 on the axes it "
            f"broadcasts over, got {tuple(mask.shape)}"
        )
    return grad_out * mask.astype(dtype, copy=False)
