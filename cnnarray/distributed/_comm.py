"""Collectives between the ranks of an MPI job, through mpi4py (and NCCL for CuPy arrays).

One interface, :class:`Communicator`, with a ``method`` chosen once from where
the arrays live and what is installed:

``"mpi"``
    NumPy arrays, through mpi4py's buffer interface (no pickling).
``"nccl"``
    CuPy arrays, GPU to GPU through ``cupy.cuda.nccl`` (NVLink, InfiniBand), the
    NCCL clique set up over MPI.
``"cuda-aware mpi"``
    CuPy arrays handed to an MPI library that reads device memory
    (``MPI.Query_cuda_support()``), when NCCL is not there.
``"host staging"``
    CuPy arrays copied to host memory, reduced over MPI, copied back.

Every collective is started non-blocking and polled against a deadline
(``timeout`` seconds): a rank that died or hangs makes the others raise
:class:`RankFailure` instead of waiting for ever. The poll sleeps between
tests, so a waiting rank leaves its core to the ranks still computing.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from ..backend import Backend, backend_of

__all__ = [
    "DEFAULT_TIMEOUT",
    "INSTALL_HINT",
    "Communicator",
    "RankFailure",
    "communicator_summary",
    "gpu_method",
    "load_mpi",
]

#: Seconds a collective may wait for the other ranks (``CNNARRAY_DIST_TIMEOUT`` overrides it).
DEFAULT_TIMEOUT = 300.0
#: Seconds a collective is tested without pause before the waiting rank starts to sleep.
SPIN_SECONDS = 0.02
INSTALL_HINT = "pip install 'cnnarray[distributed]' (mpi4py with the MPICH wheel)"


class RankFailure(RuntimeError):
    """A collective did not finish in time: another rank died, hangs or left early."""


def load_mpi(initialize: bool = True) -> Any:
    """Return ``mpi4py.MPI``, or raise ModuleNotFoundError saying what to install.

    ``initialize=False`` imports it without starting MPI (for ``cnnarray info``).
    """
    try:
        import mpi4py
    except ImportError:
        raise ModuleNotFoundError(f"distributed training needs mpi4py: {INSTALL_HINT}") from None
    if not initialize:
        mpi4py.rc.initialize = mpi4py.rc.finalize = False
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as exc:  # mpi4py without a loadable libmpi
        raise ModuleNotFoundError(
            f"mpi4py is installed but finds no MPI library ({' '.join(str(exc).split())[:200]}): "
            f"{INSTALL_HINT}, or build mpi4py against your cluster's MPI"
        ) from None
    return MPI


def gpu_method(backend: Backend, mpi: Any) -> str:
    """How CuPy arrays on ``backend`` are reduced: nccl, cuda-aware mpi or host staging."""
    cuda = backend.xp.cuda
    if getattr(cuda, "nccl_enabled", False) or getattr(cuda, "nccl", None) is not None:
        return "nccl"
    query = getattr(mpi, "Query_cuda_support", None)
    if query is not None and query():
        return "cuda-aware mpi"
    return "host staging"


def communicator_summary() -> str:
    """One line for ``cnnarray info``: mpi4py, the MPI library, the method for GPU arrays."""
    try:
        mpi = load_mpi(initialize=False)
    except ModuleNotFoundError as exc:
        return f"unavailable: {exc}"
    import mpi4py

    from ..backend import cuda_unavailable_reason, get_backend

    first = mpi.Get_library_version().strip().splitlines()[0].split(",")[0]
    library = " ".join(first.replace("Version:", "").split())  # "MPICH 5.0.2", "Open MPI v5.0.5"
    gpu = "no GPU here"
    if cuda_unavailable_reason() is None:
        gpu = gpu_method(get_backend("cuda"), mpi)
    return f"mpi4py {mpi4py.__version__} on {library}; NumPy arrays by MPI; CuPy arrays: {gpu}"


def _timeout(value: float | None) -> float:
    if value is None:
        value = float(os.environ.get("CNNARRAY_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    if not value > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {value}")
    return float(value)


class Communicator:
    """Sum-allreduce and broadcast of contiguous arrays, in place, between MPI ranks.

    Parameters
    ----------
    backend : Backend
        Where the arrays live: NumPy arrays go through MPI; for CuPy arrays
        the method is chosen by :func:`gpu_method`.
    comm : mpi4py.MPI.Comm, optional
        The ranks taking part (default ``MPI.COMM_WORLD``).
    timeout : float, optional
        Seconds each collective may take (default :data:`DEFAULT_TIMEOUT`, or
        the ``CNNARRAY_DIST_TIMEOUT`` environment variable); past it,
        :class:`RankFailure`.

    Attributes
    ----------
    rank, size : int
        This process and the number of processes.
    method : str
        ``"mpi"``, ``"nccl"``, ``"cuda-aware mpi"`` or ``"host staging"``.
    """

    def __init__(self, backend: Backend, comm: Any = None, timeout: float | None = None) -> None:
        self.mpi = load_mpi()
        self.comm = self.mpi.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = _timeout(timeout)
        self.backend = backend
        self.method = "mpi" if backend.device is None else gpu_method(backend, self.mpi)
        self._nccl = self._nccl_clique() if self.method == "nccl" else None

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size}, method={self.method!r})"

    # -- collectives -------------------------------------------------------------

    def allreduce(self, buf: Any) -> None:
        """Replace the contiguous array ``buf`` by its sum over all ranks."""
        if self.method == "nccl":
            self._nccl_call(buf, "allreduce")
        elif self.method == "host staging":
            host = np.ascontiguousarray(buf.get())
            self._mpi_call(host, "allreduce")
            buf[...] = backend_of(buf).asarray(host)
        else:
            self._mpi_call(buf, "allreduce")

    def bcast(self, buf: Any, root: int = 0) -> None:
        """Overwrite the contiguous array ``buf`` with rank ``root``'s, in place."""
        if self.method == "nccl":
            self._nccl_call(buf, "broadcast", root)
        elif self.method == "host staging":
            host = np.ascontiguousarray(buf.get())
            self._mpi_call(host, "broadcast", root)
            buf[...] = backend_of(buf).asarray(host)
        else:
            self._mpi_call(buf, "broadcast", root)

    def sum(self, values: list[float]) -> list[float]:
        """Return each number summed over the ranks (in float64, through host memory)."""
        host = np.asarray(values, dtype=np.float64)
        self._mpi_call(host, "allreduce")
        return host.tolist()

    def barrier(self) -> None:
        """Wait until every rank has come here (within the timeout)."""
        self._wait(self.comm.Ibarrier(), "barrier", 0)

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (``MPI_Abort``); used after a failure."""
        self.comm.Abort(code)

    # -- MPI ---------------------------------------------------------------------

    def _mpi_call(self, buf: Any, what: str, root: int = 0) -> None:
        if self.method == "cuda-aware mpi":
            self.backend.synchronize()  # MPI reads device memory outside CuPy's stream
        if what == "allreduce":
            request = self.comm.Iallreduce(self.mpi.IN_PLACE, buf, op=self.mpi.SUM)
        else:
            request = self.comm.Ibcast(buf, root=root)
        self._wait(request, what, buf.nbytes)

    def _wait(self, request: Any, what: str, nbytes: int) -> None:
        self._poll(request.Test, what, nbytes)

    def _poll(self, done: Any, what: str, nbytes: int) -> None:
        """Call ``done()`` until it is true; RankFailure past the deadline.

        MPI moves a non-blocking collective on only inside its calls, so the
        first :data:`SPIN_SECONDS` test without pause (as a blocking call
        would); after that the rank is waiting for a slower one, and sleeps
        between tests (up to 1 ms), leaving the core to the ranks that compute.
        """
        start = time.monotonic()
        spin_until, deadline = start + SPIN_SECONDS, start + self.timeout
        pause = 1e-5
        while not done():
            now = time.monotonic()
            if now < spin_until:
                continue
            if now > deadline:
                raise RankFailure(
                    f"rank {self.rank} of {self.size}: a {what} of {nbytes} bytes did not finish "
                    f"within {self.timeout:g} s: another rank died, hangs or stopped early "
                    f"(the timeout is CNNARRAY_DIST_TIMEOUT)"
                )
            time.sleep(pause)
            pause = min(2 * pause, 1e-3)

    # -- NCCL --------------------------------------------------------------------

    def _nccl_clique(self) -> Any:
        """Open the NCCL communicator of these ranks; its id travels over MPI."""
        nccl = self.backend.xp.cuda.nccl
        # the id is a tuple of small ints (C chars); rank 0's is the one every rank joins
        uid = np.array(nccl.get_unique_id(), dtype=np.int64)
        self._mpi_call(uid, "broadcast", 0)
        with self.backend.activate():
            return nccl.NcclCommunicator(self.size, tuple(uid.tolist()), self.rank)

    def _nccl_call(self, buf: Any, what: str, root: int = 0) -> None:
        nccl = self.backend.xp.cuda.nccl
        kinds = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64,
                 "int64": nccl.NCCL_INT64, "uint8": nccl.NCCL_UINT8}  # fmt: skip
        if str(buf.dtype) not in kinds:
            raise TypeError(f"NCCL collectives take {sorted(kinds)}, got dtype {buf.dtype}")
        with self.backend.activate():
            stream = self.backend.xp.cuda.get_current_stream()
            ptr, count, kind = buf.data.ptr, buf.size, kinds[str(buf.dtype)]
            if what == "allreduce":
                self._nccl.allReduce(ptr, ptr, count, kind, nccl.NCCL_SUM, stream.ptr)
            else:
                self._nccl.bcast(ptr, count, kind, root, stream.ptr)
            self._poll(lambda: stream.done, what, buf.nbytes)
