"""conv2d through the FFT, for stride 1 and large kernels with few channels.

By the correlation theorem, on a periodic grid at least as large as the padded
input (so that no valid output wraps around),

* forward: ``y[n, o] = irfft2(sum_c X[n, c] * conj(W[o, c]))``, cropped to
  (out_h, out_w);
* grad_x:  ``gx_pad[n, c] = irfft2(sum_o DY[n, o] * W[o, c])`` (a full
  convolution; dY is zero beyond its (out_h, out_w), which is exactly where the
  periodic wrap of the kernel lands), cropped by the padding;
* grad_w:  ``gw[o, c] = irfft2(sum_n conj(DY[n, o]) * X[n, c])``, cropped to
  (kh, kw);

where capitals are ``rfft2`` over the grid. The cost is the transforms, about
``(N*C_in + N*C_out + C_out*C_in) * S log S`` for a grid of S points, plus one
multiply-add per frequency and (n, c, o) triple, independent of the kernel
size: against im2col's ``kh * kw`` copies and FLOPs per output, it wins for
large kernels over few channels, such as the 2-D API's one image and one
filter (:func:`prefer_fft`). The transforms come from :func:`cnnarray.backend.fft2`:
SciPy's pocketfft on the CPU, cuFFT on a GPU.
"""

from __future__ import annotations

import functools
from typing import Any

from ..backend import fft2

__all__ = ["correlate", "correlate_backward", "fast_length", "prefer_fft"]

# The rule, from timings on a 2-core Xeon (benchmarks/fft_rule.py, table in
# benchmarks/README.md): (minimum kernel taps, maximum N * C_in/groups * C_out)
# pairs; the FFT path is taken when any pair holds. A 7x7 kernel over one
# image and filter: level to 2.2x faster forward, 2.4-4.8x forward+backward
# (64 x 64 to 512 x 512); over 3 channels and 8 filters of a 256 x 256 image,
# 1.8x slower (the per-frequency products grow with N * C_in * C_out), while
# 11x11 there is 1.3x faster forward and 1.8x forward+backward.
FFT_RULES = ((49, 16), (81, 64))


def prefer_fft(n: int, c_per_group: int, c_out: int, kh: int, kw: int, stride: tuple[int, int],
               dilation: tuple[int, int]) -> bool:  # fmt: skip
    """Whether conv2d should take the FFT path for this geometry (see :data:`FFT_RULES`)."""
    if stride != (1, 1) or dilation != (1, 1):
        return False
    products = n * c_per_group * c_out
    return any(kh * kw >= taps and products <= most for taps, most in FFT_RULES)


def fast_length(n: int) -> int:
    """The smallest ``m >= n`` whose only prime factors are 2, 3 and 5 (a fast FFT size)."""
    m = n
    while True:
        rest = m
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += 1


def _spectra(xp: Any, xpad: Any, *arrays: Any) -> tuple[Any, Any, list[Any]]:
    """``(rfft2, irfft2, [rfft2(a) for a in arrays])`` on the grid for ``xpad``."""
    rfft2, irfft2 = fft2(xp)
    size = fast_length(xpad.shape[-2]), fast_length(xpad.shape[-1])
    forward = functools.partial(rfft2, s=size)
    return forward, functools.partial(irfft2, s=size), [forward(a) for a in arrays]


def _sum_products(xp: Any, a: Any, b: Any) -> Any:
    """``c[f, g, i, k] = sum_j a[f, g, i, j] * b[f, g, j, k]``: a product per frequency.

    One small matrix product per frequency and group; for the smallest ones
    (one image, one channel) broadcasting beats calling the matrix product
    hundreds of thousands of times.
    """
    if a.shape[-1] == 1:  # an outer product: no sum
        return a * b
    if a.shape[-2] * a.shape[-1] * b.shape[-1] <= 8:
        return (a[..., :, :, None] * b[..., None, :, :]).sum(axis=-2)
    return xp.matmul(a, b)


def correlate(xp: Any, xpad: Any, weight: Any, groups: int, out_hw: tuple[int, int]) -> Any:
    """Valid cross-correlation of padded images with filters through the FFT.

    ``xpad`` (N, C_in, Hp, Wp) already padded, ``weight`` (C_out, C_in/groups,
    kh, kw); returns (N, C_out, out_h, out_w) in the input's float dtype, without
    bias.
    """
    n, c, _, _ = xpad.shape
    o, cg = weight.shape[:2]
    g, og = groups, o // groups
    _, irfft2, (x_f, w_f) = _spectra(xp, xpad, xpad, weight)
    rows, cols = x_f.shape[2:]
    f = rows * cols
    a = x_f.reshape(n, g, cg, f).transpose(3, 1, 0, 2)  # (f, g, N, C_in/g)
    b = xp.conj(w_f).reshape(g, og, cg, f).transpose(3, 0, 2, 1)  # (f, g, C_in/g, C_out/g)
    y_f = _sum_products(xp, a, b).transpose(2, 1, 3, 0).reshape(n, o, rows, cols)
    y = irfft2(y_f)
    return y[:, :, : out_hw[0], : out_hw[1]].astype(xpad.dtype, copy=False)


def correlate_backward(
    xp: Any, grad_out: Any, xpad: Any, weight: Any, groups: int, input_grad: bool
) -> tuple[Any, Any]:
    """Gradients of :func:`correlate`: (grad of xpad or None, grad of weight).

    ``grad_out`` (N, C_out, out_h, out_w); the input gradient has the padded
    shape (N, C_in, Hp, Wp), for the caller to crop.
    """
    n, c, hp, wp = xpad.shape
    o, cg, kh, kw = weight.shape
    g, og = groups, o // groups
    rfft2, irfft2, (dy_f, x_f) = _spectra(xp, xpad, grad_out, xpad)
    rows, cols = dy_f.shape[2:]
    f = rows * cols
    dy_m = dy_f.reshape(n, g, og, f)
    a = xp.conj(dy_m).transpose(3, 1, 2, 0)  # (f, g, C_out/g, N)
    b = x_f.reshape(n, g, cg, f).transpose(3, 1, 0, 2)  # (f, g, N, C_in/g)
    gw_f = _sum_products(xp, a, b).transpose(1, 2, 3, 0).reshape(o, cg, rows, cols)
    grad_w = irfft2(gw_f)[:, :, :kh, :kw].astype(weight.dtype, copy=False)
    if not input_grad:
        return None, grad_w
    w_f = rfft2(weight)
    a = dy_m.transpose(3, 1, 0, 2)  # (f, g, N, C_out/g)
    b = w_f.reshape(g, og, cg, f).transpose(3, 0, 1, 2)  # (f, g, C_out/g, C_in/g)
    gx_f = _sum_products(xp, a, b).transpose(2, 1, 3, 0).reshape(n, c, rows, cols)
    grad_xpad = irfft2(gx_f)[:, :, :hp, :wp].astype(xpad.dtype, copy=False)
    return grad_xpad, grad_w
