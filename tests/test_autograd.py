"""cnnarray.autograd: the tape against hand-derived values, central differences and PyTorch.

Every gradient is checked against an oracle that does not share the code under test:
values worked out by hand, float64 central differences (:func:`helpers.numerical_grad`),
or torch autograd. The ops of :mod:`cnnarray.ops` are also checked to hand the tape
exactly what their own ``*_backward`` gives.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
from helpers import (
    OPS,
    assert_close,
    assert_grad_close,
    away_from_zero,
    numerical_grad,
    requires_cuda,
    tie_free,
    vjp_objective,
)

import cnnarray
from cnnarray import Tensor, nn, ops
from cnnarray.autograd import backward_times, enable_grad, has_rule, is_grad_enabled, no_grad
from cnnarray.backend import Backend, backend_of, to_numpy

F64 = np.float64


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _u(shape, seed=0, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, shape)


def _t(array, backend, requires_grad=False):
    return cnnarray.tensor(array, requires_grad=requires_grad, backend=backend)


def check_tape(f, arrays, backend, seed=0):
    """Backpropagate a random ``g`` through ``f(*tensors)``; compare each leaf's ``.grad``
    with the central differences of ``sum(f(...) * g)`` (float64, on ``backend``)."""
    arrays = [np.asarray(a, F64) for a in arrays]
    leaves = [_t(a, backend, requires_grad=True) for a in arrays]
    out = f(*leaves)
    assert isinstance(out, Tensor) and out.requires_grad
    g = np.random.default_rng(seed + 100).standard_normal(out.shape)
    out.backward(cnnarray.asarray(g, backend))
    for i, (a, leaf) in enumerate(zip(arrays, leaves, strict=True)):

        def objective(v, i=i):
            args = [_t(v if j == i else arrays[j], backend) for j in range(len(arrays))]
            return vjp_objective(f(*args).data, g)

        assert_grad_close(leaf.grad, numerical_grad(objective, a), f"grad of operand {i}")
    return leaves


# --------------------------------------------------------------------------- arithmetic

BROADCAST_SHAPES = [
    ((3, 1), (4,)),  # both stretched: (3, 4)
    ((2, 3, 4), (3, 1)),  # a leading axis added to one side only
    ((4,), (2, 1, 4)),
    ((2, 3), ()),  # a 0-d tensor
    ((), ()),
]

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
}


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_op_gradients_are_summed_back_to_each_operand(backend, name, shapes):
    a = _u(shapes[0], 1, 0.5, 2.0)  # positive: pow's gradient in b needs log(a)
    b = _u(shapes[1], 2, 0.5, 2.0)
    x, y = check_tape(BINARY[name], [a, b], backend)
    assert x.grad.shape == shapes[0] and y.grad.shape == shapes[1]


def test_broadcast_add_gradient_by_hand(backend):
    x = _t(np.zeros((3, 1)), backend, requires_grad=True)
    y = _t(np.zeros(4), backend, requires_grad=True)
    (x + y).sum().backward()  # each x[i] meets 4 y's, each y[j] meets 3 x's
    assert_close(x.grad, np.full((3, 1), 4.0), dtype=F64, backend=backend)
    assert_close(y.grad, np.full(4, 3.0), dtype=F64, backend=backend)


@pytest.mark.parametrize(
    "expr",
    [
        lambda x: x + 2,
        lambda x: 2 - x,
        lambda x: x * 0.5,
        lambda x: 3 / x,
        lambda x: x / 4,
        lambda x: x**3,
        lambda x: x**0.5,
        lambda x: 2**x,
        lambda x: -x,
        lambda x: +x * 1,
    ],
    ids=["x+2", "2-x", "x*0.5", "3/x", "x/4", "x**3", "x**0.5", "2**x", "-x", "+x"],
)
def test_python_scalars_on_either_side(backend, expr):
    check_tape(expr, [_u((2, 3), 3, 0.5, 2.0)], backend)


def test_arrays_on_either_side_of_a_tensor(backend):
    c = cnnarray.asarray(_u((2, 3), 4), backend)
    x = _t(_u((2, 3), 5), backend, requires_grad=True)
    for expr in (lambda: c + x, lambda: c * x, lambda: c - x, lambda: c / (x + 3)):
        out = expr()
        assert isinstance(out, Tensor) and out.requires_grad
    (c * x).sum().backward()
    assert_close(x.grad, to_numpy(c), dtype=F64, backend=backend)


MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((2, 3, 4), (4, 5)),  # batched @ matrix: the matrix's gradient sums over the batch
    ((3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),  # batch axes broadcast against each other
    ((4,), (4,)),  # 1-D @ 1-D: a 0-d result
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (2, 4, 3)),
    ((2, 3, 4), (4,)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_gradients(backend, shapes):
    x, y = check_tape(lambda a, b: a @ b, [_u(shapes[0], 6), _u(shapes[1], 7)], backend)
    assert x.grad.shape == shapes[0] and y.grad.shape == shapes[1]


def test_matmul_with_an_array_on_the_left(backend):
    a = cnnarray.asarray(_u((3, 4), 8), backend)
    w = _t(_u((4, 2), 9), backend, requires_grad=True)
    (a @ w).sum().backward()
    assert_close(w.grad, to_numpy(a).sum(axis=0)[:, None].repeat(2, axis=1), dtype=F64)


# --------------------------------------------------------------------------- reductions, shapes


@pytest.mark.parametrize(
    "reduce",
    [
        lambda t: t.sum(),
        lambda t: t.sum(axis=1),
        lambda t: t.sum(axis=(0, 2), keepdims=True),
        lambda t: t.sum(axis=-1, keepdims=True),
        lambda t: t.mean(),
        lambda t: t.mean(axis=0),
        lambda t: t.mean(axis=(1, -1), keepdims=True),
    ],
    ids=["sum", "sum1", "sum02k", "sum-1k", "mean", "mean0", "mean1-1k"],
)
def test_sum_and_mean_over_axes(backend, reduce):
    check_tape(reduce, [_u((2, 3, 4), 10)], backend)


def test_mean_gradient_by_hand_and_shapes(backend):
    x = _t(np.ones((2, 3, 4)), backend, requires_grad=True)
    out = x.mean(axis=(0, 2), keepdims=True)
    assert out.shape == (1, 3, 1)
    out.sum().backward()
    assert_close(x.grad, np.full((2, 3, 4), 1 / 8), dtype=F64, backend=backend)
    assert x.sum(axis=1).shape == (2, 4) and x.mean(axis=-1, keepdims=True).shape == (2, 3, 1)


@pytest.mark.parametrize(
    ("expr", "shape"),
    [
        (lambda t: t.reshape(6, 4), (6, 4)),
        (lambda t: t.reshape((4, -1)), (4, 6)),
        (lambda t: t.view(24), (24,)),
        (lambda t: t.transpose(), (4, 3, 2)),
        (lambda t: t.transpose(1, 0, 2), (3, 2, 4)),
        (lambda t: t.permute((2, 0, 1)), (4, 2, 3)),
        (lambda t: t.T, (4, 3, 2)),
        (lambda t: t.flatten(), (24,)),
        (lambda t: t.flatten(1), (2, 12)),
        (lambda t: t.flatten(0, 1), (6, 4)),
    ],
    ids=["reshape", "reshape-1", "view", "T()", "transpose", "permute", "T", "flat", "flat1",
         "flat01"],
)  # fmt: skip
def test_shape_ops(backend, expr, shape):
    x = _t(_u((2, 3, 4), 11), backend)
    assert expr(x).shape == shape
    # a position-dependent weight catches any scrambled gradient
    check_tape(lambda t: expr(t) * cnnarray.asarray(_u(shape, 12), backend), [_u((2, 3, 4), 11)],
               backend)  # fmt: skip


def test_transpose_rejects_a_non_permutation():
    with pytest.raises(ValueError, match="permutation"):
        cnnarray.tensor(np.ones((2, 3))).transpose(0, 0)


# --------------------------------------------------------------------------- indexing


@pytest.mark.parametrize(
    "index",
    [
        1,
        -1,
        slice(1, None),
        (slice(None), 2),
        (slice(None, None, -1), slice(0, 3, 2)),
        (Ellipsis, 1),
        (None, 0),
        (np.array([0, 0, 2, 0]),),  # repeats: their gradients add up
        (np.array([2, 1, 2]), slice(1, 3)),
        (np.array([0, 2, 2]), np.array([3, 3, 1])),
        np.array([[True, False, True, False]] * 3),
    ],
    ids=["int", "neg", "slice", "col", "steps", "ellipsis", "newaxis", "repeats", "arr+slice",
         "pairs", "mask"],
)  # fmt: skip
def test_indexing_gradients(backend, index):
    index = tuple(cnnarray.asarray(i, backend) if isinstance(i, np.ndarray) else i
                  for i in (index if isinstance(index, tuple) else (index,)))  # fmt: skip
    check_tape(lambda t: t[index], [_u((3, 4), 13)], backend)


def test_repeated_indices_add_up_by_hand(backend):
    x = _t(np.arange(4.0), backend, requires_grad=True)
    x[cnnarray.asarray(np.array([0, 0, 2, 0]), backend)].sum().backward()
    assert_close(x.grad, [3.0, 0.0, 1.0, 0.0], dtype=F64, backend=backend)
    y = _t(np.arange(4.0), backend, requires_grad=True)
    (y[1] * 2 + y[1:3].sum() + y[[3, 3]].sum()).backward()  # a list index too
    assert_close(y.grad, [0.0, 3.0, 1.0, 2.0], dtype=F64, backend=backend)


def test_an_index_given_as_a_tensor(backend):
    x = _t(np.arange(5.0), backend, requires_grad=True)
    idx = _t(np.array([4, 4, 0]), backend)
    x[idx].sum().backward()
    assert_close(x.grad, [1.0, 0.0, 0.0, 0.0, 2.0], dtype=F64, backend=backend)


# --------------------------------------------------------------------------- cat, stack, unary


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_cat_gradients(backend, axis):
    shapes = {0: [(1, 3), (2, 3), (3, 3)], 1: [(2, 1), (2, 4), (2, 2)], -1: [(2, 2), (2, 3)]}
    arrays = [_u(s, 20 + i) for i, s in enumerate(shapes[axis])]
    check_tape(lambda *ts: cnnarray.cat(list(ts), axis=axis), arrays, backend)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack_gradients(backend, axis):
    arrays = [_u((2, 3), 30 + i) for i in range(3)]
    out = cnnarray.stack([_t(a, backend) for a in arrays], axis=axis)
    assert out.shape == np.stack(arrays, axis=axis).shape
    check_tape(lambda *ts: cnnarray.stack(ts, axis=axis), arrays, backend)


def test_cat_of_a_tensor_with_itself_and_an_array(backend):
    a = _t([[1.0, 2.0]], backend, requires_grad=True)
    c = cnnarray.asarray(np.zeros((1, 2)), backend)
    out = cnnarray.cat([a, a * 3, c], axis=0)
    assert out.shape == (3, 2)
    out.sum().backward()
    assert_close(a.grad, [[4.0, 4.0]], dtype=F64, backend=backend)


def test_cat_and_stack_reject_what_is_not_a_list():
    t = cnnarray.tensor([1.0])
    for join in (cnnarray.cat, cnnarray.stack):
        with pytest.raises(TypeError, match="non-empty list or tuple"):
            join(t)
        with pytest.raises(TypeError, match="non-empty list or tuple"):
            join([])


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("exp", -2, 2), ("log", 0.2, 3), ("sqrt", 0.2, 3), ("abs", -2, 2)],
)
def test_unary_gradients(backend, name, low, high):
    x = _u((3, 4), 40, low, high)
    if name == "abs":
        x = np.sign(x) * (0.05 + np.abs(x))  # away from the kink
    check_tape(lambda t: getattr(t, name)(), [x], backend)


def test_unary_gradients_by_hand(backend):
    x = _t([1.0, 4.0], backend, requires_grad=True)
    (x.exp() + x.log() + x.sqrt() + (-x).abs()).sum().backward()
    v = np.array([1.0, 4.0])
    assert_close(x.grad, np.exp(v) + 1 / v + 0.5 / np.sqrt(v) + 1, dtype=F64, backend=backend)


# --------------------------------------------------------------------------- the graph


def test_a_tensor_used_twice(backend):
    x = _t([1.0, -2.0, 3.0], backend, requires_grad=True)
    (x * x).sum().backward()
    assert_close(x.grad, [2.0, -4.0, 6.0], dtype=F64, backend=backend)
    y = _t([1.0, -2.0, 3.0], backend, requires_grad=True)
    (y + y).sum().backward()
    assert_close(y.grad, [2.0, 2.0, 2.0], dtype=F64, backend=backend)
    z = _t([1.0, -2.0, 3.0], backend, requires_grad=True)
    (cnnarray.relu(z) * z + z).sum().backward()  # an op and arithmetic on one leaf
    assert_close(z.grad, [3.0, 1.0, 7.0], dtype=F64, backend=backend)


def test_a_diamond_and_a_long_chain(backend):
    def diamond(t):
        h = t * 2 + 1  # reached by two paths: both gradients arrive before h's node runs
        return h.exp() * h.sum()

    check_tape(diamond, [_u((3,), 41)], backend)
    x = _t([0.5], backend, requires_grad=True)
    y = x
    for _ in range(3000):  # deeper than Python's recursion limit
        y = y * 1.0001
    y.sum().backward()
    assert_close(x.grad, [1.0001**3000], dtype=F64, backend=backend, rtol=1e-9)


def test_gradients_accumulate_across_backward_calls(backend):
    x = _t([1.0, 2.0], backend, requires_grad=True)
    (x * 3).sum().backward()
    first = x.grad
    (x * x).sum().backward()
    assert x.grad is first  # added in place, like torch
    assert_close(x.grad, [5.0, 7.0], dtype=F64, backend=backend)
    x.grad = None
    (x * 3).sum().backward()
    assert_close(x.grad, [3.0, 3.0], dtype=F64, backend=backend)


def test_a_leaf_gradient_is_not_shared_with_the_graph(backend):
    # add hands the same array to both sides: each leaf must get its own copy
    x = _t([1.0, 2.0], backend, requires_grad=True)
    y = _t([3.0, 4.0], backend, requires_grad=True)
    (x + y).backward(cnnarray.asarray(np.array([1.0, 1.0]), backend))
    x.grad += 10
    assert_close(y.grad, [1.0, 1.0], dtype=F64, backend=backend)
    g = cnnarray.asarray(np.array([2.0, 2.0]), backend)
    z = _t([1.0, 2.0], backend, requires_grad=True)
    z.backward(g)  # backward on a leaf: the gradient is copied too
    z.grad += 1
    assert_close(g, [2.0, 2.0], dtype=F64)


def test_zero_d_leaves_get_array_gradients_of_their_dtype(backend):
    # NumPy returns 0-d results as scalars: .grad must still be an array, so that an
    # optimiser's in-place update of it (momentum buffers) sticks
    x = _t(np.float64(3.0), backend, requires_grad=True)
    (x * x).backward()
    assert type(x.grad) is backend.xp.ndarray and x.grad.shape == ()
    assert float(x.grad) == 6.0
    w = _t(np.ones(3, np.float32), backend, requires_grad=True)
    (w * _t(np.ones(3), backend)).sum().backward()  # promoted to float64 on the way
    assert w.grad.dtype == np.float32
    # 0-d data are arrays too: a scalar parameter loads in place, a loss's data is an array
    scaled = nn.Module()
    scaled.scale = nn.Parameter(np.float64(2.0))
    assert type(scaled.scale.data) is np.ndarray
    scaled.to(backend).load_state_dict({"scale": np.array(3.0)})
    assert float(scaled.scale.data) == 3.0
    loss = cnnarray.cross_entropy(_t(np.ones((2, 3)), backend), cnnarray.asarray([0, 2], backend))
    assert type(loss.data) is backend.xp.ndarray and loss.shape == ()


def test_sgd_momentum_on_a_scalar_parameter_matches_torch(torch):
    p = nn.Parameter(np.array(2.0))
    tp = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    opt = cnnarray.optim.SGD([p], lr=0.1, momentum=0.9)
    topt = torch.optim.SGD([tp], lr=0.1, momentum=0.9)
    for _ in range(4):
        opt.zero_grad()
        (p * p).backward()
        opt.step()
        topt.zero_grad()
        (tp * tp).backward()
        topt.step()
    assert_close(p.data, tp.detach().numpy(), dtype=F64)


TWICE = {
    # a chain through one Linear
    "linear": (lambda: nn.Linear(4, 4, dtype=F64, seed=0), (3, 4),
               lambda m, x, tanh: m(tanh(m(x)))),
    # a Conv2d on one input twice (its column cache recognises x) and on its own output
    "conv": (lambda: nn.Conv2d(2, 2, 3, padding=1, dtype=F64, seed=0), (2, 2, 5, 5),
             lambda m, x, tanh: m(tanh(m(x))) + m(x) * m(x)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TWICE))
def test_a_module_used_twice_accumulates_like_torch(backend, torch, case):
    make, shape, forward = TWICE[case]
    ours = make().to(backend)
    twin = {"linear": torch.nn.Linear(4, 4), "conv": torch.nn.Conv2d(2, 2, 3, padding=1)}[case]
    twin = twin.to(torch.float64)
    twin.load_state_dict({k: torch.tensor(to_numpy(v)) for k, v in ours.state_dict().items()})
    x = _u(shape, 42)
    xt = _t(x, backend, requires_grad=True)
    loss = forward(ours, xt, cnnarray.tanh).sum()
    tx = torch.tensor(x, requires_grad=True)
    tloss = forward(twin, tx, torch.tanh).sum()
    tloss.backward()
    loss.backward()
    assert_close(loss.data, tloss.detach().numpy(), dtype=F64, backend=backend)
    assert_close(xt.grad, tx.grad.numpy(), dtype=F64, backend=backend)
    assert_close(ours.weight.grad, twin.weight.grad.numpy(), dtype=F64, backend=backend)
    assert_close(ours.bias.grad, twin.bias.grad.numpy(), dtype=F64, backend=backend)


def test_only_leaves_that_require_grad_get_one(backend):
    x = _t([1.0, 2.0], backend, requires_grad=True)
    c = _t([3.0, 4.0], backend)
    h = x * c
    (h * 2).sum().backward()
    assert c.grad is None and h.grad is None  # not a leaf: nothing kept, as torch
    assert h.grad_fn is not None and h.grad_fn.name == "mul" and not h.is_leaf
    assert x.is_leaf and x.grad_fn is None


# --------------------------------------------------------------------------- grad mode


def test_no_grad_as_a_context_manager(backend):
    x = _t([1.0, 2.0], backend, requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = cnnarray.relu(x * 2).sum()
        z = cnnarray.cat([x, x])
    assert is_grad_enabled()
    for t in (y, z):
        assert isinstance(t, Tensor) and not t.requires_grad and t.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_as_a_decorator_and_enable_grad_inside():
    x = cnnarray.tensor([1.0, 2.0], requires_grad=True)

    @no_grad()
    def evaluate(t):
        """Its docstring survives."""
        outer = t * 2
        with enable_grad():
            inner = t * 3
        return outer, inner, is_grad_enabled()

    outer, inner, enabled = evaluate(x)
    assert not enabled and is_grad_enabled()
    assert not outer.requires_grad and inner.requires_grad
    assert evaluate.__doc__ == "Its docstring survives."
    inner.sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])

    @enable_grad()
    def record(t):
        return t * 1

    with no_grad():
        assert record(x).requires_grad
        with no_grad():  # nested: the outer state comes back on exit
            pass
        assert not is_grad_enabled()


def test_grad_mode_is_restored_after_an_exception_and_is_per_thread():
    with pytest.raises(ZeroDivisionError), no_grad():
        _ = 1 / 0
    assert is_grad_enabled()
    seen = []
    with no_grad():
        worker = threading.Thread(target=lambda: seen.append(is_grad_enabled()))
        worker.start()
        worker.join()
    assert seen == [True]


def test_detach_shares_data_and_stops_gradients(backend):
    x = _t([1.0, 2.0], backend, requires_grad=True)
    d = (x * 1).detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    assert x.detach().data is x.data
    (x.detach() * x).sum().backward()  # only the second factor carries a gradient
    assert_close(x.grad, [1.0, 2.0], dtype=F64, backend=backend)


def test_retain_graph_allows_a_second_backward(backend):
    x = _t([1.0, 2.0], backend, requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert_close(x.grad, [4.0, 8.0], dtype=F64, backend=backend)
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
        y.backward()
    z = x.exp()  # an intermediate freed by the first backward
    (z * 2).sum().backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        (z * 3).sum().backward()


def test_backward_checks_its_gradient(backend):
    x = _t(np.ones((2, 3)), backend, requires_grad=True)
    y = x * 2
    with pytest.raises(ValueError, match=r"gradient must be given.*\(2, 3\)"):
        y.backward()
    with pytest.raises(
        ValueError, match=r"gradient must have the tensor's shape \(2, 3\), got \(3, 2\)"
    ):
        y.backward(cnnarray.asarray(np.ones((3, 2)), backend))
    y.backward(_t(np.ones((2, 3)), backend), retain_graph=True)  # a Tensor gradient
    y.sum().backward(2.0)  # a number, for one element
    assert_close(x.grad, np.full((2, 3), 6.0), dtype=F64, backend=backend)
    with pytest.raises(RuntimeError, match="does not require grad"):
        _t([1.0], backend).backward()


def test_only_float_tensors_can_require_grad():
    for make in (
        lambda: cnnarray.tensor([1, 2], requires_grad=True),
        lambda: Tensor(np.arange(3), requires_grad=True),
        lambda: cnnarray.tensor([True]).requires_grad_(),
        lambda: nn.Parameter(np.zeros(2, np.int32)),
    ):
        with pytest.raises(TypeError, match="only floating-point tensors can require gradients"):
            make()
    with pytest.raises(ValueError, match="leaf"):
        (cnnarray.tensor([1.0], requires_grad=True) * 2).requires_grad_(False)


def test_a_tensor_requiring_grad_where_an_op_has_no_gradient(backend):
    x = _t(_u((2, 3, 2, 2), 50), backend, requires_grad=True)
    stats = _t(np.zeros(3), backend, requires_grad=True)
    with pytest.raises(
        TypeError, match="batch_norm2d has no gradient with respect to running_mean"
    ):
        cnnarray.batch_norm2d(x, stats, _t(np.ones(3), backend))
    with pytest.raises(TypeError, match="relu_backward has no gradient with respect to grad_out"):
        cnnarray.relu_backward(x, x.detach())
    with no_grad():  # nothing is recorded, so nothing to refuse
        assert isinstance(cnnarray.batch_norm2d(x, stats, _t(np.ones(3), backend)), Tensor)
    with pytest.raises(ValueError, match="backend= cannot move Tensors that require grad"):
        cnnarray.relu(x, backend="cpu")


# --------------------------------------------------------------------------- devices


class _Elsewhere(np.ndarray):
    """A NumPy array that a patched ``backend_of`` places on another device."""


_FAKE = Backend("cuda", 7, np)


@pytest.fixture
def fake_device(monkeypatch):
    """Make ``backend_of`` report ``_Elsewhere`` arrays as living on cuda:7."""
    import cnnarray.autograd._functions as functions
    import cnnarray.autograd._tensor as tensor_module
    import cnnarray.backend as backend_module

    real = backend_module.backend_of

    def fake(array):
        return _FAKE if isinstance(array, _Elsewhere) else real(array)

    for module in (functions, tensor_module, backend_module):
        monkeypatch.setattr(module, "backend_of", fake)
    return lambda a: np.asarray(a, F64).view(_Elsewhere)


def test_mixed_devices_name_both_without_a_gpu(fake_device):
    here = cnnarray.tensor(_u((1, 2, 4, 4), 51), requires_grad=True)
    there = Tensor(fake_device(_u((3, 2, 3, 3), 52)), requires_grad=True)
    both = re.compile(r"cpu.*cuda:7|cuda:7.*cpu")
    with pytest.raises(TypeError, match=r"add: operands are on different devices") as err:
        _ = here + Tensor(fake_device(np.ones(4)))
    assert both.search(str(err.value))
    with pytest.raises(TypeError, match=both):
        cnnarray.cat([here.reshape(-1), there.reshape(-1)])
    with pytest.raises(TypeError, match=r"conv2d: x is on cpu but weight is on cuda:7"):
        cnnarray.conv2d(here, there)
    with pytest.raises(TypeError, match="gradient is on cuda:7 but the tensor is on cpu"):
        (here * 2).backward(fake_device(np.ones((1, 2, 4, 4))))


@requires_cuda
def test_mixed_devices_name_both_on_a_gpu():
    cpu = cnnarray.tensor(_u((1, 2, 4, 4), 53), requires_grad=True)
    gpu = cnnarray.tensor(_u((3, 2, 3, 3), 54), requires_grad=True, backend="cuda")
    with pytest.raises(TypeError, match=r"cpu.*cuda:0|cuda:0.*cpu"):
        _ = cpu + cnnarray.tensor(np.ones(4), backend="cuda")
    with pytest.raises(TypeError, match=r"x is on cpu but weight is on cuda:0"):
        cnnarray.conv2d(cpu, gpu)
    # .to() is recorded: the gradient comes back to the CPU leaf
    out = cnnarray.conv2d(cpu.to("cuda"), gpu).sum()
    out.backward()
    assert backend_of(cpu.grad).name == "cpu" and backend_of(gpu.grad).name == "cuda"


# --------------------------------------------------------------------------- arrays in, arrays out


def _on(value, backend):
    return cnnarray.asarray(value, backend) if isinstance(value, np.ndarray) else value


def _flat(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("spec", OPS, ids=lambda s: s.name)
def test_every_op_keeps_arrays_in_arrays_out(backend, spec):
    args, kwargs = spec.call_args(F64)
    args = tuple(_on(a, backend) for a in args)
    kwargs = {k: _on(v, backend) for k, v in kwargs.items()}
    before = [to_numpy(a).copy() for a in (*args, *kwargs.values()) if hasattr(a, "shape")]
    out = spec.fn(*args, **kwargs)
    for item in _flat(out):
        if item is None:
            continue
        assert not isinstance(item, Tensor), spec.name
        assert backend_of(item) == backend
        if item.ndim:  # NumPy gives 0-d results as scalars, as before autograd
            assert type(item) is backend.xp.ndarray, type(item)
    after = [to_numpy(a) for a in (*args, *kwargs.values()) if hasattr(a, "shape")]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"{spec.name} changed an input")
    # the same call with Tensors (no grad): Tensors of the same values, recording nothing
    wrapped = spec.fn(*(Tensor(a) if hasattr(a, "shape") else a for a in args), **kwargs)
    assert isinstance(wrapped, tuple) == isinstance(out, tuple), spec.name
    for got, want in zip(_flat(wrapped), _flat(out), strict=True):
        if want is None:
            assert got is None
            continue
        assert isinstance(got, Tensor) and not got.requires_grad and got.grad_fn is None
        # a tight tolerance rather than equality: GPU reductions need not repeat bit for bit
        assert_close(got.data, want, dtype=want.dtype, backend=backend, err_msg=spec.name)


def test_ops_have_rules_exactly_for_the_forward_ops():
    for spec in OPS:
        assert has_rule(getattr(ops, spec.name)) == (not spec.name.endswith("_backward")), spec.name


# --------------------------------------------------------------------------- each op's rule

# op name -> (differentiable inputs, constant inputs, keyword arguments); float64, small
RULE_CASES = {
    "conv2d": ({"x": _u((2, 2, 5, 5), 60), "weight": _u((4, 1, 3, 3), 61), "bias": _u(4, 62)},
               {}, {"stride": 2, "padding": 1, "groups": 2}),
    "conv2d_same_dilated": ({"x": _u((1, 2, 5, 4), 63), "weight": _u((3, 2, 2, 3), 64)}, {},
                            {"padding": "same", "dilation": (2, 1)}),
    "linear": ({"x": _u((3, 5), 65), "weight": _u((4, 5), 66), "bias": _u(4, 67)}, {}, {}),
    "linear_batched": ({"x": _u((2, 3, 5), 68), "weight": _u((2, 5), 69)}, {}, {}),
    "flatten": ({"x": _u((2, 3, 2, 2), 70)}, {}, {"start_axis": 1, "end_axis": 2}),
    "max_pool2d": ({"x": tie_free(np.random.default_rng(71), (2, 2, 5, 5), F64)}, {},
                   {"kernel_size": 3, "stride": 2, "padding": 1}),
    "avg_pool2d": ({"x": _u((1, 2, 5, 6), 72)}, {},
                   {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
    "adaptive_avg_pool2d": ({"x": _u((1, 2, 5, 7), 73)}, {}, {"output_size": (2, 3)}),
    "interpolate_bicubic": ({"x": _u((1, 2, 4, 5), 93)}, {},
                            {"scale_factor": (1.5, 0.6), "mode": "bicubic"}),
    "interpolate_nearest": ({"x": _u((2, 1, 3, 2, 4), 94)}, {}, {"size": (5, 3, 3)}),
    "pixel_shuffle": ({"x": _u((1, 8, 2, 3), 95)}, {}, {"upscale_factor": 2}),
    "pixel_unshuffle": ({"x": _u((2, 1, 4, 6), 96)}, {}, {"downscale_factor": 2}),
    "max_pool1d": ({"x": tie_free(np.random.default_rng(93), (2, 3, 9), F64)}, {},
                   {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    "max_pool3d": ({"x": tie_free(np.random.default_rng(94), (3, 4, 5, 4), F64)}, {},
                   {"kernel_size": (2, 3, 2), "stride": 2, "dilation": (1, 1, 2)}),
    "max_unpool1d": ({"x": _u((2, 3, 4), 97)},
                     {"indices": np.array([[[0, 3, 5, 6]] * 3, [[1, 2, 4, 7]] * 3])},
                     {"kernel_size": 2}),
    "max_unpool2d": ({"x": _u((2, 2, 2), 98)}, {"indices": np.array([[[0, 3], [9, 15]]] * 2)},
                     {"kernel_size": 2, "output_size": (5, 4)}),
    "max_unpool3d": ({"x": _u((1, 1, 2, 1, 2), 99)},
                     {"indices": np.array([0, 7, 9, 14]).reshape(1, 1, 2, 1, 2)},
                     {"kernel_size": (2, 2, 2), "stride": (2, 1, 2)}),
    "adaptive_avg_pool1d": ({"x": _u((2, 3, 7), 100)}, {}, {"output_size": 3}),
    "adaptive_avg_pool3d": ({"x": _u((1, 2, 3, 5, 4), 101)}, {}, {"output_size": (2, 3, None)}),
    "adaptive_max_pool1d": ({"x": tie_free(np.random.default_rng(102), (2, 3, 7), F64)}, {},
                            {"output_size": 3}),
    "adaptive_max_pool2d": ({"x": tie_free(np.random.default_rng(103), (2, 5, 7), F64)}, {},
                            {"output_size": (3, 4)}),
    "adaptive_max_pool3d": ({"x": tie_free(np.random.default_rng(104), (1, 2, 3, 5, 4), F64)},
                            {}, {"output_size": (2, 3, None)}),
    "lp_pool1d": ({"x": _u((2, 3, 7), 105, 0.5, 2)}, {},
                  {"norm_type": 2.0, "kernel_size": 3, "stride": 2, "ceil_mode": True}),
    "lp_pool2d": ({"x": _u((1, 2, 5, 4), 106, 0.5, 2)}, {},
                  {"norm_type": 1.5, "kernel_size": (2, 3), "stride": 1}),
    "lp_pool3d": ({"x": _u((2, 3, 4, 3), 107, 0.5, 2)}, {}, {"norm_type": 3, "kernel_size": 2}),
    "avg_pool1d": ({"x": _u((2, 2, 8), 95)}, {},
                   {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
    "avg_pool3d": ({"x": _u((1, 2, 4, 5, 3), 96)}, {},
                   {"kernel_size": 2, "stride": (1, 2, 1), "padding": 1, "divisor_override": 3}),
    "relu": ({"x": away_from_zero(np.random.default_rng(74), (3, 4), F64)}, {}, {}),
    "leaky_relu": ({"x": away_from_zero(np.random.default_rng(75), (3, 4), F64)}, {},
                   {"negative_slope": 0.1}),
    "sigmoid": ({"x": _u((3, 4), 76, -3, 3)}, {}, {}),
    "tanh": ({"x": _u((3, 4), 77, -2, 2)}, {}, {}),
    "softmax": ({"x": _u((3, 4), 78, -2, 2)}, {}, {"axis": 0}),
    "log_softmax": ({"x": _u((2, 3, 4), 79, -2, 2)}, {}, {"axis": 1}),
    "batch_norm2d": ({"x": _u((3, 2, 2, 2), 80), "weight": _u(2, 81), "bias": _u(2, 82)}, {},
                     {"training": True, "eps": 1e-3}),
    "batch_norm2d_eval": ({"x": _u((2, 3, 2, 2), 83), "weight": _u(3, 84)},
                          {"running_mean": _u(3, 85), "running_var": _u(3, 86, 0.5, 2)}, {}),
    "cross_entropy": ({"logits": _u((4, 5), 87, -2, 2)}, {"target": np.array([0, 4, 2, 2])},
                      {"label_smoothing": 0.1}),
    "cross_entropy_none": ({"logits": _u((4, 5), 88, -2, 2)}, {"target": np.array([1, 3, 0, 1])},
                           {"reduction": "none"}),
    "cross_entropy_sum": ({"logits": _u((3, 4), 89, -2, 2)},
                          {"target": np.array([3, 0, 0])},
                             {"reduction": "sum"}),
    # activation_more: inputs spread over the kinks (never within eps of one)
    "hardtanh": ({"x": _u((3, 4), 120, -2, 2)}, {}, {"min_val": -0.5, "max_val": 1.5}),
    "relu6": ({"x": _u((3, 4), 121, -2, 8)}, {}, {}),
    "hardsigmoid": ({"x": _u((3, 4), 122, -5, 5)}, {}, {}),
    "hardswish": ({"x": _u((3, 4), 123, -5, 5)}, {}, {}),
    "elu": ({"x": _u((3, 4), 124, -3, 3)}, {}, {"alpha": 0.7}),
    "selu": ({"x": _u((3, 4), 125, -3, 3)}, {}, {}),
    "celu": ({"x": _u((3, 4), 126, -3, 3)}, {}, {"alpha": 1.5}),
    "gelu": ({"x": _u((3, 4), 127, -3, 3)}, {}, {}),
    "gelu_tanh": ({"x": _u((3, 4), 128, -3, 3)}, {}, {"approximate": "tanh"}),
    "silu": ({"x": _u((3, 4), 129, -4, 4)}, {}, {}),
    "mish": ({"x": _u((3, 4), 130, -4, 4)}, {}, {}),
    "softplus": ({"x": _u((3, 4), 131, -4, 4)}, {}, {"beta": 2.0, "threshold": 3.0}),
    "batch_norm_1d": ({"x": _u((4, 3), 136), "weight": _u(3, 137), "bias": _u(3, 138)}, {},
                      {"training": True, "eps": 1e-3}),
    "batch_norm_3d_eval": ({"x": _u((2, 2, 2, 2, 3), 139), "weight": _u(2, 140)},
                           {"running_mean": _u(2, 141), "running_var": _u(2, 142, 0.5, 2)}, {}),
    "group_norm": ({"x": _u((2, 4, 3), 143), "weight": _u(4, 144), "bias": _u(4, 145)}, {},
                   {"num_groups": 2, "eps": 1e-3}),
    "layer_norm": ({"x": _u((2, 3, 4), 146), "weight": _u((3, 4), 147), "bias": _u((3, 4), 148)},
                   {}, {"normalized_shape": (3, 4)}),
    "instance_norm": ({"x": _u((2, 3, 4), 149), "weight": _u(3, 150), "bias": _u(3, 151)}, {},
                      {"eps": 1e-3}),
    "instance_norm_running": ({"x": _u((2, 3, 2, 2), 152), "weight": _u(3, 153)},
                              {"running_mean": _u(3, 154), "running_var": _u(3, 155, 0.5, 2)},
                              {"use_input_stats": False}),
    # dropout with a given mask: deterministic, so finite differences apply
    "dropout": ({"x": _u((3, 4), 156)}, {"mask": (_u((3, 4), 157) > 0) * 2.0}, {"p": 0.5}),
    "dropout1d": ({"x": _u((2, 3, 4), 158)}, {"mask": (_u((2, 3, 1), 159) > 0) * 2.0}, {}),
    "dropout2d": ({"x": _u((3, 2, 2), 160)}, {"mask": (_u((3, 1, 1), 161) > 0) * 4.0},
                  {"p": 0.75}),
    "dropout3d_seeded": ({"x": _u((1, 2, 2, 2, 2), 162)}, {}, {"generator": 3}),
    "prelu": ({"x": _u((2, 3, 4), 132), "weight": _u(3, 133)}, {}, {}),
    "prelu_one_slope": ({"x": _u((2, 3), 134), "weight": _u(1, 135)}, {}, {}),
    "cross_entropy_weighted_nd": ({"logits": _u((2, 3, 2, 2), 100, -2, 2)},
                                  {"target": np.array([[[0, 2], [-100, 1]], [[2, 2], [1, 0]]]),
                                   "weight": _u(3, 101, 0.5, 2)}, {"label_smoothing": 0.2}),
    "cross_entropy_probabilities": ({"logits": _u((3, 4), 102, -2, 2)},
                                    {"target": _u((3, 4), 103, 0, 1)}, {"reduction": "sum"}),
    "nll_loss": ({"input": _u((4, 5), 104, -3, 0)},
                 {"target": np.array([0, 4, -100, 2]), "weight": _u(5, 105, 0.5, 2)}, {}),
    "binary_cross_entropy": ({"input": _u((3, 4), 106, 0.05, 0.95)},
                             {"target": _u((3, 4), 107, 0, 1), "weight": _u(4, 108, 0.5, 2)}, {}),
    "binary_cross_entropy_with_logits": ({"input": _u((3, 4), 109, -3, 3)},
                                         {"target": _u((3, 4), 110, 0, 1),
                                          "pos_weight": _u(4, 111, 0.5, 3)}, {}),
    "kl_div": ({"input": _u((3, 4), 112, -3, 0)}, {"target": _u((3, 4), 113, 0, 1)},
               {"reduction": "batchmean"}),
    "mse_loss": ({"input": _u((3, 4), 114), "target": _u((3, 4), 115)}, {}, {}),
    "l1_loss": ({"input": _u((3, 4), 116), "target": _u((3, 4), 117)}, {}, {"reduction": "sum"}),
    "smooth_l1_loss": ({"input": _u((3, 4), 118), "target": _u((3, 4), 119)}, {},
                       {"beta": 0.5, "reduction": "none"}),
    "huber_loss": ({"input": _u((3, 4), 120), "target": _u((3, 4), 121)}, {}, {"delta": 0.7}),
    "conv1d": ({"x": _u((2, 2, 7), 95), "weight": _u((4, 1, 3), 96), "bias": _u(4, 97)}, {},
               {"stride": 2, "padding": 1, "groups": 2}),
    "conv3d": ({"x": _u((1, 2, 4, 3, 4), 98), "weight": _u((2, 2, 2, 2, 3), 99),
                "bias": _u(2, 100)}, {}, {"padding": "same", "dilation": (1, 2, 1)}),
    "conv_transpose1d": ({"x": _u((2, 2, 3), 101), "weight": _u((2, 3, 3), 102),
                          "bias": _u(3, 103)}, {}, {"stride": 2, "output_padding": 1}),
    "conv_transpose2d": ({"x": _u((1, 4, 3, 2), 104), "weight": _u((4, 1, 2, 3), 105)}, {},
                         {"stride": (2, 1), "padding": (1, 0), "groups": 2, "dilation": 2}),
    "conv_transpose3d": ({"x": _u((2, 2, 2, 3), 106), "weight": _u((2, 2, 2, 2, 2), 107),
                          "bias": _u(2, 108)}, {}, {"stride": 2, "padding": 1}),
    "pad_reflect": ({"x": _u((2, 3, 4), 93)}, {}, {"pad": (2, -1, 1, 2), "mode": "reflect"}),
    "pad_constant": ({"x": _u((2, 3), 94)}, {}, {"pad": (1, 0, -1, 2), "value": 0.5}),
}  # fmt: skip

# the losses' backward take the forward's arguments and grad_out; their gradients in order
LOSS_GRADS = {"cross_entropy": ("logits",), "nll_loss": ("input",),
              "binary_cross_entropy": ("input",), "binary_cross_entropy_with_logits": ("input",),
              "kl_div": ("input",), "mse_loss": ("input", "target"), "l1_loss": ("input", "target"),
              "smooth_l1_loss": ("input", "target"), "huber_loss": ("input", "target")}  # fmt: skip


def _op_of(case: str):
    for name in sorted(ops.__all__, key=len, reverse=True):
        if case.startswith(name) and not name.endswith("_backward"):
            return name
    raise KeyError(case)


def _direct_backward(name, g, inputs, consts, kwargs):
    """The op's own ``*_backward`` on arrays: one gradient per differentiable input."""
    if name.startswith("dropout"):  # the mask the forward drew, from the same seed
        mask = consts.get("mask")
        if mask is None:
            mask = ops.dropout_mask(inputs["x"], 0.5, int(name[-2]), generator=kwargs["generator"])
        return {"x": ops.dropout_backward(g, mask)}
    backward = getattr(ops, f"{name}_backward")
    if name in LOSS_GRADS:
        out = backward(**inputs, **consts, **kwargs, grad_out=g)
        grads = dict(zip(LOSS_GRADS[name], _flat(out), strict=True))
        return {k: grads[k] for k in inputs}
    kwargs = {k: v for k, v in kwargs.items() if k not in ("momentum", "value")}
    out = backward(g, **inputs, **consts, **kwargs)
    xwb = ("x", "weight", "bias")
    names = xwb if name.startswith("conv") else {
        "linear": xwb, "batch_norm2d": xwb, "batch_norm": xwb, "group_norm": xwb,
        "layer_norm": xwb, "instance_norm": xwb, "prelu": ("x", "weight"),
    }.get(name, ("x",))  # fmt: skip
    grads = dict(zip(names, _flat(out), strict=True))
    return {k: grads[k] for k in inputs}


@pytest.mark.parametrize("case", sorted(RULE_CASES))
def test_each_rule_gives_the_ops_backward_and_finite_differences(backend, case):
    name = _op_of(case)
    op = getattr(cnnarray, name)
    inputs, consts, kwargs = RULE_CASES[case]
    consts = {k: cnnarray.asarray(v, backend) for k, v in consts.items()}
    leaves = {k: _t(v, backend, requires_grad=True) for k, v in inputs.items()}
    out = op(**leaves, **consts, **kwargs)
    assert out.requires_grad and out.grad_fn.name == name
    g = cnnarray.asarray(np.random.default_rng(90).standard_normal(out.shape), backend)
    out.backward(g)
    arrays = {k: cnnarray.asarray(v, backend) for k, v in inputs.items()}
    direct = _direct_backward(name, g, arrays, consts, kwargs)
    for key, leaf in leaves.items():
        assert_close(leaf.grad, direct[key], dtype=F64, backend=backend, err_msg=f"{key} vs direct")

        def objective(v, key=key):
            args = {**arrays, key: cnnarray.asarray(v, backend)}
            return vjp_objective(op(**args, **consts, **kwargs), to_numpy(g))

        numeric = numerical_grad(objective, inputs[key])
        assert_grad_close(leaf.grad, numeric, f"{case}: grad of {key}")


def test_every_rule_is_tested():
    tested = {_op_of(case) for case in RULE_CASES}
    assert tested == {n for n in ops.__all__ if has_rule(getattr(ops, n))}


def test_conv2d_input_gradient_is_skipped_when_x_needs_none(backend):
    x = _t(_u((1, 2, 4, 4), 91), backend)
    w = _t(_u((3, 2, 3, 3), 92), backend, requires_grad=True)
    cnnarray.conv2d(x, w, padding=1).sum().backward()
    assert x.grad is None and w.grad.shape == (3, 2, 3, 3)


# --------------------------------------------------------------------------- the Tensor itself


def test_tensor_conversions(backend):
    data = cnnarray.asarray(np.array([[1.5, -2.0]]), backend)
    t = Tensor(data, requires_grad=True)
    assert t.data is data and t.backend == backend and t.shape == (1, 2) and t.ndim == 2
    assert t.size == 2 and len(t) == 1 and t.dtype == np.float64
    n = t.numpy()
    assert type(n) is np.ndarray and n.tolist() == [[1.5, -2.0]] == t.tolist()
    assert t[0, 1].item() == -2.0 and float(t[0, 0]) == 1.5 and int(t[0, 0]) == 1
    assert isinstance(t.sum().item(), float)
    with pytest.raises(ValueError, match=r"item\(\) needs a tensor with one element"):
        t.item()
    assert t.to(backend) is t and t.to(str(backend)) is t
    d = t.detach()
    assert d.data is data and not d.requires_grad
    with pytest.raises(ValueError):
        t.to("tpu")


def test_tensor_factory_dtypes_and_placement(backend):
    assert cnnarray.tensor([1.0, 2.0]).dtype == np.float64
    assert cnnarray.tensor([1, 2]).dtype == np.int64
    assert cnnarray.tensor(1.5).shape == () and cnnarray.tensor(1.5).dtype == np.float64
    assert cnnarray.tensor([1, 2], dtype="float32").dtype == np.float32
    t = cnnarray.tensor([1.0, 2.0], backend=backend)
    assert t.backend == backend and not t.requires_grad
    assert cnnarray.tensor(t.data).backend == backend  # an array stays where it is
    assert cnnarray.tensor(t).data is t.data
    assert np.asarray(cnnarray.tensor([3.0])).tolist() == [3.0]


def test_tensor_repr():
    assert repr(cnnarray.tensor([1.0, 2.0])) == "Tensor(array([1., 2.]), backend=cpu)"
    leaf = cnnarray.tensor([1.0], requires_grad=True)
    assert repr(leaf) == "Tensor(array([1.]), requires_grad=True, backend=cpu)"
    assert repr(leaf * 2) == "Tensor(array([2.]), grad_fn=mul, backend=cpu)"
    assert "grad_fn=relu" in repr(cnnarray.relu(leaf))
    assert repr(nn.Parameter(np.zeros((2, 3)))) == "Parameter(shape=(2, 3), dtype=float64, on cpu)"


def test_tensors_hash_by_identity_and_refuse_numpy_ufuncs():
    a, b = cnnarray.tensor([1.0]), cnnarray.tensor([1.0])
    assert len({a, b, a}) == 2
    with pytest.raises(TypeError):
        np.add(a, b)


def test_backward_times_collects_op_names(backend):
    x = _t(_u((1, 1, 5, 5), 93), backend)
    w = _t(_u((2, 1, 3, 3), 94), backend, requires_grad=True)
    with backward_times() as times:
        loss = (cnnarray.relu(cnnarray.conv2d(x, w)) * 2).sum()
        loss.backward()
    assert set(times.seconds) == {"conv2d", "relu", "mul", "sum"}
    assert all(isinstance(s, float) and s >= 0 for s in times.seconds.values())
    with backward_times() as outer:
        with backward_times() as inner:
            (w * w).sum().backward()
        (w.exp()).sum().backward()
    assert set(inner.seconds) == {"mul", "sum"} and set(outer.seconds) == {"exp", "sum"}
    (w * 3).sum().backward()  # outside: nothing collected
    assert set(outer.seconds) == {"exp", "sum"}


def test_no_grad_decorates_without_parentheses_too() -> None:
    x = cnnarray.tensor([1.0, 2.0], requires_grad=True)

    @cnnarray.no_grad
    def doubled(t):
        return t * 2

    assert not doubled(x).requires_grad and doubled.__name__ == "doubled"
    assert (x * 2).requires_grad


def test_module_backward_of_a_tuple_output_says_what_to_do() -> None:
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2, dtype="float64", seed=0)

        def forward(self, x):
            return self.lin(x), self.lin(x) * 2

    model = Two()
    model(np.ones((1, 2)))
    with pytest.raises(TypeError, match=r"forward returned tuple.*Tensor loss"):
        model.backward(np.ones((1, 2)))
