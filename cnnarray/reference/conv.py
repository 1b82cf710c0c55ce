"""Convolution by ``scipy.signal.correlate2d`` (``correlate`` in 1-D and 3-D) of the padded
input with the dilated kernel; its gradients by visiting every output position. Transposed
convolution by scattering every input element's weighted kernel into the output."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import signal

from ._common import _pair, _unbatch


def _same_or_pad(padding: Any, kh: int, kw: int, dh: int, dw: int) -> tuple[int, int, int, int]:
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    ph, pw = _pair(padding)
    return ph, ph, pw, pw


def _padded(x: np.ndarray, kh: int, kw: int, stride: Any, padding: Any, dilation: Any) -> tuple:
    """Zero-pad x (N, C, H, W) as conv2d does; return it, (sh, sw), (dh, dw) and (top, left)."""
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    pt, pb, pl, pr = _same_or_pad(padding, kh, kw, dh, dw)
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))), (sh, sw), (dh, dw), (pt, pl)


def _dilate(kernel: np.ndarray, dh: int, dw: int) -> np.ndarray:
    kh, kw = kernel.shape
    out = np.zeros((dh * (kh - 1) + 1, dw * (kw - 1) + 1))
    out[::dh, ::dw] = kernel
    return out


def _as4d(x: Any, weight: Any) -> tuple[np.ndarray, np.ndarray, int]:
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    if weight.ndim == 2:
        return x[None, None], weight[None, None], 2
    if x.ndim == 3:
        return x[None], weight, 1
    return x, weight, 0


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """Reference conv2d from ``scipy.signal.correlate2d``; same arguments as the fast one."""
    x, weight, unbatched = _as4d(x, weight)
    n, c_in, h, w = x.shape
    c_out, cg, kh, kw = weight.shape
    xpad, (sh, sw), (dh, dw), _ = _padded(x, kh, kw, stride, padding, dilation)
    og = c_out // groups
    maps = []
    for b in range(n):
        per_filter = []
        for o in range(c_out):
            g = o // og
            acc = sum(
                signal.correlate2d(xpad[b, g * cg + c], _dilate(weight[o, c], dh, dw), "valid")
                for c in range(cg)
            )
            acc = acc[::sh, ::sw]
            if bias is not None:
                acc = acc + np.asarray(bias, np.float64).reshape(-1)[o]
            per_filter.append(acc)
        maps.append(per_filter)
    return _unbatch(np.array(maps), unbatched)


def conv2d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Reference gradients of conv2d: visit each output, add ``grad * window``."""
    bias_shape = None if bias is None else np.shape(bias)
    x, weight, unbatched = _as4d(x, weight)
    g_out = np.asarray(grad_out, np.float64).reshape(
        x.shape[0], weight.shape[0], *np.shape(grad_out)[-2:]
    )
    n, c_in, h, w = x.shape
    c_out, cg, kh, kw = weight.shape
    xpad, (sh, sw), (dh, dw), (pt, pl) = _padded(x, kh, kw, stride, padding, dilation)
    gxpad = np.zeros_like(xpad)
    gw = np.zeros_like(weight)
    og = c_out // groups
    for o in range(c_out):
        chans = slice((o // og) * cg, (o // og + 1) * cg)
        for p in range(g_out.shape[2]):
            for q in range(g_out.shape[3]):
                rows = slice(p * sh, p * sh + dh * (kh - 1) + 1, dh)
                cols = slice(q * sw, q * sw + dw * (kw - 1) + 1, dw)
                gval = g_out[:, o, p, q][:, None, None, None]  # (N, 1, 1, 1)
                gw[o] += (gval * xpad[:, chans, rows, cols]).sum(axis=0)
                gxpad[:, chans, rows, cols] += gval * weight[o][None]
    gx = gxpad[:, :, pt : pt + h, pl : pl + w]
    gb = None if bias is None else g_out.sum(axis=(0, 2, 3)).reshape(bias_shape)
    if unbatched == 2:
        return gx[0, 0], gw[0, 0], gb
    return _unbatch(gx, unbatched), gw, gb


# --------------------------------------------------------------------------- N-d (1-D, 3-D)


def _tuple(v: Any, dims: int) -> tuple[int, ...]:
    return (int(v),) * dims if np.ndim(v) == 0 else tuple(int(a) for a in v)


def _pads(padding: Any, kernel: tuple, dilation: tuple) -> list[tuple[int, int]]:
    """(before, after) per axis; "same" puts the extra element of an odd total after."""
    if padding == "valid":
        return [(0, 0)] * len(kernel)
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return [(t // 2, t - t // 2) for t in totals]
    return [(p, p) for p in _tuple(padding, len(kernel))]


def _dilate_nd(kernel: np.ndarray, dilation: tuple) -> np.ndarray:
    out = np.zeros([d * (k - 1) + 1 for k, d in zip(kernel.shape, dilation, strict=True)])
    out[tuple(slice(None, None, d) for d in dilation)] = kernel
    return out


def _conv_nd(x, weight, bias, stride, padding, dilation, groups) -> np.ndarray:
    """``scipy.signal.correlate`` (mode "valid") of each padded input channel with the
    dilated kernel, summed over the group's channels, sliced by the stride."""
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    dims = weight.ndim - 2
    unbatched = x.ndim == dims + 1
    x = x[None] if unbatched else x
    stride, dilation = _tuple(stride, dims), _tuple(dilation, dims)
    pads = _pads(padding, weight.shape[2:], dilation)
    xpad = np.pad(x, [(0, 0), (0, 0), *pads])
    c_out, cg = weight.shape[:2]
    og = c_out // groups
    step = tuple(slice(None, None, s) for s in stride)
    y = np.array([[
        sum(signal.correlate(xpad[b, (o // og) * cg + c], _dilate_nd(weight[o, c], dilation),
                             mode="valid") for c in range(cg))[step]
        + (0.0 if bias is None else float(np.asarray(bias, np.float64)[o]))
        for o in range(c_out)] for b in range(x.shape[0])])  # fmt: skip
    return y[0] if unbatched else y


def _conv_nd_backward(grad_out, x, weight, bias, stride, padding, dilation, groups):
    """Visit each output position, add ``grad * window`` (weight) and ``grad * weight``
    (input)."""
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    dims = weight.ndim - 2
    unbatched = x.ndim == dims + 1
    x = x[None] if unbatched else x
    g = np.asarray(grad_out, np.float64).reshape(x.shape[0], weight.shape[0], -1)
    stride, dilation = _tuple(stride, dims), _tuple(dilation, dims)
    kernel = weight.shape[2:]
    pads = _pads(padding, kernel, dilation)
    xpad = np.pad(x, [(0, 0), (0, 0), *pads])
    out = np.shape(grad_out)[-dims:]
    gxpad, gw = np.zeros_like(xpad), np.zeros_like(weight)
    c_out, cg = weight.shape[:2]
    og = c_out // groups
    for o in range(c_out):
        chans = slice((o // og) * cg, (o // og + 1) * cg)
        for flat, pos in enumerate(np.ndindex(*out)):
            window = (slice(None), chans) + tuple(
                slice(p * s, p * s + d * (k - 1) + 1, d)
                for p, s, d, k in zip(pos, stride, dilation, kernel, strict=True)
            )
            gval = g[:, o, flat].reshape((-1,) + (1,) * (dims + 1))
            gw[o] += (gval * xpad[window]).sum(axis=0)
            gxpad[window] += gval * weight[o][None]
    inner = (slice(None), slice(None)) + tuple(
        slice(a, a + n) for (a, _), n in zip(pads, x.shape[2:], strict=True)
    )
    gx = gxpad[inner]
    gb = None if bias is None else g.sum(axis=(0, 2))
    return gx[0] if unbatched else gx, gw, gb


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """Reference conv1d from ``scipy.signal.correlate``."""
    return _conv_nd(x, weight, bias, stride, padding, dilation, groups)


def conv1d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Reference gradients of conv1d, output position by output position."""
    return _conv_nd_backward(grad_out, x, weight, bias, stride, padding, dilation, groups)


def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """Reference conv3d from ``scipy.signal.correlate``."""
    return _conv_nd(x, weight, bias, stride, padding, dilation, groups)


def conv3d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Reference gradients of conv3d, output position by output position."""
    return _conv_nd_backward(grad_out, x, weight, bias, stride, padding, dilation, groups)


# --------------------------------------------------------------------------- transposed


def _transpose_setup(x, weight, stride, padding, output_padding, dilation):
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    dims = weight.ndim - 2
    unbatched = x.ndim == dims + 1
    x = x[None] if unbatched else x
    stride, pads = _tuple(stride, dims), _tuple(padding, dims)
    extra, dilation = _tuple(output_padding, dims), _tuple(dilation, dims)
    kernel = weight.shape[2:]
    # the full scatter, before padding is cut from both ends and output_padding added
    sizes = zip(x.shape[2:], stride, dilation, kernel, extra, strict=True)
    full = [(n - 1) * s + d * (k - 1) + 1 + e for n, s, d, k, e in sizes]
    crop = (slice(None), slice(None)) + tuple(
        slice(p, f - p) for p, f in zip(pads, full, strict=True)
    )
    return x, weight, unbatched, stride, dilation, kernel, full, crop


def _scatter_windows(x, stride, dilation, kernel):
    """Each input position and the slices of the full output its kernel taps land on."""
    for pos in np.ndindex(*x.shape[2:]):
        axes = zip(pos, stride, dilation, kernel, strict=True)
        yield pos, tuple(slice(p * s, p * s + d * (k - 1) + 1, d) for p, s, d, k in axes)


def conv_transpose(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                   dilation=1) -> np.ndarray:  # fmt: skip
    """Reference transposed convolution (any number of axes): every input element adds
    ``x[n, c, pos] * weight[c]`` to the output window at ``pos * stride``, then the
    padding is cut from both ends."""
    x, weight, unbatched, stride, dilation, kernel, full, crop = _transpose_setup(
        x, weight, stride, padding, output_padding, dilation
    )
    c_in, og = weight.shape[:2]
    cg = c_in // groups
    y = np.zeros((x.shape[0], og * groups, *full))
    for c in range(c_in):
        outs = slice((c // cg) * og, (c // cg + 1) * og)
        for pos, window in _scatter_windows(x, stride, dilation, kernel):
            value = x[(slice(None), c, *pos)].reshape((-1,) + (1,) * (len(kernel) + 1))
            y[(slice(None), outs) + window] += value * weight[c][None]
    y = y[crop]
    if bias is not None:
        y = y + np.asarray(bias, np.float64).reshape((-1,) + (1,) * len(kernel))
    return y[0] if unbatched else y


def conv_transpose_backward(grad_out, x, weight, bias=None, stride=1, padding=0,
                            output_padding=0, groups=1, dilation=1):  # fmt: skip
    """Reference gradients of the transposed convolution: each input element's window of
    the (zero-extended) grad_out, dotted with the weight and with the element."""
    bias_given = bias is not None
    x, weight, unbatched, stride, dilation, kernel, full, crop = _transpose_setup(
        x, weight, stride, padding, output_padding, dilation
    )
    g = np.asarray(grad_out, np.float64)
    g = g[None] if unbatched else g
    gfull = np.zeros((g.shape[0], g.shape[1], *full))
    gfull[crop] = g
    c_in, og = weight.shape[:2]
    cg = c_in // groups
    gx, gw = np.zeros_like(x), np.zeros_like(weight)
    for c in range(c_in):
        outs = slice((c // cg) * og, (c // cg + 1) * og)
        for pos, window in _scatter_windows(x, stride, dilation, kernel):
            patch = gfull[(slice(None), outs) + window]  # (N, og, *kernel)
            gx[(slice(None), c, *pos)] = (patch * weight[c][None]).reshape(len(patch), -1).sum(1)
            value = x[(slice(None), c, *pos)].reshape((-1,) + (1,) * (len(kernel) + 1))
            gw[c] += (patch * value).sum(axis=0)
    gb = g.sum(axis=(0, *range(2, g.ndim))) if bias_given else None
    return gx[0] if unbatched else gx, gw, gb


conv_transpose1d = conv_transpose2d = conv_transpose3d = conv_transpose
conv_transpose1d_backward = conv_transpose2d_backward = conv_transpose3d_backward = (
    conv_transpose_backward
)
