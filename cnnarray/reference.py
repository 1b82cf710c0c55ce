"""Slow, obviously-correct reference implementations: the oracle.

Everything here runs on the CPU in float64 and follows the definitions
directly, with no shared code with :mod:`cnnarray.ops`:

* conv2d is ``scipy.signal.correlate2d`` (mode "valid") of the zero-padded
  image with the dilated kernel, sliced by the stride and summed over the
  input channels of each group;
* its gradients visit every output position and add ``grad * window``;
* pooling loops over every output position and reads the window with
  explicit bounds checks, computing PyTorch's divisor rules on its own.

The tests and ``cnnarray check`` compare the fast operations with these.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import signal


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


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


def _unbatch(a: np.ndarray, unbatched: int) -> np.ndarray:
    return a[(0,) * unbatched] if unbatched else a


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


def _batched(x):
    x = np.asarray(x, np.float64)
    return (x[None], True) if x.ndim == 3 else (x, False)


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


def linear(x, weight, bias=None):
    """Reference ``y[..., o] = sum_i x[..., i] * weight[o, i] + bias[o]``."""
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    y = np.einsum("...i,oi->...o", x, weight)
    return y if bias is None else y + np.asarray(bias, np.float64)


def linear_backward(grad_out, x, weight, bias=None):
    """Reference gradients of linear by einsum."""
    g, x, weight = (np.asarray(a, np.float64) for a in (grad_out, x, weight))
    gx = np.einsum("...o,oi->...i", g, weight)
    gw = np.einsum("no,ni->oi", g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1]))
    gb = None if bias is None else g.reshape(-1, g.shape[-1]).sum(axis=0)
    return gx, gw, gb


def _elementwise(f, x):
    x = np.asarray(x, np.float64)
    return np.vectorize(f, otypes=[np.float64])(x)


def relu(x):
    return _elementwise(lambda v: v if v > 0 or math.isnan(v) else 0.0, x)


def relu_backward(grad_out, x):
    return np.asarray(grad_out, np.float64) * _elementwise(lambda v: 1.0 if v > 0 else 0.0, x)


def leaky_relu(x, negative_slope=0.01):
    return _elementwise(lambda v: v if v > 0 else negative_slope * v, x)


def leaky_relu_backward(grad_out, x, negative_slope=0.01):
    slope = _elementwise(lambda v: 1.0 if v > 0 else negative_slope, x)
    return np.asarray(grad_out, np.float64) * slope


def _sig(v):
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


def sigmoid(x):
    return _elementwise(_sig, x)


def sigmoid_backward(grad_out, x):
    return np.asarray(grad_out, np.float64) * _elementwise(lambda v: _sig(v) * (1 - _sig(v)), x)


def tanh(x):
    return _elementwise(math.tanh, x)


def tanh_backward(grad_out, x):
    return np.asarray(grad_out, np.float64) * _elementwise(lambda v: 1 - math.tanh(v) ** 2, x)


def _softmax_rows(x, axis):
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        m = max(row)
        e = [math.exp(v - m) for v in row]
        out[i] = [v / math.fsum(e) for v in e]
    return np.moveaxis(out.reshape(x.shape), -1, axis)


def softmax(x, axis=-1):
    return _softmax_rows(x, axis)


def softmax_backward(grad_out, x, axis=-1):
    s = _softmax_rows(x, axis)
    g = np.asarray(grad_out, np.float64)
    # Jacobian-vector product written out: sum_j g_j (delta_ij s_i - s_i s_j)
    return s * g - s * np.sum(g * s, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    return np.log(_softmax_rows(x, axis))


def log_softmax_backward(grad_out, x, axis=-1):
    s = _softmax_rows(x, axis)
    g = np.asarray(grad_out, np.float64)
    return g - s * np.sum(g, axis=axis, keepdims=True)


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    """Reference cross-entropy, one sample at a time."""
    logits = np.asarray(logits, np.float64)
    rows, t = logits.reshape(-1, logits.shape[-1]), np.asarray(target).reshape(-1)
    c = rows.shape[1]
    losses = []
    for row, k in zip(rows, t, strict=True):
        logp = np.log(_softmax_rows(row, -1))
        losses.append(-(1 - label_smoothing) * logp[k] - label_smoothing / c * logp.sum())
    losses = np.array(losses)
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses.reshape(logits.shape[:-1])


def cross_entropy_backward(logits, target, reduction="mean", label_smoothing=0.0, grad_out=None):
    """Reference cross-entropy gradient: softmax minus the smoothed one-hot."""
    logits = np.asarray(logits, np.float64)
    rows, t = logits.reshape(-1, logits.shape[-1]), np.asarray(target).reshape(-1)
    n, c = rows.shape
    grad = _softmax_rows(rows, -1)
    for i, k in enumerate(t):
        grad[i] -= label_smoothing / c
        grad[i, k] -= 1 - label_smoothing
    if reduction == "mean":
        grad /= n
    if grad_out is not None:
        g = np.asarray(grad_out, np.float64)
        grad *= g.reshape(-1, 1) if reduction == "none" else g
    return grad.reshape(logits.shape)


def batch_norm2d(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
                 momentum=0.1, eps=1e-5):  # fmt: skip
    """Reference batch norm, one channel at a time (running statistics are not updated)."""
    x = np.asarray(x, np.float64)
    y = np.empty_like(x)
    for c in range(x.shape[1]):
        values = x[:, c]
        if training or running_mean is None:
            mean, var = values.mean(), ((values - values.mean()) ** 2).mean()
        else:
            mean, var = float(running_mean[c]), float(running_var[c])
        y[:, c] = (values - mean) / math.sqrt(var + eps)
        if weight is not None:
            y[:, c] *= float(weight[c])
        if bias is not None:
            y[:, c] += float(bias[c])
    return y


def batch_norm2d_backward(grad_out, x, running_mean=None, running_var=None, weight=None,
                          bias=None, training=False, eps=1e-5):  # fmt: skip
    """Reference batch-norm gradients: the explicit Jacobian of each channel, in float64."""
    x, g = np.asarray(x, np.float64), np.asarray(grad_out, np.float64)
    gx = np.empty_like(x)
    gw = None if weight is None else np.empty(x.shape[1])
    gb = None if bias is None else np.empty(x.shape[1])
    for c in range(x.shape[1]):
        v, gc = x[:, c].ravel(), g[:, c].ravel()
        w = 1.0 if weight is None else float(weight[c])
        if training or running_mean is None:
            m = v.size
            mean, var = v.mean(), ((v - v.mean()) ** 2).mean()
            s = math.sqrt(var + eps)
            xhat = (v - mean) / s
            # d xhat_i / d x_j = (delta_ij - 1/m - xhat_i xhat_j / m) / s
            jac = (np.eye(m) - 1.0 / m - np.outer(xhat, xhat) / m) / s
        else:
            s = math.sqrt(float(running_var[c]) + eps)
            xhat = (v - float(running_mean[c])) / s
            jac = np.eye(v.size) / s
        gx[:, c] = (jac.T @ (gc * w)).reshape(x[:, c].shape)
        if gw is not None:
            gw[c] = (gc * xhat).sum()
        if gb is not None:
            gb[c] = gc.sum()
    return gx, gw, gb


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
