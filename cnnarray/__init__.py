"""cnnarray: convolutional-neural-network layers written once for NumPy and CuPy."""

# Subpackages, so that ``import cnnarray`` is enough for ``cnnarray.nn.Conv2d``.
from . import data, io, nn, optim
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
    "__version__",
    "data",
    "io",
    "nn",
    "optim",
    "asarray",
    "available_backends",
    "backend_of",
    "get_backend",
    "synchronize",
    "to_numpy",
    *_ops_all,
]
