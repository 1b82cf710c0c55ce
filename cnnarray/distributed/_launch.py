"""Starting ranks and ending them together: ``--nproc``, devices per rank, abort on failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..backend import available_backends
from ._comm import INSTALL_HINT, load_mpi

__all__ = ["failing_together", "launch", "local_rank", "mpiexec", "rank_device", "strip_option"]


def mpiexec() -> str:
    """Path of ``mpiexec``: beside this Python (the MPICH wheel puts it there), else on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("mpiexec")
    if found is None:
        raise FileNotFoundError(f"no mpiexec beside {sys.executable} nor on PATH: {INSTALL_HINT}")
    return found


def strip_option(argv: Sequence[str], name: str) -> list[str]:
    """``argv`` without the option ``name`` and its value (``--nproc 2`` or ``--nproc=2``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``cnnarray ARGV --distributed`` as ``nproc`` ranks under mpiexec; return its status.

    The ranks are this machine's processes, talking over loopback or shared
    memory. Ctrl-C in the terminal reaches mpiexec, which passes it to every
    rank: rank 0 saves the last finished epoch, as in one process, while this
    launcher waits (a second signal from here would make mpiexec kill them).
    """
    command = [mpiexec(), "-n", str(nproc), sys.executable, "-m", "cnnarray", *argv,
               "--distributed"]  # fmt: skip
    process = subprocess.Popen(command)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            continue


def local_rank(comm: object | None = None) -> int:
    """This rank's index among the ranks on its own machine (for choosing a GPU)."""
    mpi = load_mpi()
    comm = mpi.COMM_WORLD if comm is None else comm
    return comm.Split_type(mpi.COMM_TYPE_SHARED).Get_rank()


def rank_device(device: str) -> str:
    """The device of this rank: ``cuda`` (and ``auto`` with GPUs) become ``cuda:LOCAL % GPUS``.

    So the ranks of a machine spread over its GPUs; an explicit ``cuda:N`` is kept.
    """
    gpus = sum(name.startswith("cuda:") for name in available_backends())
    if gpus and device in ("cuda", "gpu", "cupy", "auto"):
        return f"cuda:{local_rank() % gpus}"
    return device


@contextlib.contextmanager
def failing_together(let_through: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """End the whole MPI job when this rank fails, instead of leaving the others waiting.

    An exception other than KeyboardInterrupt, SystemExit and ``let_through``
    (e.g. the CLI's own exits, which every rank takes alike) is printed with the
    rank's number (with its traceback when ``CNNARRAY_DEBUG`` is set), then
    ``MPI_Abort`` ends every rank (mpiexec exits non-zero).
    """
    try:
        yield
    except (KeyboardInterrupt, SystemExit, *let_through):
        raise
    except Exception as exc:
        mpi = load_mpi()
        rank = mpi.COMM_WORLD.Get_rank()
        message = " ".join(str(exc).split()) or "(no message)"
        if os.environ.get("CNNARRAY_DEBUG"):
            traceback.print_exc()
        print(f"error: rank {rank}: {type(exc).__name__}: {message}; ending every rank",
              file=sys.stderr, flush=True)  # fmt: skip
        mpi.COMM_WORLD.Abort(1)
