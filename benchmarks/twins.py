"""The PyTorch twin of each cnnarray model that ``train_compare.py`` trains.

Each twin is built layer for layer like its cnnarray model, with the same
parameter and buffer names, so that ``twin.load_state_dict`` takes cnnarray's
``state_dict()`` as it is (strict). ``data`` gives the input shape ``(C, H, W)``
and the number of classes (a :class:`cnnarray.data.datasets.Split`).
"""

from __future__ import annotations

from collections import OrderedDict


def torch_lenet5(torch, data):
    """cnnarray.nn.lenet5: padding 2 where the input is smaller than 32 (and 10) pixels."""
    c, h, _ = data.input_shape
    pad1 = 0 if h >= 32 else 2
    size1 = (h + 2 * pad1 - 4) // 2
    pad2 = 0 if size1 >= 10 else 2
    size2 = (size1 + 2 * pad2 - 4) // 2
    return torch.nn.Sequential(
        torch.nn.Conv2d(c, 6, 5, padding=pad1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5, padding=pad2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(16 * size2 * size2, 120), torch.nn.ReLU(),
        torch.nn.Linear(120, 84), torch.nn.ReLU(), torch.nn.Linear(84, data.num_classes),
    )  # fmt: skip


def torch_vgg_small(torch, data):
    """cnnarray.nn.vgg_small's defaults, layer for layer (so the parameter names match)."""
    channels, size, _ = data.input_shape
    features = []
    for width in (32, 64, 128):
        for _ in range(2):
            features += [torch.nn.Conv2d(channels, width, 3, padding=1, bias=False),
                         torch.nn.BatchNorm2d(width), torch.nn.ReLU()]  # fmt: skip
            channels = width
        features.append(torch.nn.MaxPool2d(2))
    size //= 8
    classifier = [torch.nn.Flatten(), torch.nn.Linear(channels * size * size, 256),
                  torch.nn.ReLU(), torch.nn.Linear(256, data.num_classes)]  # fmt: skip
    parts = {"features": features, "classifier": classifier}
    return torch.nn.Sequential(OrderedDict((k, torch.nn.Sequential(*v)) for k, v in parts.items()))


def torch_resnet20(torch, data):
    """cnnarray.nn.resnet20: the CIFAR stem, three stages of three BasicBlocks (16, 32, 64
    channels), 1x1-conv + BatchNorm shortcuts where the shape changes, global average
    pooling and ``fc``; names as torchvision's (``layer2.0.downsample.0.weight``)."""
    nn = torch.nn

    def conv_bn(c_in, c_out, k, stride):
        return nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out)

    class BasicBlock(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1, self.bn1 = conv_bn(c_in, c_out, 3, stride)
            self.conv2, self.bn2 = conv_bn(c_out, c_out, 3, 1)
            self.downsample = None
            if stride != 1 or c_in != c_out:
                self.downsample = nn.Sequential(*conv_bn(c_in, c_out, 1, stride))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet20(nn.Module):
        def __init__(self, c_in, num_classes):
            super().__init__()
            self.conv1, self.bn1 = conv_bn(c_in, 16, 3, 1)
            channels = 16
            for k, width in enumerate((16, 32, 64)):
                blocks = [BasicBlock(channels if i == 0 else width, width,
                                     2 if k > 0 and i == 0 else 1) for i in range(3)]  # fmt: skip
                setattr(self, f"layer{k + 1}", nn.Sequential(*blocks))
                channels = width
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(channels, num_classes)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(self.flatten(self.avgpool(x)))

    return ResNet20(data.input_shape[0], data.num_classes)


# The PyTorch twin of each cnnarray model, built layer for layer.
TORCH_MODELS = {"lenet5": torch_lenet5, "vgg_small": torch_vgg_small,
                "resnet20": torch_resnet20}  # fmt: skip
