"""Benchmark harness behind ``cnnarray bench``: cnnarray against its peers.

What is measured
----------------
Each *case* is one operation at one size (see :data:`CASES`): six conv2d
layers, a 2x2 max pool, each timed as ``"fwd"`` (forward only) and
``"fwd+bwd"`` (forward, then the gradients of every input), plus a float32
2048 x 2048 GEMM (``"matmul"``) that sets the machine's GEMM ceiling. Each
*peer* (see :data:`PEERS`) is an implementation of the same operation:

``cnnarray``
    This library, on the chosen device, through its public ops only; conv2d's
    fwd+bwd passes one :class:`~cnnarray.ops.ColumnCache` to both calls, as
    :class:`cnnarray.nn.Conv2d` does in training.
``torch``
    PyTorch (CPU with as many threads as cnnarray's BLAS, or CUDA).
``scipy``
    ``scipy.signal.correlate2d`` looped over batch, output and input channels
    (gradients with ``correlate2d`` / ``convolve2d``); conv2d only.
``naive``
    The tutorial loop: one window at a time, ``np.sum(filter * patch)``.

Method
------
Every (peer, case) runs in its own Python process (``python -m cnnarray.bench
--worker ...``) with ``OPENBLAS_THREAD_TIMEOUT=4``, so OpenBLAS threads left
spinning by one peer cannot steal CPU from the next, and with
``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` removed. The inputs are float32,
drawn from one seed, identical for all peers. The first call's outputs are
compared with cnnarray's (max abs difference, recorded). After warm-up, the
call is repeated ``repeat`` times (fewer, but at least 3, when that would take
longer than ``budget_s``); the device is synchronised before each clock read.
The fast peers (cnnarray, torch) run in ``rounds`` worker processes per case,
interleaved with each other's (round 1: cnnarray, torch; round 2: torch,
cnnarray; ...), as pyperf spreads a benchmark over several processes: a slow
spell of a shared machine then lands on both sides of a ratio instead of on one
worker. Reported: median, min and max of all timed calls of all rounds. Slow
peers are skipped when their estimated single call exceeds ``slow_limit_s``;
the record says so.

Examples
--------
>>> from cnnarray.bench import run_benchmarks, render_table, write_json
>>> results = run_benchmarks("cpu", ["a", "matmul"], ["torch"], repeat=7)  # doctest: +SKIP
>>> write_json(results, "benchmarks/results/cpu.json")  # doctest: +SKIP

Layout
------
:mod:`~cnnarray.bench.cases` (the cases and their inputs),
:mod:`~cnnarray.bench.peers` (one runner per peer, and when it is skipped),
:mod:`~cnnarray.bench.timing` (the timing loop, shared with ``benchmarks/``),
:mod:`~cnnarray.bench.worker` (one worker process),
:mod:`~cnnarray.bench.machine` (facts about the machine),
:mod:`~cnnarray.bench.run` (:func:`run_benchmarks`: plan, schedule, records,
ratios) and :mod:`~cnnarray.bench.report` (JSON, table, plot). The command
line is ``cnnarray bench``; ``python -m cnnarray.bench`` only runs a worker.
"""

from .cases import CASES, DEFAULT_CASES, MODES, Case, cases_help, make_inputs
from .machine import blas_threads
from .peers import ONE_ROUND_PEERS, PEERS
from .report import notes, plot, render_table, write_json
from .run import ROUNDS, run_benchmarks
from .timing import MAX_WARMUP, MIN_REPEATS, MIN_WARMUP, WARMUP_S
from .worker import THREAD_TIMEOUT, thread_timeout

__all__ = [
    "CASES",
    "DEFAULT_CASES",
    "MAX_WARMUP",
    "MIN_REPEATS",
    "MIN_WARMUP",
    "MODES",
    "ONE_ROUND_PEERS",
    "PEERS",
    "ROUNDS",
    "THREAD_TIMEOUT",
    "WARMUP_S",
    "Case",
    "blas_threads",
    "cases_help",
    "make_inputs",
    "notes",
    "plot",
    "render_table",
    "run_benchmarks",
    "thread_timeout",
    "write_json",
]
