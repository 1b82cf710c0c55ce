"""Argument normalisation and validation shared by the operations.

Every check runs before any array is allocated and raises ValueError or
TypeError with a message that names the argument, what was expected and what
was received. Nothing here imports an array library.
"""

from __future__ import annotations

import operator
from typing import Any

IntPair = int | tuple[int, int]


def _pair(value: Any, name: str, *, minimum: int) -> tuple[int, int]:
    """Normalise ``int | (int, int)`` to a pair of ints, each ``>= minimum``."""
    items = value if isinstance(value, tuple | list) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    pair = []
    for item in items:
        if isinstance(item, bool):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        try:
            pair.append(operator.index(item))
        except TypeError:
            raise TypeError(
                f"{name} must be an int or a pair of ints, got {value!r} ({type(item).__name__})"
            ) from None
    if min(pair) < minimum:
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return pair[0], pair[1]


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def check_ndim(x: Any, name: str, allowed: tuple[int, ...], layout: str) -> None:
    """Raise ValueError unless ``x.ndim`` is one of ``allowed``."""
    if not hasattr(x, "ndim"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if x.ndim not in allowed:
        raise ValueError(f"{name} must have shape {layout}, got shape {_shape(x)} (ndim={x.ndim})")


def check_nonempty(x: Any, name: str) -> None:
    """Raise ValueError if any axis of ``x`` has length 0."""
    if 0 in x.shape:
        raise ValueError(f"{name} must not be empty, got shape {_shape(x)}")


def float_dtype(xp: Any, **arrays: Any) -> Any:
    """Return the common float dtype of ``arrays`` (None entries are skipped).

    float32 and float64 are kept as they are; integer arrays are promoted to
    the float dtype of the others, or float32 when all are integers. Mixing
    float32 with float64, or any other dtype (bool, complex, float16), is a
    TypeError.
    """
    floats: dict[str, Any] = {}
    for name, a in arrays.items():
        if a is None:
            continue
        kind, size = a.dtype.kind, a.dtype.itemsize
        if kind == "f" and size in (4, 8):
            floats[name] = a.dtype
        elif kind not in "iu":
            raise TypeError(
                f"{name} must have dtype float32, float64 or an integer dtype, got {a.dtype}"
            )
    distinct = set(floats.values())
    if len(distinct) > 1:
        desc = ", ".join(f"{n} is {d}" for n, d in floats.items())
        raise TypeError(f"inputs must share one float dtype, got {desc}; cast them first")
    return distinct.pop() if distinct else xp.dtype(xp.float32)


def conv_padding(
    padding: Any, kernel: tuple[int, int], dilation: tuple[int, int], stride: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Return ``(top, bottom, left, right)`` padding for conv2d.

    ``"valid"`` is no padding; ``"same"`` pads ``d * (k - 1)`` in total per axis,
    the extra pixel of an odd total on the bottom/right as PyTorch does, and is
    only defined for stride 1.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0, 0, 0
        if mode == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' requires stride=1, got stride={stride}")
            th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
            return th // 2, th - th // 2, tw // 2, tw - tw // 2
        raise ValueError(
            f"padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}"
        )
    ph, pw = _pair(padding, "padding", minimum=0)
    return ph, ph, pw, pw


def conv_out_size(size: int, pad: int, kernel: int, stride: int, dilation: int) -> int:
    """``floor((size + pad - dilation * (kernel - 1) - 1) / stride) + 1``; pad is the total."""
    return (size + pad - dilation * (kernel - 1) - 1) // stride + 1


def pool_out_size(
    size: int, pad: int, kernel: int, stride: int, dilation: int, ceil_mode: bool
) -> int:
    """Pooling output length along one axis, PyTorch's rule.

    ``out = floor_or_ceil((size + 2 * pad - dilation * (kernel - 1) - 1) / stride) + 1``,
    and with ``ceil_mode`` a last window that would start inside the right
    padding is dropped.
    """
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def window_slices(
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out: tuple[int, int],
) -> list[tuple[int, int, slice, slice]]:
    """Return ``(i, j, rows, cols)`` for each kernel offset, in row-major order.

    ``x_pad[..., rows, cols]`` has shape (..., out_h, out_w) and holds, for
    every output position, the input element that kernel tap ``(i, j)`` reads:
    rows ``i * dh + p * sh`` for ``p`` in ``range(out_h)``, likewise columns.
    """
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out
    return [
        (i, j, slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
         slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))
        for i in range(kh)
        for j in range(kw)
    ]  # fmt: skip


def check_reduction(reduction: Any) -> str:
    """Return ``reduction`` if it is ``"mean"``, ``"sum"`` or ``"none"``."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def check_same_shape(a: Any, a_name: str, b: Any, b_name: str) -> None:
    """Raise ValueError unless ``a`` and ``b`` have one shape."""
    if _shape(a) != _shape(b):
        raise ValueError(f"{a_name} must have the shape of {b_name}, {_shape(b)}, got {_shape(a)}")


def check_shape(a: Any, name: str, expected: tuple[int, ...]) -> None:
    """Raise ValueError unless ``a.shape == expected``."""
    if _shape(a) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {_shape(a)}")
