"""ResNet and MobileNet: shapes, specs, state dicts, parameter counts and PyTorch agreement.

The PyTorch twins below are written with ``torch.nn`` layers the way torchvision
writes ``resnet.py`` (torchvision itself is not needed), so that the state-dict
names match one to one and weights copy across with ``load_state_dict``.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers import assert_close
from typer.testing import CliRunner

import cnnarray
from cnnarray import get_backend, nn, optim, to_numpy
from cnnarray import train as training
from cnnarray.cli import app
from cnnarray.data import load_digits
from cnnarray.data.datasets import Split

F64 = "float64"
NEW_MODELS = ["resnet8", "resnet20", "resnet18", "mobilenet_small"]


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _x(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _warm_up(model, x):
    """Run one training-mode forward so that BatchNorm's running statistics are not 0 and 1."""
    model.train()
    model(x)
    return model.eval()


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", NEW_MODELS)
@pytest.mark.parametrize(
    "in_channels, size, num_classes", [(1, 8, 10), (1, 28, 10), (3, 32, 7)], ids=["8", "28", "32"]
)
def test_models_give_logits_for_digits_mnist_and_cifar_sizes(
    backend, name, in_channels, size, num_classes
):
    model = nn.build_model(name, in_channels=in_channels, num_classes=num_classes,
                           input_size=size, backend=backend, seed=0)  # fmt: skip
    x = backend.asarray(_x((2, in_channels, size, size)))
    for mode in (True, False):
        y = model.train(mode)(x)
        assert y.shape == (2, num_classes) and y.dtype == np.float32
        assert type(y) is type(x) and np.isfinite(to_numpy(y)).all()


@pytest.mark.parametrize(
    "block, args, x_shape, y_shape",
    [
        (nn.BasicBlock, (4, 4), (2, 4, 5, 5), (2, 4, 5, 5)),
        (nn.BasicBlock, (4, 6, 2), (2, 4, 5, 5), (2, 6, 3, 3)),
        (nn.Bottleneck, (16, 4), (2, 16, 5, 5), (2, 16, 5, 5)),
        (nn.Bottleneck, (8, 4, 2), (2, 8, 6, 6), (2, 16, 3, 3)),
        (nn.DepthwiseSeparable, (4, 6, 2), (2, 4, 5, 5), (2, 6, 3, 3)),
    ],
)
def test_blocks_map_shapes_and_use_a_projection_only_when_needed(block, args, x_shape, y_shape):
    module = block(*args, seed=0)
    assert module(_x(x_shape)).shape == y_shape
    if block is not nn.DepthwiseSeparable:
        needs_projection = x_shape[1] != y_shape[1] or x_shape[2] != y_shape[2]
        assert (module.downsample is not None) == needs_projection


def test_identity_block_with_zero_weights_passes_relu_of_its_input():
    block = nn.BasicBlock(3, 3, seed=0).eval()
    block.bn2.weight.data[...] = 0  # the residual branch adds 0
    x = _x((2, 3, 4, 4))
    np.testing.assert_array_equal(block(x), np.maximum(x, 0))


# --------------------------------------------------------------------------- specs and state


SPEC_CASES = {
    "resnet8": lambda: nn.resnet8(in_channels=1, input_size=8, seed=0),
    "resnet20": lambda: nn.resnet20(seed=0),
    "bottleneck": lambda: nn.ResNet("bottleneck", [1, 2], [4, 8], "imagenet", in_channels=2,
                                    num_classes=3, seed=0),
    "mobilenet_small": lambda: nn.mobilenet_small(in_channels=1, input_size=8, seed=0),
    "mobilenet_v1": lambda: nn.MobileNet(seed=0, num_classes=5),
    "blocks": lambda: nn.Sequential(nn.BasicBlock(3, 8, 2, seed=0), nn.Bottleneck(8, 2, seed=1),
                                    nn.DepthwiseSeparable(8, 4, seed=2)),
}  # fmt: skip


@pytest.mark.parametrize("case", list(SPEC_CASES))
def test_spec_through_json_rebuilds_the_model_and_state_dict_round_trips(case, backend):
    model = SPEC_CASES[case]().to(backend)
    c = model.in_channels if hasattr(model, "in_channels") else 3
    x = backend.asarray(_x((2, c, 8, 8)))
    _warm_up(model, x)
    spec = json.loads(json.dumps(model.spec()))
    twin = nn.from_spec(spec, backend=backend, seed=123)
    assert twin.spec() == spec
    assert list(twin.state_dict()) == list(model.state_dict())
    assert twin.load_state_dict(model.state_dict()) == ([], [])
    twin.eval()
    np.testing.assert_array_equal(to_numpy(twin(x)), to_numpy(model(x)))


def test_spec_of_resnet_is_its_constructor_arguments():
    spec = nn.resnet20(in_channels=1, num_classes=4, dtype=F64).spec()
    assert spec == {
        "type": "ResNet",
        "args": {"block": "basic", "layers": [3, 3, 3], "widths": [16, 32, 64], "stem": "cifar",
                 "in_channels": 1, "num_classes": 4, "dtype": "float64"},
    }  # fmt: skip
    assert nn.BasicBlock(4, 8, 2).spec()["args"] == {
        "in_channels": 4, "out_channels": 8, "stride": 2, "dtype": "float32"
    }  # fmt: skip


@pytest.mark.parametrize("name", NEW_MODELS)
def test_one_seed_fixes_every_weight_and_from_spec_draws_them_in_the_same_order(name):
    a, b = nn.build_model(name, seed=5), nn.build_model(name, seed=6)
    rebuilt = nn.from_spec(a.spec(), seed=5)
    for (key, pa), pb, pr in zip(
        a.named_parameters(), b.parameters(), rebuilt.parameters(), strict=True
    ):
        np.testing.assert_array_equal(pr.data, pa.data, err_msg=key)
        if "conv" in key or key.endswith(("fc.weight", "wise.weight", "downsample.0.weight")):
            assert not np.array_equal(pa.data, pb.data), key


def test_batch_norm_starts_at_weight_one_bias_zero_and_convs_have_no_bias():
    model = nn.resnet8(seed=0)
    for key, value in model.state_dict().items():
        if ".bn" in key or key.startswith("bn") or "downsample.1" in key:
            expected = {"weight": 1, "bias": 0, "running_mean": 0, "running_var": 1,
                        "num_batches_tracked": 0}[key.rsplit(".", 1)[1]]  # fmt: skip
            np.testing.assert_array_equal(value, expected, err_msg=key)
        elif "conv" in key or "downsample.0" in key:
            assert key.endswith(".weight"), key


def test_resnet18_state_dict_names_read_like_torchvision():
    keys = list(nn.resnet18().state_dict())
    assert keys[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                        "bn1.running_var", "bn1.num_batches_tracked"]  # fmt: skip
    assert "layer1.0.conv1.weight" in keys and "layer1.1.bn2.running_var" in keys
    assert "layer1.0.downsample.0.weight" not in keys
    assert "layer2.0.downsample.0.weight" in keys and "layer4.0.downsample.1.bias" in keys
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    assert len(keys) == 122  # torchvision's resnet18().state_dict() has 122 entries


# --------------------------------------------------------------------------- parameter counts


def _conv_bn(c_in, c_out, k, groups=1):
    return c_in // groups * c_out * k * k + 2 * c_out


def _basic(c_in, c_out, stride):
    projection = _conv_bn(c_in, c_out, 1) if stride != 1 or c_in != c_out else 0
    return _conv_bn(c_in, c_out, 3) + _conv_bn(c_out, c_out, 3) + projection


def _resnet_count(layers, widths, stem_kernel, in_channels, num_classes):
    total, c = _conv_bn(in_channels, widths[0], stem_kernel), widths[0]
    for k, (n, w) in enumerate(zip(layers, widths, strict=True)):
        for i in range(n):
            total += _basic(c, w, 2 if k > 0 and i == 0 else 1)
            c = w
    return total + c * num_classes + num_classes


def _count(model):
    return sum(p.data.size for p in model.parameters())


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet18", 11_181_642),  # torchvision resnet18: 11_689_512 - 513_000 + 5_130
        ("resnet18", _resnet_count([2] * 4, [64, 128, 256, 512], 7, 3, 10)),
        ("resnet20", _resnet_count([3] * 3, [16, 32, 64], 3, 3, 10)),
        ("resnet8", _resnet_count([1] * 3, [16, 32, 64], 3, 3, 10)),
        ("mobilenet_small", _conv_bn(3, 16, 3) + 256 * 10 + 10 + sum(
            _conv_bn(c_in, c_in, 3, groups=c_in) + _conv_bn(c_in, c_out, 1)
            for c_in, c_out in [(16, 32), (32, 64), (64, 64), (64, 128), (128, 128),
                                (128, 256), (256, 256)])),
    ],
)  # fmt: skip
def test_parameter_counts_follow_the_formulas(name, expected):
    assert _count(nn.build_model(name, seed=0)) == expected


# --------------------------------------------------------------------------- PyTorch twins


def _torch_twins(torch):
    """Return torch.nn versions of the blocks and models, built as torchvision builds them."""
    tnn = torch.nn

    def conv(c_in, c_out, k, stride=1, groups=1):
        return tnn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False)

    def projection(c_in, c_out, stride):
        if stride == 1 and c_in == c_out:
            return None
        return tnn.Sequential(conv(c_in, c_out, 1, stride), tnn.BatchNorm2d(c_out))

    class Basic(tnn.Module):
        expansion = 1

        def __init__(self, c_in, c_out, stride=1):
            super().__init__()
            self.conv1, self.bn1 = conv(c_in, c_out, 3, stride), tnn.BatchNorm2d(c_out)
            self.conv2, self.bn2 = conv(c_out, c_out, 3), tnn.BatchNorm2d(c_out)
            self.downsample = projection(c_in, c_out, stride)

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    class Bottle(tnn.Module):
        expansion = 4

        def __init__(self, c_in, width, stride=1):
            super().__init__()
            self.conv1, self.bn1 = conv(c_in, width, 1), tnn.BatchNorm2d(width)
            self.conv2, self.bn2 = conv(width, width, 3, stride), tnn.BatchNorm2d(width)
            self.conv3, self.bn3 = conv(width, 4 * width, 1), tnn.BatchNorm2d(4 * width)
            self.downsample = projection(c_in, 4 * width, stride)

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = torch.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet(tnn.Module):
        def __init__(self, block, layers, widths, stem, in_channels, num_classes):
            super().__init__()
            block = {"basic": Basic, "bottleneck": Bottle}[block]
            kernel, stride = (7, 2) if stem == "imagenet" else (3, 1)
            self.conv1 = conv(in_channels, widths[0], kernel, stride)
            self.bn1 = tnn.BatchNorm2d(widths[0])
            self.maxpool = tnn.MaxPool2d(3, 2, 1) if stem == "imagenet" else tnn.Identity()
            c = widths[0]
            for k, (n, w) in enumerate(zip(layers, widths, strict=True)):
                blocks = []
                for i in range(n):
                    blocks.append(block(c, w, 2 if k > 0 and i == 0 else 1))
                    c = w * block.expansion
                setattr(self, f"layer{k + 1}", tnn.Sequential(*blocks))
            self.n_stages = len(layers)
            self.avgpool, self.fc = tnn.AdaptiveAvgPool2d(1), tnn.Linear(c, num_classes)

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            for k in range(self.n_stages):
                x = getattr(self, f"layer{k + 1}")(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class Separable(tnn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.depthwise = conv(c_in, c_in, 3, stride, groups=c_in)
            self.bn1 = tnn.BatchNorm2d(c_in)
            self.pointwise, self.bn2 = conv(c_in, c_out, 1), tnn.BatchNorm2d(c_out)

        def forward(self, x):
            x = torch.relu(self.bn1(self.depthwise(x)))
            return torch.relu(self.bn2(self.pointwise(x)))

    class MobileNet(tnn.Module):
        def __init__(self, blocks, stem_width, stem_stride, in_channels, num_classes):
            super().__init__()
            self.conv1 = conv(in_channels, stem_width, 3, stem_stride)
            self.bn1 = tnn.BatchNorm2d(stem_width)
            features, c = [], stem_width
            for c_out, stride in blocks:
                features.append(Separable(c, c_out, stride))
                c = c_out
            self.features = tnn.Sequential(*features)
            self.avgpool, self.fc = tnn.AdaptiveAvgPool2d(1), tnn.Linear(c, num_classes)

        def forward(self, x):
            x = self.features(torch.relu(self.bn1(self.conv1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return {"ResNet": ResNet, "MobileNet": MobileNet}


def torch_twin(torch, model):
    """Return the float64 torch twin of ``model`` with a copy of its weights and buffers."""
    args = {k: v for k, v in model.spec()["args"].items() if k != "dtype"}
    twin = _torch_twins(torch)[type(model).__name__](**args).double()
    state = {k: torch.tensor(to_numpy(v)) for k, v in model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    return twin


def _twin_cases():
    return [
        ("resnet8", {"in_channels": 1, "input_size": 8}, (3, 1, 8, 8)),
        ("resnet20", {"num_classes": 4}, (2, 3, 12, 12)),
        ("resnet18", {"in_channels": 1, "input_size": 28}, (2, 1, 28, 28)),
        ("mobilenet_small", {}, (2, 3, 16, 16)),
        ("bottleneck", {}, (2, 2, 19, 19)),
    ]


def _build(name, kwargs, dtype=F64, seed=0):
    if name == "bottleneck":
        return nn.ResNet("bottleneck", [2, 1], [4, 8], "imagenet", in_channels=2, num_classes=3,
                         dtype=dtype, seed=seed)  # fmt: skip
    return nn.build_model(name, dtype=dtype, seed=seed, **kwargs)


@pytest.mark.parametrize("name, kwargs, x_shape", _twin_cases(), ids=[c[0] for c in _twin_cases()])
def test_parameter_counts_and_names_equal_torch(torch, name, kwargs, x_shape):
    model = _build(name, kwargs)
    twin = torch_twin(torch, model)
    assert _count(model) == sum(p.numel() for p in twin.parameters())
    assert list(model.state_dict()) == list(twin.state_dict())
    shapes = {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes


@pytest.mark.parametrize("name, kwargs, x_shape", _twin_cases(), ids=[c[0] for c in _twin_cases()])
def test_forward_equals_torch_in_float64(backend, torch, name, kwargs, x_shape):
    model = _build(name, kwargs).to(backend)
    twin = torch_twin(torch, model)
    x = _x(x_shape, seed=1, dtype=np.float64)
    # Training mode: batch statistics, and the running statistics move the same way.
    y = model.train()(backend.asarray(x))
    ty = twin.train()(torch.tensor(x)).detach().numpy()
    assert_close(y, ty, dtype=np.float64, backend=backend, err_msg=f"{name} train")
    theirs = twin.state_dict()
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            assert int(value) == int(theirs[key]) == 1, key
        else:
            assert_close(value, theirs[key].numpy(), dtype=np.float64, backend=backend, err_msg=key)
    # Evaluation mode: the running statistics.
    y = model.eval()(backend.asarray(x))
    ty = twin.eval()(torch.tensor(x)).detach().numpy()
    assert_close(y, ty, dtype=np.float64, backend=backend, err_msg=f"{name} eval")


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: nn.ResNet("basic3", [1], [4]), ValueError,
         r"block must be one of \['basic', 'bottleneck'\], got 'basic3'"),
        (lambda: nn.ResNet("basic", [], [4]), ValueError,
         r"layers must be a non-empty sequence of positive ints, got \[\]"),
        (lambda: nn.ResNet("basic", "22", [4]), ValueError, "layers must be a non-empty sequence"),
        (lambda: nn.ResNet("basic", [2, 0], [4, 8]), ValueError,
         r"layers\[1\] must be a positive int, got 0"),
        (lambda: nn.ResNet("basic", [2, 2], [4, 8.0]), TypeError,
         r"widths\[1\] must be a positive int, got 8.0 \(float\)"),
        (lambda: nn.ResNet("basic", [2, 2], [4]), ValueError,
         r"widths must give one width per stage of layers=\[2, 2\], got widths=\[4\]"),
        (lambda: nn.ResNet("basic", [1], [4], stem="tiny"), ValueError,
         r"stem must be one of \['cifar', 'imagenet'\], got 'tiny'"),
        (lambda: nn.ResNet("basic", [1], [4], num_classes=0), ValueError,
         "num_classes must be a positive int, got 0"),
        (lambda: nn.BasicBlock(4, 8, stride=0), ValueError, "stride must be a positive int"),
        (lambda: nn.Bottleneck(4, True), TypeError, r"channels must be a positive int, got True"),
        (lambda: nn.DepthwiseSeparable(0, 4), ValueError, "in_channels must be a positive int"),
        (lambda: nn.MobileNet([]), ValueError,
         r"blocks must be a non-empty sequence of \(out_channels, stride\) pairs, got \[\]"),
        (lambda: nn.MobileNet([(8, 1), (16,)]), ValueError,
         r"blocks\[1\] must be an \(out_channels, stride\) pair, got \(16,\)"),
        (lambda: nn.MobileNet([(8, 0)]), ValueError,
         r"blocks\[0\]\[1\] \(stride\) must be a positive int, got 0"),
        (lambda: nn.resnet8(input_size=0), ValueError, "input_size must be a positive int, got 0"),
        (lambda: nn.resnet18(in_channels=1.0), TypeError, "in_channels must be a positive int"),
        (lambda: nn.mobilenet_small(num_classes=-1), ValueError, "num_classes must be a positive"),
        (lambda: nn.resnet20(dtype="int32"), (TypeError, ValueError), "dtype"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named_in_the_error(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_wrong_input_channels_fail_with_the_conv_message():
    with pytest.raises(ValueError, match="channels"):
        nn.resnet8(in_channels=1)(_x((1, 3, 8, 8)))


def test_bad_spec_arguments_are_a_value_error():
    spec = nn.resnet8().spec()
    spec["args"]["stem"] = "tiny"
    with pytest.raises(ValueError, match="stem must be one of"):
        nn.from_spec(spec)
    spec["args"] = {"block": "basic"}
    with pytest.raises(ValueError, match="spec of ResNet has bad arguments"):
        nn.from_spec(spec)


# --------------------------------------------------------------------------- registry and CLI


def test_models_are_registered_and_listed_by_the_cli():
    assert set(NEW_MODELS) <= set(nn.MODELS)
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in nn.MODELS:
        assert name in result.output


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize(
    "name, kwargs, x_shape, steps",
    [("resnet8", {"in_channels": 1, "input_size": 8, "num_classes": 4}, (6, 1, 8, 8), 2),
     ("resnet20", {"in_channels": 1, "input_size": 8, "num_classes": 4}, (4, 1, 8, 8), 2),
     # one step: its last stage normalises 2 values a channel (1x1 maps, batch 2), so a
     # second step's loss amplifies the rounding differences of the first update to 1e-7
     ("resnet18", {"num_classes": 4}, (2, 3, 16, 16), 1),
     ("bottleneck", {}, (4, 2, 11, 11), 2),
     ("mobilenet_small", {"num_classes": 4}, (4, 3, 8, 8), 2)],
    ids=["resnet8", "resnet20", "resnet18", "bottleneck", "mobilenet_small"],
)  # fmt: skip
def test_sgd_steps_equal_torch_autograd_in_float64(backend, torch, name, kwargs, x_shape, steps):
    model = _build(name, kwargs).to(backend)
    twin = torch_twin(torch, model)
    x = _x(x_shape, seed=2, dtype=np.float64)
    y = np.arange(x_shape[0]) % model.num_classes
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    topt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for step in range(steps):  # a second step uses the momentum buffers
        loss = cnnarray.cross_entropy(model.train()(cnnarray.tensor(backend.asarray(x))),
                                      backend.asarray(y))  # fmt: skip
        opt.zero_grad()
        loss.backward()
        tloss = torch.nn.functional.cross_entropy(twin.train()(torch.tensor(x)), torch.tensor(y))
        topt.zero_grad()
        tloss.backward()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-10)
        theirs = dict(twin.named_parameters())
        for key, p in model.named_parameters():
            assert_close(p.grad, theirs[key].grad.numpy(), dtype=np.float64, backend=backend,
                         rtol=1e-9, err_msg=f"step {step}: grad of {key}")  # fmt: skip
        opt.step()
        topt.step()
    theirs = twin.state_dict()
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert_close(value, theirs[key].numpy(), dtype=np.float64, backend=backend, rtol=1e-9,
                         err_msg=f"after {steps} steps: {key}")  # fmt: skip


def test_resnet8_learns_the_bundled_digits():
    digits = load_digits()
    data = Split(digits.x_train[:480], digits.y_train[:480], digits.x_test[:160],
                 digits.y_test[:160], digits.classes, "digits")  # fmt: skip
    cpu = get_backend("cpu")
    config = training.TrainConfig(model="resnet8", epochs=3, batch_size=32, lr=3e-3,
                                  augment="none")  # fmt: skip
    state = training.new_state(config, data, cpu)
    history = training.fit(state, data, cpu)
    assert history[-1].train_loss < 0.5 * history[0].train_loss
    assert training.test(state, data, cpu)["accuracy"] >= 0.8


def test_resnet8_checkpoint_round_trips_through_evaluate_and_predict(tmp_path) -> None:
    # cnnarray train --model resnet8, then evaluate and predict rebuild it from the file alone
    from PIL import Image

    runner = CliRunner()
    out = tmp_path / "r8.safetensors"
    args = ["train", "-d", "cpu", "--model", "resnet8", "--epochs", "1", "--out", str(out)]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(out), "-d", "cpu"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", result.output).group(1))
    assert accuracy > 50  # one epoch learns the digits well past chance (10 %)
    image = tmp_path / "digit.png"
    data = load_digits()
    Image.fromarray((data.x_test[0, 0] * 255).astype(np.uint8)).save(image)
    result = runner.invoke(app, ["predict", str(out), str(image), "-d", "cpu"],
                           env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "digit.png" in result.output
