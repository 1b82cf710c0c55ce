"""Pooling by loops over every output position, with explicit window bounds and PyTorch's
divisor rules computed on their own."""

from __future__ import annotations

import math

import numpy as np

from ._common import _batched, _pair


def _pool_out(size, k, s, p, d, ceil_mode):
    span = size + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_windows(shape, kernel_size, stride, padding, dilation, ceil_mode):
    """Yield ``(p, q, [(r, c), ...])``: the in-bounds input positions of each window, row-major."""
    h, w = shape
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    out_h = _pool_out(h, kh, sh, ph, dh, ceil_mode)
    out_w = _pool_out(w, kw, sw, pw, dw, ceil_mode)
    for p in range(out_h):
        for q in range(out_w):
            cells = [
                (p * sh - ph + i * dh, q * sw - pw + j * dw) for i in range(kh) for j in range(kw)
            ]
            yield p, q, out_h, out_w, cells


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Reference max pooling: padding is -inf, so only in-bounds cells count."""
    x, unbatched = _batched(x)
    out = None
    for p, q, oh, ow, cells in _pool_windows(
        x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode
    ):
        if out is None:
            out = np.full(x.shape[:2] + (oh, ow), -np.inf)
        for r, c in cells:
            if 0 <= r < x.shape[2] and 0 <= c < x.shape[3]:
                v = x[:, :, r, c]
                out[:, :, p, q] = np.where(np.isnan(v) | (v > out[:, :, p, q]), v, out[:, :, p, q])
    return out[0] if unbatched else out


def max_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):  # fmt: skip
    """Reference max-pool gradient: each window's gradient to its first maximum."""
    x, unbatched = _batched(x)
    g = np.asarray(grad_out, np.float64).reshape(x.shape[:2] + np.shape(grad_out)[-2:])
    gx = np.zeros_like(x)
    for p, q, _, _, cells in _pool_windows(
        x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode
    ):
        for b in range(x.shape[0]):
            for ch in range(x.shape[1]):
                best, arg = -np.inf, None
                for r, c in cells:
                    if 0 <= r < x.shape[2] and 0 <= c < x.shape[3]:
                        v = x[b, ch, r, c]
                        if arg is None or v > best or (np.isnan(v) and not np.isnan(best)):
                            best, arg = v, (r, c)
                if arg is not None:  # a window of padding only has no input cell
                    gx[b, ch][arg] += g[b, ch, p, q]
    return gx[0] if unbatched else gx


def _avg_divisors(x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                  divisor_override):  # fmt: skip
    h, w = x_shape
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    out = {}
    for p, q, _, _, cells in _pool_windows(x_shape, kernel_size, stride, padding, 1, ceil_mode):
        inside = [(r, c) for r, c in cells if 0 <= r < h and 0 <= c < w]
        if divisor_override is not None:
            div = divisor_override
        elif count_include_pad:
            # cells within the padded image (-pad .. size + pad), as PyTorch counts
            div = sum(1 for r, c in cells if -ph <= r < h + ph and -pw <= c < w + pw)
        else:
            div = len(inside)
        out[p, q] = (inside, div)
    return out


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):  # fmt: skip
    """Reference average pooling with PyTorch's divisor rules."""
    x, unbatched = _batched(x)
    windows = _avg_divisors(x.shape[2:], kernel_size, stride, padding, ceil_mode,
                            count_include_pad, divisor_override)  # fmt: skip
    oh = max(p for p, _ in windows) + 1
    ow = max(q for _, q in windows) + 1
    out = np.zeros(x.shape[:2] + (oh, ow))
    for (p, q), (inside, div) in windows.items():
        total = sum((x[:, :, r, c] for r, c in inside), np.zeros(x.shape[:2]))
        out[:, :, p, q] = total / div
    return out[0] if unbatched else out


def avg_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):  # fmt: skip
    """Reference average-pool gradient: each output's gradient / divisor to its window."""
    x, unbatched = _batched(x)
    g = np.asarray(grad_out, np.float64).reshape(x.shape[:2] + np.shape(grad_out)[-2:])
    windows = _avg_divisors(x.shape[2:], kernel_size, stride, padding, ceil_mode,
                            count_include_pad, divisor_override)  # fmt: skip
    gx = np.zeros_like(x)
    for (p, q), (inside, div) in windows.items():
        for r, c in inside:
            gx[:, :, r, c] += g[:, :, p, q] / div
    return gx[0] if unbatched else gx


def adaptive_avg_pool2d(x, output_size):
    """Reference adaptive average pooling: a loop over PyTorch's windows."""
    x = np.asarray(x, np.float64)
    h, w = x.shape[-2:]
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    oh, ow = oh or h, ow or w
    out = np.empty((*x.shape[:-2], oh, ow))
    for i in range(oh):
        r0, r1 = i * h // oh, -(-(i + 1) * h // oh)
        for j in range(ow):
            c0, c1 = j * w // ow, -(-(j + 1) * w // ow)
            out[..., i, j] = x[..., r0:r1, c0:c1].mean(axis=(-2, -1))
    return out


def adaptive_avg_pool2d_backward(grad_out, x, output_size):
    """Reference gradient: each output's gradient shared evenly by its window."""
    x, g = np.asarray(x, np.float64), np.asarray(grad_out, np.float64)
    h, w = x.shape[-2:]
    oh, ow = g.shape[-2:]
    gx = np.zeros_like(x)
    for i in range(oh):
        r0, r1 = i * h // oh, -(-(i + 1) * h // oh)
        for j in range(ow):
            c0, c1 = j * w // ow, -(-(j + 1) * w // ow)
            gx[..., r0:r1, c0:c1] += g[..., i, j][..., None, None] / ((r1 - r0) * (c1 - c0))
    return gx
