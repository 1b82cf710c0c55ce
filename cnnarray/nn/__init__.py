"""Neural-network layers, models and their containers, over :mod:`cnnarray.ops`.

``Module`` holds parameters, buffers and children; layers are thin wrappers
whose ``forward``/``backward`` call the functional ops; ``Sequential`` chains
them; ``spec()``/``from_spec`` and ``state_dict()``/``load_state_dict`` save
and rebuild models without pickle.

Examples
--------
>>> import numpy as np
>>> from cnnarray import nn, ops
>>> model = nn.Sequential(nn.Conv2d(1, 4, 3, seed=0), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3))
>>> x, y = np.ones((2, 1, 5, 5), "float32"), np.array([0, 2])
>>> logits = model(x)
>>> grad_x = model.backward(ops.cross_entropy_backward(logits, y))
>>> [p.grad.shape for p in model.parameters()]
[(4, 1, 3, 3), (4,), (3, 36), (3,)]
"""

from . import init
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from .models import MODELS, build_model, lenet5, small_cnn, vgg_small
from .module import IncompatibleKeys, Module, Parameter, from_spec, register

__all__ = [
    "MODELS",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "IncompatibleKeys",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "build_model",
    "from_spec",
    "init",
    "lenet5",
    "register",
    "small_cnn",
    "vgg_small",
]
