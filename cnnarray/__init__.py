"""cnnarray: convolutional-neural-network layers written once for NumPy and CuPy."""

# Subpackages, so that ``import cnnarray`` is enough for ``cnnarray.nn.Conv2d``.
from . import autograd, data, io, nn, optim
from .autograd import Tensor, cat, enable_grad, is_grad_enabled, no_grad, stack, tensor
from .backend import (
    Backend,
    BackendUnavailableError,
    asarray,
    available_backends,
    backend_of,
    get_backend,
    synchronize,
    to_numpy,
)
from .ops import *  # noqa: F403
from .ops import __all__ as _ops_all

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "Tensor",
    "__version__",
    "data",
    "io",
    "nn",
    "optim",
    "asarray",
    "autograd",
    "available_backends",
    "backend_of",
    "cat",
    "enable_grad",
    "get_backend",
    "is_grad_enabled",
    "no_grad",
    "stack",
    "synchronize",
    "tensor",
    "to_numpy",
    *_ops_all,
]
