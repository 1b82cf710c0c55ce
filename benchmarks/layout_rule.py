"""Time conv2d's two column layouts side by side: the data behind ``use_per_image``.

Each geometry runs with the per-image and the channel-major layout (the rule
is overridden to force each), float32, padding ``k // 2``, median of
``--repeat`` calls after a warm-up, the four variants taking turns call by
call: the forward alone, and a training step
(forward and backward with a ``ColumnCache``, as ``nn.Conv2d`` trains).
Prints a markdown table with the layout the rule picks for each.

    python benchmarks/layout_rule.py --repeat 30
"""

from __future__ import annotations

import functools

from _rules import forced, geometry_rows, interleaved_ms

import cnnarray
from cnnarray.ops import _conv_geometry, _conv_plan

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


def time_layouts(x, w, b, g, pad: int, repeat: int) -> dict[tuple[str, bool], float]:
    """{(mode, per_image): median ms} for mode "fwd" (forward alone) and "step"."""

    def fwd(cache):
        cnnarray.conv2d(x, w, b, padding=pad)

    def step(cache):
        cnnarray.conv2d(x, w, b, padding=pad, cache=cache)
        cnnarray.conv2d_backward(g, x, w, b, padding=pad, cache=cache)

    def rule(per_image: bool):
        return lambda geo, training=False: per_image

    calls = {(mode, per): forced(_conv_plan, "use_per_image", rule(per),
                                 functools.partial(call, cnnarray.ColumnCache()))
             for mode, call in (("fwd", fwd), ("step", step)) for per in (True, False)}  # fmt: skip
    return interleaved_ms(calls, repeat)


def main() -> None:
    columns = ["N, C_in, C_out, H = W, k", "K", "K * C_out", "fwd per-image / channel-major",
               "picked", "step per-image / channel-major", "picked"]  # fmt: skip
    for repeat, (n, c_in, c_out, size, k), x, w, b, g in geometry_rows(
        __doc__, 30, columns, GEOMETRIES
    ):
        t = time_layouts(x, w, b, g, k // 2, repeat)
        geo = _conv_geometry.geometry(x, w, b, 1, k // 2, 1, 1)
        picks = ["per-image" if _conv_plan.use_per_image(geo, mode) else "channel-major"
                 for mode in (False, True)]  # fmt: skip
        print(f"| {n}, {c_in}, {c_out}, {size}, {k} | {c_in * k * k} | {c_in * k * k * c_out} "
              f"| {t['fwd', True]:.2f} / {t['fwd', False]:.2f} | {picks[0]} "
              f"| {t['step', True]:.2f} / {t['step', False]:.2f} | {picks[1]} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
