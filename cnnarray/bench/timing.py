"""How every cnnarray benchmark reads the clock: warm up, synchronise, repeat, take the median.

One place for the timing loop, shared by the bench worker and the scripts in
``benchmarks/``:

:func:`clock`
    One call, with the device synchronised before each read of the clock.
:func:`time_calls`
    The same call repeated after a warm-up, as the bench worker times a case.
:func:`time_interleaved`
    Several calls taking turns, round by round, so that a slow spell of the
    machine falls on all of them alike.
:func:`time_each`
    A call on each item of a sequence, when the work changes from one call to
    the next (a training epoch with its own shuffle).

Each returns a :class:`Timing`: the seconds of the timed calls with their
median, min and max, and the seconds of the warm-up calls.

Examples
--------
>>> timing = time_calls(lambda: sum(range(1000)), repeat=5)
>>> len(timing.times_s), len(timing.warmup_s) >= MIN_WARMUP, timing.output
(5, True, 499500)
>>> timing.min_s <= timing.median_s <= timing.max_s
True
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

MIN_REPEATS = 3  # time_calls' budget never cuts below this (unless repeat itself is lower)
# Warm-up of time_calls: at least MIN_WARMUP untimed calls (the first one pays for kernel
# compilation, oneDNN primitive creation, allocator growth), more until WARMUP_S have
# passed, at most MAX_WARMUP.
MIN_WARMUP = 2
WARMUP_S = 0.25
MAX_WARMUP = 5


def no_sync() -> None:
    """CPU work is synchronous: nothing to wait for."""


@dataclass(frozen=True)
class Timing:
    """Seconds of the timed calls of one measurement, and of its warm-up calls.

    ``output`` is what the first call returned (:func:`time_calls` only), for
    comparing implementations without one more call.
    """

    times_s: list[float]
    warmup_s: list[float] = field(default_factory=list)
    output: Any = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def max_s(self) -> float:
        return max(self.times_s)

    @property
    def total_s(self) -> float:
        return sum(self.times_s)


def clock(call: Callable[[], T], sync: Callable[[], None] = no_sync) -> tuple[float, T]:
    """Call ``call()`` once; return its wall time in seconds and its result.

    ``sync`` waits for the device (e.g. ``Backend.synchronize``,
    ``torch.cuda.synchronize``); it runs before each read of the clock, so the
    time covers the work queued by the call and nothing queued before it.
    """
    sync()
    start = time.perf_counter()
    out = call()
    sync()
    return time.perf_counter() - start, out


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Keep the garbage collector off (as timeit does): a collection inside a timed call
    would be noise."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def time_calls(
    call: Callable[[], Any],
    repeat: int,
    *,
    sync: Callable[[], None] = no_sync,
    budget_s: float | None = None,
    min_warmup: int = MIN_WARMUP,
    warmup_s: float = WARMUP_S,
    max_warmup: int = MAX_WARMUP,
    min_repeats: int = MIN_REPEATS,
) -> Timing:
    """Warm up, then time ``call`` up to ``repeat`` times.

    Parameters
    ----------
    call : callable()
        The work to time; what its first call returns is kept as ``Timing.output``.
    repeat : int
        Timed calls after the warm-up.
    sync : callable(), default :func:`no_sync`
        Waits for the device; runs before each read of the clock.
    budget_s : float, optional
        Target total time of the timed calls: fewer than ``repeat`` (but at
        least ``min_repeats``) when the last warm-up call says they would take
        longer. None: always ``repeat``.
    min_warmup, warmup_s, max_warmup : int, float, int
        Untimed calls: at least ``min_warmup`` (at least one), more until they
        have taken ``warmup_s`` seconds, at most ``max_warmup``.
        ``min_warmup=max_warmup=1`` is one plain warm-up call.
    min_repeats : int, default 3
        The fewest timed calls ``budget_s`` may leave.

    Returns
    -------
    Timing
        ``times_s`` of the timed calls, ``warmup_s`` of the warm-up calls,
        ``output`` of the first call. The garbage collector is off during the
        timed calls.
    """
    gc.collect()  # what earlier work left behind is not this call's
    first, output = clock(call, sync)
    warmup = [first]
    while len(warmup) < min_warmup or (len(warmup) < max_warmup and sum(warmup) < warmup_s):
        warmup.append(clock(call, sync)[0])
    count = repeat
    if budget_s is not None:
        count = min(repeat, max(min_repeats, int(budget_s / max(warmup[-1], 1e-9))))
    with _gc_paused():
        times = [clock(call, sync)[0] for _ in range(count)]
    return Timing(times, warmup, output)


def time_interleaved(
    calls: Mapping[K, Callable[[], Any]],
    repeat: int,
    *,
    warmup: int = 3,
    sync: Callable[[], None] = no_sync,
) -> dict[K, Timing]:
    """Time several calls taking turns: ``warmup`` untimed rounds, then ``repeat`` timed ones.

    Each round calls every one of ``calls`` once, in order, so that drift of the
    machine (another process, clock speed) hits all of them alike.
    Returns ``{key: Timing}`` for each key of ``calls``.
    """
    seconds: dict[K, list[float]] = {key: [] for key in calls}
    for _ in range(warmup + repeat):
        for key, call in calls.items():
            seconds[key].append(clock(call, sync)[0])
    return {key: Timing(s[warmup:], s[:warmup]) for key, s in seconds.items()}


def time_each(
    call: Callable[[T], Any],
    items: Sequence[T],
    *,
    warmup: int = 0,
    sync: Callable[[], None] = no_sync,
) -> Timing:
    """Time ``call(item)`` for each of ``items``; the first ``warmup`` calls are the warm-up.

    For work that changes from one call to the next, e.g. ``call(epoch)``
    training one epoch with that epoch's order of mini-batches.
    """
    seconds = [clock(lambda item=item: call(item), sync)[0] for item in items]
    return Timing(seconds[warmup:], seconds[:warmup])
