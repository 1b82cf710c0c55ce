"""Convolution by ``scipy.signal.correlate2d`` of the padded image with the dilated kernel;
its gradients by visiting every output position."""

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
