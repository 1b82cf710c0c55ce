"""Whole-model gradients through the tape: against PyTorch autograd, central differences,
the array API of the same model, and a training run of a user's own Module."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from helpers import assert_close, assert_grad_close

import cnnarray
from cnnarray import nn
from cnnarray import train as training
from cnnarray.backend import to_numpy
from cnnarray.data.datasets import Split

F64 = np.float64


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _labels(n, classes, seed=1):
    return np.random.default_rng(seed).integers(0, classes, n)


# --------------------------------------------------------------------------- the torch twin


def torch_twin(torch, module):
    """The ``torch.nn`` module of the same structure and names as ``module`` (float64),
    with its parameters and buffers copied in."""
    twin = _twin(torch, module).to(torch.float64)
    state = {k: torch.tensor(to_numpy(v)) for k, v in module.state_dict().items()}
    twin.load_state_dict(state)
    return twin.train(module.training)


def _twin(torch, m):
    tnn = torch.nn
    if isinstance(m, nn.Sequential):
        return tnn.Sequential(
            OrderedDict((name, _twin(torch, c)) for name, c in m.named_children())
        )
    if isinstance(m, nn.Conv2d):
        return tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                          m.dilation, m.groups, bias=m.bias is not None)  # fmt: skip
    if isinstance(m, nn.Linear):
        return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, nn.BatchNorm2d):
        return tnn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
    if isinstance(m, nn.LeakyReLU):
        return tnn.LeakyReLU(m.negative_slope)
    if isinstance(m, nn.ReLU):
        return tnn.ReLU()
    if isinstance(m, nn.MaxPool2d):
        return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        return tnn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                             m.divisor_override)  # fmt: skip
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return tnn.AdaptiveAvgPool2d(m.output_size)
    if isinstance(m, nn.Flatten):
        return tnn.Flatten(m.start_dim, m.end_dim)
    if isinstance(m, nn.Dropout):
        # masks are drawn differently: only the identity ones can be compared
        assert m.p == 0 or not m.training, "a Dropout twin needs p=0 or eval mode"
        return tnn.Dropout(m.p)
    raise TypeError(f"no torch twin for {type(m).__name__}")


def assert_rel(actual, desired, name, rtol=1e-9):
    """Norm-wise: ``max|a - b| <= rtol * max|b|``, shapes equal."""
    a, b = to_numpy(actual), np.asarray(desired)
    assert a.shape == b.shape, f"{name}: shape {a.shape}, expected {b.shape}"
    err, scale = float(np.max(np.abs(a - b), initial=0)), float(np.max(np.abs(b), initial=0))
    assert err <= rtol * scale, f"{name}: max error {err:.3g} > {rtol:g} * {scale:.3g}"


def compare_with_torch(torch, model, x, y, backend, twin=None):
    """One training step's loss, gradients (parameters and input) and buffers against torch.

    ``twin``: the torch model with ``model``'s weights, by default :func:`torch_twin`'s.
    """
    model.to(backend).train()
    twin = torch_twin(torch, model) if twin is None else twin.train()
    xt = cnnarray.tensor(x, requires_grad=True, backend=backend)
    loss = cnnarray.cross_entropy(model(xt), cnnarray.asarray(y, backend))
    loss.backward()
    tx = torch.tensor(x, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(twin(tx), torch.tensor(y))
    tloss.backward()
    assert_rel(loss.data, tloss.detach().numpy(), "loss")
    assert_rel(xt.grad, tx.grad.numpy(), "grad of the input")
    theirs = dict(twin.named_parameters())
    assert sorted(theirs) == sorted(n for n, _ in model.named_parameters())
    for name, p in model.named_parameters():
        assert_rel(p.grad, theirs[name].grad.numpy(), f"grad of {name}")
    tbuffers = dict(twin.named_buffers())
    for name, b in model.named_buffers():  # BatchNorm's running statistics after the step
        assert_rel(b, tbuffers[name].numpy(), name)


MODELS = {
    "lenet5": ({"in_channels": 1, "num_classes": 5, "input_size": 12}, (4, 1, 12, 12)),
    "small_cnn": ({"in_channels": 2, "num_classes": 4, "input_size": 8}, (3, 2, 8, 8)),
    "vgg_small": ({"in_channels": 3, "num_classes": 5, "input_size": 8, "widths": (4, 6),
                   "hidden": 12}, (4, 3, 8, 8)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_gradients_match_torch(backend, torch, name):
    kwargs, shape = MODELS[name]
    model = nn.build_model(name, **kwargs, dtype="float64", seed=0)
    compare_with_torch(torch, model, _x(shape), _labels(shape[0], kwargs["num_classes"]), backend)


def test_every_layer_kind_matches_torch(backend, torch):
    # the layers the built-in models leave out, and BatchNorm's other settings
    model = nn.Sequential(
        # no bias before BatchNorm: its true gradient is 0, which no relative check can hold
        nn.Conv2d(2, 4, 3, padding="same", dilation=2, groups=2, bias=False, dtype=F64, seed=0),
        nn.BatchNorm2d(4, momentum=None, dtype=F64),
        nn.LeakyReLU(0.1),
        nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
        nn.Conv2d(4, 3, (2, 1), bias=False, dtype=F64, seed=1),
        nn.BatchNorm2d(3, affine=False, track_running_stats=False, dtype=F64),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=1, ceil_mode=True),
        nn.AdaptiveAvgPool2d((2, 1)),
        nn.Flatten(),
        nn.Dropout(0.0),
        nn.Linear(6, 3, dtype=F64, seed=2),
    )
    compare_with_torch(torch, model, _x((3, 2, 7, 6), 5), _labels(3, 3, 6), backend)
    # a second step: BatchNorm's cumulative average (momentum=None) moves on
    twin = torch_twin(torch, model)
    model(cnnarray.tensor(_x((3, 2, 7, 6), 7), backend=backend))
    twin(torch.tensor(_x((3, 2, 7, 6), 7)))
    assert_rel(model[1].running_var, twin[1].running_var.detach().numpy(), "running_var")


# --------------------------------------------------------------------------- central differences


class UserResidualBlock(nn.Module):
    """conv-bn-relu-conv plus the identity, then relu: forward only."""

    _config_names = ("channels",)

    def __init__(self, channels, *, dtype="float32", rng=None):
        super().__init__()
        self.channels = channels
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, dtype=dtype, rng=rng)
        self.bn = nn.BatchNorm2d(channels, dtype=dtype)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, dtype=dtype, rng=rng)

    def forward(self, x):
        out = self.conv2(cnnarray.relu(self.bn(self.conv1(x))))
        return cnnarray.relu(out + x)


class UserResidualNet(nn.Module):
    """A stem, one residual block applied twice (shared weights), a linear head."""

    def __init__(self, dtype=F64, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.stem = nn.Conv2d(1, 3, 3, padding=1, dtype=dtype, rng=rng)
        self.block = UserResidualBlock(3, dtype=dtype, rng=rng)
        self.head = nn.Linear(3 * 3 * 3, 4, dtype=dtype, rng=rng)

    def forward(self, x):
        h = self.block(self.block(self.stem(x)))
        return self.head(cnnarray.max_pool2d(h, 2).flatten(1))


def _tiny_lenet():
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, dtype=F64, seed=0),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2, 3, 2, dtype=F64, seed=1),
        nn.BatchNorm2d(3, dtype=F64),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12, 3, dtype=F64, seed=2),
    )


@pytest.mark.parametrize("make", [_tiny_lenet, UserResidualNet], ids=["lenet", "residual"])
def test_model_gradients_match_finite_differences(backend, make):
    model = make().to(backend).train()
    x = cnnarray.asarray(_x((2, 1, 6, 6), 8), backend)
    y = cnnarray.asarray(_labels(2, 3, 9), backend)

    def loss():
        return cnnarray.cross_entropy(model(cnnarray.tensor(x)), y)

    model.zero_grad()
    loss().backward()
    rng = np.random.default_rng(10)
    for name, p in model.named_parameters():
        for _ in range(3):  # a few random entries of each parameter
            idx = tuple(int(rng.integers(0, s)) for s in p.shape)
            original = float(p.data[idx])
            values = []
            for step in (1e-6, -1e-6):
                p.data[idx] = original + step
                with cnnarray.no_grad():
                    values.append(float(loss().data))
            p.data[idx] = original
            numeric = (values[0] - values[1]) / 2e-6
            assert_grad_close(p.grad[idx], np.asarray(numeric), f"{name}{list(idx)}")


def test_a_block_used_twice_gets_both_gradients(backend):
    net = UserResidualNet().to(backend)
    x = cnnarray.tensor(_x((2, 1, 6, 6), 11), backend=backend)
    net(x).sum().backward()
    twice = {n: to_numpy(p.grad) for n, p in net.named_parameters()}
    # the same with the block's second use reading its own copy of the weights
    copy = UserResidualBlock(3, dtype=F64).to(backend)
    copy.load_state_dict(net.block.state_dict())
    net.zero_grad()
    h = copy(net.block(net.stem(x)))
    net.head(cnnarray.max_pool2d(h, 2).flatten(1)).sum().backward()
    for name, p in net.block.named_parameters():
        both = to_numpy(p.grad) + to_numpy(dict(copy.named_parameters())[name].grad)
        np.testing.assert_allclose(twice[f"block.{name}"], both, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- the array API


@pytest.mark.parametrize("name", ["small_cnn", "vgg_small"])
def test_array_api_and_tape_give_identical_gradients(backend, name):
    kwargs, shape = MODELS[name]
    model = nn.build_model(name, **kwargs, dtype="float64", seed=0).to(backend)
    x = cnnarray.asarray(_x(shape, 12), backend)
    y = cnnarray.asarray(_labels(shape[0], kwargs["num_classes"], 13), backend)
    logits = model(x)  # arrays in, an array out, the graph kept for backward
    assert type(logits) is backend.xp.ndarray
    grad_x = model.backward(cnnarray.cross_entropy_backward(logits, y))
    by_array = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    xt = cnnarray.tensor(x, requires_grad=True)
    cnnarray.cross_entropy(model(xt), y).backward()
    pairs = [("x", grad_x, xt.grad)]
    pairs += [(n, by_array[n], p.grad) for n, p in model.named_parameters()]
    for n, by_array_api, by_tape in pairs:
        if backend.name == "cpu":  # the same calls in the same order: the same bits
            np.testing.assert_array_equal(by_array_api, by_tape, err_msg=n)
        else:  # GPU atomics may add in another order
            assert_close(by_tape, by_array_api, dtype=F64, backend=backend, err_msg=n)


# --------------------------------------------------------------------------- a user's Module


@nn.register
class UserTinyNet(nn.Module):
    """A user's model: registered, constructor arguments in ``_config_names``, forward only."""

    _config_names = ("in_channels", "num_classes", "width")

    def __init__(self, in_channels, num_classes, width=4, *, rng=None):
        super().__init__()
        self.in_channels, self.num_classes, self.width = in_channels, num_classes, width
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, rng=rng)
        self.block = UserResidualBlock(width, rng=rng)
        self.head = nn.Linear(width, num_classes, rng=rng)

    def forward(self, x):
        h = self.block(cnnarray.relu(self.stem(x)))
        return self.head(cnnarray.adaptive_avg_pool2d(h, 1).flatten(1))


def _split(n=32, classes=3, shape=(2, 6, 6)):
    rng = np.random.default_rng(14)
    y = np.arange(n) % classes
    x = rng.normal(0.2 + 0.3 * y[:, None, None, None], 0.1, (n, *shape)).astype(np.float32)
    k = n * 3 // 4
    return Split(x[:k], y[:k], x[k:], y[k:], [f"c{i}" for i in range(classes)], "synthetic")


def test_fit_trains_a_custom_module_and_its_checkpoint_reloads(tmp_path):
    data, cpu = _split(), cnnarray.get_backend("cpu")
    model = UserTinyNet(2, 3, rng=np.random.default_rng(0))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    config = training.TrainConfig(model="small_cnn", epochs=1, batch_size=8, lr=1e-2,
                                  schedule="none", augment="none")  # fmt: skip
    optimizer = training.build_optimizer(config, model)
    spec = {"model": model.spec(), "model_name": "UserTinyNet", "input_shape": [2, 6, 6],
            "classes": data.classes, "dataset": data.name}  # fmt: skip
    state = training.TrainState(model, optimizer, None, config, spec)
    history = training.fit(state, data, cpu)
    assert len(history) == 1 and np.isfinite(history[0].train_loss)
    for name, value in model.state_dict().items():  # every parameter and buffer moved
        assert not np.array_equal(value, before[name]), name
    path = training.save(state, tmp_path / "custom.safetensors")
    loaded, saved_spec, metadata = training.load_model(path, cpu)
    assert type(loaded) is UserTinyNet and saved_spec["model"] == model.spec()
    assert loaded.spec() == {"type": "UserTinyNet",
                             "args": {"in_channels": 2, "num_classes": 3, "width": 4}}  # fmt: skip
    assert metadata["epoch"] == 1
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value, err_msg=name)
    np.testing.assert_array_equal(loaded(data.x_test), model.eval()(data.x_test))
