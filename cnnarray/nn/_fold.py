"""A convolution followed by BatchNorm, with the BatchNorm folded into the convolution's
weights at inference.

In evaluation mode BatchNorm2d is the per-channel affine map
``y = (z - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``, so after a
convolution ``z = conv(x, w) + b`` it equals one convolution with
``w' = w * s`` (per output channel) and ``b' = (b - mean) * s + beta``: the
BatchNorm's pass over the output disappears. The folded weights are computed
from the parameters and running statistics at every call (a pass over the
weights, which the size test below keeps smaller than the pass it saves), so
they can never be stale and are never stored: not in the model, its
checkpoints or its gradients. Sequential and the ResNet blocks call
:func:`conv_bn_forward` for each convolution-BatchNorm pair.
"""

from __future__ import annotations

import math
from typing import Any

from ..autograd import is_grad_enabled
from ..backend import array_namespace
from ..ops import conv2d
from .conv import Conv2d
from .module import Module
from .normalization import BatchNorm2d

__all__ = ["conv_bn_forward", "foldable"]


def foldable(conv: Module, bn: Module, x: Any) -> bool:
    """Whether ``bn(conv(x))`` may run as one convolution with folded weights.

    Only a plain Conv2d then BatchNorm2d in evaluation mode with running
    statistics, with no gradient being recorded, parameters that match (else
    the unfolded layers raise their errors), and a batch of (N, C, H, W) large
    enough that folding the weights costs less than the BatchNorm pass it saves.
    """
    if type(conv) is not Conv2d or type(bn) is not BatchNorm2d:
        return False
    if bn.training or not bn.track_running_stats or is_grad_enabled():
        return False
    weight = conv.weight
    if conv.out_channels != bn.num_features or weight.dtype != bn.running_mean.dtype:
        return False
    shape = getattr(x, "shape", ())
    # output elements about N * H * W / strides per filter, against the filter's size
    return len(shape) == 4 and shape[0] * shape[2] * shape[3] >= (
        weight.data[0].size * math.prod(conv.stride)
    )


def _folded(conv: Conv2d, bn: BatchNorm2d) -> tuple[Any, Any]:
    """The weight and bias of the convolution that computes ``bn(conv(x))`` in eval mode."""
    mean, var = bn.running_mean, bn.running_var  # buffers: arrays
    scale = 1 / array_namespace(var).sqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.data
    bias = (-mean if conv.bias is None else conv.bias.data - mean) * scale
    if bn.bias is not None:
        bias += bn.bias.data
    return conv.weight.data * scale.reshape(-1, 1, 1, 1), bias


def conv_bn_forward(conv: Module, bn: Module, x: Any) -> Any:
    """Return ``bn(conv(x))``, as one convolution with folded weights where
    :func:`foldable` allows."""
    if not foldable(conv, bn, x):
        return bn(conv(x))
    assert isinstance(conv, Conv2d) and isinstance(bn, BatchNorm2d)
    conv._columns.release()  # as Conv2d.forward in eval mode: no training workspace kept
    weight, bias = _folded(conv, bn)
    x, padding = conv._pad(x)
    return conv2d(x, weight, bias, conv.stride, padding, conv.dilation, conv.groups)
