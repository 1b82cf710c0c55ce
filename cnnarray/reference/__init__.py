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
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
    log_softmax_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_backward,
    tanh,
    tanh_backward,
)
from .conv import (
    conv1d,
    conv1d_backward,
    conv2d,
    conv2d_backward,
    conv3d,
    conv3d_backward,
    conv_transpose1d,
    conv_transpose1d_backward,
    conv_transpose2d,
    conv_transpose2d_backward,
    conv_transpose3d,
    conv_transpose3d_backward,
)
from .linear import linear, linear_backward
from .loss import cross_entropy, cross_entropy_backward
from .norm import batch_norm2d, batch_norm2d_backward
from .padding import pad, pad_backward
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
    "batch_norm2d",
    "batch_norm2d_backward",
    "conv1d",
    "conv1d_backward",
    "conv2d",
    "conv2d_backward",
    "conv3d",
    "conv3d_backward",
    "conv_transpose1d",
    "conv_transpose1d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv_transpose3d",
    "conv_transpose3d_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "linear",
    "linear_backward",
    "log_softmax",
    "log_softmax_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "pad",
    "pad_backward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_backward",
]
