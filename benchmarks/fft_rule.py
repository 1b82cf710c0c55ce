"""Time conv2d's im2col and FFT paths side by side: the data behind ``FFT_RULES``.

Each geometry runs both ways (the rule is overridden to force each path),
forward and forward + backward, float32, padding ``k // 2``, median of
``--repeat`` calls after three warm-up rounds, the four calls taking turns
(fwd+bwd: the sum of the two medians); prints a markdown table.

    python benchmarks/fft_rule.py --repeat 5
"""

from __future__ import annotations

from _rules import forced, geometry_rows, interleaved_ms

import cnnarray
from cnnarray.ops import _conv_fft

# (N, C_in, C_out, H = W, k)
GEOMETRIES = [
    (1, 1, 1, 512, 3), (1, 1, 1, 512, 5), (1, 1, 1, 512, 7), (1, 1, 1, 256, 7),
    (1, 1, 1, 64, 7), (1, 1, 1, 64, 11), (1, 3, 1, 256, 7), (4, 1, 4, 128, 7),
    (1, 3, 8, 256, 7), (1, 3, 8, 256, 11), (8, 1, 8, 64, 7), (16, 1, 4, 28, 7),
    (1, 8, 8, 64, 9), (2, 4, 8, 64, 11),
]  # fmt: skip


def time_paths(x, w, b, g, pad: int, repeat: int) -> list[tuple[float, float]]:
    """[(fwd, fwd+bwd) with im2col, (fwd, fwd+bwd) with the FFT], in ms."""

    def fwd():
        cnnarray.conv2d(x, w, b, padding=pad)

    def bwd():
        cnnarray.conv2d_backward(g, x, w, b, padding=pad)

    rules = ((), ((1, 10**9),))  # no rule holds, then every rule holds
    calls = {(r, name): forced(_conv_fft, "FFT_RULES", r, call)
             for r in rules for name, call in (("fwd", fwd), ("bwd", bwd))}  # fmt: skip
    t = interleaved_ms(calls, repeat)
    return [(t[r, "fwd"], t[r, "fwd"] + t[r, "bwd"]) for r in rules]


def main() -> None:
    columns = ["N, C_in, C_out, H = W, k", "N * C_in * C_out", "fwd im2col / FFT",
               "fwd+bwd im2col / FFT", "FFT chosen"]  # fmt: skip
    for repeat, (n, c_in, c_out, size, k), x, w, b, g in geometry_rows(
        __doc__, 5, columns, GEOMETRIES
    ):
        (f0, b0), (f1, b1) = time_paths(x, w, b, g, k // 2, repeat)
        chosen = _conv_fft.prefer_fft(n, c_in, c_out, k, k, (1, 1), (1, 1))
        print(f"| {n}, {c_in}, {c_out}, {size}, {k} | {n * c_in * c_out} | {f0:.2f} / {f1:.2f} "
              f"| {b0:.2f} / {b1:.2f} | {'yes' if chosen else 'no'} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
