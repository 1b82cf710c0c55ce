"""Array backends: NumPy on the CPU, CuPy on CUDA GPUs.

This is the only module of cnnarray that imports CuPy, and it does so lazily
and guarded, so the package imports and runs on a machine without CuPy or
without a GPU. Layer code never imports an array library: it asks
:func:`array_namespace` for the module ``xp`` its inputs live in.

Backend names
-------------
``"cpu"`` (alias ``"numpy"``)
    NumPy arrays in host memory.
``"cuda"`` (aliases ``"cupy"``, ``"gpu"``), ``"cuda:N"``
    CuPy arrays on CUDA device 0, or device N.
``"auto"``
    CUDA when CuPy imports and a device answers, else CPU. Only ``"auto"`` ever
    falls back silently; asking for ``"cuda"`` where it cannot run raises
    :class:`BackendUnavailableError` with the reason.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import numpy

from . import _args

# Scratch memory (per-call Workspace objects, per-thread bytes) has its own module;
# its names are part of this one's API.
from ._workspace import Workspace, debug_workspace, release_scratch, reserve_scratch, scratch

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "Workspace",
    "array_namespace",
    "asarray",
    "available_backends",
    "backend_of",
    "blas_info",
    "cuda_unavailable_reason",
    "debug_workspace",
    "describe_device",
    "dispatch",
    "get_backend",
    "parallel_for",
    "parse_device",
    "release_scratch",
    "reserve_scratch",
    "scratch",
    "set_num_threads",
    "synchronize",
    "threadpools",
    "to_numpy",
]

_CPU_NAMES = ("cpu", "numpy")
_CUDA_NAMES = ("cuda", "cupy", "gpu")


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot run on this machine."""


@dataclass(frozen=True)
class Backend:
    """Where arrays live and which module computes on them.

    Attributes
    ----------
    name : {"cpu", "cuda"}
        Kind of device.
    device : int or None
        CUDA device index, None on the CPU.
    xp : module
        ``numpy`` or ``cupy``.
    """

    name: str
    device: int | None
    xp: ModuleType

    def __str__(self) -> str:
        return self.name if self.device is None else f"{self.name}:{self.device}"

    def __repr__(self) -> str:
        return f"Backend('{self}')"

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """Make this backend's device the current CUDA device (no-op on the CPU)."""
        if self.device is None:
            yield
        else:
            with self.xp.cuda.Device(self.device):
                yield

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        """Return ``data`` as an array of this backend, copying only when needed."""
        if self.device is None:
            if _is_cupy_array(data):
                data = data.get()
            return numpy.asarray(data, dtype=dtype)
        with self.activate():
            if _is_cupy_array(data) and data.device.id != self.device:
                return self.xp.array(data, dtype=dtype, copy=True)  # copy onto this device
            return self.xp.asarray(data, dtype=dtype)

    def synchronize(self) -> None:
        """Wait until all work queued on this device has finished."""
        if self.device is not None:
            with self.activate():
                self.xp.cuda.get_current_stream().synchronize()


_CPU = Backend("cpu", None, numpy)
_cupy_module: ModuleType | None = None
_cupy_reason: str | None = None
_cupy_probed = False


def _probe_cupy() -> tuple[ModuleType | None, str | None]:
    """Import CuPy once and find out whether a CUDA device answers."""
    global _cupy_module, _cupy_reason, _cupy_probed
    if _cupy_probed:
        return _cupy_module, _cupy_reason
    _cupy_probed = True
    try:
        import cupy
    except ImportError as exc:
        _cupy_reason = (
            f"CuPy is not installed ({exc}); install it with pip install 'cnnarray[cuda]'"
        )
        return None, _cupy_reason
    except Exception as exc:  # a broken CUDA install can raise anything on import
        _cupy_reason = f"CuPy failed to import: {type(exc).__name__}: {exc}"
        return None, _cupy_reason
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        _cupy_reason = f"no CUDA device answers: {type(exc).__name__}: {exc}"
        return None, _cupy_reason
    if count == 0:
        _cupy_reason = "no CUDA device found"
        return None, _cupy_reason
    try:
        driver = cupy.cuda.runtime.driverGetVersion()
        runtime = cupy.cuda.runtime.runtimeGetVersion()
    except Exception as exc:
        _cupy_reason = f"cannot query the CUDA driver: {type(exc).__name__}: {exc}"
        return None, _cupy_reason
    # CUDA's minor-version compatibility lets a 13.2 runtime run on a 13.0 driver;
    # only an older major version cannot work.
    if driver // 1000 < runtime // 1000:
        _cupy_reason = (
            f"the CUDA driver is too old: it supports CUDA {_cuda_version(driver)} "
            f"but CuPy was built for CUDA {_cuda_version(runtime)}"
        )
        return None, _cupy_reason
    _cupy_module = cupy
    return cupy, None


def _cuda_version(code: int) -> str:
    return f"{code // 1000}.{code % 1000 // 10}"


def cuda_unavailable_reason() -> str | None:
    """Return why the CUDA backend cannot run here, or None when it can."""
    return _probe_cupy()[1]


def available_backends() -> list[str]:
    """Return the names of the backends that can run on this machine.

    Examples
    --------
    >>> "cpu" in available_backends()
    True
    """
    names = ["cpu"]
    cupy, _ = _probe_cupy()
    if cupy is not None:
        names += ["cuda"] + [f"cuda:{i}" for i in range(cupy.cuda.runtime.getDeviceCount())]
    return names


def get_backend(name: str | Backend | None = "auto") -> Backend:
    """Return the backend called ``name``.

    Parameters
    ----------
    name : str, Backend or None
        ``"cpu"``, ``"numpy"``, ``"cuda"``, ``"cupy"``, ``"gpu"``, ``"cuda:N"`` or
        ``"auto"`` (None means ``"auto"``). Case is ignored.

    Raises
    ------
    ValueError
        If the name is not one of the above.
    BackendUnavailableError
        If a CUDA backend is asked for and cannot run; the message says why.
    """
    if isinstance(name, Backend):
        return name
    if name is None:
        name = "auto"
    if not isinstance(name, str):
        raise TypeError(
            f"backend must be a string such as 'cpu', 'cuda' or 'cuda:1', got {type(name).__name__}"
        )
    key = name.strip().lower()
    canonical = _canonical(key)
    if canonical is None:
        kind, _, index = key.partition(":")
        if kind in _CUDA_NAMES:
            raise ValueError(f"backend {name!r}: expected a device index after ':', got {index!r}")
        raise ValueError(
            f"backend must be one of 'cpu', 'numpy', 'cuda', 'cupy', 'gpu', 'cuda:N' or 'auto', "
            f"got {name!r}"
        )
    if canonical == "cpu":
        return _CPU
    cupy, reason = _probe_cupy()
    if canonical == "auto":
        return _CPU if cupy is None else _cuda_backend(cupy, 0)
    if cupy is None:
        raise BackendUnavailableError(f"backend {name!r} is unavailable: {reason}")
    return _cuda_backend(cupy, int(canonical.partition(":")[2] or 0))


def _canonical(key: str) -> str | None:
    """``"cpu"``, ``"auto"``, ``"cuda"`` or ``"cuda:N"`` for a known spelling ``key``
    (lower case, stripped), else None: the one table of device names."""
    if key in _CPU_NAMES:
        return "cpu"
    if key == "auto":
        return "auto"
    kind, sep, index = key.partition(":")
    if kind in _CUDA_NAMES:
        if not sep:
            return "cuda"
        if index.isascii() and index.isdigit():
            return f"cuda:{int(index)}"
    return None


def parse_device(value: str) -> str:
    """Check the spelling of a device name and return its canonical form.

    Only the spelling is checked, not whether the device can run here (that is
    :func:`get_backend`'s job), so a command line can refuse a typo at once.

    Parameters
    ----------
    value : str
        ``"cpu"`` or ``"numpy"``; ``"cuda"``, ``"cupy"`` or ``"gpu"``, with or
        without ``":N"``; ``"auto"``. Case and surrounding spaces are ignored.

    Returns
    -------
    str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

    Raises
    ------
    TypeError
        If ``value`` is not a string.
    ValueError
        If ``value`` is none of the above.

    Examples
    --------
    >>> parse_device("GPU:1"), parse_device("numpy")
    ('cuda:1', 'cpu')
    """
    if not isinstance(value, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:1', got {value!r}")
    canonical = _canonical(value.strip().lower())
    if canonical is None:
        raise ValueError(f"expected cpu, cuda, cuda:N or auto, got {value!r}")
    return canonical


def describe_device(backend: str | Backend) -> dict[str, Any]:
    """Name and memory of the device a backend computes on.

    Parameters
    ----------
    backend : str or Backend
        A backend or its name (see :func:`get_backend`).

    Returns
    -------
    dict
        ``{"name": str, "memory_gib": float or None}``: the GPU's name and
        total memory in GiB, or on the CPU the processor as :mod:`platform`
        reports it and None.
    """
    backend = get_backend(backend)
    if backend.device is None:
        import platform

        return {"name": platform.processor() or platform.machine(), "memory_gib": None}
    props = backend.xp.cuda.runtime.getDeviceProperties(backend.device)
    name = props["name"]
    return {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "memory_gib": props["totalGlobalMem"] / 2**30,
    }


@functools.cache
def _cuda_backend(cupy: ModuleType, device: int) -> Backend:
    count = cupy.cuda.runtime.getDeviceCount()
    if device >= count:
        raise BackendUnavailableError(
            f"backend 'cuda:{device}' is unavailable: this machine has {count} CUDA "
            f"device(s), numbered 0 to {count - 1}"
        )
    return Backend("cuda", device, cupy)


def _is_cupy_array(obj: Any) -> bool:
    # Only look for CuPy if somebody already imported it: no array can come from
    # a module that was never loaded.
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(obj, cupy.ndarray)


def _is_array(obj: Any) -> bool:
    return isinstance(obj, numpy.ndarray | numpy.generic) or _is_cupy_array(obj)


def backend_of(array: Any) -> Backend:
    """Return the backend an array lives on.

    Raises
    ------
    TypeError
        If ``array`` is neither a NumPy nor a CuPy array.
    """
    if type(array) is numpy.ndarray or isinstance(array, numpy.ndarray | numpy.generic):
        return _CPU
    if _is_cupy_array(array):
        return _cuda_backend(sys.modules["cupy"], array.device.id)
    raise TypeError(f"expected a NumPy or CuPy array, got {type(array).__name__}")


def array_namespace(*arrays: Any) -> ModuleType:
    """Return the array module (``numpy`` or ``cupy``) of the first array given.

    Layer code calls this instead of importing an array library; inputs are
    already on one device (see :func:`dispatch`).
    """
    for a in arrays:
        if type(a) is numpy.ndarray:  # the common case, before the general test
            return numpy
        if a is not None and _is_array(a):
            return backend_of(a).xp
    return numpy


def asarray(data: Any, backend: str | Backend | None = None, dtype: Any = None) -> Any:
    """Convert ``data`` to an array on ``backend``.

    Parameters
    ----------
    data : array_like
        A NumPy or CuPy array, or anything ``numpy.asarray`` accepts.
    backend : str, Backend or None
        Target backend name (see :func:`get_backend`). None keeps a CuPy array
        where it is and puts everything else on the CPU.
    dtype : dtype, optional
        Dtype of the result.
    """
    if backend is None:
        target = backend_of(data) if _is_cupy_array(data) else _CPU
    else:
        target = get_backend(backend)
    return target.asarray(data, dtype=dtype)


def to_numpy(array: Any) -> numpy.ndarray:
    """Return a NumPy copy of a CuPy array, or ``numpy.asarray`` of anything else."""
    if _is_cupy_array(array):
        return array.get()
    return numpy.asarray(array)


def synchronize(backend: str | Backend | None = None) -> None:
    """Wait for queued GPU work on ``backend`` (default: auto) to finish."""
    get_backend(backend).synchronize()


_num_threads = min(os.cpu_count() or 1, 8)
_pool: ThreadPoolExecutor | None = None


def set_num_threads(n: int) -> None:
    """Set how many threads the CPU backend uses for its copy passes (default: cores, <= 8)."""
    global _num_threads, _pool
    _num_threads, _pool = _args.check_int(n, "n", minimum=1), None


def threadpools() -> list[dict[str, Any]]:
    """The native thread pools loaded in this process (BLAS, OpenMP), per threadpoolctl.

    One dict per pool with threadpoolctl's keys (``user_api``, ``internal_api``,
    ``version``, ``num_threads``, ``filepath`` as a str, ...); empty when
    threadpoolctl is not installed.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [pool | {"filepath": str(pool.get("filepath", ""))} for pool in threadpool_info()]


def blas_info() -> dict[str, Any]:
    """The BLAS that NumPy's matmul calls: ``{"name", "version", "threads"}``.

    ``threads`` is the BLAS pool's thread count, or None when threadpoolctl
    cannot tell (then ``name`` comes from NumPy's build configuration). With
    several BLAS pools in the process (PyTorch brings its own), NumPy's own is
    preferred.
    """
    pools = [p for p in threadpools() if p.get("user_api") == "blas"]
    for pool in [p for p in pools if "numpy" in p["filepath"]] or pools:
        return {
            "name": pool.get("internal_api") or "unknown",
            "version": pool.get("version"),
            "threads": int(pool["num_threads"]),
        }
    try:
        config = numpy.show_config(mode="dicts")
    except TypeError:  # NumPy < 1.26 only prints
        config = None
    blas = (config or {}).get("Build Dependencies", {}).get("blas", {})
    name = str(blas.get("name", "unknown"))
    return {"name": name, "version": blas.get("version"), "threads": None}


# parallel_for runs jobs touching fewer elements than this in the calling thread:
# handing a slice to a pool thread and waiting for it costs 80-130 us on a 2-core VM.
_PARALLEL_MIN_WORK = 1 << 21


def parallel_for(xp: ModuleType, total: int, body: Callable[[slice], None], work: int) -> None:
    """Call ``body(part)`` on slices ``part`` that split ``range(total)``.

    On the CPU the slices run on a thread pool: NumPy releases the GIL in
    copies and ufuncs, which are single-threaded on their own, so passes that
    are not BLAS calls use every core. On a GPU, ``body(slice(0, total))`` runs
    once, since one kernel launch already uses the whole device. ``work`` is the
    number of elements touched; small jobs run in the calling thread.
    """
    global _pool
    threads = min(_num_threads, total)
    if xp is not numpy or threads < 2 or work < _PARALLEL_MIN_WORK:
        body(slice(0, total))
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(_num_threads, thread_name_prefix="cnnarray")
    bounds = [total * i // threads for i in range(threads + 1)]
    futures = [_pool.submit(body, slice(a, b)) for a, b in itertools.pairwise(bounds) if b > a]
    for future in futures:
        future.result()


def fft2(xp: ModuleType) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Return ``(rfft2, irfft2)`` for arrays of ``xp``, both called as ``f(a, s=shape)``.

    On the CPU these are SciPy's (pocketfft in the input's precision): 2-5x
    faster than ``numpy.fft`` on float32 images from 64 x 64 to 512 x 512, and
    on one thread, since ``workers=2`` only gained on some 256 x 256 sizes and
    lost up to 5x on small ones. On a GPU, ``cupy.fft`` (cuFFT).
    """
    if xp is numpy:
        import scipy.fft

        return scipy.fft.rfft2, scipy.fft.irfft2
    return xp.fft.rfft2, xp.fft.irfft2


def erf(xp: ModuleType) -> Callable[[Any], Any]:
    """Return the error function for arrays of ``xp`` (dtype-preserving ufunc).

    NumPy has none: on the CPU it is ``scipy.special.erf``, on a GPU
    ``cupyx.scipy.special.erf``. The exact GELU needs it.
    """
    if xp is numpy:
        import scipy.special

        return scipy.special.erf
    import cupyx.scipy.special

    return cupyx.scipy.special.erf


def host_rng(seed: int | None = None) -> Any:
    """Return ``numpy.random.default_rng(seed)``: a generator on the host, for random
    draws that must repeat from a seed whatever the device (dropout's masks)."""
    return numpy.random.default_rng(seed)


F = TypeVar("F", bound=Callable[..., Any])


def dispatch(*array_args: str) -> Callable[[F], F]:
    """Decorate a public operation so its array arguments share one device.

    The decorated function has a keyword ``backend``. With ``backend=None`` the
    arrays named in ``array_args`` must already live on one device (a TypeError
    names the two devices otherwise) and the result stays there; non-array
    inputs such as lists go to that device too. With a backend name, every
    array is moved there first and the result is returned there. The body runs
    with that device current, so it only needs ``array_namespace``.

    An argument whose type has a ``__cnnarray_function__(op, args, kwargs)``
    (:class:`cnnarray.Tensor`) is handed the whole call instead, like NumPy's
    ``__array_function__``: this module knows nothing of what it does.
    """

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        names = list(signature.parameters)
        positions = [(name, names.index(name)) for name in array_args]
        # array arguments without a default: None there is a caller's mistake, not "absent"
        required = [
            n for n in array_args if signature.parameters[n].default is inspect.Parameter.empty
        ]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # Fast path, the common case of a training loop: no backend asked for
            # and every array argument already a NumPy array; binding the
            # signature would cost more than a small op.
            if kwargs.get("backend") is None:
                for name, pos in positions:
                    value = args[pos] if pos < len(args) else kwargs.get(name)
                    if type(value) is not numpy.ndarray and (value is not None or name in required):
                        break
                else:
                    return func(*args, **kwargs)
            # An array wrapper (cnnarray.Tensor) runs the call itself: it unwraps,
            # calls back with arrays, and records what autograd needs.
            for name, pos in positions:
                value = args[pos] if pos < len(args) else kwargs.get(name)
                handler = getattr(type(value), "__cnnarray_function__", None)
                if handler is not None:
                    return handler(wrapper, args, kwargs)
            bound = signature.bind(*args, **kwargs)
            for name in required:
                if bound.arguments.get(name) is None:
                    raise TypeError(f"{func.__name__}: {name} must be an array, got None")
            requested = bound.arguments.get("backend")
            given = {
                name: bound.arguments[name]
                for name in array_args
                if bound.arguments.get(name) is not None
            }
            if requested is not None:
                target = get_backend(requested)
            else:
                target = None
                for name, value in given.items():
                    if not _is_array(value):
                        continue
                    where = backend_of(value)
                    if target is None:
                        target, first = where, name
                    elif where != target:
                        raise TypeError(
                            f"{func.__name__}: {first} is on {target} but {name} is on "
                            f"{where}; move them to one device or pass backend=..."
                        )
                target = target or _CPU
            for name, value in given.items():
                if not (_is_array(value) and backend_of(value) == target):
                    bound.arguments[name] = target.asarray(value)
            if "backend" in bound.arguments:
                bound.arguments["backend"] = None
            with target.activate():
                return func(*bound.args, **bound.kwargs)

        wrapper.__cnnarray_arrays__ = array_args  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
