"""Argument normalisation and validation shared by the operations.

Every check runs before any array is allocated and raises ValueError or
TypeError with a message that names the argument, what was expected and what
was received. Nothing here imports an array library.
"""

from __future__ import annotations

import itertools
import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any

IntPair = int | tuple[int, int]

# The largest kernel size, stride, padding, dilation or output size: PyTorch's
# int32 limit for the same arguments. Larger ints would overflow the int64
# index arithmetic of the array libraries (an OverflowError, not a message).
MAX_SIZE = 2**31 - 1


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type.

    A TypeError, as Python and PyTorch raise for a wrong type; also a
    ValueError, because cnnarray's scalar checks raised ValueError for every
    bad value before they were unified, and code that catches that keeps
    working (NumPy's ``AxisError`` is both a ValueError and an IndexError for
    the same reason).
    """


def _got(value: Any) -> str:
    """``repr(value) (type)``: what a check received, with its type."""
    return f"{value!r} ({type(value).__name__})"


def _int_expectation(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"an int from {minimum} to {maximum}"
    if minimum == 1:
        return "a positive int"
    if minimum == 0:
        return "a non-negative int"
    if minimum is not None:
        return f"an int >= {minimum}"
    if maximum is not None:
        return f"an int <= {maximum}"
    return "an int"


def check_int(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as an int, or raise naming ``name``, the expectation and the value.

    Python ints and NumPy integers are accepted; bool is not an int here (``True``
    as a batch size is a mistake, not 1). A wrong type raises
    :class:`ArgumentTypeError`, a value outside ``[minimum, maximum]`` ValueError.

    >>> check_int(3, "groups", minimum=1)
    3
    >>> check_int(0, "groups", minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: groups must be a positive int, got 0
    """
    # the common case first, without building a message: a plain int in range
    if (
        type(value) is int
        and (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
    ):
        return value
    what = _int_expectation(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be {what}, got {_got(value)}")
    value = operator.index(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low == 0:
        return "a positive number" if low_open else "a non-negative number"
    if low is not None:
        return f"a number {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"a number {'<' if high_open else '<='} {high}"
    return "a number"


def check_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = False,
) -> float:
    """Return ``value`` as a float inside the interval, or raise naming ``name``.

    Python and NumPy ints and floats are accepted, bool is not. NaN is never
    inside an interval; ``finite`` also refuses infinities. ``low_open`` and
    ``high_open`` exclude the bounds themselves.

    >>> check_real(0.5, "p", low=0, high=1)
    0.5
    >>> check_real(0.0, "eps", low=0, low_open=True)
    Traceback (most recent call last):
    ...
    ValueError: eps must be a positive number, got 0.0
    """
    what = _interval(low, high, low_open, high_open)
    if finite:
        what = f"a finite {what.removeprefix('a ')}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be {what}, got {_got(value)}")
    number = float(value)
    bad = math.isnan(number) or (finite and math.isinf(number))
    if low is not None:
        bad = bad or number < low or (low_open and number == low)
    if high is not None:
        bad = bad or number > high or (high_open and number == high)
    if bad:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return number


def check_bool(value: Any, name: str) -> bool:
    """Return ``value`` if it is a bool (not merely truthy), else raise ArgumentTypeError.

    A 0-d boolean array scalar (NumPy's ``bool_``) counts as a bool.
    """
    if isinstance(value, bool):
        return value
    dtype = getattr(value, "dtype", None)
    if dtype is not None and dtype.kind == "b" and getattr(value, "ndim", None) == 0:
        return bool(value)
    raise ArgumentTypeError(f"{name} must be a bool, got {_got(value)}")


def check_axis(axis: Any, ndim: int, name: str = "axis", shape: Sequence[int] | None = None) -> int:
    """Return ``axis`` in ``[0, ndim)``, given an int in ``[-ndim, ndim)``.

    ``shape``, when given, is quoted in the message ("for x of shape ...").
    """
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        where = "" if shape is None else f" for x of shape {tuple(shape)}"
        raise ValueError(f"{name} must be an int in [{-ndim}, {ndim}){where}, got {axis!r}")
    return operator.index(axis) % ndim


# The largest padding of the N-d convolutions and of pad(), and the largest stride and
# dilation of a transposed convolution: far beyond any kernel, and small enough that no
# absurd value allocates billions of elements along one axis, which the per-map check
# (check_map_size) cannot see in 1-D.
MAX_PADDING = 2**16

# How many times its input size an adaptive pooling output may be along an axis:
# windows then hold one or two input elements each, so a larger output only
# repeats the input and costs memory in proportion.
MAX_UPSAMPLE = 64


def check_output_size(
    output_size: Any, dims: int = 2, input_shape: Sequence[int] | None = None
) -> tuple[int | None, ...]:
    """Normalise an adaptive pooling ``output_size``: an int, or ``dims`` ints or Nones.

    None keeps that axis's input size (PyTorch's convention). Given the input's
    shape, return the resolved sizes (no None), each at most ``MAX_UPSAMPLE``
    times the input size along its axis, so that nothing is allocated for an
    absurd size.
    """
    sizes = output_size if isinstance(output_size, tuple | list) else (output_size,) * dims
    valid = len(sizes) == dims and all(
        s is None
        or (isinstance(s, numbers.Integral) and not isinstance(s, bool) and 1 <= s <= MAX_SIZE)
        for s in sizes
    )
    if not valid:
        kind = "pair" if dims == 2 else f"{dims}-tuple"
        raise ValueError(
            f"output_size must be a positive int or a {kind} of positive ints or None, "
            f"each at most {MAX_SIZE}, got {output_size!r}"
        )
    sizes = tuple(None if s is None else operator.index(s) for s in sizes)
    if input_shape is None:
        return sizes
    spatial = tuple(int(s) for s in input_shape[-dims:])
    sizes = tuple(i if s is None else s for s, i in zip(sizes, spatial, strict=True))
    if any(s > MAX_UPSAMPLE * i for s, i in zip(sizes, spatial, strict=True)):
        raise ValueError(
            f"output_size must be at most {MAX_UPSAMPLE} times the input size along each axis "
            f"(a larger output only repeats input elements), got {sizes} for x of shape "
            f"{tuple(int(s) for s in input_shape)}"
        )
    return sizes


def check_window_fits(
    out: Sequence[int],
    kernel: Sequence[int],
    dilation: Sequence[int],
    padded: Sequence[int],
    x_shape: Sequence[int],
) -> None:
    """Raise ValueError when the (dilated) kernel is larger than the padded input.

    Without ceil_mode that is an output length below 1; pooling with ceil_mode
    also counts partial windows, and a kernel larger than its whole padded input
    is refused there too (it only reads padding past the input). ``padded`` is
    the input's size with its padding.
    """
    extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
    if min(out) >= 1 and all(e <= p for e, p in zip(extent, padded, strict=True)):
        return
    raise ValueError(
        f"kernel of size {extent} after dilation is larger than the padded input "
        f"{tuple(padded)} of x with shape {tuple(x_shape)}"
    )


def check_map_size(out: Sequence[int], x_shape: Sequence[int], **geometry: Any) -> None:
    """Raise ValueError when an output map would hold more than ``MAX_SIZE`` elements.

    Only a padding far beyond the kernel gets there (each output then sees
    padding alone); the message quotes ``geometry``, e.g. ``padding=...``.
    """
    if math.prod(out) <= MAX_SIZE:
        return
    given = ", ".join(f"{k}={v!r}" for k, v in geometry.items())
    raise ValueError(
        f"output maps of size {tuple(out)} would hold more than {MAX_SIZE} elements each, "
        f"for x of shape {tuple(x_shape)} and {given}"
    )


def _pair(value: Any, name: str, *, minimum: int, maximum: int = MAX_SIZE) -> tuple[int, int]:
    """Normalise ``int | (int, int)`` to a pair of ints from ``minimum`` to ``maximum``.

    Any sequence of two ints is a pair (a list, a range); anything else that is
    not an int, or a sequence of another length, raises :class:`ArgumentTypeError`.
    """
    # the common case first, without the ABC checks below: plain ints in range
    if type(value) is int:
        if minimum <= value <= maximum:
            return value, value
    elif type(value) is tuple and len(value) == 2:
        a, b = value
        if type(a) is int and type(b) is int and minimum <= min(a, b) and max(a, b) <= maximum:
            return a, b
    is_sequence = isinstance(value, Sequence) and not isinstance(value, str | bytes)
    items = tuple(value) if is_sequence else (value, value)
    if len(items) != 2:
        raise ArgumentTypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    pair = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise ArgumentTypeError(
                f"{name} must be an int or a pair of ints, got {value!r} ({type(item).__name__})"
            )
        pair.append(operator.index(item))
    if min(pair) < minimum:
        what = "positive" if minimum == 1 else "non-negative" if minimum == 0 else f">= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if max(pair) > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value!r}")
    return pair[0], pair[1]


def conv_padding_nd(
    padding: Any,
    kernel: tuple[int, ...],
    dilation: tuple[int, ...],
    stride: tuple[int, ...],
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return the (before, after) paddings of each axis of an N-d convolution.

    As :func:`conv_padding`: ``"valid"`` is none, ``"same"`` (stride 1 only) pads
    ``d * (k - 1)`` per axis with the extra element of an odd total after.
    """
    n = len(kernel)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0,) * n, (0,) * n
        if mode == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"padding='same' requires stride=1, got stride={stride}")
            total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
            return tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)
        kind = "an int" if n == 1 else f"an int, a tuple of {n} ints"
        raise ValueError(f"padding must be {kind}, 'valid' or 'same', got {padding!r}")
    pads = _ntuple(padding, "padding", n, minimum=0, maximum=MAX_PADDING)
    return pads, pads


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
    # Fast path, the common case of one float dtype throughout; else the checks below.
    common = None
    for a in arrays.values():
        if a is None:
            continue
        if common is None:
            common = a.dtype
        elif a.dtype != common:
            break
    else:
        if common is not None and common.kind == "f" and common.itemsize in (4, 8):
            return common
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
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    out: tuple[int, ...],
) -> list[tuple[slice, ...]]:
    """Return the slices each kernel offset reads, one per spatial axis, in row-major order.

    ``x_pad[(..., *slices)]`` has shape (..., *out) and holds, for every output
    position, the input element that the kernel tap reads: along an axis with
    tap ``i``, positions ``i * d + p * s`` for ``p`` in ``range(o)``.
    """
    per_axis = [
        [slice(i * d, i * d + s * (o - 1) + 1, s) for i in range(k)]
        for k, s, d, o in zip(kernel, stride, dilation, out, strict=True)
    ]
    return list(itertools.product(*per_axis))


def _ntuple(
    value: Any, name: str, n: int, *, minimum: int, maximum: int = MAX_SIZE
) -> tuple[int, ...]:
    """Normalise ``int | (int,) * n`` to ``n`` ints, as :func:`_pair` does for two.

    >>> _ntuple(3, "kernel_size", 3, minimum=1)
    (3, 3, 3)
    """
    if n == 2:
        return _pair(value, name, minimum=minimum, maximum=maximum)
    is_sequence = isinstance(value, Sequence) and not isinstance(value, str | bytes)
    items = tuple(value) if is_sequence else (value,) * n
    what = f"an int or a tuple of {n} int{'s' if n > 1 else ''}"
    if len(items) != n or any(
        isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in items
    ):
        raise ArgumentTypeError(f"{name} must be {what}, got {value!r}")
    ints = tuple(operator.index(i) for i in items)
    if min(ints) < minimum:
        what = "positive" if minimum == 1 else "non-negative" if minimum == 0 else f">= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if max(ints) > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value!r}")
    return ints


def check_reduction(reduction: Any) -> str:
    """Return ``reduction`` if it is ``"mean"``, ``"sum"`` or ``"none"``."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def check_same_shape(a: Any, a_name: str, b: Any, b_name: str) -> None:
    """Raise ValueError unless ``a`` and ``b`` have one shape."""
    if a.shape != b.shape and _shape(a) != _shape(b):
        raise ValueError(f"{a_name} must have the shape of {b_name}, {_shape(b)}, got {_shape(a)}")


def check_shape(a: Any, name: str, expected: tuple[int, ...]) -> None:
    """Raise ValueError unless ``a.shape == expected``."""
    if a.shape != expected and _shape(a) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {_shape(a)}")
