"""batch_norm (1-D to 3-D), group_norm, layer_norm and instance_norm: oracle, finite
differences, PyTorch (values, gradients, running statistics over several steps), the
nn layers."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from helpers import assert_close, assert_grad_close, numerical_grad, run_op, vjp_objective
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnarray
from cnnarray import nn
from cnnarray import reference as ref

F64 = np.dtype(np.float64)


@dataclass
class NormCase:
    """One call of a normalisation op: its name, x's shape, the arrays it gets, the rest."""

    op: str
    x_shape: tuple[int, ...]
    param_shape: tuple[int, ...]  # weight / bias / running statistics
    arrays: tuple[str, ...]  # which of running_mean, running_var, weight, bias are passed
    kwargs: dict[str, Any]
    seed: int

    def inputs(self, dtype: Any) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        out = {"x": (rng.uniform(-1, 1, self.x_shape) * 2 + 0.5).astype(dtype)}
        for name in self.arrays:
            low = 0.5 if name == "running_var" else -1.0
            out[name] = rng.uniform(low, low + 2, self.param_shape).astype(dtype)
        return out

    def grad_out(self, dtype: Any) -> np.ndarray:
        return np.random.default_rng(self.seed + 1).uniform(-1, 1, self.x_shape).astype(dtype)

    @property
    def backward_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.kwargs.items() if k != "momentum"}

    def inv_std_max(self, inputs: dict[str, np.ndarray]) -> float:
        """The largest ``1 / sqrt(var + eps)`` of the call: how much float32 rounding in
        the x gradient can be amplified (rows of 2 values cancel to ~0 exactly)."""
        x, k = inputs["x"].astype(np.float64), self.kwargs
        if self.op == "batch_norm" and not k["training"] and "running_var" in inputs:
            var = inputs["running_var"]
        elif self.op == "instance_norm" and not k["use_input_stats"]:
            var = inputs["running_var"]
        elif self.op == "batch_norm":
            var = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1).var(axis=1)
        elif self.op == "layer_norm":
            var = x.reshape(-1, math.prod(self.param_shape)).var(axis=1)
        else:
            groups = k.get("num_groups", x.shape[1])
            var = x.reshape(x.shape[0], groups, -1).var(axis=2)
        return float(1 / np.sqrt(np.min(var) + k["eps"]))

    def forward(self, module: Any, inputs: dict[str, Any], **extra: Any) -> Any:
        """The forward of ``module`` (cnnarray or the oracle) on copies of the running stats."""
        copies = {k: v.copy() if k.startswith("running") else v for k, v in inputs.items()}
        return getattr(module, self.op)(**copies, **self.kwargs, **extra)


def _affine(draw: Any, running: bool = False) -> tuple[str, ...]:
    names = [n for n in ("weight", "bias") if draw(st.booleans())]
    return (("running_mean", "running_var") if running else ()) + tuple(names)


@st.composite
def norm_cases(draw: Any) -> NormCase:
    op = draw(st.sampled_from(["batch_norm", "group_norm", "layer_norm", "instance_norm"]))
    seed, eps = draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([1e-5, 1e-3]))
    if op == "batch_norm":
        ndim = draw(st.integers(2, 5))
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)),
                 *(draw(st.integers(1, 3)) for _ in range(ndim - 2)))  # fmt: skip
        training = draw(st.booleans()) and math.prod(shape) // shape[1] >= 2
        kwargs = {"training": training, "momentum": draw(st.sampled_from([0.1, 0.7])), "eps": eps}
        return NormCase(op, shape, shape[1:2], _affine(draw, draw(st.booleans())), kwargs, seed)
    if op == "group_norm":
        groups = draw(st.integers(1, 3))
        shape = (draw(st.integers(1, 3)), groups * draw(st.integers(1, 2)),
                 *(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2)))))  # fmt: skip
        return NormCase(op, shape, shape[1:2], _affine(draw),
                        {"num_groups": groups, "eps": eps}, seed)  # fmt: skip
    if op == "layer_norm":
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
        k = draw(st.integers(1, len(shape)))
        normalized = shape[-k:] if k > 1 or draw(st.booleans()) else shape[-1]
        tail = shape[-k:]
        return NormCase(op, shape, tail, _affine(draw),
                        {"normalized_shape": normalized, "eps": eps}, seed)  # fmt: skip
    ndim = draw(st.integers(3, 5))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)),
             *(draw(st.integers(1, 3)) for _ in range(ndim - 2)))  # fmt: skip
    use_input_stats = math.prod(shape[2:]) >= 2 and draw(st.booleans())
    running = not use_input_stats or draw(st.booleans())
    kwargs = {"use_input_stats": use_input_stats, "momentum": 0.3, "eps": eps}
    return NormCase(op, shape, shape[1:2], _affine(draw, running), kwargs, seed)


def _grad_names(case: NormCase) -> list[str]:
    return ["x"] + [n for n in ("weight", "bias") if n in case.arrays]


@settings(max_examples=60, deadline=None)
@given(case=norm_cases())
def test_norm_matches_the_oracle(backend, dtype, case):
    inputs, g = case.inputs(dtype), case.grad_out(dtype)
    y = run_op(lambda **a: case.forward(cnnarray, a), backend=backend, **inputs)
    assert_close(y, case.forward(ref, inputs), dtype=dtype, backend=backend, err_msg=case.op)
    backward, oracle = (getattr(m, f"{case.op}_backward") for m in (cnnarray, ref))
    got = run_op(backward, g, backend=backend, **inputs, **case.backward_kwargs)
    want = oracle(g, **inputs, **case.backward_kwargs)
    # gradients of weight and bias are sums over every position: scaled by the sum; the
    # x gradient by |g| / std, the size of the terms that cancel in it
    g64 = np.abs(g.astype(np.float64))
    scales = {"x": float(g64.max()) * max(1.0, case.inv_std_max(inputs)),
              "weight": float(g64.sum()) * 4, "bias": float(g64.sum())}  # fmt: skip
    for name, a, d in zip(("x", "weight", "bias"), got, want, strict=True):
        assert_close(a, d, dtype=dtype, backend=backend, err_msg=f"{case.op} grad {name}",
                     scale=scales[name])  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(case=norm_cases())
def test_norm_backward_matches_finite_differences(backend, case):
    inputs, g = case.inputs(F64), case.grad_out(F64)
    got = run_op(getattr(cnnarray, f"{case.op}_backward"), g, backend=backend, **inputs,
                 **case.backward_kwargs)  # fmt: skip
    grads = dict(zip(("x", "weight", "bias"), got, strict=True))
    for name in _grad_names(case):

        def objective(v, name=name):
            args = {**inputs, name: v}
            return vjp_objective(case.forward(cnnarray, args, backend=backend), g)

        assert_grad_close(grads[name], numerical_grad(objective, inputs[name]),
                          f"{case.op} grad {name}")  # fmt: skip
    for name in ("weight", "bias"):
        if name not in case.arrays:
            assert grads[name] is None


# --------------------------------------------------------------------------- PyTorch

TORCH_CASES = [
    # (op, x shape, param shape, arrays, kwargs)
    ("batch_norm", (4, 3), (3,), ("running_mean", "running_var", "weight", "bias"),
     {"training": True, "momentum": 0.2, "eps": 1e-5}),
    ("batch_norm", (2, 3, 5), (3,), ("running_mean", "running_var", "weight"),
     {"training": False, "momentum": 0.1, "eps": 1e-3}),
    ("batch_norm", (2, 2, 3, 2, 2), (2,), ("running_mean", "running_var", "bias"),
     {"training": True, "momentum": 0.5, "eps": 1e-5}),
    ("group_norm", (2, 6, 4, 3), (6,), ("weight", "bias"), {"num_groups": 3, "eps": 1e-5}),
    ("group_norm", (3, 4), (4,), ("weight",), {"num_groups": 2, "eps": 1e-5}),
    ("layer_norm", (2, 3, 4, 5), (4, 5), ("weight", "bias"),
     {"normalized_shape": (4, 5), "eps": 1e-5}),
    ("layer_norm", (3, 7), (7,), ("bias",), {"normalized_shape": 7, "eps": 1e-3}),
    ("instance_norm", (2, 3, 6), (3,), ("running_mean", "running_var", "weight", "bias"),
     {"use_input_stats": True, "momentum": 0.3, "eps": 1e-5}),
    ("instance_norm", (2, 3, 3, 4), (3,), ("running_mean", "running_var", "weight"),
     {"use_input_stats": False, "momentum": 0.3, "eps": 1e-5}),
    ("instance_norm", (1, 2, 2, 2, 3), (2,), ("weight", "bias"),
     {"use_input_stats": True, "momentum": 0.1, "eps": 1e-5}),
]  # fmt: skip


def _torch_call(torch, op, t, kwargs):
    f = torch.nn.functional
    a = dict(kwargs)
    if op == "layer_norm":
        shape = a.pop("normalized_shape")
        return f.layer_norm(t["x"], (shape,) if isinstance(shape, int) else shape,
                            t.get("weight"), t.get("bias"), **a)  # fmt: skip
    if op == "group_norm":
        return f.group_norm(t["x"], a.pop("num_groups"), t.get("weight"), t.get("bias"), **a)
    stats = (t.get("running_mean"), t.get("running_var"))
    return getattr(f, op)(t["x"], *stats, t.get("weight"), t.get("bias"), **a)


@pytest.mark.parametrize("op, x_shape, p_shape, arrays, kwargs", TORCH_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(TORCH_CASES)])  # fmt: skip
def test_norm_matches_torch_values_grads_and_running_stats(backend, op, x_shape, p_shape,
                                                           arrays, kwargs):  # fmt: skip
    torch = pytest.importorskip("torch")
    case = NormCase(op, x_shape, p_shape, arrays, kwargs, 11)
    inputs, g = case.inputs(F64), case.grad_out(F64)
    t = {k: torch.tensor(v, requires_grad=not k.startswith("running")) for k, v in inputs.items()}
    ty = _torch_call(torch, op, t, kwargs)
    ty.backward(torch.tensor(g))
    stats = {k: cnnarray.asarray(v.copy(), backend) for k, v in inputs.items()
             if k.startswith("running")}  # fmt: skip
    others = {k: v for k, v in inputs.items() if not k.startswith("running")}
    y = run_op(getattr(cnnarray, op), backend=backend, **others, **stats, **kwargs)
    assert_close(y, ty.detach().numpy(), dtype=F64, backend=backend, err_msg=op)
    for k, v in stats.items():  # updated in place exactly as torch's
        assert_close(v, t[k].numpy(), dtype=F64, backend=backend, err_msg=k)
    got = run_op(getattr(cnnarray, f"{op}_backward"), g, backend=backend, **inputs,
                 **case.backward_kwargs)  # fmt: skip
    for name, a in zip(("x", "weight", "bias"), got, strict=True):
        want = t[name].grad.numpy() if name in t else None
        assert_close(a, want, dtype=F64, backend=backend, err_msg=f"{op} grad {name}")


def _run_steps(torch, ours, theirs, shape, steps=4, seed=0):
    """Train-mode steps then one eval step on both; compare outputs and every state entry."""
    rng = np.random.default_rng(seed)
    for step in range(steps + 1):
        if step == steps:
            ours.eval(), theirs.eval()
        x = rng.standard_normal(shape) * 3 + 1
        y, ty = ours(x), theirs(torch.tensor(x)).detach().numpy()
        assert_close(y, ty, dtype=F64, err_msg=f"step {step}")
        theirs_state = theirs.state_dict()
        assert list(ours.state_dict()) == list(theirs_state)
        for k, v in ours.state_dict().items():
            np.testing.assert_allclose(np.asarray(v), theirs_state[k].numpy(), rtol=1e-12,
                                       atol=1e-14, err_msg=f"{k} after step {step}")  # fmt: skip


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize(
    "name, shape",
    [("BatchNorm1d", (6, 3)), ("BatchNorm1d", (4, 3, 5)), ("BatchNorm3d", (2, 3, 2, 3, 2))],
)
def test_batchnorm_running_statistics_follow_torch_over_steps(name, shape, momentum):
    torch = pytest.importorskip("torch")
    ours = getattr(nn, name)(3, momentum=momentum, dtype="float64")
    theirs = getattr(torch.nn, name)(3, momentum=momentum, dtype=torch.float64)
    _run_steps(torch, ours, theirs, shape)


@pytest.mark.parametrize("momentum", [0.2, None])
@pytest.mark.parametrize(
    "name, shape", [("InstanceNorm1d", (2, 3, 5)), ("InstanceNorm2d", (3, 4, 4)),
                    ("InstanceNorm3d", (2, 3, 2, 2, 3))],
)  # fmt: skip
def test_instancenorm_tracked_statistics_follow_torch_over_steps(name, shape, momentum):
    torch = pytest.importorskip("torch")
    ours = getattr(nn, name)(3, momentum=momentum, affine=True, track_running_stats=True,
                             dtype="float64")  # fmt: skip
    theirs = getattr(torch.nn, name)(3, momentum=momentum, affine=True,
                                     track_running_stats=True, dtype=torch.float64)  # fmt: skip
    _run_steps(torch, ours, theirs, shape)


def test_running_variance_is_unbiased_and_momentum_is_pytorchs():
    # one channel, values 1, 2, 3, 6: mean 3, biased var 3.5, unbiased 14 / 3
    x = np.array([[1.0], [2.0], [3.0], [6.0]])
    rm, rv = np.array([1.0]), np.array([2.0])
    cnnarray.batch_norm(x, rm, rv, training=True, momentum=0.25)
    np.testing.assert_allclose(rm, [0.75 * 1 + 0.25 * 3])
    np.testing.assert_allclose(rv, [0.75 * 2 + 0.25 * 14 / 3])


def test_momentum_none_is_the_cumulative_average_of_the_batch_statistics():
    bn = nn.BatchNorm1d(2, momentum=None, dtype="float64")
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((5, 2)) + k for k in range(3)]
    for xb in batches:
        bn(xb)
    np.testing.assert_allclose(bn.running_mean, np.mean([b.mean(0) for b in batches], axis=0))
    np.testing.assert_allclose(bn.running_var, np.mean([b.var(0, ddof=1) for b in batches], 0))
    assert int(bn.num_batches_tracked) == 3


def test_batch_norm2d_is_batch_norm_bit_for_bit(backend):
    rng = np.random.default_rng(4)
    x, g = rng.standard_normal((3, 4, 5, 6)).astype(np.float32), rng.standard_normal((3, 4, 5, 6))
    g = g.astype(np.float32)
    w, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    for training in (True, False):
        stats = [rng.standard_normal(4).astype(np.float32), rng.random(4).astype(np.float32) + 1]
        copies = [[s.copy() for s in stats] for _ in range(2)]
        y2 = run_op(cnnarray.batch_norm2d, x, *copies[0], w, b, training, backend=backend)
        y = run_op(cnnarray.batch_norm, x, *copies[1], w, b, training, backend=backend)
        np.testing.assert_array_equal(cnnarray.to_numpy(y2), cnnarray.to_numpy(y))
        np.testing.assert_array_equal(copies[0], copies[1])
        for a, c in zip(run_op(cnnarray.batch_norm2d_backward, g, x, *stats, w, b, training,
                               backend=backend),
                        run_op(cnnarray.batch_norm_backward, g, x, *stats, w, b, training,
                               backend=backend), strict=True):  # fmt: skip
            np.testing.assert_array_equal(cnnarray.to_numpy(a), cnnarray.to_numpy(c))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: cnnarray.batch_norm(np.ones((1, 3)), training=True), ValueError,
         r"batch_norm needs more than 1 value per channel in training mode, got x of shape"),
        (lambda: cnnarray.batch_norm(np.ones(3)), ValueError,
         r"x must have shape \(N, C\), \(N, C, L\), \(N, C, H, W\) or \(N, C, D, H, W\), got"),
        (lambda: cnnarray.batch_norm2d(np.ones((2, 3))), ValueError,
         r"x must have shape \(N, C, H, W\), got shape \(2, 3\)"),
        (lambda: cnnarray.group_norm(np.ones((2, 6, 3)), 4), ValueError,
         r"num_groups must divide the channels C=6 of x of shape \(2, 6, 3\), got 4"),
        (lambda: cnnarray.group_norm(np.ones((2, 6)), 3, np.ones(3)), ValueError,
         r"weight must have shape \(6,\), got \(3,\)"),
        (lambda: cnnarray.layer_norm(np.ones((2, 3, 4)), (3, 5)), ValueError,
         r"normalized_shape must be a non-empty tail of x's shape \(2, 3, 4\), got \(3, 5\)"),
        (lambda: cnnarray.layer_norm(np.ones((2, 4)), 4, np.ones((2, 4))), ValueError,
         r"weight must have shape \(4,\), got \(2, 4\)"),
        (lambda: cnnarray.instance_norm(np.ones((2, 3, 1))), ValueError,
         r"more than 1 spatial element .* got x of shape \(2, 3, 1\)"),
        (lambda: cnnarray.instance_norm(np.ones((2, 3, 4)), use_input_stats=False), ValueError,
         "use_input_stats=False needs running_mean and running_var"),
        (lambda: cnnarray.instance_norm(np.ones((2, 3))), ValueError,
         r"x must have shape \(N, C, L\), \(N, C, H, W\) or \(N, C, D, H, W\)"),
        (lambda: cnnarray.group_norm(np.ones((2, 4)), 2, eps=0.0), ValueError,
         "eps must be a positive number, got 0.0"),
    ],
)  # fmt: skip
def test_norm_arguments_are_checked(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_norms_keep_float32_accuracy_when_the_mean_dwarfs_the_spread(backend):
    # two-pass variance: E[x^2] - mean^2 would lose most digits here
    rng = np.random.default_rng(6)
    x = (1000 + rng.standard_normal((4, 6, 32))).astype(np.float32)
    for op, args in (("group_norm", (3,)), ("layer_norm", (32,)), ("instance_norm", ()),
                     ("batch_norm", ())):  # fmt: skip
        kwargs = {"training": True} if op == "batch_norm" else {}
        y = run_op(getattr(cnnarray, op), x, *args, backend=backend, **kwargs)
        want = getattr(ref, op)(x.astype(np.float64), *args, **kwargs)
        np.testing.assert_allclose(cnnarray.to_numpy(y), want, atol=2e-3, err_msg=op)


# --------------------------------------------------------------------------- nn layers

LAYERS = [
    ("GroupNorm", (2, 4), {}, (3, 4, 3, 3)),
    ("GroupNorm", (1, 3), {"affine": False, "eps": 1e-3}, (2, 3, 5)),
    ("LayerNorm", ((3, 3),), {}, (2, 4, 3, 3)),
    ("LayerNorm", (5,), {"elementwise_affine": False}, (4, 5)),
    ("LayerNorm", (5,), {"bias": False}, (2, 3, 5)),
    ("InstanceNorm1d", (3,), {}, (2, 3, 6)),
    ("InstanceNorm2d", (3,), {"affine": True}, (3, 4, 5)),  # unbatched (C, H, W)
    ("InstanceNorm3d", (2,), {}, (2, 2, 2, 3, 3)),
    ("BatchNorm1d", (3,), {"affine": False}, (5, 3)),
    ("BatchNorm3d", (2,), {"track_running_stats": False}, (2, 2, 2, 2, 3)),
]


@pytest.mark.parametrize("name, args, kwargs, shape", LAYERS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(LAYERS)])  # fmt: skip
def test_norm_layers_match_torch_with_parameter_grads_and_rebuild(name, args, kwargs, shape):
    torch = pytest.importorskip("torch")
    ours = getattr(nn, name)(*args, **kwargs, dtype="float64")
    theirs = getattr(torch.nn, name)(*args, **kwargs, dtype=torch.float64)
    rng = np.random.default_rng(8)
    # non-trivial affine parameters, the same in both
    with torch.no_grad():
        for (k, p), (tk, tp) in zip(ours.named_parameters(), theirs.named_parameters(),
                                    strict=True):  # fmt: skip
            assert k == tk and p.shape == tuple(tp.shape)
            p.data[...] = rng.standard_normal(p.shape)
            tp.copy_(torch.tensor(p.data))
    x = rng.standard_normal(shape) * 2 + 1
    g = rng.standard_normal(shape)
    out = ours(cnnarray.tensor(x, requires_grad=True))
    (out * cnnarray.tensor(g)).sum().backward()
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.tensor(g))
    assert_close(out.data, ty.detach().numpy(), dtype=F64, err_msg=name)
    for (k, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert_close(p.grad, tp.grad.numpy(), dtype=F64, err_msg=f"{name}.{k}")
    assert list(ours.state_dict()) == list(theirs.state_dict())
    twin = nn.from_spec(json.loads(json.dumps(ours.spec())))
    assert repr(twin) == repr(ours)
    twin.load_state_dict(ours.state_dict())
    ours.eval(), twin.eval()
    np.testing.assert_array_equal(twin(x), ours(x))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: nn.GroupNorm(4, 6), "num_groups must divide num_channels=6, got 4"),
        (lambda: nn.LayerNorm(()), r"normalized_shape must name at least one axis"),
        (lambda: nn.LayerNorm(0), "normalized_shape must be a positive int, got 0"),
        (lambda: nn.InstanceNorm2d(0), "num_features must be a positive int, got 0"),
        (lambda: nn.BatchNorm1d(3, momentum=1.5), "momentum must be"),
    ],
)
def test_norm_layer_constructors_check_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_norm_layers_check_their_input():
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\) expected x with 3 channels"):
        nn.BatchNorm1d(3)(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\[, L\]\)"):
        nn.BatchNorm1d(3)(np.ones((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"InstanceNorm2d\(3\) expected x with 3 channels"):
        nn.InstanceNorm2d(3)(np.ones((4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"GroupNorm\(2, 4\) expected x with 4 channels"):
        nn.GroupNorm(2, 4)(np.ones((2, 6, 3), np.float32))
    with pytest.raises(TypeError, match="parameters of LayerNorm are float32"):
        nn.LayerNorm(3)(np.ones((2, 3)))
    assert nn.GroupNorm(1, 2)(np.ones((2, 2, 3), np.int64)).dtype == np.float32
