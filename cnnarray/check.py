"""Self-check: every operation, forward and backward, against the oracle.

``cnnarray check --device D`` runs :func:`run_checks` and exits non-zero on any
mismatch; it is the command a GPU CI job runs. Inputs are drawn on the CPU
from a seeded generator, computed on the chosen backend, brought back and
compared with :mod:`cnnarray.reference` (float64, SciPy and loops).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import ops, reference
from .backend import Backend, to_numpy

TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


@dataclass(frozen=True)
class CheckResult:
    """One comparison: ``error`` is max|actual - desired| / max(1, max|desired|)."""

    op: str
    case: str
    dtype: str
    error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.error <= self.tolerance)  # NaN error is not ok


def relative_error(actual: Any, desired: Any) -> float:
    """Return ``max|actual - desired| / max(1, max|desired|)``, inf on a shape mismatch."""
    actual, desired = np.asarray(to_numpy(actual), np.float64), np.asarray(desired, np.float64)
    if actual.shape != desired.shape:
        return float("inf")
    if actual.size == 0:
        return 0.0
    scale = max(1.0, float(np.max(np.abs(desired))))
    return float(np.max(np.abs(actual - desired))) / scale


def _distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values with no ties, so max pooling has one maximum per window."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) / np.prod(shape) - 0.5


# (label, x shape, weight shape, params)
_CONV_CASES = [
    ("basic", (2, 3, 9, 9), (4, 3, 3, 3), {}),
    ("stride2 pad1", (2, 4, 10, 9), (6, 4, 3, 3), {"stride": 2, "padding": 1}),
    ("dilation groups", (2, 4, 11, 10), (6, 2, 3, 2), {"dilation": (2, 1), "groups": 2}),
    ("same", (1, 2, 7, 8), (3, 2, 4, 3), {"padding": "same"}),
    ("unbatched", (3, 6, 7), (2, 3, 2, 2), {"stride": (1, 2), "padding": (1, 0)}),
    ("2-D image", (12, 11), (3, 3), {"stride": 2}),
    # large kernels over few channels take the FFT path
    ("2-D image 9x9 same (FFT)", (40, 37), (9, 9), {"padding": "same"}),
    ("11x11 groups (FFT)", (2, 4, 24, 20), (4, 2, 11, 11), {"padding": 5, "groups": 2}),
]
# (label, x shape, params): the first two for max and average pooling alike
_WINDOW_CASES = [
    ("2x2", (2, 3, 8, 8), {"kernel_size": 2}),
    (
        "3x3 s2 p1 ceil",
        (2, 2, 9, 10),
        {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    ),  # fmt: skip
]
_POOL_CASES = [
    *_WINDOW_CASES,
    ("dilated", (1, 2, 11, 9), {"kernel_size": (2, 3), "stride": 1, "dilation": 2}),
    ("unbatched", (3, 7, 7), {"kernel_size": 3, "stride": 2}),
]
_AVG_CASES = [
    *_WINDOW_CASES,
    (
        "exclude pad",
        (1, 2, 7, 6),
        {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
    ),  # fmt: skip
    ("divisor override", (1, 2, 6, 6), {"kernel_size": 2, "divisor_override": 3}),
]
_ACTIVATIONS: list[tuple[str, dict]] = [
    ("relu", {}),
    ("leaky_relu", {"negative_slope": 0.1}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("softmax", {"axis": 1}),
    ("log_softmax", {"axis": -1}),
]


Case = tuple[str, str, Callable, Callable, list, dict]


def _classic_cases(rng: np.random.Generator) -> Iterator[Case]:
    """The 2-D core: conv2d, max/avg/adaptive pooling, linear, activations, batch_norm2d
    and cross_entropy."""
    for label, xs, ws, params in _CONV_CASES:
        x, w = rng.standard_normal(xs), rng.standard_normal(ws)
        b = None if len(ws) == 2 else rng.standard_normal(ws[0])
        y = reference.conv2d(x, w, b, **params)
        g = rng.standard_normal(y.shape)
        yield "conv2d", label, ops.conv2d, reference.conv2d, [x, w, b], params
        yield ("conv2d_backward", label, ops.conv2d_backward, reference.conv2d_backward,
               [g, x, w, b], params)  # fmt: skip
    for label, xs, params in _POOL_CASES:
        x = _distinct(rng, xs)
        g = rng.standard_normal(reference.max_pool2d(x, **params).shape)
        yield "max_pool2d", label, ops.max_pool2d, reference.max_pool2d, [x], params
        yield ("max_pool2d_backward", label, ops.max_pool2d_backward,
               reference.max_pool2d_backward, [g, x], params)  # fmt: skip
    for label, xs, params in _AVG_CASES:
        x = rng.standard_normal(xs)
        g = rng.standard_normal(reference.avg_pool2d(x, **params).shape)
        yield "avg_pool2d", label, ops.avg_pool2d, reference.avg_pool2d, [x], params
        yield ("avg_pool2d_backward", label, ops.avg_pool2d_backward,
               reference.avg_pool2d_backward, [g, x], params)  # fmt: skip
    x, w, b = rng.standard_normal((5, 7)), rng.standard_normal((3, 7)), rng.standard_normal(3)
    g = rng.standard_normal((5, 3))
    yield "linear", "(5, 7) -> 3", ops.linear, reference.linear, [x, w, b], {}
    yield ("linear_backward", "(5, 7) -> 3", ops.linear_backward, reference.linear_backward,
           [g, x, w, b], {})  # fmt: skip
    for name, params in _ACTIVATIONS:
        x = rng.standard_normal((4, 6)) * 3
        g = rng.standard_normal((4, 6))
        fwd, bwd = getattr(ops, name), getattr(ops, name + "_backward")
        yield name, "(4, 6)", fwd, getattr(reference, name), [x], params
        yield (name + "_backward", "(4, 6)", bwd, getattr(reference, name + "_backward"),
               [g, x], params)  # fmt: skip
    for label, xs, size in (("7x9 -> 3x4", (2, 3, 7, 9), (3, 4)), ("global", (2, 2, 5, 5), 1)):
        x = rng.standard_normal(xs)
        g = rng.standard_normal(reference.adaptive_avg_pool2d(x, size).shape)
        yield ("adaptive_avg_pool2d", label, ops.adaptive_avg_pool2d,
               reference.adaptive_avg_pool2d, [x], {"output_size": size})  # fmt: skip
        yield ("adaptive_avg_pool2d_backward", label, ops.adaptive_avg_pool2d_backward,
               reference.adaptive_avg_pool2d_backward, [g, x], {"output_size": size})  # fmt: skip
    x = rng.standard_normal((3, 4, 5, 6)) * 2 + 1
    stats = [rng.standard_normal(4), rng.random(4) + 0.5, rng.standard_normal(4),
             rng.standard_normal(4)]  # fmt: skip
    g = rng.standard_normal(x.shape)
    for training in (True, False):
        label = "batch statistics" if training else "running statistics"
        # copies: a training-mode forward updates the running statistics in place
        yield ("batch_norm2d", label, ops.batch_norm2d, reference.batch_norm2d,
               [x, *(a.copy() for a in stats)], {"training": training})  # fmt: skip
        yield ("batch_norm2d_backward", label, ops.batch_norm2d_backward,
               reference.batch_norm2d_backward, [g, x, *stats], {"training": training})  # fmt: skip
    logits, target = rng.standard_normal((6, 5)) * 2, rng.integers(0, 5, 6)
    for reduction, smoothing in (("mean", 0.0), ("sum", 0.1), ("none", 0.2)):
        params = {"reduction": reduction, "label_smoothing": smoothing}
        label = f"{reduction}, smoothing {smoothing}"
        yield ("cross_entropy", label, ops.cross_entropy, reference.cross_entropy,
               [logits, target], params)  # fmt: skip
        yield ("cross_entropy_backward", label, ops.cross_entropy_backward,
               reference.cross_entropy_backward, [logits, target], params)  # fmt: skip


_MORE_ACTIVATIONS: list[tuple[str, dict]] = [
    ("hardtanh", {"min_val": -0.5, "max_val": 2.0}),
    ("relu6", {}),
    ("hardsigmoid", {}),
    ("hardswish", {}),
    ("elu", {"alpha": 0.5}),
    ("selu", {}),
    ("celu", {"alpha": 1.5}),
    ("gelu", {}),
    ("gelu", {"approximate": "tanh"}),
    ("silu", {}),
    ("mish", {}),
    ("softplus", {"beta": 2.0, "threshold": 3.0}),
]


def _with(fn: Callable, *fixed: Any, at: int = 1) -> Callable:
    """``fn`` with non-array arguments ``fixed`` inserted at position ``at`` of the arrays."""

    def call(*arrays: Any, **kwargs: Any) -> Any:
        return fn(*arrays[:at], *fixed, *arrays[at:], **kwargs)

    return call


def _normact_cases(rng: np.random.Generator) -> Iterator[Case]:
    """The activations of ops.activation_more, batch_norm in 1-D to 3-D, group_norm,
    layer_norm, instance_norm and dropout with a given mask."""
    for name, params in _MORE_ACTIVATIONS:
        x, g = rng.standard_normal((4, 6)) * 3, rng.standard_normal((4, 6))
        label = ", ".join(f"{k}={v}" for k, v in params.items()) or "(4, 6)"
        yield name, label, getattr(ops, name), getattr(reference, name), [x], params
        yield (name + "_backward", label, getattr(ops, name + "_backward"),
               getattr(reference, name + "_backward"), [g, x], params)  # fmt: skip
    x, w, g = rng.standard_normal((3, 4, 5)), rng.standard_normal(4), rng.standard_normal((3, 4, 5))
    yield "prelu", "per channel", ops.prelu, reference.prelu, [x, w], {}
    yield ("prelu_backward", "per channel", ops.prelu_backward, reference.prelu_backward,
           [g, x, w], {})  # fmt: skip
    for shape in ((6, 3), (2, 3, 2, 3, 2)):
        x, g = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape)
        stats = [rng.standard_normal(3), rng.random(3) + 0.5, rng.standard_normal(3),
                 rng.standard_normal(3)]  # fmt: skip
        for training in (True, False):
            label = f"{len(shape) - 2}-D, {'batch' if training else 'running'} statistics"
            yield ("batch_norm", label, ops.batch_norm, reference.batch_norm,
                   [x, *(a.copy() for a in stats)], {"training": training})  # fmt: skip
            yield ("batch_norm_backward", label, ops.batch_norm_backward,
                   reference.batch_norm_backward, [g, x, *stats],
                   {"training": training})  # fmt: skip
    x, g = rng.standard_normal((2, 6, 3, 2)) + 1, rng.standard_normal((2, 6, 3, 2))
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    yield ("group_norm", "3 groups", _with(ops.group_norm, 3), _with(reference.group_norm, 3),
           [x, w, b], {})  # fmt: skip
    yield ("group_norm_backward", "3 groups", _with(ops.group_norm_backward, 3, at=2),
           _with(reference.group_norm_backward, 3, at=2), [g, x, w, b], {})  # fmt: skip
    ws, bs = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    yield ("layer_norm", "(3, 2)", _with(ops.layer_norm, (3, 2)),
           _with(reference.layer_norm, (3, 2)), [x, ws, bs], {})  # fmt: skip
    yield ("layer_norm_backward", "(3, 2)", _with(ops.layer_norm_backward, (3, 2), at=2),
           _with(reference.layer_norm_backward, (3, 2), at=2), [g, x, ws, bs], {})  # fmt: skip
    stats = [rng.standard_normal(6), rng.random(6) + 0.5, w, b]
    for use in (True, False):
        label = "input statistics" if use else "running statistics"
        yield ("instance_norm", label, ops.instance_norm, reference.instance_norm,
               [x, *(a.copy() for a in stats)], {"use_input_stats": use})  # fmt: skip
        yield ("instance_norm_backward", label, ops.instance_norm_backward,
               reference.instance_norm_backward, [g, x, *stats],
               {"use_input_stats": use})  # fmt: skip
    mask = (rng.random((2, 6, 1, 1)) >= 0.5) * 2.0
    # an element mask for dropout, a channel mask for the others: (N, C, 1, ...)
    for name, shape in (("dropout", (3, 4)), ("dropout1d", (2, 3, 4)), ("dropout2d", x.shape),
                        ("dropout3d", (2, 3, 2, 2, 2))):  # fmt: skip
        mask_shape = shape if name == "dropout" else (*shape[:2], *[1] * (len(shape) - 2))
        xd = x if name == "dropout2d" else rng.standard_normal(shape)
        md = mask if name == "dropout2d" else (rng.random(mask_shape) >= 0.5) * 2.0
        yield (name, "given mask", lambda x, m, op=getattr(ops, name), **k: op(x, mask=m, **k),
               lambda x, m: reference.dropout(x, mask=m), [xd, md], {})  # fmt: skip
    yield ("dropout_backward", "channel mask", ops.dropout_backward, reference.dropout_backward,
           [g, mask], {})  # fmt: skip


def _loss_cases(rng: np.random.Generator) -> Iterator[Case]:
    """The losses beyond plain cross_entropy: class weights, ignored and N-d targets,
    probability targets, the binary and the elementwise losses, forward and backward."""
    target = rng.integers(0, 4, (2, 3, 2))
    target[0, 1] = -100
    probs = rng.dirichlet(np.ones(4), 5)
    x, y = rng.standard_normal((4, 5)) * 2, rng.standard_normal((4, 5))
    p, q = rng.uniform(0.02, 0.98, (4, 5)), rng.uniform(0, 1, (4, 5))
    log_p = np.log(rng.dirichlet(np.ones(5), 4))
    cases = [
        ("cross_entropy", "N-d weighted",
         [rng.standard_normal((2, 4, 3, 2)) * 2, target, rng.uniform(0.5, 2, 4)],
         {"label_smoothing": 0.1}),
        ("cross_entropy", "probs, weighted",
         [rng.standard_normal((5, 4)), probs, rng.uniform(0.5, 2, 4)],
         {"reduction": "sum", "label_smoothing": 0.2}),
        ("nll_loss", "N-d weighted",
         [np.log(rng.dirichlet(np.ones(4), (2, 3, 2))).transpose(0, 3, 1, 2), target,
          rng.uniform(0.5, 2, 4)], {}),
        ("binary_cross_entropy", "weight (5,)", [p, q, rng.uniform(0.5, 2, 5)], {}),
        ("binary_cross_entropy_with_logits", "weight (4, 1)",
         [x, q, rng.uniform(0.5, 2, (4, 1))], {"reduction": "none"}),
        ("mse_loss", "mean", [x, y], {}),
        ("l1_loss", "sum", [x, y], {"reduction": "sum"}),
        ("smooth_l1_loss", "beta 0.5", [x, y], {"beta": 0.5}),
        ("huber_loss", "delta 1.5, none", [x, y], {"delta": 1.5, "reduction": "none"}),
        ("kl_div", "batchmean", [log_p, np.exp(log_p[::-1])], {"reduction": "batchmean"}),
        ("kl_div", "log_target, sum", [log_p, log_p[::-1]], {"reduction": "sum",
                                                              "log_target": True}),
    ]  # fmt: skip
    for name, label, inputs, params in cases:
        yield name, label, getattr(ops, name), getattr(reference, name), inputs, params
        yield (name + "_backward", label, getattr(ops, name + "_backward"),
               getattr(reference, name + "_backward"), inputs, params)  # fmt: skip


# (label, x shape, params) of interpolate: every mode, size and scale_factor, up and down
_RESIZE_CASES = [
    ("nearest 1-D x2.5", (2, 3, 6), {"scale_factor": 2.5}),
    ("nearest 2-D size", (2, 2, 5, 7), {"size": (8, 4)}),
    ("nearest-exact 3-D", (1, 2, 3, 4, 5), {"size": (5, 3, 7), "mode": "nearest-exact"}),
    ("linear x1.7", (2, 3, 7), {"scale_factor": 1.7, "mode": "linear"}),
    ("bilinear corners", (2, 2, 5, 6), {"size": (9, 4), "mode": "bilinear",
                                        "align_corners": True}),
    ("bilinear x0.6", (1, 3, 8, 9), {"scale_factor": 0.6, "mode": "bilinear"}),
    ("bicubic", (1, 2, 5, 6), {"size": (7, 11), "mode": "bicubic"}),
    ("bicubic corners", (1, 2, 6, 5), {"scale_factor": (0.7, 1.5), "mode": "bicubic",
                                       "align_corners": True}),
    ("trilinear", (1, 2, 3, 4, 5), {"size": (4, 6, 3), "mode": "trilinear"}),
    ("area", (2, 2, 9, 7), {"size": (4, 5), "mode": "area"}),
]  # fmt: skip


def _resize_cases(rng: np.random.Generator) -> Iterator[Case]:
    """interpolate in every mode, pixel_shuffle and pixel_unshuffle."""
    for label, xs, params in _RESIZE_CASES:
        x = rng.standard_normal(xs)
        g = rng.standard_normal(reference.interpolate(x, **params).shape)
        yield "interpolate", label, ops.interpolate, reference.interpolate, [x], params
        yield ("interpolate_backward", label, ops.interpolate_backward,
               reference.interpolate_backward, [g, x], params)  # fmt: skip
    # (op, x shape, grad_out shape, factor's name and value)
    for name, xs, gs, params in (
        ("pixel_shuffle", (2, 8, 3, 4), (2, 2, 6, 8), {"upscale_factor": 2}),
        ("pixel_unshuffle", (3, 6, 9), (27, 2, 3), {"downscale_factor": 3}),
    ):
        x, g = rng.standard_normal(xs), rng.standard_normal(gs)
        yield name, str(xs), getattr(ops, name), getattr(reference, name), [x], params
        yield (name + "_backward", str(xs), getattr(ops, name + "_backward"),
               getattr(reference, name + "_backward"), [g, x], params)  # fmt: skip


# (op, label, x shape, weight shape, params): conv1d/3d and the transposed convolutions
_CONV_ND_CASES = [
    ("conv1d", "stride2 pad1 groups", (2, 4, 11), (6, 2, 3),
     {"stride": 2, "padding": 1, "groups": 2}),
    ("conv1d", "same even kernel dilated", (5, 9), (3, 5, 4), {"padding": "same", "dilation": 2}),
    ("conv3d", "stride pad dilation groups", (2, 4, 5, 6, 5), (4, 2, 2, 3, 2),
     {"stride": (1, 2, 1), "padding": 1, "dilation": (2, 1, 1), "groups": 2}),
    ("conv3d", "same unbatched", (2, 4, 3, 5), (3, 2, 3, 2, 2), {"padding": "same"}),
    ("conv_transpose1d", "stride2 output_padding groups", (2, 4, 6), (4, 3, 3),
     {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}),
    ("conv_transpose2d", "dilated", (2, 3, 4, 5), (3, 2, 3, 2),
     {"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2)}),
    ("conv_transpose3d", "stride2 unbatched", (2, 3, 2, 3), (2, 3, 2, 2, 2),
     {"stride": 2, "output_padding": (1, 0, 1)}),
]  # fmt: skip
# (label, x shape, pad, mode)
_PAD_CASES = [
    ("constant crop", (2, 3, 5), (2, -1), "constant"),
    ("reflect 2-D", (2, 2, 4, 5), (1, 3, 2, 0), "reflect"),
    ("replicate 3-D", (1, 2, 3, 2, 4), (1, 2, 0, 1, 2, 1), "replicate"),
    ("circular crop", (2, 6), (-2, 3), "circular"),
]


def _conv_nd_cases(rng: np.random.Generator) -> Iterator[Case]:
    """pad, conv1d, conv3d and conv_transpose1d/2d/3d, forward and backward."""
    for label, xs, pad, mode in _PAD_CASES:
        x = rng.standard_normal(xs)
        g = rng.standard_normal(reference.pad(x, pad, mode).shape)
        params = {"pad": pad, "mode": mode}
        yield "pad", label, ops.pad, reference.pad, [x], params
        yield "pad_backward", label, ops.pad_backward, reference.pad_backward, [g, x], params
    for name, label, xs, ws, params in _CONV_ND_CASES:
        x, w = rng.standard_normal(xs), rng.standard_normal(ws)
        b = rng.standard_normal(ws[1] * params.get("groups", 1) if "transpose" in name else ws[0])
        forward, oracle = getattr(ops, name), getattr(reference, name)
        g = rng.standard_normal(oracle(x, w, b, **params).shape)
        yield name, label, forward, oracle, [x, w, b], params
        yield (name + "_backward", label, getattr(ops, name + "_backward"),
               getattr(reference, name + "_backward"), [g, x, w, b], params)  # fmt: skip


# (dims, label, x shape, params) for max (with dilation) and average pooling in 1-D and 3-D
_POOL_ND_CASES = [
    (1, "k3 s2 p1 ceil", (2, 3, 11), {"kernel_size": 3, "stride": 2, "padding": 1,
                                      "ceil_mode": True}),
    (1, "unbatched", (3, 8), {"kernel_size": 2}),
    (3, "2x2x2", (2, 2, 4, 4, 6), {"kernel_size": 2}),
    (3, "k3 s2 p1 ceil", (1, 2, 5, 6, 5), {"kernel_size": 3, "stride": 2, "padding": 1,
                                           "ceil_mode": True}),
]  # fmt: skip


# (dims, x shape, params) of lp_pool1d/2d/3d
_LP_CASES = [
    (1, (2, 3, 9), {"norm_type": 2.0, "kernel_size": 3, "stride": 2, "ceil_mode": True}),
    (2, (2, 2, 6, 7), {"norm_type": 1.5, "kernel_size": 2}),
    (3, (1, 2, 4, 5, 4), {"norm_type": 3.0, "kernel_size": (2, 3, 2)}),
]


def _pool_nd_cases(rng: np.random.Generator) -> Iterator[Case]:
    """max/avg pooling in 1-D and 3-D (dilation for max, count_include_pad=False and a
    divisor_override for average), max unpooling, adaptive and LP pooling in 1-D to 3-D."""
    for dims, label, xs, params in _POOL_ND_CASES:
        x = _distinct(rng, xs)
        extra = {"max": {"dilation": (1,) * (dims - 1) + (2,)} if "ceil" in label else {},
                 "avg": {"count_include_pad": False} if "ceil" in label else {}}  # fmt: skip
        if dims == 3 and not extra["avg"]:
            extra["avg"] = {"divisor_override": 3}
        for kind in ("max", "avg"):
            name, kw = f"{kind}_pool{dims}d", {**params, **extra[kind]}
            oracle, oracle_bwd = getattr(reference, name), getattr(reference, name + "_backward")
            g = rng.standard_normal(oracle(x, **kw).shape)
            yield name, label, getattr(ops, name), oracle, [x], kw
            yield (name + "_backward", label, getattr(ops, name + "_backward"), oracle_bwd,
                   [g, x], kw)  # fmt: skip
    for dims, xs in ((1, (2, 3, 9)), (2, (1, 2, 6, 7)), (3, (1, 2, 4, 5, 4))):
        x, kw = _distinct(rng, xs), {"kernel_size": 3, "stride": 2, "padding": 1}
        y = getattr(reference, f"max_pool{dims}d")(x, **kw)
        idx, g = reference.max_pool_indices(x, **kw), rng.standard_normal(xs)
        kw["output_size"] = xs[2:]
        name = f"max_unpool{dims}d"
        oracle, oracle_bwd = getattr(reference, name), getattr(reference, name + "_backward")
        yield name, "k3 s2 p1", getattr(ops, name), oracle, [y, idx], kw
        yield (name + "_backward", "k3 s2 p1", getattr(ops, name + "_backward"), oracle_bwd,
               [g, y, idx], kw)  # fmt: skip
    for dims, xs, size in ((1, (2, 3, 10), 4), (2, (2, 2, 7, 9), (3, 4)),
                           (3, (1, 2, 5, 4, 6), (2, 3, None))):  # fmt: skip
        x, kw = _distinct(rng, xs), {"output_size": size}
        for kind in ("avg", "max") if dims != 2 else ("max",):
            name = f"adaptive_{kind}_pool{dims}d"
            oracle, oracle_bwd = getattr(reference, name), getattr(reference, name + "_backward")
            g = rng.standard_normal(oracle(x, **kw).shape)
            yield name, f"to {size}", getattr(ops, name), oracle, [x], kw
            yield (name + "_backward", f"to {size}", getattr(ops, name + "_backward"), oracle_bwd,
                   [g, x], kw)  # fmt: skip
    for dims, xs, kw in _LP_CASES:
        x, name = rng.uniform(0.5, 2, xs), f"lp_pool{dims}d"
        oracle, oracle_bwd = getattr(reference, name), getattr(reference, name + "_backward")
        g, label = rng.standard_normal(oracle(x, **kw).shape), f"p={kw['norm_type']}"
        yield name, label, getattr(ops, name), oracle, [x], kw
        yield (name + "_backward", label, getattr(ops, name + "_backward"), oracle_bwd,
               [g, x], kw)  # fmt: skip


# One generator per family of ops, each yielding (op, case, fast function, oracle,
# numpy inputs, params); a new family adds its generator here.
_FAMILIES: tuple[Callable[[np.random.Generator], Iterator[Case]], ...] = (
    _classic_cases,
    _normact_cases,
    _loss_cases,
    _resize_cases,
    _conv_nd_cases,
    _pool_nd_cases,
)


def _cases(rng: np.random.Generator) -> Iterator[Case]:
    """Yield every case of every family, in order, from one generator."""
    for family in _FAMILIES:
        yield from family(rng)


def run_checks(backend: Backend, seed: int = 0) -> list[CheckResult]:
    """Compare every operation on ``backend`` with the oracle in float32 and float64."""
    results = []
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(seed)
        for op, case, fast, oracle, inputs, params in _cases(rng):
            cast = [a if a is None or a.dtype.kind in "iu" else a.astype(dtype) for a in inputs]
            desired = oracle(*cast, **params)
            actual = fast(*cast, **params, backend=backend)
            pairs = (
                zip(actual, desired, strict=True)
                if isinstance(desired, tuple)
                else [(actual, desired)]
            )
            error = max(0.0 if d is None and a is None else relative_error(a, d) for a, d in pairs)
            dtypes_ok = all(
                a is None or to_numpy(a).dtype == dtype
                for a in (actual if isinstance(actual, tuple) else (actual,))
            )
            results.append(
                CheckResult(op, case, np.dtype(dtype).name,
                            error if dtypes_ok else float("inf"), TOLERANCE[np.dtype(dtype)])
            )  # fmt: skip
    return results
