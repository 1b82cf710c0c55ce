"""The taps of interpolate along one axis, and resizing an axis by gathering them.

Output position ``o`` reads input positions ``index[o, t]`` with weights
``weight[o, t]``: one tap for nearest, two for linear, four for cubic, the
window for area, from PyTorch's source-coordinate rules. :func:`along` adds the
gathered taps; :func:`transpose` turns a forward's taps into the backward's
(for each input position, the outputs that read it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

# The cubic convolution coefficient PyTorch (and OpenCV) use; Keys' paper has -0.5.
CUBIC_A = -0.75


class Taps(NamedTuple):
    """The input positions each output position reads along one axis, and how.

    ``index`` (out, k) ints; ``weight`` (out, k) or None when every weight is 1;
    ``valid`` (out, k) bools or None when every tap counts.
    """

    index: Any
    weight: Any
    valid: Any


def _float32_scale(xp: Any, n: int, m: int, scale: float | None) -> Any:
    """The nearest modes' source step, in float32 as PyTorch computes it."""
    return xp.asarray(1.0 / scale if scale else n / m, dtype=xp.float32)


def nearest_taps(
    xp: Any, n: int, m: int, scale: float | None, exact: bool, shortcuts: bool
) -> Taps | None:
    """``floor(o * step)`` ("nearest") or ``floor((o + 0.5) * step)`` ("nearest-exact").

    ``shortcuts``: copy an axis of unchanged size and take ``o // 2`` for one
    exactly doubled, whatever the step (PyTorch's 2-D nearest kernel).
    """
    if m == n and (shortcuts or scale in (None, 1.0)):  # a step of 1: the axis is copied
        return None
    o, step = xp.arange(m), _float32_scale(xp, n, m, scale)
    if shortcuts and m == 2 * n:
        return Taps((o // 2)[:, None], None, None)
    if exact:  # (o + 0.5) * step in double, rounded to float, then floored: PyTorch's floorf
        src = xp.floor(((o + 0.5) * step.astype(xp.float64)).astype(xp.float32))
    else:
        src = xp.floor(o.astype(xp.float32) * step)
    return Taps(xp.minimum(src.astype(o.dtype), n - 1)[:, None], None, None)


def _source(xp: Any, n: int, m: int, scale: float | None, align: bool, dtype: Any) -> Any:
    """Source coordinate of each output position for the linear and cubic modes.

    With align_corners the corner pixels' centres match: ``o * (n - 1) / (m - 1)``;
    otherwise pixel centres (half-pixel): ``(o + 0.5) * step - 0.5`` with step
    ``1 / scale_factor`` when one is used, else ``n / m``.
    """
    o = xp.arange(m, dtype=dtype)
    if align:
        return o * xp.asarray((n - 1) / (m - 1) if m > 1 else 0.0, dtype=dtype)
    step = xp.asarray(1.0 / scale if scale else n / m, dtype=dtype)
    return (o + 0.5) * step - 0.5


def _floor_and_fraction(xp: Any, src: Any, n: int) -> tuple[Any, Any]:
    """``i = min(floor(src), n - 1)`` and ``t = clip(src - i, 0, 1)``."""
    i = xp.minimum(xp.floor(src), n - 1)
    return i.astype(xp.int64), xp.clip(src - i, 0, 1)


def linear_taps(xp: Any, n: int, m: int, scale: float | None, align: bool, dtype: Any) -> Any:
    """Two taps: ``i`` and ``i + 1`` (``i`` again at the last pixel), weights ``1 - t, t``."""
    if m == n:  # PyTorch copies an axis whose size does not change
        return None
    src = _source(xp, n, m, scale, align, dtype)
    i, t = _floor_and_fraction(xp, xp.maximum(src, 0), n)  # clamped at 0 before the first centre
    index = xp.stack([i, i + (i < n - 1)], axis=1)
    return Taps(index, xp.stack([1 - t, t], axis=1), None)


def cubic_taps(xp: Any, n: int, m: int, scale: float | None, align: bool, dtype: Any) -> Taps:
    """Four taps ``i - 1 .. i + 2`` clamped to the border, Keys' cubic weights with ``A``."""
    i, t = _floor_and_fraction(xp, _source(xp, n, m, scale, align, dtype), n)
    a = CUBIC_A

    def near(d: Any) -> Any:  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: Any) -> Any:  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    weight = xp.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)
    index = xp.clip(i[:, None] + xp.arange(-1, 3), 0, n - 1)
    return Taps(index, weight.astype(dtype, copy=False), None)


def area_taps(xp: Any, n: int, m: int, dtype: Any) -> Taps:
    """The adaptive-average windows ``[floor(o * n / m), ceil((o + 1) * n / m))``."""
    o = xp.arange(m)
    start, end = o * n // m, -(-(o + 1) * n // m)
    length = end - start
    k = xp.arange(int(length.max()))
    valid = k < length[:, None]
    index = xp.where(valid, start[:, None] + k, start[:, None])
    weight = xp.broadcast_to((1 / length.astype(dtype))[:, None], index.shape)
    return Taps(index, weight, valid)


def transpose(xp: Any, taps: Taps, n: int) -> Taps:
    """For each of the ``n`` input positions, the output positions that read it.

    The (output, tap) pairs are sorted by the input position they read; input
    ``j`` owns a run of ``count[j]`` of them, padded to the longest run with
    invalid taps.
    """
    m, k = taps.index.shape
    read = taps.index.reshape(-1)
    reader = xp.repeat(xp.arange(m), k)
    weight = None if taps.weight is None else taps.weight.reshape(-1)
    if taps.valid is not None:
        keep = taps.valid.reshape(-1)
        read, reader = read[keep], reader[keep]
        weight = None if weight is None else weight[keep]
    order = xp.argsort(read, kind="stable")
    count = xp.bincount(read, minlength=n)
    first = xp.cumsum(count) - count
    j = xp.arange(int(count.max()))
    valid = j < count[:, None]
    pos = order[xp.where(valid, first[:, None] + j, 0)]  # (n, longest run)
    return Taps(reader[pos], None if weight is None else weight[pos],
                 None if bool(valid.all()) else valid)  # fmt: skip


def along(xp: Any, a: Any, axis: int, taps: Taps) -> Any:
    """Resize ``a`` along ``axis``: ``sum_t weight[:, t] * a.take(index[:, t])``."""
    lead = (-1,) + (1,) * (a.ndim - axis - 1)  # broadcasts (out,) along axis
    out = None
    for t in range(taps.index.shape[1]):
        term = xp.take(a, taps.index[:, t], axis=axis)
        if taps.weight is not None:
            term *= taps.weight[:, t].reshape(lead)
        if taps.valid is not None:
            term = xp.where(taps.valid[:, t].reshape(lead), term, 0)
        if out is None:
            out = term
        else:
            out += term
    return out
