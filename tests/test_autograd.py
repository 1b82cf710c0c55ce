"""cnnarray.autograd: the tape against hand-derived values, central differences and PyTorch.

Every gradient is checked against an oracle that does not share the code under test:
values worked out by hand, float64 central differences (:func:`helpers.numerical_grad`),
or torch autograd. The ops of :mod:`cnnarray.ops` are also checked to hand the tape
exactly what their own ``*_backward`` gives.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    OPS,
    assert_close,
    assert_grad_close,
    numerical_grad,
    vjp_objective,
)

import cnnarray
from cnnarray import Tensor, nn
from cnnarray.backend import backend_of, to_numpy

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
