"""cnnarray.optim: updates and schedules against PyTorch, state round trips, errors, training."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import RTOL, assert_close

import cnnarray
from cnnarray import nn, optim
from cnnarray.backend import to_numpy

SHAPES = [(3, 4), (4,), (2, 2, 3, 3)]


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _initial(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _grads(step, dtype):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _ours(arrays, backend):
    return [nn.Parameter(cnnarray.asarray(a.copy(), backend)) for a in arrays]


def _group(params, groups):
    """Split a list of parameters into the groups [(indices, overrides), ...] or keep it whole."""
    if groups is None:
        return params
    return [{"params": [params[i] for i in idx], **extra} for idx, extra in groups]


def _run_against_torch(torch, backend, dtype, ours_cls, torch_cls, kwargs, groups=None, steps=6):
    arrays = _initial(dtype)
    ours = _ours(arrays, backend)
    theirs = [torch.nn.Parameter(torch.tensor(a)) for a in arrays]
    opt = ours_cls(_group(ours, groups), **kwargs)
    topt = torch_cls(_group(theirs, groups), **kwargs)
    for step in range(steps):
        for i, (p, tp, g) in enumerate(zip(ours, theirs, _grads(step, dtype), strict=True)):
            skip = step == 2 and i == 1  # a parameter without gradient is left alone
            p.grad = None if skip else cnnarray.asarray(g, backend)
            tp.grad = None if skip else torch.tensor(g)
        opt.step()
        topt.step()
        for i, (p, tp) in enumerate(zip(ours, theirs, strict=True)):
            assert_close(
                p.data,
                tp.detach().numpy(),
                dtype=dtype,
                backend=backend,
                rtol=10 * RTOL[np.dtype(dtype)],
                err_msg=f"step {step}, parameter {i}",
            )
    return opt


SGD_CONFIGS = [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
    {"lr": 0.1, "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.1},
]
ADAM_CONFIGS = [
    {},
    {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
]


@pytest.mark.parametrize("config", SGD_CONFIGS, ids=range(len(SGD_CONFIGS)))
def test_sgd_matches_torch(backend, dtype, torch, config):
    _run_against_torch(torch, backend, dtype, optim.SGD, torch.optim.SGD, config)


@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=range(len(ADAM_CONFIGS)))
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_and_adamw_match_torch(backend, dtype, torch, name, config):
    _run_against_torch(
        torch, backend, dtype, getattr(optim, name), getattr(torch.optim, name), config
    )


def test_adamw_default_weight_decay_matches_torch(backend, torch):
    assert optim.AdamW(_ours(_initial(np.float64), backend)).defaults["weight_decay"] == 0.01
    _run_against_torch(torch, backend, np.float64, optim.AdamW, torch.optim.AdamW, {"lr": 0.01})


def test_parameter_groups_match_torch(backend, torch):
    groups = [([0, 2], {"lr": 0.3}), ([1], {"momentum": 0.0, "weight_decay": 0.5})]
    opt = _run_against_torch(
        torch, backend, np.float64, optim.SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9},
        groups=groups,
    )  # fmt: skip
    assert [g["lr"] for g in opt.param_groups] == [0.3, 0.1]
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.0]
    _run_against_torch(
        torch, backend, np.float64, optim.Adam, torch.optim.Adam, {"lr": 0.01},
        groups=[([0], {"betas": (0.5, 0.9)}), ([1, 2], {})],
    )  # fmt: skip


def test_zero_grad_clears_every_parameter():
    params = _ours(_initial(np.float32), "cpu")
    for p, g in zip(params, _grads(0, np.float32), strict=True):
        p.grad = g
    optim.SGD(params, lr=0.1).zero_grad()
    assert all(p.grad is None for p in params)


def _checkpoint(state):
    """What a trip through a file does: NumPy copies, string keys, 0-d arrays for ints."""
    out = copy.deepcopy({**state, "state": {str(k): v for k, v in state["state"].items()}})
    for entries in out["state"].values():
        for name, value in entries.items():
            entries[name] = np.asarray(to_numpy(value)).copy()
    return out


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        lambda p: optim.Adam(p, lr=0.01, weight_decay=0.01),
        lambda p: optim.AdamW([{"params": p[:1], "lr": 0.1}, {"params": p[1:]}]),
    ],
    ids=["sgd", "adam", "adamw-groups"],
)
def test_state_dict_round_trip_resumes_exactly(backend, make):
    params = _ours(_initial(np.float64), backend)
    opt = make(params)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    for step in range(3):
        for p, g in zip(params, _grads(step, np.float64), strict=True):
            p.grad = cnnarray.asarray(g, backend)
        opt.step()
        sched.step()
    saved, saved_sched = _checkpoint(opt.state_dict()), sched.state_dict()

    resumed = _ours([to_numpy(p.data) for p in params], backend)
    opt2 = make(resumed)
    sched2 = optim.StepLR(opt2, step_size=2, gamma=0.5)
    opt2.load_state_dict(saved)
    sched2.load_state_dict(saved_sched)
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    for step in range(3, 6):
        for p, q, g in zip(params, resumed, _grads(step, np.float64), strict=True):
            p.grad, q.grad = cnnarray.asarray(g, backend), cnnarray.asarray(g, backend)
        opt.step(), opt2.step()
        sched.step(), sched2.step()
        for p, q in zip(params, resumed, strict=True):
            assert_close(q.data, to_numpy(p.data), dtype=np.float64, backend=backend, rtol=0)
    for entries in opt2.state.values():
        for value in entries.values():
            if hasattr(value, "shape"):
                assert cnnarray.backend_of(value) == backend


def test_state_dict_layout_follows_torch():
    params = _ours(_initial(np.float32), "cpu")
    opt = optim.Adam(params, lr=0.01)
    params[0].grad = np.ones(SHAPES[0], np.float32)
    opt.step()
    state = opt.state_dict()
    assert list(state["state"]) == [0]
    assert state["state"][0]["step"] == 1
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert state["param_groups"][0]["params"] == [0, 1, 2]
    assert state["param_groups"][0]["lr"] == 0.01


def test_load_state_dict_rejects_mismatches():
    params = _ours(_initial(np.float32), "cpu")
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad = np.ones(p.shape, np.float32)
    opt.step()
    state = opt.state_dict()
    with pytest.raises(ValueError, match="has 1 parameter groups, this optimizer has 2"):
        optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="has 3 parameters, this optimizer's has 2"):
        optim.SGD(params[:2], lr=0.1).load_state_dict(state)
    swapped = _ours([np.zeros(s, np.float32) for s in reversed(SHAPES)], "cpu")
    with pytest.raises(ValueError, match=r"'momentum_buffer' of parameter 0 has shape \(3, 4\)"):
        optim.SGD(swapped, lr=0.1, momentum=0.9).load_state_dict(state)
    with pytest.raises(ValueError, match="'param_groups' list"):
        opt.load_state_dict({"state": {}})


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda p: optim.SGD(p, lr=-0.1), ValueError, "lr must be a non-negative"),
        (lambda p: optim.SGD(p, lr=0.1, nesterov=True), ValueError, "nesterov"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=-1), ValueError, "momentum"),
        (lambda p: optim.Adam(p, betas=(1.0, 0.9)), ValueError, "betas"),
        (lambda p: optim.Adam(p, eps=-1), ValueError, "eps"),
        (lambda p: optim.AdamW(p, weight_decay=-0.1), ValueError, "weight_decay"),
        (lambda p: optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
        (lambda p: optim.SGD(p + p[:1], lr=0.1), ValueError, "more than once"),
        (lambda p: optim.SGD([np.zeros(3)], lr=0.1), TypeError, "nn.Parameter"),
        (lambda p: optim.SGD([{"params": p, "lr": 0.1, "betas": 1}], lr=0.1), ValueError,
         r"unknown hyperparameters \['betas'\]"),
        (lambda p: optim.StepLR(optim.SGD(p, lr=0.1), step_size=0), ValueError, "step_size"),
        (lambda p: optim.CosineAnnealingLR(optim.SGD(p, lr=0.1), T_max=0), ValueError, "T_max"),
        (lambda p: optim.StepLR(object(), 1), TypeError, "expected an Optimizer"),
    ],
)  # fmt: skip
def test_constructors_reject_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make(_ours(_initial(np.float32), "cpu"))


# --------------------------------------------------------------------------- schedulers


SCHEDULES = [
    ("StepLR", {"step_size": 3}),
    ("StepLR", {"step_size": 2, "gamma": 0.5}),
    ("CosineAnnealingLR", {"T_max": 10}),
    ("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.001}),
]


@pytest.mark.parametrize(
    "name, kwargs", SCHEDULES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULES)]
)
def test_schedulers_match_torch(torch, name, kwargs):
    params = _ours(_initial(np.float32), "cpu")
    opt = optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.02}], lr=0.1)
    sched = getattr(optim, name)(opt, **kwargs)
    tparams = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    topt = torch.optim.SGD([{"params": tparams[:1]}, {"params": tparams[1:], "lr": 0.02}], lr=0.1)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    for epoch in range(25):
        np.testing.assert_allclose(
            sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-12, err_msg=f"epoch {epoch}"
        )
        np.testing.assert_allclose([g["lr"] for g in opt.param_groups], sched.get_last_lr())
        opt.step(), topt.step()
        sched.step(), tsched.step()


def test_cosine_schedule_reaches_eta_min_at_t_max():
    opt = optim.SGD(_ours(_initial(np.float32), "cpu"), lr=1.0)
    sched = optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(4):
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    np.testing.assert_allclose(lrs, [1.0, 0.1 + 0.9 * (1 + np.cos(np.pi / 4)) / 2, 0.55,
                                     0.1 + 0.9 * (1 + np.cos(3 * np.pi / 4)) / 2, 0.1])  # fmt: skip
    assert sched.state_dict() == {"last_epoch": 4, "base_lrs": [1.0]}


# --------------------------------------------------------------------------- training


def _toy_problem(n=64, seed=0):
    """8x8 images whose class says which quadrant is brightest."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.5, (n, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, n)
    for i, label in enumerate(y):
        r, c = divmod(int(label), 2)
        x[i, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 0.5
    return x, y


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: optim.AdamW(p, lr=3e-3),
    ],
    ids=["sgd", "adamw"],
)
def test_training_a_small_cnn_lowers_the_loss(backend, make):
    model = nn.small_cnn(num_classes=4, seed=0).to(backend)
    opt = make(model.parameters())
    x, y = (cnnarray.asarray(a, backend) for a in _toy_problem())
    losses = []
    for _ in range(15):
        logits = model(x)
        losses.append(float(cnnarray.cross_entropy(logits, y)))
        opt.zero_grad()
        model.backward(cnnarray.cross_entropy_backward(logits, y))
        opt.step()
    assert losses[-1] < 0.5 * losses[0], losses
    model.eval()
    accuracy = float((to_numpy(model(x)).argmax(1) == to_numpy(y)).mean())
    assert accuracy > 0.9
