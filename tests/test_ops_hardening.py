"""Ops under hostile values and arguments (issue 19 items 5 and 6).

A NaN or inf in adaptive_avg_pool2d's input (or gradient) reaches only the
outputs whose windows hold it, as in the float64 loop oracle; extreme geometry
ints are a ValueError naming the argument, raised before any loop or
allocation that grows with them, never a hang, a huge allocation or an
OverflowError.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close, run_op

import cnnarray
from cnnarray import reference as ref

# (x shape, output_size): the global average, disjoint windows, overlapping
# windows of unequal lengths, an output larger than the input, None, unbatched
ADAPTIVE_CASES = [
    ((2, 3, 8, 8), 1),
    ((2, 3, 7, 7), (3, 3)),
    ((2, 3, 8, 12), (2, 4)),
    ((1, 2, 6, 9), (4, 5)),
    ((2, 2, 3, 5), (7, 4)),
    ((3, 7, 5), (3, None)),
]
BAD_VALUES = {
    "nan": [np.nan],
    "inf": [np.inf],
    "-inf": [-np.inf],
    "inf and -inf": [np.inf, -np.inf],
    "nan and inf": [np.nan, np.inf],
}


def _poison(a: np.ndarray, values: list[float], seed: int) -> np.ndarray:
    """Put each of ``values`` at a random position of a copy of ``a``."""
    rng = np.random.default_rng(seed)
    a = a.copy()
    flat = a.reshape(-1)
    for v, k in zip(values, rng.choice(flat.size, len(values), replace=False), strict=True):
        flat[k] = v
    return a


def _spatial(shape: tuple[int, ...], output_size) -> tuple[int, int]:
    h, w = shape[-2:]
    sizes = output_size if isinstance(output_size, tuple) else (output_size,) * 2
    return tuple(s if o is None else o for s, o in zip((h, w), sizes, strict=True))


# NumPy's matmul warns of the NaN or inf it meets before the exact path takes over
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", list(BAD_VALUES), ids=list(BAD_VALUES))
@pytest.mark.parametrize(("shape", "output_size"), ADAPTIVE_CASES, ids=str)
def test_adaptive_avg_pool2d_keeps_nan_and_inf_in_their_windows(
    backend, dtype, shape, output_size, bad
):
    for seed in range(3):
        x = np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)
        x = _poison(x, BAD_VALUES[bad], seed)
        y = run_op(cnnarray.adaptive_avg_pool2d, x, output_size, backend=backend)
        desired = ref.adaptive_avg_pool2d(x, output_size)
        assert np.isfinite(desired).any(), "the case must keep some outputs finite"
        assert_close(y, desired, dtype=dtype, backend=backend, err_msg=f"seed {seed}")


# NumPy's matmul warns of the NaN or inf it meets before the exact path takes over
@pytest.mark.parametrize("bad", list(BAD_VALUES), ids=list(BAD_VALUES))
@pytest.mark.parametrize(("shape", "output_size"), ADAPTIVE_CASES, ids=str)
def test_adaptive_avg_pool2d_backward_keeps_nan_and_inf_in_their_windows(
    backend, dtype, shape, output_size, bad
):
    out_shape = (*shape[:-2], *_spatial(shape, output_size))
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1, 1, shape).astype(dtype)
        g = _poison(rng.uniform(-1, 1, out_shape).astype(dtype), BAD_VALUES[bad], seed)
        grad = run_op(cnnarray.adaptive_avg_pool2d_backward, g, x, output_size, backend=backend)
        desired = ref.adaptive_avg_pool2d_backward(g, x, output_size)
        assert np.isfinite(desired).any(), "the case must keep some gradients finite"
        assert_close(grad, desired, dtype=dtype, backend=backend, err_msg=f"seed {seed}")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_adaptive_avg_pool2d_nan_reaches_only_its_window():
    x = np.zeros((1, 1, 7, 7), np.float32)
    x[0, 0, 0, 0] = np.nan
    y = cnnarray.adaptive_avg_pool2d(x, 3)
    expected = np.zeros((3, 3), bool)
    expected[0, 0] = True  # rows and columns [0, 3): the only window holding (0, 0)
    np.testing.assert_array_equal(np.isnan(y[0, 0]), expected)
    g = np.zeros((1, 1, 3, 3), np.float32)
    g[0, 0, 2, 2] = np.inf
    grad = cnnarray.adaptive_avg_pool2d_backward(g, x, 3)
    assert np.isinf(grad[0, 0, 4:, 4:]).all()  # window (2, 2): rows and columns [4, 7)
    assert (grad[0, 0, :4] == 0).all() and (grad[0, 0, :, :4] == 0).all()


# --------------------------------------------------------------------------- extreme arguments

X = np.ones((1, 1, 4, 4), np.float32)
W = np.ones((1, 1, 3, 3), np.float32)
G1 = np.ones((1, 1, 1, 1), np.float32)

# name -> (call, the message's pattern); each call failed before: a hang, a huge
# allocation, an OverflowError or a message from inside NumPy
EXTREMES = {
    "max_pool2d kernel 1e9 ceil_mode": (
        lambda: cnnarray.max_pool2d(X, kernel_size=10**9, stride=10**9, padding=1, ceil_mode=True),
        r"kernel of size \(1000000000, 1000000000\) after dilation is larger than the padded "
        r"input \(6, 6\)",
    ),
    "max_pool2d kernel 1e9 padding 5e8": (
        lambda: cnnarray.max_pool2d(X, 10**9, 10**9, 5 * 10**8),
        r"kernel_size must have at most 65536 elements .* got kernel_size=\(1000000000, ",
    ),
    "avg_pool2d kernel 2**17 padding 2**16": (
        lambda: cnnarray.avg_pool2d(X, (2**17, 1), padding=(2**16, 0)),
        r"kernel_size must have at most 65536 elements",
    ),
    "max_pool2d_backward kernel 1e9": (
        lambda: cnnarray.max_pool2d_backward(G1, X, 10**9, 10**9, 1, ceil_mode=True),
        r"kernel of size \(1000000000, 1000000000\) after dilation is larger",
    ),
    "adaptive_avg_pool2d 1e9": (
        lambda: cnnarray.adaptive_avg_pool2d(X, 10**9),
        r"output_size must be at most 64 times the input size .* got \(1000000000, 1000000000\) "
        r"for x of shape \(1, 1, 4, 4\)",
    ),
    "adaptive_avg_pool2d 2**70": (
        lambda: cnnarray.adaptive_avg_pool2d(X, (None, 2**70)),
        r"output_size must be .* each at most 2147483647, got \(None, 1180591620717411303424\)",
    ),
    "adaptive_avg_pool2d_backward 1e9": (
        lambda: cnnarray.adaptive_avg_pool2d_backward(G1, X, output_size=10**9),
        r"output_size must be at most 64 times the input size",
    ),
    "conv2d padding 1e9": (
        lambda: cnnarray.conv2d(X, W, padding=10**9),
        r"output maps of size \(2000000002, 2000000002\) would hold more than 2147483647 "
        r"elements each, for x of shape \(1, 1, 4, 4\) and padding=1000000000",
    ),
    "conv2d_backward padding 1e5": (
        lambda: cnnarray.conv2d_backward(G1, X, W, padding=10**5),
        r"output maps of size \(200002, 200002\) would hold more than",
    ),
    # the padding's workspace: a 6x6 image padded by 12110 asked for 6.6 GiB (fuzz, ops)
    "conv2d padding 12110": (
        lambda: cnnarray.conv2d(
            np.ones((2, 3, 6, 6), np.float32), np.ones((4, 3, 3, 3), np.float32), padding=12110
        ),
        r"padding \(top, bottom, left, right\) = \(12110, 12110, 12110, 12110\) goes past the "
        r"kernel's reach \(2, 2\): .* 85\.3 GiB\), over the limit of 268435456 bytes",
    ),
    # the same in a batch: 226 MB per image, but a 9.8 GiB output for 256 (fuzz, evaluate)
    "conv2d padding (1, 20000) batch 256": (
        lambda: cnnarray.conv2d(
            np.ones((256, 16, 8, 8), np.float32),
            np.ones((32, 16, 3, 3), np.float32),
            padding=(1, 20000),
        ),
        r"padding .* = \(1, 1, 20000, 20000\) goes past the kernel's reach \(2, 2\): .* \(the "
        r"output of 256 image\(s\), .* 10\.0 GiB\), over the limit of 268435456 bytes",
    ),
    "conv2d_backward dilation 20000 padding 20000": (
        lambda: cnnarray.conv2d_backward(
            np.ones((1, 1, 2, 2), np.float32), X, W, stride=2, padding=20000, dilation=20000
        ),
        r"padding .* = \(20000, 20000, 20000, 20000\) pads maps of size \(4, 4\) to "
        r"\(40004, 40004\): 6401280000 bytes \(6\.0 GiB\) of padding per image of 1 map",
    ),
    # a kernel as tall as the input's 64 * 4096 elements, padded by half: 4 GiB per map
    "max_pool2d kernel (262144, 1) padding (131072, 0)": (
        lambda: cnnarray.max_pool2d(
            np.ones((1, 1, 64, 4096), np.float32), (2**18, 1), padding=(2**17, 0)
        ),
        r"padding=\(131072, 0\) with kernel_size=\(262144, 1\) pads maps of size \(64, 4096\) "
        r"to \(262208, 4096\): 4294967296 bytes \(4\.0 GiB\) .* over the limit of 268435456",
    ),
}
# An int past 2**63 for each geometry argument of each op: an OverflowError in
# NumPy's index arithmetic before (or, for a kernel, a hang)
_GEOMETRY_ARGS = {
    "max_pool2d": (lambda **kw: cnnarray.max_pool2d(X, **kw), ("kernel_size", "stride",
                   "padding", "dilation")),
    "max_pool2d_backward": (lambda **kw: cnnarray.max_pool2d_backward(G1, X, **kw),
                            ("kernel_size", "stride", "padding", "dilation")),
    "avg_pool2d": (lambda **kw: cnnarray.avg_pool2d(X, **kw), ("kernel_size", "stride",
                   "padding")),
    "avg_pool2d_backward": (lambda **kw: cnnarray.avg_pool2d_backward(G1, X, **kw),
                            ("kernel_size", "stride", "padding")),
    "conv2d": (lambda **kw: cnnarray.conv2d(X, W, **kw), ("stride", "padding", "dilation")),
    "conv2d_backward": (lambda **kw: cnnarray.conv2d_backward(G1, X, W, **kw),
                        ("stride", "padding", "dilation")),
    "conv2d_output_shape": (lambda **kw: cnnarray.conv2d_output_shape(X.shape, W.shape, **kw),
                            ("stride", "padding", "dilation")),
}  # fmt: skip
for _op, (_call, _names) in _GEOMETRY_ARGS.items():
    for _name in _names:
        _kwargs = {"kernel_size": 2} | {_name: (1, 2**63)}
        if _op.startswith("conv"):
            del _kwargs["kernel_size"]
        EXTREMES[f"{_op} {_name} 2**63"] = (
            lambda call=_call, kwargs=_kwargs: call(**kwargs),
            rf"{_name} must be at most 2147483647, got \(1, 9223372036854775808\)",
        )


@pytest.mark.parametrize("name", list(EXTREMES))
def test_extreme_geometry_is_a_value_error_naming_the_argument(name):
    call, pattern = EXTREMES[name]
    start = time.perf_counter()
    with pytest.raises(ValueError, match=pattern) as info:
        call()
    assert type(info.value) is ValueError, f"{name}: {type(info.value).__name__}"
    assert time.perf_counter() - start < 1.0, f"{name} took {time.perf_counter() - start:.2f} s"


def test_extreme_calls_finish_within_a_second_under_a_memory_cap():
    """Each extreme call, in a child process capped at 2 GiB of address space, returns
    or raises within a second: none loops over, or allocates for, its huge ints."""
    script = textwrap.dedent(
        """
        import json, resource, sys, time
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        sys.path.insert(0, sys.argv[1])
        from test_ops_hardening import EXTREMES
        report = {}
        for name, (call, _) in EXTREMES.items():
            start = time.perf_counter()
            try:
                call()
                outcome = "returned"
            except Exception as e:
                outcome = type(e).__name__
            report[name] = [outcome, time.perf_counter() - start]
        print(json.dumps(report))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report) == set(EXTREMES)
    slow = {k: v for k, v in report.items() if v[1] > 1.0}
    unclean = {k: v for k, v in report.items() if v[0] not in ("ValueError", "returned")}
    assert not slow and not unclean, f"slow: {slow}, unclean: {unclean}"


@pytest.mark.parametrize(
    ("op", "shape"),
    [(cnnarray.max_pool2d, (1, 1, 1, 1)), (cnnarray.avg_pool2d, (1, 1, 1, 1))],
)
def test_pool_with_a_kernel_as_large_as_the_input_still_works(op, shape):
    """The taps limit grows with the input: a window over the whole map (global pooling)
    is allowed whatever its size."""
    x = np.random.default_rng(0).uniform(0, 1, (1, 1, 260, 260)).astype(np.float32)
    y = op(x, 260)  # 67600 elements: more than 65536, fewer than H * W
    assert y.shape == shape
    desired = x.max() if op is cnnarray.max_pool2d else x.mean()
    np.testing.assert_allclose(y.reshape(()), desired, rtol=1e-4)  # a float32 sum of 67600


def test_pool_ceil_mode_refuses_a_kernel_larger_than_its_padded_input():
    # PyTorch computes this one (one window, mostly padding); cnnarray names it
    with pytest.raises(ValueError, match=r"kernel of size \(8, 8\) after dilation is larger"):
        cnnarray.max_pool2d(X, 8, 8, 1, ceil_mode=True)
    # a kernel that fits the padded input keeps ceil_mode's partial windows
    assert cnnarray.max_pool2d(X, 3, 2, 1, ceil_mode=True).shape == (1, 1, 3, 3)


def test_conv2d_padding_within_reach_or_small_still_runs_under_a_tiny_limit():
    """A padding is refused only when it adds more than the workspace limit (at least 16 MiB)
    of zeros: "same" padding, and padding past the kernel on a small image, still run."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    for padding in ("same", 1, 2, 60):
        y = cnnarray.conv2d(x, w, padding=padding, workspace_limit=1)
        assert_close(y, ref.conv2d(x, w, padding=padding), dtype=np.float64)
    with pytest.raises(ValueError, match=r"over the limit of 16777216 bytes"):
        cnnarray.conv2d(x, w, padding=700, workspace_limit=1)


def test_geometry_ints_at_the_limit_are_accepted():
    assert cnnarray.avg_pool2d(X, 2, stride=2**31 - 1).shape == (1, 1, 1, 1)
    assert cnnarray.conv2d(X, W, stride=2**31 - 1).shape == (1, 1, 1, 1)
    assert cnnarray.adaptive_avg_pool2d(X, (64 * 4, 1)).shape == (1, 1, 256, 1)
    with pytest.raises(ValueError, match=r"at most 64 times"):
        cnnarray.adaptive_avg_pool2d(X, (64 * 4 + 1, 1))
