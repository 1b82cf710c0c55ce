"""cnnarray.nn: layer gradients against central differences and PyTorch, Module API, models."""

from __future__ import annotations

import ast
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    assert_close,
    assert_grad_close,
    away_from_zero,
    numerical_grad,
    tie_free,
    vjp_objective,
)

import cnnarray
from cnnarray import nn
from cnnarray.backend import to_numpy

F64 = np.float64


def _on(array, backend):
    return cnnarray.asarray(array, backend)


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


# --------------------------------------------------------------------------- gradient checks


def check_layer_gradients(layer, x, backend, seed=0):
    """Compare a layer's backward (input and parameter grads) with central differences."""
    layer.to(backend).train()
    x_dev = _on(x, backend)
    y = layer(x_dev)
    g = np.random.default_rng(seed).uniform(-1, 1, y.shape)
    layer.zero_grad()
    gx = layer.backward(_on(g, backend))
    assert cnnarray.backend_of(gx) == backend

    def objective_x(v):
        return vjp_objective(layer(_on(v, backend)), g)

    assert_grad_close(gx, numerical_grad(objective_x, x), "grad_x")
    for name, p in layer.named_parameters():
        original = to_numpy(p.data).copy()

        def objective_p(v, p=p):
            p.data[...] = _on(v, backend)
            return vjp_objective(layer(x_dev), g)

        numeric = numerical_grad(objective_p, original)
        p.data[...] = _on(original, backend)
        assert_grad_close(p.grad, numeric, f"grad of {name}")


def _x(shape, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, shape)


LAYER_CASES = {
    "conv": lambda: (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=F64, seed=0),
                     _x((2, 4, 6, 5))),
    "conv_dilated_nobias": lambda: (nn.Conv2d(2, 3, (2, 3), dilation=(2, 1), padding="same",
                                              bias=False, dtype=F64, seed=0), _x((2, 2, 5, 5))),
    "linear": lambda: (nn.Linear(5, 3, dtype=F64, seed=0), _x((4, 5))),
    "batchnorm": lambda: (nn.BatchNorm2d(3, dtype=F64), _x((4, 3, 3, 2))),
    "batchnorm_no_affine": lambda: (nn.BatchNorm2d(2, affine=False, dtype=F64), _x((3, 2, 2, 2))),
    "maxpool": lambda: (nn.MaxPool2d(3, stride=2, padding=1),
                        tie_free(np.random.default_rng(2), (2, 2, 5, 6), F64)),
    "avgpool": lambda: (nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
                        _x((2, 2, 5, 6))),
    "adaptive_avgpool": lambda: (nn.AdaptiveAvgPool2d((3, 2)), _x((2, 2, 7, 5))),
    "adaptive_avgpool_global": lambda: (nn.AdaptiveAvgPool2d(1), _x((2, 3, 4, 4))),
    "relu": lambda: (nn.ReLU(), away_from_zero(np.random.default_rng(3), (3, 4, 2), F64)),
    "leaky_relu": lambda: (nn.LeakyReLU(0.2),
                           away_from_zero(np.random.default_rng(3), (3, 4), F64)),
    "flatten": lambda: (nn.Flatten(), _x((2, 3, 2, 2))),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layer_backward_matches_finite_differences(backend, case):
    layer, x = LAYER_CASES[case]()
    check_layer_gradients(layer, x, backend)


def test_sequential_with_cross_entropy_matches_finite_differences(backend):
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, dtype=F64, seed=0),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(12, 4, dtype=F64, seed=1),
    ).to(backend)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 4, 4))
    target = _on(np.array([0, 3, 1]), backend)

    def loss(v=None):
        return cnnarray.cross_entropy(model(_on(x if v is None else v, backend)), target)

    logits = model(_on(x, backend))
    gx = model.backward(cnnarray.cross_entropy_backward(logits, target))
    assert_grad_close(gx, numerical_grad(loss, x), "grad_x")
    for name, p in model.named_parameters():
        original = to_numpy(p.data).copy()

        def loss_p(v, p=p):
            p.data[...] = _on(v, backend)
            return loss()

        numeric = numerical_grad(loss_p, original)
        p.data[...] = _on(original, backend)
        assert_grad_close(p.grad, numeric, f"grad of {name}")


def test_gradients_accumulate_until_zero_grad():
    layer = nn.Linear(3, 2, dtype=F64, seed=0)
    x, g = _x((4, 3)), _x((4, 2), seed=2)
    layer(x)
    layer.backward(g)
    first = layer.weight.grad.copy()
    layer(x)
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * first)
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None


def test_backward_needs_a_training_forward_and_uses_it_up():
    layer = nn.Conv2d(1, 2, 3, seed=0)
    x = np.ones((1, 1, 4, 4), np.float32)
    with pytest.raises(RuntimeError, match="forward pass in training mode"):
        layer.backward(np.ones((1, 2, 2, 2), np.float32))
    layer(x)
    layer.backward(np.ones((1, 2, 2, 2), np.float32))
    with pytest.raises(RuntimeError, match="uses up"):
        layer.backward(np.ones((1, 2, 2, 2), np.float32))
    layer.eval()
    layer(x)
    with pytest.raises(RuntimeError, match="training=False"):
        layer.backward(np.ones((1, 2, 2, 2), np.float32))


# --------------------------------------------------------------------------- against PyTorch


def _copy_to_torch(torch, ours, theirs):
    """Copy our parameters and buffers into the torch module of the same structure."""
    state = {k: torch.tensor(to_numpy(v)) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state)


def _compare_with_torch(torch, ours, theirs, x, backend, rtol=None):
    """Forward and backward of ``ours`` on ``backend`` against the torch module, float64."""
    ours.to(backend)
    _copy_to_torch(torch, ours, theirs)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    y = ours(_on(x, backend))
    assert_close(y, ty.detach().numpy(), dtype=F64, backend=backend, rtol=rtol, err_msg="output")
    if not ours.training:
        return
    g = np.random.default_rng(9).standard_normal(tuple(ty.shape))
    theirs.zero_grad()
    ty.backward(torch.tensor(g))
    ours.zero_grad()
    gx = ours.backward(_on(g, backend))
    assert_close(gx, tx.grad.numpy(), dtype=F64, backend=backend, rtol=rtol, err_msg="grad_x")
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        want = theirs_params[name].grad.numpy()
        assert_close(p.grad, want, dtype=F64, backend=backend, rtol=rtol, err_msg=name)


CONV_CONFIGS = [
    {"in_channels": 3, "out_channels": 4, "kernel_size": 3},
    {"in_channels": 4, "out_channels": 6, "kernel_size": (3, 2), "stride": (2, 1), "padding": 1,
     "groups": 2},
    {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "padding": "same", "dilation": 2,
     "bias": False},
    {"in_channels": 3, "out_channels": 3, "kernel_size": 1, "groups": 3},
]  # fmt: skip


@pytest.mark.parametrize("config", CONV_CONFIGS, ids=range(len(CONV_CONFIGS)))
def test_conv2d_layer_matches_torch(backend, torch, config):
    ours = nn.Conv2d(**config, dtype=F64, seed=0)
    theirs = torch.nn.Conv2d(**config, dtype=torch.float64)
    _compare_with_torch(torch, ours, theirs, _x((2, config["in_channels"], 7, 6)), backend)


def test_linear_layer_matches_torch(backend, torch):
    ours, theirs = nn.Linear(6, 4, dtype=F64, seed=0), torch.nn.Linear(6, 4, dtype=torch.float64)
    _compare_with_torch(torch, ours, theirs, _x((5, 6)), backend)


POOLS = [
    ("MaxPool2d", {"kernel_size": 2}),
    ("MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("MaxPool2d", {"kernel_size": 2, "stride": 1, "dilation": 2}),
    ("AvgPool2d", {"kernel_size": 2}),
    ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                   "count_include_pad": False}),
    ("AvgPool2d", {"kernel_size": 3, "stride": 1, "padding": 1, "divisor_override": 4}),
    ("AdaptiveAvgPool2d", {"output_size": 1}),
    ("AdaptiveAvgPool2d", {"output_size": (2, 3)}),
    ("AdaptiveAvgPool2d", {"output_size": (4, 4)}),
    ("AdaptiveAvgPool2d", {"output_size": (None, 2)}),
    ("AdaptiveAvgPool2d", {"output_size": (9, 8)}),
]  # fmt: skip


@pytest.mark.parametrize("name, config", POOLS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(POOLS)])
def test_pool_layers_match_torch(backend, torch, name, config):
    x = tie_free(np.random.default_rng(0), (2, 3, 7, 6), F64)
    ours, theirs = getattr(nn, name)(**config), getattr(torch.nn, name)(**config)
    _compare_with_torch(torch, ours, theirs, x, backend)


@pytest.mark.parametrize("name, args", [("ReLU", ()), ("LeakyReLU", (0.1,)), ("Flatten", ())])
def test_activation_and_flatten_layers_match_torch(backend, torch, name, args):
    x = away_from_zero(np.random.default_rng(1), (2, 3, 4, 2), F64)
    _compare_with_torch(torch, getattr(nn, name)(*args), getattr(torch.nn, name)(*args), x, backend)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_matches_torch_in_training_and_eval(backend, torch, momentum, affine):
    ours = nn.BatchNorm2d(3, momentum=momentum, affine=affine, dtype=F64).to(backend)
    theirs = torch.nn.BatchNorm2d(3, momentum=momentum, affine=affine, dtype=torch.float64)
    if affine:  # non-trivial scale and shift
        ours.weight.data[...] = _on(np.array([1.5, -0.5, 2.0]), backend)
        ours.bias.data[...] = _on(np.array([0.1, 0.2, -0.3]), backend)
    _copy_to_torch(torch, ours, theirs)
    rng = np.random.default_rng(5)
    for step in range(3):
        x = rng.normal(step, 1 + step, (4, 3, 3, 2))
        _compare_with_torch(torch, ours, theirs, x, backend)
        for key, want in theirs.state_dict().items():
            got = ours.state_dict()[key]
            if key == "num_batches_tracked":
                assert int(got) == int(want) == step + 1
            else:
                assert_close(got, want.numpy(), dtype=F64, backend=backend, err_msg=key)
    ours.eval(), theirs.eval()
    _compare_with_torch(torch, ours, theirs, rng.normal(0, 2, (2, 3, 4, 4)), backend)


def test_batchnorm_without_running_stats_matches_torch(backend, torch):
    ours = nn.BatchNorm2d(2, track_running_stats=False, dtype=F64)
    theirs = torch.nn.BatchNorm2d(2, track_running_stats=False, dtype=torch.float64)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    _compare_with_torch(torch, ours, theirs, _x((3, 2, 2, 2)), backend)
    ours.eval(), theirs.eval()
    _compare_with_torch(torch, ours, theirs, _x((3, 2, 2, 2), seed=2), backend)


def test_batchnorm_checks_its_input():
    bn = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match="expected x with 3 channels"):
        bn(np.ones((2, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"shape \(N, 3, H, W\)"):
        bn(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(np.ones((1, 3, 1, 1), np.float32))
    with pytest.raises(TypeError, match="float64"):
        bn(np.ones((2, 3, 2, 2)))
    assert bn(np.ones((2, 3, 2, 2), np.int64)).dtype == np.float32


def test_dropout_is_identity_in_eval_like_torch(backend, torch):
    x = _x((3, 4, 5))
    ours, theirs = nn.Dropout(0.3).eval(), torch.nn.Dropout(0.3).eval()
    _compare_with_torch(torch, ours, theirs, x, backend)
    x_dev = _on(x, backend)
    assert ours(x_dev) is x_dev


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 1.0])
def test_dropout_training_masks_and_scales(backend, p):
    x = _on(np.random.default_rng(0).uniform(1, 2, (64, 128)).astype(np.float32), backend)
    layer = nn.Dropout(p, seed=3)
    y = to_numpy(layer(x))
    kept = y != 0
    assert abs(kept.mean() - (1 - p)) < 0.02
    xs = to_numpy(x)
    if p < 1:
        np.testing.assert_allclose(y[kept], xs[kept] / (1 - p), rtol=1e-6)
    g = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    gx = to_numpy(layer.backward(_on(g, backend)))
    np.testing.assert_allclose(gx, np.where(kept, g / (1 - p) if p < 1 else 0, 0), rtol=1e-6)
    again = nn.Dropout(p, seed=3)
    np.testing.assert_array_equal(to_numpy(again(x)), y)


def test_dropout_rejects_bad_probability():
    for p in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\]"):
            nn.Dropout(p)


def test_default_init_follows_pytorch_bounds():
    conv = nn.Conv2d(8, 16, 3, groups=2, seed=0)
    bound = 1 / np.sqrt(4 * 9)
    for p in (conv.weight, conv.bias):
        assert np.abs(p.data).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.95 * bound  # uniform, not a narrower law
    assert abs(conv.weight.data.std() - bound / np.sqrt(3)) < 0.05 * bound
    lin = nn.Linear(50, 40, seed=0)
    assert np.abs(lin.weight.data).max() <= 1 / np.sqrt(50)
    bn = nn.BatchNorm2d(4)
    np.testing.assert_array_equal(bn.weight.data, 1)
    np.testing.assert_array_equal(bn.bias.data, 0)
    np.testing.assert_array_equal(bn.running_var, 1)
    assert conv.weight.dtype == np.float32 and nn.Linear(2, 2, dtype="float64").weight.dtype == F64


def test_seed_and_rng_make_init_reproducible():
    a, b = nn.Conv2d(2, 3, 3, seed=7), nn.Conv2d(2, 3, 3, seed=7)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, nn.Conv2d(2, 3, 3, seed=8).weight.data)
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(nn.Conv2d(2, 3, 3, rng=rng).weight.data, a.weight.data)
    with pytest.raises(ValueError, match="at most one of seed and rng"):
        nn.Linear(2, 2, seed=1, rng=rng)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: nn.Conv2d(3, 4, 3, groups=2), "groups=2 must divide"),
        (lambda: nn.Conv2d(0, 4, 3), "in_channels must be a positive int"),
        (lambda: nn.Conv2d(1, 4, 3, padding="full"), "padding must be"),
        (lambda: nn.Conv2d(1, 4, 3, dtype="float16"), "dtype must be 'float32' or 'float64'"),
        (lambda: nn.Linear(2, 3, dtype="int32"), "dtype must be"),
        (lambda: nn.MaxPool2d(0), "kernel_size must be positive"),
        (lambda: nn.AdaptiveAvgPool2d(0), "output_size must be"),
        (lambda: nn.BatchNorm2d(3, momentum=2.0), "momentum must be"),
    ],
)
def test_layer_constructors_reject_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_layer_forward_errors_come_from_the_ops():
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match="to have 3 channels, but got 2"):
        conv(np.ones((1, 2, 5, 5), np.float32))
    with pytest.raises(TypeError, match="share one float dtype"):
        conv(np.ones((1, 3, 5, 5), F64))


# --------------------------------------------------------------------------- Module API


def _every_layer_model(seed=0):
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(
                nn.Conv2d(3, 4, 3, padding=1, seed=seed),
                nn.BatchNorm2d(4),
                nn.LeakyReLU(0.1),
                nn.MaxPool2d(2),
                nn.Conv2d(4, 4, 3, padding="same", bias=False, seed=seed + 1),
                nn.ReLU(),
                nn.AvgPool2d(2, stride=1),
                nn.AdaptiveAvgPool2d((2, 2)),
            ),
            head=nn.Sequential(
                nn.Flatten(), nn.Dropout(0.5, seed=1), nn.Linear(16, 5, seed=seed + 2)
            ),
        )
    )


def test_named_parameters_and_state_dict_use_pytorch_names():
    model = _every_layer_model()
    names = [n for n, _ in model.named_parameters()]
    assert names == [
        "features.0.weight",
        "features.0.bias",
        "features.1.weight",
        "features.1.bias",
        "features.4.weight",
        "head.2.weight",
        "head.2.bias",
    ]
    assert list(model.state_dict()) == [
        "features.0.weight",
        "features.0.bias",
        "features.1.weight",
        "features.1.bias",
        "features.1.running_mean",
        "features.1.running_var",
        "features.1.num_batches_tracked",
        "features.4.weight",
        "head.2.weight",
        "head.2.bias",
    ]
    assert len(model.parameters()) == 7
    assert [n for n, _ in model.named_buffers()] == [
        "features.1.running_mean",
        "features.1.running_var",
        "features.1.num_batches_tracked",
    ]


def test_state_dict_matches_torch_keys(torch):
    ours = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten())
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(), torch.nn.Flatten()
    )
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in ours.state_dict().items():
        assert tuple(value.shape) == tuple(theirs.state_dict()[key].shape)


def test_train_and_eval_switch_every_module():
    model = _every_layer_model()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(TypeError, match="mode must be a bool"):
        model.train("yes")


def test_eval_mode_is_deterministic_and_uses_running_stats():
    model = _every_layer_model()
    x = _x((4, 3, 8, 8)).astype(np.float32)
    model(x)  # one training step moves the running stats
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))
    bn = model.features[1]
    assert int(bn.num_batches_tracked) == 1
    model(x)
    assert int(bn.num_batches_tracked) == 1


def test_state_dict_round_trip_reproduces_outputs(backend):
    source = _every_layer_model(seed=0).to(backend)
    x = _on(_x((2, 3, 8, 8)).astype(np.float32), backend)
    source(x)  # non-trivial running stats
    source.eval()
    target = _every_layer_model(seed=10).eval()
    state = {k: to_numpy(v).copy() for k, v in source.state_dict().items()}
    result = target.to(backend).load_state_dict(state)
    assert result == nn.IncompatibleKeys([], [])
    assert_close(target(x), to_numpy(source(x)), dtype=np.float32, backend=backend)
    for key, value in target.state_dict().items():
        assert cnnarray.backend_of(value) == backend, key


def test_state_dict_arrays_are_live_references():
    layer = nn.BatchNorm2d(2)
    state = layer.state_dict()
    layer(_x((3, 2, 2, 2)).astype(np.float32))
    assert state["running_mean"] is layer.running_mean
    assert np.any(state["running_mean"] != 0)
    assert state["weight"] is layer.weight.data


def test_load_state_dict_reports_missing_unexpected_shape_and_dtype():
    model = nn.Sequential(nn.Linear(3, 2, seed=0), nn.BatchNorm2d(2))
    good = {k: v.copy() for k, v in model.state_dict().items()}
    missing = dict(good)
    del missing["0.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['0.bias'\], unexpected keys \[\]"):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"unexpected keys \['2.weight'\]"):
        model.load_state_dict({**good, "2.weight": np.zeros(2)})
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(3, 2\), expected \(2, 3\)"):
        model.load_state_dict({**good, "0.weight": np.zeros((3, 2), np.float32)})
    with pytest.raises(ValueError, match="'0.bias' has dtype float64, expected float32"):
        model.load_state_dict({**good, "0.bias": np.zeros(2)})
    # nothing was copied by the failed loads
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, good[key])
    partial = {"0.weight": np.ones((2, 3), np.float32), "extra": np.zeros(1)}
    result = model.load_state_dict(partial, strict=False)
    assert result.unexpected_keys == ["extra"]
    assert "0.bias" in result.missing_keys
    np.testing.assert_array_equal(model[0].weight.data, 1)
    with pytest.raises(TypeError, match="mapping"):
        model.load_state_dict([("0.weight", np.ones((2, 3)))])


def test_to_moves_parameters_buffers_and_grads(backend):
    model = _every_layer_model()
    model(_x((2, 3, 8, 8)).astype(np.float32))
    model.backward(np.ones((2, 5), np.float32))
    assert model.to(backend) is model
    for p in model.parameters():
        assert cnnarray.backend_of(p.data) == backend
        assert cnnarray.backend_of(p.grad) == backend
    for b in model.buffers():
        assert cnnarray.backend_of(b) == backend
    x = _on(_x((2, 3, 8, 8)).astype(np.float32), backend)
    model.eval()
    on_device = to_numpy(model(x))
    model.to("cpu")
    assert_close(model(to_numpy(x)), on_device, dtype=np.float32, backend="cpu", rtol=1e-4)


def test_to_cpu_is_a_no_op_on_cpu():
    layer = nn.Linear(2, 2)
    before = layer.weight.data
    assert layer.to("cpu") is layer
    assert cnnarray.backend_of(layer.weight.data).name == "cpu"
    np.testing.assert_array_equal(layer.weight.data, before)


def test_parameter_basics():
    p = nn.Parameter(np.zeros((2, 3), np.float32))
    assert p.shape == (2, 3) and p.dtype == np.float32 and p.size == 6 and p.grad is None
    p.accumulate(np.ones((2, 3), np.float32))
    p.accumulate(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(p.grad, 2)
    assert "shape=(2, 3)" in repr(p)


def test_module_subclass_must_call_init_first():
    class Broken(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(np.zeros(1))

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Broken()


def test_custom_module_registers_parameters_and_children():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.alpha = nn.Parameter(np.ones(1))
            self.inner = nn.Linear(2, 2)
            self.register_buffer("count", np.zeros(()))

    m = Scale()
    assert [n for n, _ in m.named_parameters()] == ["alpha", "inner.weight", "inner.bias"]
    assert list(m.state_dict()) == ["alpha", "count", "inner.weight", "inner.bias"]
    m.alpha = None  # no longer a parameter
    assert [n for n, _ in m.named_parameters()] == ["inner.weight", "inner.bias"]
    with pytest.raises(NotImplementedError):
        m(np.ones(2))


def test_sequential_container_behaviour():
    layers = [nn.Linear(3, 4, seed=0), nn.ReLU(), nn.Linear(4, 2, seed=1)]
    model = nn.Sequential(*layers)
    assert len(model) == 3 and list(model) == layers
    assert model[0] is layers[0] and model[-1] is layers[2]
    head = model[1:]
    assert isinstance(head, nn.Sequential) and list(head) == layers[1:]
    assert [n for n, _ in head.named_children()] == ["1", "2"]
    model.append(nn.ReLU())
    assert len(model) == 4
    with pytest.raises(TypeError, match="takes Modules"):
        nn.Sequential(nn.ReLU(), "relu")
    with pytest.raises(ValueError, match="layer name"):
        nn.Sequential({"a.b": nn.ReLU()})
    with pytest.raises(ValueError, match="layer name"):
        nn.Sequential({"forward": nn.ReLU()})
    assert "(2): Linear(in_features=4" in repr(model)


# --------------------------------------------------------------------------- spec


def test_spec_is_json_and_rebuilds_every_layer():
    model = _every_layer_model()
    spec = model.spec()
    assert json.loads(json.dumps(spec, sort_keys=True)) == spec
    twin = nn.from_spec(json.loads(json.dumps(spec, sort_keys=True)), seed=3)
    assert twin.spec() == spec
    assert repr(twin) == repr(model)
    twin.load_state_dict(model.state_dict())
    x = _x((2, 3, 8, 8)).astype(np.float32)
    model.eval(), twin.eval()
    np.testing.assert_array_equal(twin(x), model(x))
    assert spec["names"] == ["features", "head"]
    assert spec["layers"][0]["layers"][0] == {
        "type": "Conv2d",
        "args": {
            "in_channels": 3,
            "out_channels": 4,
            "kernel_size": [3, 3],
            "stride": [1, 1],
            "padding": [1, 1],
            "dilation": [1, 1],
            "groups": 1,
            "bias": True,
            "dtype": "float32",
        },
    }


def test_from_spec_places_weights_on_backend(backend):
    model = nn.from_spec(nn.small_cnn().spec(), backend=backend, seed=0)
    assert all(cnnarray.backend_of(p.data) == backend for p in model.parameters())
    assert nn.from_spec(nn.Linear(2, 2, dtype="float64").spec()).weight.dtype == F64


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "Transformer"}, "unknown module type 'Transformer'"),
        ({"args": {}}, "with a 'type' entry"),
        ({"type": "Linear", "args": {"in_features": 2}}, "bad arguments"),
        ({"type": "Linear", "args": [2, 3]}, "'args' must be an object"),
        ({"type": "Sequential"}, "needs a 'layers' list"),
        ({"type": "Sequential", "layers": [{"type": "ReLU"}], "names": ["a", "b"]}, "'names'"),
    ],
)
def test_from_spec_rejects_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        nn.from_spec(spec)


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize(
    "name, kwargs, x_shape",
    [
        ("lenet5", {}, (2, 1, 28, 28)),
        ("lenet5", {"input_size": 32, "in_channels": 3}, (2, 3, 32, 32)),
        ("lenet5", {"input_size": 8, "num_classes": 7}, (2, 1, 8, 8)),
        ("lenet5", {"input_size": 4}, (1, 1, 4, 4)),
        ("small_cnn", {}, (3, 1, 8, 8)),
        ("small_cnn", {"input_size": 28, "dropout": 0.25}, (2, 1, 28, 28)),
        ("vgg_small", {}, (2, 3, 32, 32)),
        ("vgg_small", {"widths": (8, 16), "input_size": 8, "dropout": 0.5}, (2, 3, 8, 8)),
    ],
)
def test_models_build_and_run_forward_and_backward(name, kwargs, x_shape):
    model = nn.build_model(name, seed=0, **kwargs)
    x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    logits = model(x)
    assert logits.shape == (x_shape[0], kwargs.get("num_classes", 10))
    assert logits.dtype == np.float32
    gx = model.backward(cnnarray.cross_entropy_backward(logits, np.zeros(x_shape[0], np.int64)))
    assert gx.shape == x_shape
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    rebuilt = nn.from_spec(model.spec())
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    np.testing.assert_array_equal(rebuilt(x), model(x))


def test_lenet5_shapes_are_classic_for_28_and_32():
    assert nn.lenet5(input_size=28)[7].in_features == 400
    assert nn.lenet5(input_size=32)[7].in_features == 400
    assert nn.lenet5(input_size=28)[0].padding == (2, 2)
    assert nn.lenet5(input_size=32)[0].padding == (0, 0)
    assert nn.lenet5(input_size=8)[7].in_features == 64
    with pytest.raises(ValueError, match="at least 4"):
        nn.lenet5(input_size=3)


def test_vgg_small_has_torchvision_style_names():
    names = list(nn.vgg_small().state_dict())
    assert names[:3] == ["features.0.weight", "features.1.weight", "features.1.bias"]
    assert names[-1] == "classifier.3.bias"


def test_models_are_reproducible_from_a_seed():
    a, b, c = nn.small_cnn(seed=1), nn.small_cnn(seed=1), nn.small_cnn(seed=2)
    for (name, pa), pb, pc in zip(
        a.named_parameters(), b.parameters(), c.parameters(), strict=True
    ):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=name)
        assert not np.array_equal(pa.data, pc.data), name


def test_build_model_rejects_unknown_names_and_bad_sizes():
    assert set(nn.MODELS) == {"lenet5", "small_cnn", "vgg_small", "resnet8", "resnet20",
                              "resnet18", "mobilenet_small"}  # fmt: skip
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        nn.build_model("resnet")
    with pytest.raises(ValueError, match="at least 8"):
        nn.vgg_small(input_size=4)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        nn.small_cnn(num_classes=0)


# --------------------------------------------------------------------------- layering


def test_nn_and_optim_never_import_an_array_library():
    root = Path(cnnarray.__file__).parent
    files = sorted((root / "nn").glob("*.py")) + [root / "optim.py"]
    assert len(files) >= 6
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] not in ("numpy", "cupy"), f"{path.name}: {module}"


def test_sequential_backward_without_input_grad_gives_the_same_parameter_grads():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, seed=0, dtype="float64"), nn.ReLU(), nn.Flatten(),
                          nn.Linear(18, 3, seed=1, dtype="float64"))  # fmt: skip
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5))
    grads = []
    for input_grad in (True, False):
        model.zero_grad()
        out = model(x)
        gx = model.backward(np.ones_like(out), input_grad=input_grad)
        assert (gx is None) is (not input_grad)
        grads.append([p.grad.copy() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b)


def test_conv2d_layer_keeps_columns_in_training_and_frees_them_in_eval():
    layer = nn.Conv2d(3, 4, 3, padding=1, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    y = layer(x)
    assert layer._columns.nbytes > 0  # the forward's im2col, for the backward
    plain = cnnarray.conv2d_backward(np.ones_like(y), x, layer.weight.data, layer.bias.data,
                                     padding=1)  # fmt: skip
    grad_x = layer.backward(np.ones_like(y))
    np.testing.assert_allclose(grad_x, plain[0], rtol=1e-6)
    np.testing.assert_allclose(layer.weight.grad, plain[1], rtol=1e-5)
    layer.eval()
    layer(x)
    assert layer._columns.nbytes == 0


def test_spec_of_an_unregistered_module_says_to_register_it() -> None:
    class Unregistered(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match=r"Unregistered is not registered.*@cnnarray.nn.register"):
        nn.Sequential(nn.ReLU(), Unregistered()).spec()
