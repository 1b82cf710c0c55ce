"""Slow, obviously-correct reference implementations: the oracle.

Everything here runs on the CPU in float64 and follows the definitions
directly, with no shared code with :mod:`cnnarray.ops`:

* conv2d is ``scipy.signal.correlate2d`` (mode "valid") of the zero-padded
  image with the dilated kernel, sliced by the stride and summed over the
  input channels of each group;
* its gradients visit every output position and add ``grad * window``;
* pooling loops over every output position and reads the window with
  explicit bounds checks, computing PyTorch's divisor rules on its own.

The tests and ``cnnarray check`` compare the fast operations with these.
"""

from __future__ import annotations

from .activation import (
    celu,
    celu_backward,
    elu,
    elu_backward,
    gelu,
    gelu_backward,
    hardsigmoid,
    hardsigmoid_backward,
    hardswish,
    hardswish_backward,
    hardtanh,
    hardtanh_backward,
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
    log_softmax_backward,
    mish,
    mish_backward,
    prelu,
    prelu_backward,
    relu,
    relu6,
    relu6_backward,
    relu_backward,
    selu,
    selu_backward,
    sigmoid,
    sigmoid_backward,
    silu,
    silu_backward,
    softmax,
    softmax_backward,
    softplus,
    softplus_backward,
    tanh,
    tanh_backward,
)
from .conv import conv2d, conv2d_backward
from .dropout import dropout, dropout_backward
from .linear import linear, linear_backward
from .loss import cross_entropy, cross_entropy_backward
from .norm import (
    batch_norm,
    batch_norm2d,
    batch_norm2d_backward,
    batch_norm_backward,
    group_norm,
    group_norm_backward,
    instance_norm,
    instance_norm_backward,
    layer_norm,
    layer_norm_backward,
)
from .pool import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "batch_norm",
    "batch_norm2d",
    "batch_norm2d_backward",
    "batch_norm_backward",
    "celu",
    "celu_backward",
    "conv2d",
    "conv2d_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "dropout",
    "dropout_backward",
    "elu",
    "elu_backward",
    "gelu",
    "gelu_backward",
    "group_norm",
    "group_norm_backward",
    "hardsigmoid",
    "hardsigmoid_backward",
    "hardswish",
    "hardswish_backward",
    "hardtanh",
    "hardtanh_backward",
    "instance_norm",
    "instance_norm_backward",
    "layer_norm",
    "layer_norm_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "linear",
    "linear_backward",
    "log_softmax",
    "log_softmax_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "mish",
    "mish_backward",
    "prelu",
    "prelu_backward",
    "relu",
    "relu6",
    "relu6_backward",
    "relu_backward",
    "selu",
    "selu_backward",
    "sigmoid",
    "sigmoid_backward",
    "silu",
    "silu_backward",
    "softmax",
    "softmax_backward",
    "softplus",
    "softplus_backward",
    "tanh",
    "tanh_backward",
]
