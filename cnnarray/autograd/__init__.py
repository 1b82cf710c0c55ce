"""Autograd: write forward only, over Tensors; the tape calls each op's ``*_backward``.

``Tensor`` wraps a NumPy or CuPy array. Ops of :mod:`cnnarray.ops` and the
Tensor arithmetic record what they did when an input requires grad (and
:func:`no_grad` is not in effect); :meth:`Tensor.backward` walks that record
backwards and adds gradients into the leaves' ``.grad``, PyTorch's way. Arrays
given to the ops still return arrays, with nothing recorded.

Examples
--------
>>> import numpy as np, cnnarray
>>> w = cnnarray.tensor(np.ones((2, 1, 3, 3)), requires_grad=True)
>>> x = np.arange(25.0).reshape(1, 1, 5, 5)
>>> y = cnnarray.relu(cnnarray.conv2d(x, w)) + 1
>>> y.sum().backward()
>>> w.grad.shape, y.shape
((2, 1, 3, 3), (1, 2, 3, 3))
"""

from . import (
    _rules_conv,  # noqa: F401  (registers the convolution family's rules)
    _rules_loss,  # noqa: F401  (registers the losses' rules)
    _rules_normact,  # noqa: F401  (registers its rules)
    _rules_pool,  # noqa: F401  (registers the pooling ops' rules)
    _rules_resize,  # noqa: F401  (registers the resizing ops' rules)
)
from ._functions import cat, stack
from ._graph import Node, backward_times
from ._rules import differentiable, has_rule
from ._tensor import Tensor, enable_grad, is_grad_enabled, no_grad, tensor

__all__ = [
    "Node",
    "Tensor",
    "backward_times",
    "cat",
    "differentiable",
    "enable_grad",
    "has_rule",
    "is_grad_enabled",
    "no_grad",
    "stack",
    "tensor",
]
