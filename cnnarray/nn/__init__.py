"""Neural-network layers, models and their containers, over :mod:`cnnarray.ops`.

``Module`` holds parameters, buffers and children; a layer's ``forward``
calls one functional op with its parameters (``Parameter`` is a Tensor that
requires grad), and autograd records it, so no layer or model writes a
backward; ``Sequential`` chains modules; ``spec()``/``from_spec`` and
``state_dict()``/``load_state_dict`` save and rebuild models without pickle.
Names, arguments and default initialisation follow ``torch.nn``, and the
layers live in modules named by kind as in ``torch.nn.modules``:
``container`` (Sequential), ``conv`` (Conv1d/2d/3d, ConvTranspose1d/2d/3d),
``linear`` (Linear, Flatten), ``normalization`` (BatchNorm1d/2d/3d, GroupNorm,
LayerNorm, InstanceNorm1d/2d/3d), ``activation`` (ReLU, LeakyReLU, GELU, PReLU
and the rest), ``pooling`` (MaxPool, AvgPool, AdaptiveAvg/MaxPool and LPPool in
1-D to 3-D, MaxUnpool), ``upsampling`` (Upsample, UpsamplingNearest2d,
UpsamplingBilinear2d, PixelShuffle, PixelUnshuffle), ``dropout`` (Dropout,
Dropout1d/2d/3d) and ``loss`` (CrossEntropyLoss, NLLLoss, BCELoss,
BCEWithLogitsLoss, MSELoss, L1Loss, SmoothL1Loss, HuberLoss, KLDivLoss);
``module`` holds Module and Parameter, ``init`` the initialisation, ``resnet``
(BasicBlock, Bottleneck, ResNet), ``mobilenet`` (DepthwiseSeparable,
MobileNet), ``unet`` (UNet) and ``cnn1d`` (CNN1d) the model classes,
``models`` the ready-made networks.

Examples
--------
>>> import numpy as np
>>> import cnnarray
>>> from cnnarray import nn
>>> model = nn.Sequential(nn.Conv2d(1, 4, 3, seed=0), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3))
>>> x, y = np.ones((2, 1, 5, 5), "float32"), np.array([0, 2])
>>> loss = cnnarray.cross_entropy(model(cnnarray.tensor(x)), y)
>>> loss.backward()
>>> [p.grad.shape for p in model.parameters()]
[(4, 1, 3, 3), (4,), (3, 36), (3,)]
"""

from . import init
from .activation import (
    CELU,
    ELU,
    GELU,
    SELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LeakyReLU,
    Mish,
    PReLU,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
)
from .cnn1d import CNN1d
from .container import Sequential
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .dropout import Dropout, Dropout1d, Dropout2d, Dropout3d
from .linear import Flatten, Linear
from .loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from .mobilenet import DepthwiseSeparable, MobileNet
from .models import (
    MODELS,
    SEGMENTATION_MODELS,
    SIGNAL_MODELS,
    build_model,
    cnn1d_small,
    lenet5,
    mobilenet_small,
    resnet8,
    resnet18,
    resnet20,
    small_cnn,
    unet_small,
    vgg_small,
)
from .module import IncompatibleKeys, Module, Parameter, check_spec, from_spec, register
from .normalization import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    LayerNorm,
)
from .pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AdaptiveMaxPool3d,
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    LPPool1d,
    LPPool2d,
    LPPool3d,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
    MaxUnpool1d,
    MaxUnpool2d,
    MaxUnpool3d,
)
from .resnet import BasicBlock, Bottleneck, ResNet
from .unet import UNet
from .upsampling import (
    PixelShuffle,
    PixelUnshuffle,
    Upsample,
    UpsamplingBilinear2d,
    UpsamplingNearest2d,
)

__all__ = [
    "CELU",
    "ELU",
    "GELU",
    "MODELS",
    "SEGMENTATION_MODELS",
    "SELU",
    "SIGNAL_MODELS",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "AvgPool3d",
    "BasicBlock",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "CNN1d",
    "Bottleneck",
    "Conv1d",
    "Conv2d",
    "CrossEntropyLoss",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "DepthwiseSeparable",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "Flatten",
    "GroupNorm",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "IncompatibleKeys",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LPPool1d",
    "LPPool2d",
    "LPPool3d",
    "LayerNorm",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "LeakyReLU",
    "Linear",
    "MSELoss",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
    "Mish",
    "MobileNet",
    "Module",
    "PReLU",
    "NLLLoss",
    "Parameter",
    "PixelShuffle",
    "PixelUnshuffle",
    "ReLU",
    "ReLU6",
    "ResNet",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "Tanh",
    "UNet",
    "SmoothL1Loss",
    "Upsample",
    "UpsamplingBilinear2d",
    "UpsamplingNearest2d",
    "build_model",
    "cnn1d_small",
    "check_spec",
    "from_spec",
    "init",
    "lenet5",
    "mobilenet_small",
    "register",
    "resnet18",
    "resnet20",
    "resnet8",
    "small_cnn",
    "unet_small",
    "vgg_small",
]
