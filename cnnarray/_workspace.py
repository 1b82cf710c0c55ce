"""Scratch memory of the operations: one :class:`Workspace` per call, reused bytes beneath it.

Backend code, like :mod:`cnnarray.backend` (which re-exports these names): it
asks whether it has NumPy, so that layer code never has to.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any, ClassVar

import numpy

__all__ = ["Workspace", "debug_workspace", "release_scratch", "reserve_scratch", "scratch"]


class _ThreadMemory(threading.local):
    def __init__(self) -> None:
        self.buffers: dict[str, numpy.ndarray] = {}


_threads = _ThreadMemory()
# Fill every view with all-ones bytes before handing it out (debug_workspace).
_debug = os.environ.get("CNNARRAY_DEBUG_WORKSPACE", "").strip() not in ("", "0")


def _view(xp: ModuleType, name: str, given: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """An uninitialised array of ``shape`` in ``given`` (uint8) when it is large enough,
    else in the thread's memory ``name`` on the CPU, else from CuPy's pool."""
    dtype = numpy.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize  # numpy.prod: 8 us
    memory = given
    if memory is None or memory.nbytes < nbytes:
        if xp is numpy:  # the thread's own, kept for the next call
            memory = _threads.buffers.get(name)
            if memory is None or memory.nbytes < nbytes:
                memory = _threads.buffers[name] = numpy.empty(max(nbytes, 1), dtype=numpy.uint8)
        elif _debug:
            memory = xp.empty(max(nbytes, 1), dtype=numpy.uint8)
        else:
            return xp.empty(shape, dtype=dtype)
    head = memory[:nbytes]
    if _debug:
        head.fill(255)  # all bits set: NaN in every float, -1 in every int
    return head.view(dtype).reshape(shape)


class Workspace:
    """The scratch memory of one operation call, handed out as named views.

    An operation makes one at its start and takes each temporary array from it
    by name (:meth:`take`) instead of allocating it. A view is uninitialised:
    the operation writes it before reading it.

    **Memory.** On the CPU each memory is kept per thread and reused by the
    next call: a fresh multi-megabyte NumPy array costs a page fault per page on
    first touch, which measured up to 3x the time of the copy that fills it
    (conv2d, 3 -> 32 channels). A view taken inside a
    :func:`~cnnarray.backend.parallel_for` body is therefore in that worker
    thread's own memory, and is the body's alone. On a GPU, CuPy's memory pool
    already reuses device memory, so a view is ``xp.empty``. Memory given to
    the constructor (a :class:`cnnarray.ColumnCache`'s) is used instead of the
    thread's when it is large enough.

    **Views and lifetimes.** A subclass names its views in :attr:`VIEWS`, each
    with the memory it lives in, and its docstring says when each view lives.
    Views of one memory share bytes: taking one ends the life of every earlier
    view of that memory in that thread, so two of them may be live together
    only if the docstring says how their uses are ordered. Views of different
    memories never overlap. No view outlives the call: never return one.

    **Debug mode.** Under :func:`debug_workspace` (or with the environment
    variable ``CNNARRAY_DEBUG_WORKSPACE=1``) every view is filled with all-ones
    bytes when handed out, a NaN in every float and -1 in every int, so that a
    read before a write, or a view used after its memory was taken again,
    shows in the results.

    Parameters
    ----------
    xp : module
        The array module of the call.
    **given : 1-D uint8 array
        Memory to use for the named memory, when large enough.
    """

    #: prefix of the thread memory's names, e.g. "conv"
    NAME: ClassVar[str] = ""
    #: view name -> name of the memory it lives in
    VIEWS: ClassVar[Mapping[str, str]] = {}

    __slots__ = ("_given", "xp")

    def __init__(self, xp: ModuleType, **given: Any) -> None:
        self.xp = xp
        self._given = given

    def take(self, view: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """Return the uninitialised view ``view`` as an array of ``shape`` and ``dtype``."""
        memory = self.VIEWS[view]
        return _view(self.xp, f"{self.NAME}.{memory}", self._given.get(memory), shape, dtype)

    def reserve(self, view: str, nbytes: int) -> None:
        """Grow the thread memory of ``view`` to ``nbytes`` now, so the views of different
        shapes that follow share it instead of replacing it (no-op on a GPU)."""
        reserve_scratch(self.xp, f"{self.NAME}.{self.VIEWS[view]}", nbytes)


@contextlib.contextmanager
def debug_workspace(enabled: bool = True) -> Iterator[None]:
    """Fill every scratch view with all-ones bytes (NaN, -1) when handed out, in this block.

    A test tool: results must not change under it. It holds for every thread
    (the ``parallel_for`` workers too) until the block ends; the environment
    variable ``CNNARRAY_DEBUG_WORKSPACE=1`` turns it on from the start.

    Examples
    --------
    >>> import numpy as np, cnnarray
    >>> with cnnarray.backend.debug_workspace():
    ...     y = cnnarray.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), padding=1)
    >>> float(y[0, 0, 1, 1])
    9.0
    """
    global _debug
    before, _debug = _debug, bool(enabled)
    try:
        yield
    finally:
        _debug = before


def scratch(xp: ModuleType, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """Return an uninitialised array of the calling thread's reusable memory ``name``.

    The memory behind :class:`Workspace`, by its full name (``"conv.cols"``):
    valid until the next call with the same name in the same thread. Operations
    take views of a workspace instead, whose docstring states their lifetimes.
    """
    return _view(xp, name, None, shape, dtype)


def reserve_scratch(xp: ModuleType, name: str, nbytes: int) -> None:
    """Grow the calling thread's memory ``name`` to ``nbytes`` now (no-op on a GPU)."""
    if xp is numpy:
        scratch(xp, name, (nbytes,), numpy.uint8)


def release_scratch() -> None:
    """Free the calling thread's scratch memory (it is made again on demand)."""
    _threads.buffers.clear()
