"""Time conv2d's two column layouts side by side: the data behind ``_per_image``.

Each geometry runs with the per-image and the channel-major layout (the rule
is overridden to force each), float32, padding ``k // 2``, median of
``--repeat`` calls after a warm-up, the four variants taking turns call by
call: the forward alone, and a training step
(forward and backward with a ``ColumnCache``, as ``nn.Conv2d`` trains).
Prints a markdown table with the layout the rule picks for each.

    python benchmarks/layout_rule.py --repeat 30
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import cnnarray
from cnnarray.ops import conv

# (N, C_in, C_out, H = W, k)
GEOMETRIES = [
    (16, 16, 32, 8, 3), (32, 16, 32, 8, 3), (64, 16, 32, 8, 3), (128, 16, 32, 8, 3),
    (32, 6, 16, 14, 5), (64, 6, 16, 14, 5), (128, 6, 16, 14, 5),
    (32, 1, 6, 28, 5), (16, 3, 32, 32, 3), (16, 8, 16, 16, 3), (64, 8, 16, 16, 3),
    (32, 12, 24, 8, 3), (16, 16, 32, 4, 3), (64, 16, 32, 4, 3),
    (2, 32, 64, 8, 3), (4, 32, 64, 16, 3), (8, 32, 64, 16, 3),
    (1, 64, 128, 8, 3), (4, 64, 128, 8, 3), (16, 64, 128, 8, 3), (32, 64, 64, 8, 3),
    (32, 128, 128, 4, 3), (8, 128, 256, 4, 3), (32, 64, 128, 8, 1), (16, 256, 64, 8, 1),
    (1, 32, 64, 32, 3), (1, 64, 64, 64, 3),
]  # fmt: skip


def interleaved_ms(calls: dict, repeat: int) -> dict:
    """Median ms of each call, the calls taking turns (so drift hits all alike)."""
    times: dict = {key: [] for key in calls}
    for round_ in range(repeat + 3):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            if round_ >= 3:  # warm-up
                times[key].append(time.perf_counter() - start)
    return {key: statistics.median(t) * 1e3 for key, t in times.items()}


def time_layouts(x, w, b, g, pad: int, repeat: int) -> dict[tuple[str, bool], float]:
    """{(mode, per_image): median ms} for mode "fwd" (forward alone) and "step"."""
    rule = conv._per_image
    caches = {True: cnnarray.ColumnCache(), False: cnnarray.ColumnCache()}

    def forced(per_image: bool, call):
        def run():
            conv._per_image = lambda geo, training=False: per_image
            try:
                call(caches[per_image])
            finally:
                conv._per_image = rule

        return run

    def fwd(cache):
        cnnarray.conv2d(x, w, b, padding=pad)

    def step(cache):
        cnnarray.conv2d(x, w, b, padding=pad, cache=cache)
        cnnarray.conv2d_backward(g, x, w, b, padding=pad, cache=cache)

    modes = (("fwd", fwd), ("step", step))
    calls = {(mode, per): forced(per, call) for mode, call in modes for per in (True, False)}
    return interleaved_ms(calls, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| N, C_in, C_out, H = W, k | K | K * C_out | fwd per-image / channel-major "
          "| picked | step per-image / channel-major | picked |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for n, c_in, c_out, size, k in GEOMETRIES:
        x = rng.standard_normal((n, c_in, size, size), dtype=np.float32)
        w = rng.standard_normal((c_out, c_in, k, k), dtype=np.float32)
        b = rng.standard_normal(c_out, dtype=np.float32)
        g = rng.standard_normal((n, c_out, size, size), dtype=np.float32)
        t = time_layouts(x, w, b, g, k // 2, args.repeat)
        geo = conv._geometry(x, w, b, 1, k // 2, 1, 1)
        picks = ["per-image" if conv._per_image(geo, mode) else "channel-major"
                 for mode in (False, True)]  # fmt: skip
        print(f"| {n}, {c_in}, {c_out}, {size}, {k} | {c_in * k * k} | {c_in * k * k * c_out} "
              f"| {t['fwd', True]:.2f} / {t['fwd', False]:.2f} | {picks[0]} "
              f"| {t['step', True]:.2f} / {t['step', False]:.2f} | {picks[1]} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
