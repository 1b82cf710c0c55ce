"""cross_entropy and its backward against the per-sample oracle, differences and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, assert_grad_close, numerical_grad, run_op, seeds
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import reference as ref

REDUCTIONS = ["mean", "sum", "none"]


@st.composite
def ce_calls(draw):
    """(logits shape, reduction, label_smoothing, use grad_out, seed, logit scale)."""
    classes = draw(st.integers(1, 6))
    lead = draw(st.sampled_from([(), (draw(st.integers(1, 5)),)]))  # () is one sample (C,)
    smoothing = draw(st.one_of(st.sampled_from([0.0, 0.1, 1.0]), st.floats(0.0, 1.0)))
    return ((*lead, classes), draw(st.sampled_from(REDUCTIONS)), smoothing, draw(st.booleans()),
            draw(seeds), draw(st.sampled_from([1.0, 10.0])))  # fmt: skip


def _data(shape, reduction, use_grad, seed, scale, dtype):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(shape) * scale).astype(dtype)
    target = rng.integers(0, shape[-1], shape[:-1])
    g = None
    if use_grad:
        g = rng.uniform(-2, 2, shape[:-1] if reduction == "none" else ()).astype(dtype)
    return logits, target, g


@settings(max_examples=60, deadline=None)
@given(call=ce_calls())
def test_cross_entropy_matches_reference(backend, dtype, call):
    shape, reduction, smoothing, use_grad, seed, scale = call
    logits, target, g = _data(shape, reduction, use_grad, seed, scale, dtype)
    kw = {"reduction": reduction, "label_smoothing": smoothing}
    loss = run_op(cnnarray.cross_entropy, logits, target, backend=backend, **kw)
    assert_close(loss, ref.cross_entropy(logits, target, **kw), dtype=dtype, backend=backend)
    grad = run_op(
        cnnarray.cross_entropy_backward, logits, target, grad_out=g, backend=backend, **kw
    )
    desired = ref.cross_entropy_backward(logits, target, grad_out=g, **kw)
    assert_close(grad, desired, dtype=dtype, backend=backend)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("shape", [(4, 5), (3,)])
def test_cross_entropy_backward_matches_finite_differences(backend, reduction, smoothing, shape):
    rng = np.random.default_rng(8)
    logits = rng.standard_normal(shape) * 2
    target = rng.integers(0, shape[-1], shape[:-1])
    g = rng.uniform(-2, 2, shape[:-1] if reduction == "none" else ())
    kw = {"reduction": reduction, "label_smoothing": smoothing}
    grad = run_op(
        cnnarray.cross_entropy_backward, logits, target, grad_out=g, backend=backend, **kw
    )

    def objective(v):
        loss = cnnarray.to_numpy(cnnarray.cross_entropy(v, target, backend=backend, **kw))
        return float(np.sum(loss * g))

    assert_grad_close(grad, numerical_grad(objective, logits))
    if reduction != "none":  # grad_out defaults to 1
        plain = run_op(cnnarray.cross_entropy_backward, logits, target, backend=backend, **kw)
        assert_grad_close(plain, numerical_grad(lambda v: objective(v) / g, logits))


@settings(max_examples=40, deadline=None)
@given(call=ce_calls())
def test_cross_entropy_matches_torch(backend, call):
    torch = pytest.importorskip("torch")
    shape, reduction, smoothing, use_grad, seed, scale = call
    logits, target, g = _data(shape, reduction, use_grad, seed, scale, np.float64)
    kw = {"reduction": reduction, "label_smoothing": smoothing}
    tl = torch.tensor(logits, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tl, torch.tensor(target), **kw)
    tloss.backward(torch.ones_like(tloss) if g is None else torch.tensor(g))
    loss = run_op(cnnarray.cross_entropy, logits, target, backend=backend, **kw)
    assert_close(loss, tloss.detach().numpy(), dtype=np.float64, backend=backend)
    grad = run_op(
        cnnarray.cross_entropy_backward, logits, target, grad_out=g, backend=backend, **kw
    )
    assert_close(grad, tl.grad.numpy(), dtype=np.float64, backend=backend)


def test_cross_entropy_is_stable_for_huge_logits(backend, dtype):
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]], dtype)
    target = np.array([1, 2])
    loss = run_op(cnnarray.cross_entropy, logits, target, reduction="none", backend=backend)
    assert_close(loss, [1e4, np.log(3.0)], dtype=dtype, backend=backend)
    grad = run_op(cnnarray.cross_entropy_backward, logits, target, reduction="sum", backend=backend)
    assert_close(grad, [[1.0, -1.0, 0.0], [1 / 3, 1 / 3, -2 / 3]], dtype=dtype, backend=backend)


def test_cross_entropy_accepts_any_integer_target_dtype(backend, dtype):
    logits = np.random.default_rng(9).standard_normal((4, 3)).astype(dtype)
    desired = ref.cross_entropy(logits, [0, 2, 1, 2])
    for tdt in (np.int8, np.uint8, np.int32, np.int64, np.uint64):
        target = np.array([0, 2, 1, 2], tdt)
        loss = run_op(cnnarray.cross_entropy, logits, target, backend=backend)
        assert_close(loss, desired, dtype=dtype, backend=backend, err_msg=str(tdt))


def test_cross_entropy_nan_logit_makes_its_sample_nan(backend, dtype):
    logits = np.zeros((3, 4), dtype)
    logits[1, 2] = np.nan
    loss = run_op(cnnarray.cross_entropy, logits, np.array([0, 1, 2]), reduction="none",
                  backend=backend)  # fmt: skip
    np.testing.assert_array_equal(np.isnan(cnnarray.to_numpy(loss)), [False, True, False])
    mean = run_op(cnnarray.cross_entropy, logits, np.array([0, 1, 2]), backend=backend)
    assert np.isnan(cnnarray.to_numpy(mean))
