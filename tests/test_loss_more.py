"""The losses beyond plain cross_entropy: weights, ignore_index, N-d and probability targets,
nll_loss, the binary and the elementwise losses, and their nn modules.

Each op against the per-sample float64 oracle, central differences and (where torch
imports) PyTorch; the subtle PyTorch rules have named tests. The autograd rules of
every loss are in tests/test_autograd.py (RULE_CASES).
"""

from __future__ import annotations

import json
from contextlib import nullcontext

import numpy as np
import pytest
from helpers import assert_close, assert_grad_close, numerical_grad, run_op, seeds, vjp_objective
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import nn
from cnnarray import reference as ref

REDUCTIONS = ["mean", "sum", "none"]


# --------------------------------------------------------------------------- classification


@st.composite
def class_calls(draw):
    """(logits shape, target, weight?, reduction, smoothing, probabilities?, seed)."""
    classes = draw(st.integers(1, 5))
    rest = draw(st.sampled_from([(), (2,), (3, 1), (2, 2)]))
    batched = draw(st.integers(0, 4)) > 0
    shape = (draw(st.integers(1, 3)), classes, *rest) if batched else (classes,)
    probabilities = draw(st.integers(0, 4)) == 0
    ignore = draw(st.sampled_from([-100, -1] if probabilities else [-100, 0, 1]))
    return (shape, draw(st.booleans()), draw(st.sampled_from(REDUCTIONS)),
            draw(st.sampled_from([0.0, 0.2, 1.0])), probabilities, ignore, draw(seeds))  # fmt: skip


def _class_data(call, dtype):
    shape, weighted, reduction, smoothing, probabilities, ignore_index, seed = call
    rng = np.random.default_rng(seed)
    classes = shape[0] if len(shape) == 1 else shape[1]
    batch = () if len(shape) == 1 else shape[:1] + shape[2:]
    logits = (rng.standard_normal(shape) * 2).astype(dtype)
    if probabilities:
        target = rng.dirichlet(np.ones(classes), batch)
        target = np.moveaxis(target, -1, 1 if len(shape) > 1 else 0).astype(dtype)
    else:
        target = np.where(rng.random(batch) < 0.3, ignore_index, rng.integers(0, classes, batch))
    weight = rng.uniform(0.2, 2, classes).astype(dtype) if weighted else None
    g = rng.uniform(-2, 2, batch if reduction == "none" else ()).astype(dtype)
    kw = {"weight": weight, "ignore_index": ignore_index, "reduction": reduction}
    return logits, target, g, kw, smoothing


@settings(max_examples=40, deadline=None)
@given(call=class_calls())
def test_cross_entropy_and_nll_loss_match_reference(backend, dtype, call):
    logits, target, g, kw, smoothing = _class_data(call, dtype)
    ce = {**kw, "label_smoothing": smoothing}
    loss = run_op(cnnarray.cross_entropy, logits, target, backend=backend, **ce)
    assert_close(loss, ref.cross_entropy(logits, target, **ce), dtype=dtype, backend=backend)
    grad = run_op(cnnarray.cross_entropy_backward, logits, target, grad_out=g, backend=backend,
                  **ce)  # fmt: skip
    desired = ref.cross_entropy_backward(logits, target, grad_out=g, **ce)
    assert_close(grad, desired, dtype=dtype, backend=backend)
    if target.dtype.kind == "f":
        return
    loss = run_op(cnnarray.nll_loss, logits, target, backend=backend, **kw)
    assert_close(loss, ref.nll_loss(logits, target, **kw), dtype=dtype, backend=backend)
    grad = run_op(cnnarray.nll_loss_backward, logits, target, grad_out=g, backend=backend, **kw)
    desired = ref.nll_loss_backward(logits, target, grad_out=g, **kw)
    assert_close(grad, desired, dtype=dtype, backend=backend)


@settings(max_examples=25, deadline=None)
@given(call=class_calls())
def test_cross_entropy_and_nll_loss_match_torch(backend, call):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    logits, target, g, kw, smoothing = _class_data(call, np.float64)
    tkw = {**kw, "weight": None if kw["weight"] is None else torch.tensor(kw["weight"])}
    cases = [(cnnarray.cross_entropy, cnnarray.cross_entropy_backward, F.cross_entropy,
              {"label_smoothing": smoothing})]  # fmt: skip
    if target.dtype.kind != "f":
        cases.append((cnnarray.nll_loss, cnnarray.nll_loss_backward, F.nll_loss, {}))
    for op, backward, torch_op, extra in cases:
        tl = torch.tensor(logits, requires_grad=True)
        tloss = torch_op(tl, torch.tensor(target), **tkw, **extra)
        tloss.backward(torch.tensor(g))
        loss = run_op(op, logits, target, backend=backend, **kw, **extra)
        assert_close(loss, tloss.detach().numpy(), dtype=np.float64, backend=backend)
        grad = run_op(backward, logits, target, grad_out=g, backend=backend, **kw, **extra)
        assert_close(grad, tl.grad.numpy(), dtype=np.float64, backend=backend)


@pytest.mark.parametrize("probabilities", [False, True], ids=["indices", "probabilities"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_classification_backward_matches_finite_differences(backend, reduction, probabilities):
    call = ((2, 3, 2), True, reduction, 0.3, probabilities, -100, 11)
    logits, target, g, kw, smoothing = _class_data(call, np.float64)
    ops = [
        (cnnarray.cross_entropy, cnnarray.cross_entropy_backward, {"label_smoothing": smoothing})
    ]
    if not probabilities:
        ops.append((cnnarray.nll_loss, cnnarray.nll_loss_backward, {}))
    for op, backward, extra in ops:
        grad = run_op(backward, logits, target, grad_out=g, backend=backend, **kw, **extra)

        def objective(v, op=op, extra=extra):
            out = op(cnnarray.asarray(v, backend), cnnarray.asarray(target, backend), **kw, **extra)
            return vjp_objective(out, g)

        assert_grad_close(grad, numerical_grad(objective, logits), op.__name__)


def test_weighted_mean_with_ignored_targets_divides_by_the_counted_weights(backend):
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [1.0, -2.0, 3.0], [0.0, 1.0, 0.0]])
    target, weight = np.array([0, -100, 2, 1]), np.array([0.5, 2.0, 3.0])
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    picked = [(0, 0), (2, 2), (3, 1)]  # the ignored row 1 counts nowhere
    desired = -sum(weight[c] * log_p[r, c] for r, c in picked) / (0.5 + 3.0 + 2.0)
    loss = run_op(cnnarray.cross_entropy, logits, target, weight, backend=backend)
    assert_close(loss, desired, dtype=np.float64, backend=backend)
    nll = run_op(cnnarray.nll_loss, log_p, target, weight, backend=backend)
    assert_close(nll, desired, dtype=np.float64, backend=backend)
    grad = cnnarray.to_numpy(run_op(cnnarray.cross_entropy_backward, logits, target, weight,
                                    backend=backend))  # fmt: skip
    np.testing.assert_array_equal(grad[1], 0.0)


def test_label_smoothing_with_weight_weights_each_class_of_the_smoothing_term(backend):
    # PyTorch: (1 - e) * weighted nll + e / C * sum_c w_c * (-log p_c), both over sum w[y]
    logits = np.array([[1.0, 0.0, -1.0, 2.0], [0.0, 3.0, 1.0, -1.0], [2.0, 2.0, 0.0, 0.0]])
    target, weight, e = np.array([3, 1, -100]), np.array([1.0, 0.5, 2.0, 4.0]), 0.3
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    nll = -(weight[3] * log_p[0, 3] + weight[1] * log_p[1, 1])
    smooth = -(log_p[:2] * weight).sum()
    desired = ((1 - e) * nll + e / 4 * smooth) / (weight[3] + weight[1])
    loss = run_op(cnnarray.cross_entropy, logits, target, weight, label_smoothing=e,
                  backend=backend)  # fmt: skip
    assert_close(loss, desired, dtype=np.float64, backend=backend)


def test_probability_targets_average_over_samples_not_weights(backend):
    rng = np.random.default_rng(3)
    logits, q = rng.standard_normal((4, 3)), rng.dirichlet(np.ones(3), 4)
    weight = np.array([1.0, 2.0, 3.0])
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    loss = run_op(cnnarray.cross_entropy, logits, q, weight, backend=backend)
    assert_close(loss, -(q * weight * log_p).sum() / 4, dtype=np.float64, backend=backend)
    # one-hot probabilities, unweighted, give the class-index loss
    target = np.array([2, 0, 1, 1])
    onehot = np.eye(3)[target]
    assert_close(run_op(cnnarray.cross_entropy, logits, onehot, backend=backend),
                 ref.cross_entropy(logits, target), dtype=np.float64, backend=backend)  # fmt: skip


@pytest.mark.parametrize("weighted", [False, True])
def test_all_targets_ignored_mean_is_nan_with_zero_gradient(backend, weighted):
    logits, target = np.ones((3, 4)), np.full(3, -100)
    weight = np.ones(4) if weighted else None
    for op, backward in ((cnnarray.cross_entropy, cnnarray.cross_entropy_backward),
                         (cnnarray.nll_loss, cnnarray.nll_loss_backward)):  # fmt: skip
        assert np.isnan(cnnarray.to_numpy(run_op(op, logits, target, weight, backend=backend)))
        total = run_op(op, logits, target, weight, reduction="sum", backend=backend)
        assert float(cnnarray.to_numpy(total)) == 0.0
        grad = run_op(backward, logits, target, weight, backend=backend)
        np.testing.assert_array_equal(cnnarray.to_numpy(grad), 0.0)
    # one sample, unbatched: its target ignored
    assert np.isnan(float(cnnarray.cross_entropy(np.ones(4), np.array(-100))))


def test_ignore_index_inside_the_class_range(backend):
    logits = np.random.default_rng(4).standard_normal((5, 3))
    target = np.array([0, 1, 2, 1, 0])
    loss = run_op(cnnarray.cross_entropy, logits, target, ignore_index=1, backend=backend)
    keep = target != 1
    assert_close(loss, ref.cross_entropy(logits[keep], target[keep]), dtype=np.float64,
                 backend=backend)  # fmt: skip


def test_train_step_path_is_unchanged_by_the_new_options():
    """(N, C) logits, index targets, nothing weighted or ignored: the old result, float32."""
    rng = np.random.default_rng(5)
    logits, target = rng.standard_normal((8, 10)).astype(np.float32), rng.integers(0, 10, 8)
    for kw in ({}, {"label_smoothing": 0.1}, {"reduction": "sum"}):
        loss = cnnarray.cross_entropy(logits, target, **kw)
        assert_close(loss, ref.cross_entropy(logits, target, **kw), dtype=np.float32)
        grad = cnnarray.cross_entropy_backward(logits, target, **kw)
        assert_close(grad, ref.cross_entropy_backward(logits, target, **kw), dtype=np.float32)


# --------------------------------------------------------------------------- elementwise

# case -> (op, options); a tuple option is the shape of a weight array to draw
_POINTWISE = {
    "mse_loss": ("mse_loss", {}),
    "l1_loss": ("l1_loss", {}),
    "smooth_l1_loss": ("smooth_l1_loss", {"beta": 0.6}),
    "smooth_l1_loss_beta0": ("smooth_l1_loss", {"beta": 0.0}),
    "huber_loss": ("huber_loss", {"delta": 1.4}),
    "kl_div": ("kl_div", {}),
    "kl_div_log_target": ("kl_div", {"log_target": True}),
    "bce": ("binary_cross_entropy", {}),
    "bce_weighted": ("binary_cross_entropy", {"weight": (4,)}),
    "bce_logits_weighted": ("binary_cross_entropy_with_logits", {"weight": (3, 1)}),
    "bce_logits_pos_weight": ("binary_cross_entropy_with_logits", {"pos_weight": (4,)}),
}
_TWO_GRADS = {"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"}


def _pointwise_data(case, shape, reduction, dtype, seed=0):
    rng = np.random.default_rng(seed)
    name, options = _POINTWISE[case]
    kw = {k: rng.uniform(0.5, 2, v).astype(dtype) if isinstance(v, tuple) else v
          for k, v in options.items()}  # fmt: skip
    if name == "binary_cross_entropy":
        x, y = rng.uniform(0.05, 0.95, shape), rng.uniform(0, 1, shape)
    elif name == "binary_cross_entropy_with_logits":
        x, y = rng.standard_normal(shape) * 3, rng.uniform(0, 1, shape)
    elif name == "kl_div":
        x, y = np.log(rng.uniform(0.05, 1, shape)), rng.uniform(0, 1, shape)
        if kw.get("log_target"):
            y = np.log(y)
    else:  # away from the kinks of l1, smooth_l1 and huber, for the differences
        x, y = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
        y[np.abs(np.abs(x - y) - kw.get("beta", kw.get("delta", 0.0))) < 1e-3] += 0.01
    g = rng.uniform(-2, 2, shape if reduction == "none" else ())
    return name, x.astype(dtype), y.astype(dtype), g.astype(dtype), {**kw, "reduction": reduction}


def _reductions(name):
    return [*REDUCTIONS, "batchmean"] if name == "kl_div" else REDUCTIONS


_CASES = [(c, r) for c, (name, _) in _POINTWISE.items() for r in _reductions(name)]


@pytest.mark.parametrize("case, reduction", _CASES, ids=[f"{c}-{r}" for c, r in _CASES])
def test_pointwise_loss_matches_reference_and_finite_differences(backend, dtype, case, reduction):
    name, x, y, g, kw = _pointwise_data(case, (3, 4), reduction, dtype)
    op, backward = getattr(cnnarray, name), getattr(cnnarray, f"{name}_backward")
    loss = run_op(op, x, y, backend=backend, **kw)
    assert_close(loss, getattr(ref, name)(x, y, **kw), dtype=dtype, backend=backend)
    grads = run_op(backward, x, y, grad_out=g, backend=backend, **kw)
    desired = getattr(ref, f"{name}_backward")(x, y, grad_out=g, **kw)
    assert isinstance(grads, tuple) == (name in _TWO_GRADS)
    for got, want in zip(*((grads, desired) if name in _TWO_GRADS else ((grads,), (desired,))),
                         strict=True):  # fmt: skip
        assert_close(got, want, dtype=dtype, backend=backend)
    if dtype != np.float64:
        return
    args = [x, y]
    for i, got in enumerate(grads if name in _TWO_GRADS else (grads,)):

        def objective(v, i=i):
            call = [cnnarray.asarray(a, backend) for a in args]
            call[i] = cnnarray.asarray(v, backend)
            return vjp_objective(op(*call, **kw), g)

        assert_grad_close(got, numerical_grad(objective, args[i]), f"{case} grad {i}")


@pytest.mark.parametrize("case", list(_POINTWISE))
def test_pointwise_loss_matches_torch(backend, case):
    torch = pytest.importorskip("torch")
    for reduction in _reductions(_POINTWISE[case][0]):
        name, x, y, g, kw = _pointwise_data(case, (2, 3, 4), reduction, np.float64, seed=7)
        tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        tx = torch.tensor(x, requires_grad=True)
        ty = torch.tensor(y, requires_grad=name in _TWO_GRADS)
        with (
            pytest.warns(UserWarning) if (name, reduction) == ("kl_div", "mean") else nullcontext()
        ):
            tloss = getattr(torch.nn.functional, name)(tx, ty, **tkw)
        tloss.backward(torch.tensor(g))
        loss = run_op(getattr(cnnarray, name), x, y, backend=backend, **kw)
        assert_close(loss, tloss.detach().numpy(), dtype=np.float64, backend=backend)
        grads = run_op(getattr(cnnarray, f"{name}_backward"), x, y, grad_out=g, backend=backend,
                       **kw)  # fmt: skip
        if name in _TWO_GRADS:
            assert_close(grads[1], ty.grad.numpy(), dtype=np.float64, backend=backend)
            grads = grads[0]
        assert_close(grads, tx.grad.numpy(), dtype=np.float64, backend=backend)


def test_kl_div_batchmean_divides_by_the_batch_size_and_mean_by_every_element(backend):
    rng = np.random.default_rng(8)
    log_p, q = np.log(rng.dirichlet(np.ones(5), 4)), rng.dirichlet(np.ones(5), 4)
    total = float((q * (np.log(q) - log_p)).sum())
    for reduction, divisor in (("batchmean", 4), ("mean", 20), ("sum", 1)):
        loss = run_op(cnnarray.kl_div, log_p, q, reduction=reduction, backend=backend)
        assert_close(loss, total / divisor, dtype=np.float64, backend=backend, err_msg=reduction)
        grad = run_op(cnnarray.kl_div_backward, log_p, q, reduction=reduction, backend=backend)
        assert_close(grad, -q / divisor, dtype=np.float64, backend=backend, err_msg=reduction)
    # zero target probabilities add 0 (0 log 0), not NaN
    q[0] = [1.0, 0.0, 0.0, 0.0, 0.0]
    loss = run_op(cnnarray.kl_div, log_p, q, reduction="none", backend=backend)
    np.testing.assert_array_equal(cnnarray.to_numpy(loss)[0, 1:], 0.0)


def test_binary_cross_entropy_clamps_each_log_at_minus_100(backend, dtype):
    x, y = np.array([0.0, 1.0, 0.0, 1.0], dtype), np.array([1.0, 0.0, 0.0, 1.0], dtype)
    loss = run_op(cnnarray.binary_cross_entropy, x, y, reduction="none", backend=backend)
    assert_close(loss, [100.0, 100.0, 0.0, 0.0], dtype=dtype, backend=backend)


def test_binary_cross_entropy_with_logits_is_stable_for_huge_logits(backend, dtype):
    x, y = np.array([1e4, -1e4, 1e4, -1e4, 0.0], dtype), np.array([1.0, 0.0, 0.0, 1.0, 1.0], dtype)
    loss = run_op(cnnarray.binary_cross_entropy_with_logits, x, y, reduction="none",
                  backend=backend)  # fmt: skip
    assert_close(loss, [0.0, 0.0, 1e4, 1e4, np.log(2.0)], dtype=dtype, backend=backend)
    grad = run_op(cnnarray.binary_cross_entropy_with_logits_backward, x, y, reduction="sum",
                  backend=backend)  # fmt: skip
    assert_close(grad, [0.0, 0.0, 1.0, -1.0, -0.5], dtype=dtype, backend=backend)


def test_huber_is_delta_times_smooth_l1_with_beta_delta(backend):
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal(20) * 3, rng.standard_normal(20)
    huber = run_op(cnnarray.huber_loss, x, y, delta=2.5, backend=backend)
    smooth = run_op(cnnarray.smooth_l1_loss, x, y, beta=2.5, backend=backend)
    assert_close(huber, 2.5 * cnnarray.to_numpy(smooth), dtype=np.float64, backend=backend)


def test_empty_input_mean_is_nan_and_sum_is_zero(backend):
    x = np.ones((0, 3))
    assert np.isnan(float(cnnarray.to_numpy(run_op(cnnarray.mse_loss, x, x, backend=backend))))
    total = run_op(cnnarray.l1_loss, x, x, reduction="sum", backend=backend)
    assert float(cnnarray.to_numpy(total)) == 0.0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: cnnarray.cross_entropy(np.ones((2, 3)), np.array([0, 1]), np.ones(4)),
         ValueError, r"weight must have shape \(3,\), got \(4,\)"),
        (lambda: cnnarray.cross_entropy(np.ones((2, 3)), np.array([0, 1]), "sum"),
         TypeError, "weight must be an array of class weights, got .*pass reduction"),
        (lambda: cnnarray.cross_entropy(np.ones((2, 3, 4)), np.zeros((2, 3), int)),
         ValueError, r"target must have shape \(2, 4\) to match logits of shape \(2, 3, 4\)"),
        (lambda: cnnarray.cross_entropy(np.ones((2, 3)), np.ones((2, 4))),
         TypeError, r"integer class indices, got float64; .*shape of logits, \(2, 3\)"),
        (lambda: cnnarray.cross_entropy(np.ones((2, 3)), np.ones((2, 3)), ignore_index=0),
         ValueError, "ignore_index must be negative with class-probability .* got 0"),
        (lambda: cnnarray.nll_loss(np.ones((2, 3)), np.array([-100, -5])),
         ValueError, r"class indices in \[0, 3\) .* got -5"),
        (lambda: cnnarray.nll_loss(np.ones((2, 3)), np.array([0, 1]), ignore_index=1.5),
         TypeError, "ignore_index must be an int"),
        (lambda: cnnarray.mse_loss(np.ones((2, 3)), np.ones((3, 2))),
         ValueError, r"target must have the shape of input, \(2, 3\), got \(3, 2\)"),
        (lambda: cnnarray.binary_cross_entropy(np.array([0.5, 1.5]), np.ones(2)),
         ValueError, r"input must hold probabilities in \[0, 1\], got values from 0.5 to 1.5"),
        (lambda: cnnarray.binary_cross_entropy(np.ones((2, 3)) / 2, np.ones((2, 3)),
                                               np.ones((2, 1, 3))),
         ValueError, r"weight must broadcast to the shape of input, \(2, 3\), got \(2, 1, 3\)"),
        (lambda: cnnarray.binary_cross_entropy_with_logits(np.ones(3), np.ones(3),
                                                           pos_weight=np.ones(2)),
         ValueError, "pos_weight must broadcast"),
        (lambda: cnnarray.kl_div(np.ones(3), np.ones(3), reduction="avg"),
         ValueError, "reduction must be 'mean', 'batchmean', 'sum' or 'none', got 'avg'"),
        (lambda: cnnarray.mse_loss(np.ones(3), np.ones(3), reduction="batchmean"),
         ValueError, "reduction must be 'mean', 'sum' or 'none'"),
        (lambda: cnnarray.smooth_l1_loss(np.ones(3), np.ones(3), beta=-1),
         ValueError, "beta must be a non-negative number, got -1"),
        (lambda: cnnarray.huber_loss(np.ones(3), np.ones(3), delta=0),
         ValueError, "delta must be a positive number, got 0"),
        (lambda: cnnarray.huber_loss_backward(np.ones(3), np.ones(3), grad_out=np.ones(3)),
         ValueError, r"grad_out must have shape \(\), got \(3,\)"),
        (lambda: cnnarray.mse_loss(np.ones(3, np.float32), np.ones(3)),
         TypeError, "share one float dtype"),
    ],
)  # fmt: skip
def test_loss_errors_name_the_argument_and_the_value(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------- nn modules

_MODULES = [
    (nn.CrossEntropyLoss, {"weight": [1.0, 2.0, 0.5], "label_smoothing": 0.1}, "class"),
    (nn.NLLLoss, {"weight": [1.0, 2.0, 0.5], "ignore_index": 0}, "class"),
    (nn.BCELoss, {"weight": [[1.0], [2.0]]}, "prob"),
    (nn.BCEWithLogitsLoss, {"pos_weight": [2.0, 1.0, 0.5], "reduction": "sum"}, "real"),
    (nn.MSELoss, {}, "real"),
    (nn.L1Loss, {"reduction": "sum"}, "real"),
    (nn.SmoothL1Loss, {"beta": 0.5}, "real"),
    (nn.HuberLoss, {"delta": 2.0}, "real"),
    (nn.KLDivLoss, {"reduction": "batchmean", "log_target": True}, "real"),
]


@pytest.mark.parametrize("cls, kw, kind", _MODULES, ids=[m[0].__name__ for m in _MODULES])
def test_loss_module_calls_its_op_and_rebuilds_from_its_spec(cls, kw, kind):
    rng = np.random.default_rng(12)
    x = rng.uniform(0.1, 0.9, (2, 3)).astype(np.float32)
    y = (rng.integers(0, 3, 2) if kind == "class" else rng.uniform(0, 1, (2, 3))).astype(
        np.int64 if kind == "class" else np.float32
    )
    criterion = cls(**kw)
    op_kw = {k: np.asarray(v, np.float32) if isinstance(v, list) else v for k, v in kw.items()}
    op = criterion._op
    desired = op(x, y, **op_kw)
    # arrays in: the loss, and backward gives the input's gradient alone
    assert_close(criterion(x, y), desired, dtype=np.float32)
    direct = getattr(cnnarray, f"{op.__name__}_backward")(x, y, **op_kw)
    direct = direct[0] if isinstance(direct, tuple) else direct
    assert_close(criterion.backward(np.float32(1)), direct, dtype=np.float32)
    # Tensors in: autograd records the op
    tx = cnnarray.tensor(x, requires_grad=True)
    criterion(tx, y).backward()
    assert_close(tx.grad, direct, dtype=np.float32)
    # spec and state round trip
    twin = nn.from_spec(json.loads(json.dumps(criterion.spec())))
    twin.load_state_dict(criterion.state_dict())
    assert type(twin) is cls and twin.spec() == criterion.spec()
    assert_close(twin(x, y), desired, dtype=np.float32)


def test_loss_module_rejects_a_reduction_it_does_not_have():
    with pytest.raises(ValueError, match="reduction must be one of .*got 'batchmean'"):
        nn.MSELoss("batchmean")
    assert nn.KLDivLoss("batchmean").reduction == "batchmean"
