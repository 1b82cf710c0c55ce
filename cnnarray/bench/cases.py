"""The benchmark cases: one operation at one size each, and their seeded inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MODES = ("fwd", "fwd+bwd")


@dataclass(frozen=True)
class Case:
    """One benchmarked operation at one size.

    ``op`` is ``"conv2d"`` (input ``(n, c_in, h, w)``, weight
    ``(c_out, c_in, k, k)``, bias ``(c_out,)``; with ``two_d`` one ``(h, w)``
    image and one ``(k, k)`` filter, no bias), ``"max_pool2d"`` (input
    ``(n, c_in, h, w)``, window ``k``, stride ``stride``) or ``"matmul"``
    (``(dim, dim) @ (dim, dim)``).
    """

    name: str
    op: str
    n: int = 1
    c_in: int = 1
    c_out: int = 1
    h: int = 1
    w: int = 1
    k: int = 1
    stride: int = 1
    padding: int = 0
    two_d: bool = False
    dim: int = 0
    hidden: bool = False  # small cases for the tests; valid names, not run by default
    about: str = ""  # what the case stands for, in a few words (shown by --help)

    @property
    def modes(self) -> tuple[str, ...]:
        return ("fwd",) if self.op == "matmul" else MODES

    @property
    def out_hw(self) -> tuple[int, int]:
        """``out = floor((H + 2 * padding - k) / stride) + 1`` along each axis."""
        p = self.padding if self.op == "conv2d" else 0
        return (
            (self.h + 2 * p - self.k) // self.stride + 1,
            (self.w + 2 * p - self.k) // self.stride + 1,
        )

    @property
    def windows(self) -> int:
        """Number of output values, i.e. of windows the naive loop visits."""
        if self.op == "matmul":
            return self.dim * self.dim
        out_h, out_w = self.out_hw
        channels = self.c_in if self.op == "max_pool2d" else self.c_out
        return self.n * channels * out_h * out_w

    def flop(self, mode: str) -> int | None:
        """Floating-point operations of one call (None for pooling, which is memory-bound).

        conv2d: ``2 * N * C_out * out_h * out_w * C_in * kh * kw`` forward, three
        times that for fwd+bwd (grad_x and grad_weight are GEMMs of the same size).
        """
        if self.op == "matmul":
            return 2 * self.dim**3
        if self.op != "conv2d":
            return None
        fwd = 2 * self.windows * self.c_in * self.k * self.k
        return fwd * (3 if mode == "fwd+bwd" else 1)

    def describe(self) -> str:
        if self.op == "matmul":
            return f"float32 ({self.dim}, {self.dim}) @ ({self.dim}, {self.dim})"
        out_h, out_w = self.out_hw
        if self.op == "max_pool2d":
            return (
                f"max_pool2d {self.k}x{self.k}/{self.stride} on ({self.n}, {self.c_in}, "
                f"{self.h}, {self.w}) -> ({self.n}, {self.c_in}, {out_h}, {out_w})"
            )
        if self.two_d:
            return (
                f"conv2d 2-D API: image ({self.h}, {self.w}) * filter ({self.k}, {self.k}), "
                f"stride {self.stride}, padding {self.padding} -> ({out_h}, {out_w})"
            )
        return (
            f"conv2d x ({self.n}, {self.c_in}, {self.h}, {self.w}), weight ({self.c_out}, "
            f"{self.c_in}, {self.k}, {self.k}), stride {self.stride}, padding {self.padding} "
            f"-> ({self.n}, {self.c_out}, {out_h}, {out_w})"
        )


CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("a", "conv2d", n=64, c_in=3, c_out=32, h=32, w=32, k=3, padding=1,
             about="first layer of a CIFAR-10 CNN"),
        Case("b", "conv2d", n=64, c_in=32, c_out=64, h=16, w=16, k=3, padding=1,
             about="second layer of that CNN"),
        Case("c", "conv2d", n=32, c_in=64, c_out=128, h=16, w=16, k=3, padding=1,
             about="a deeper, wider layer"),
        Case("d", "conv2d", h=512, w=512, k=3, two_d=True,
             about="one photograph, one 3x3 filter"),
        Case("e", "conv2d", n=128, c_in=1, c_out=6, h=28, w=28, k=5,
             about="LeNet-5's first layer on MNIST"),
        Case("f", "conv2d", h=512, w=512, k=15, padding=7, two_d=True,
             about="one photograph, a large 15x15 filter"),
        Case("pool", "max_pool2d", n=64, c_in=64, h=32, w=32, k=2, stride=2,
             about="2x2 max pooling"),
        Case("matmul", "matmul", dim=2048, about="the GEMM ceiling of the machine"),
        # Small versions of each kind, for the tests.
        Case("tiny", "conv2d", n=2, c_in=3, c_out=4, h=9, w=9, k=3, stride=2, padding=1,
             hidden=True),
        Case("tiny2d", "conv2d", h=12, w=10, k=3, two_d=True, hidden=True),
        Case("tinypool", "max_pool2d", n=2, c_in=3, h=8, w=8, k=2, stride=2, hidden=True),
        Case("tinymatmul", "matmul", dim=64, hidden=True),
    )
}  # fmt: skip
DEFAULT_CASES = tuple(name for name, case in CASES.items() if not case.hidden)


def cases_help() -> str:
    """The default cases, one paragraph each (``name: about: shapes``), for ``--help``."""
    return "\n\n".join(["Cases (--cases):"] + [f"{name}: {CASES[name].about}: "
                       f"{CASES[name].describe()}" for name in DEFAULT_CASES])  # fmt: skip


def make_inputs(case: Case, seed: int = 0) -> dict[str, np.ndarray | None]:
    """Return the float32 inputs of ``case``, the same for every peer and process.

    Keys: ``x``, ``weight``, ``bias`` (None for the 2-D API and for pooling) and
    ``grad_out`` (the upstream gradient used by fwd+bwd); for matmul ``a``, ``b``.
    """
    rng = np.random.default_rng(seed)

    def normal(shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)).astype(
            np.float32, copy=False
        )

    if case.op == "matmul":
        return {"a": normal((case.dim, case.dim)), "b": normal((case.dim, case.dim))}
    out_h, out_w = case.out_hw
    if case.op == "max_pool2d":
        shape = (case.n, case.c_in, case.h, case.w)
        return {"x": normal(shape), "weight": None, "bias": None,
                "grad_out": normal((case.n, case.c_in, out_h, out_w))}  # fmt: skip
    if case.two_d:
        return {"x": normal((case.h, case.w)), "weight": normal((case.k, case.k), 1 / case.k),
                "bias": None, "grad_out": normal((out_h, out_w))}  # fmt: skip
    fan_in = case.c_in * case.k * case.k
    return {
        "x": normal((case.n, case.c_in, case.h, case.w)),
        "weight": normal((case.c_out, case.c_in, case.k, case.k), 1 / math.sqrt(fan_in)),
        "bias": normal((case.c_out,), 0.1),
        "grad_out": normal((case.n, case.c_out, out_h, out_w)),
    }
