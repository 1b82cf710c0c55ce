"""Layer math written once against an array module ``xp``: NumPy or CuPy.

No module in this package imports numpy or cupy or asks which one it has.
"""

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
from .adaptive_pool import adaptive_avg_pool2d, adaptive_avg_pool2d_backward
from .conv import (
    ColumnCache,
    conv2d,
    conv2d_backward,
    conv2d_output_shape,
    get_workspace_limit,
    set_workspace_limit,
)
from .linear import flatten, flatten_backward, linear, linear_backward
from .loss import cross_entropy, cross_entropy_backward
from .norm import batch_norm2d, batch_norm2d_backward
from .pool import (
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)
from .pool_nd import (
    avg_pool1d,
    avg_pool1d_backward,
    avg_pool3d,
    avg_pool3d_backward,
    max_pool1d,
    max_pool1d_backward,
    max_pool3d,
    max_pool3d_backward,
)
from .unpool import (
    max_unpool1d,
    max_unpool1d_backward,
    max_unpool2d,
    max_unpool2d_backward,
    max_unpool3d,
    max_unpool3d_backward,
)

__all__ = [
    "ColumnCache",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "avg_pool1d",
    "avg_pool1d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool3d",
    "avg_pool3d_backward",
    "batch_norm2d",
    "batch_norm2d_backward",
    "conv2d",
    "conv2d_backward",
    "conv2d_output_shape",
    "cross_entropy",
    "cross_entropy_backward",
    "flatten",
    "flatten_backward",
    "get_workspace_limit",
    "leaky_relu",
    "leaky_relu_backward",
    "linear",
    "linear_backward",
    "log_softmax",
    "log_softmax_backward",
    "max_pool1d",
    "max_pool1d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool3d",
    "max_pool3d_backward",
    "max_unpool1d",
    "max_unpool1d_backward",
    "max_unpool2d",
    "max_unpool2d_backward",
    "max_unpool3d",
    "max_unpool3d_backward",
    "relu",
    "relu_backward",
    "set_workspace_limit",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_backward",
]
