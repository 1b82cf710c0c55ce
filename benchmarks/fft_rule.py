"""Time conv2d's im2col and FFT paths side by side: the data behind ``FFT_RULES``.

Each geometry runs both ways (the rule is overridden to force each path),
forward and forward + backward, float32, padding ``k // 2``, median of
``--repeat`` calls after a warm-up (fwd+bwd: the sum of the two medians);
prints a markdown table.

    python benchmarks/fft_rule.py --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import cnnarray
from cnnarray.ops import _conv_fft

# (N, C_in, C_out, H = W, k)
GEOMETRIES = [
    (1, 1, 1, 512, 3), (1, 1, 1, 512, 5), (1, 1, 1, 512, 7), (1, 1, 1, 256, 7),
    (1, 1, 1, 64, 7), (1, 1, 1, 64, 11), (1, 3, 1, 256, 7), (4, 1, 4, 128, 7),
    (1, 3, 8, 256, 7), (1, 3, 8, 256, 11), (8, 1, 8, 64, 7), (16, 1, 4, 28, 7),
    (1, 8, 8, 64, 9), (2, 4, 8, 64, 11),
]  # fmt: skip


def median_ms(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def time_paths(x, w, b, g, pad: int, repeat: int) -> list[tuple[float, float]]:
    """[(fwd, fwd+bwd) with im2col, (fwd, fwd+bwd) with the FFT], in ms."""
    rules = _conv_fft.FFT_RULES
    timings = []
    for forced in ((), ((1, 10**9),)):  # no rule holds, then every rule holds
        _conv_fft.FFT_RULES = forced
        try:
            fwd = median_ms(lambda: cnnarray.conv2d(x, w, b, padding=pad), repeat)
            bwd = median_ms(lambda: cnnarray.conv2d_backward(g, x, w, b, padding=pad), repeat)
        finally:
            _conv_fft.FFT_RULES = rules
        timings.append((fwd, fwd + bwd))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| N, C_in, C_out, H = W, k | N * C_in * C_out | fwd im2col / FFT "
          "| fwd+bwd im2col / FFT | FFT chosen |")  # fmt: skip
    print("|---|---|---|---|---|")
    for n, c_in, c_out, size, k in GEOMETRIES:
        x = rng.standard_normal((n, c_in, size, size), dtype=np.float32)
        w = rng.standard_normal((c_out, c_in, k, k), dtype=np.float32)
        b = np.zeros(c_out, np.float32)
        g = np.ones((n, c_out, size, size), np.float32)
        (f0, b0), (f1, b1) = time_paths(x, w, b, g, k // 2, args.repeat)
        chosen = _conv_fft.prefer_fft(n, c_in, c_out, k, k, (1, 1), (1, 1))
        print(f"| {n}, {c_in}, {c_out}, {size}, {k} | {n * c_in * c_out} | {f0:.2f} / {f1:.2f} "
              f"| {b0:.2f} / {b1:.2f} | {'yes' if chosen else 'no'} |")  # fmt: skip


if __name__ == "__main__":
    main()
