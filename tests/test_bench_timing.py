"""cnnarray.bench.timing, the timing loop of the bench worker and of benchmarks/*.py.

Only counts, order and bookkeeping are checked: no test compares a time with a number.
"""

from __future__ import annotations

import gc
import statistics

import pytest

from cnnarray.bench import timing
from cnnarray.bench.worker import main as worker_main


def test_timing_summarises_the_timed_calls() -> None:
    t = timing.Timing([3.0, 1.0, 2.0, 10.0], warmup_s=[5.0])
    assert (t.median_s, t.min_s, t.max_s, t.total_s) == (2.5, 1.0, 10.0, 16.0)
    assert t.output is None


def test_clock_synchronises_around_the_call() -> None:
    events = []
    seconds, out = timing.clock(lambda: events.append("call") or 7, lambda: events.append("sync"))
    assert events == ["sync", "call", "sync"] and out == 7 and seconds >= 0


def test_time_calls_warms_up_then_times_repeat_calls() -> None:
    calls = []
    t = timing.time_calls(lambda: calls.append(len(calls)) or len(calls), 6)
    assert len(t.times_s) == 6
    assert timing.MIN_WARMUP <= len(t.warmup_s) <= timing.MAX_WARMUP
    assert len(calls) == len(t.warmup_s) + 6
    assert t.output == 1  # the first call's result
    assert all(s >= 0 for s in t.times_s + t.warmup_s)


def test_time_calls_with_one_plain_warmup_call() -> None:
    t = timing.time_calls(lambda: None, 4, min_warmup=1, max_warmup=1)
    assert (len(t.warmup_s), len(t.times_s)) == (1, 4)


def test_the_budget_cuts_the_repeats_but_not_below_min_repeats() -> None:
    t = timing.time_calls(lambda: sum(range(2000)), 50, budget_s=0.0)
    assert len(t.times_s) == timing.MIN_REPEATS
    assert len(timing.time_calls(lambda: None, 2, budget_s=0.0).times_s) == 2  # repeat < floor
    assert len(timing.time_calls(lambda: None, 5, budget_s=60.0).times_s) == 5


def test_time_calls_syncs_before_each_clock_read_and_restores_gc() -> None:
    syncs = []
    was_enabled = gc.isenabled()
    t = timing.time_calls(lambda: None, 3, sync=lambda: syncs.append(1))
    assert len(syncs) == 2 * (len(t.warmup_s) + 3)
    assert gc.isenabled() == was_enabled


def test_time_calls_turns_gc_back_on_after_an_error() -> None:
    state = {"n": 0}

    def fails_when_timed() -> None:
        state["n"] += 1
        if state["n"] > timing.MAX_WARMUP:
            raise RuntimeError("boom")

    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="boom"):
        timing.time_calls(fails_when_timed, 3, warmup_s=1e9)
    assert gc.isenabled()


def test_time_interleaved_takes_turns() -> None:
    order = []
    calls = {key: (lambda key=key: order.append(key)) for key in ("a", "b")}
    result = timing.time_interleaved(calls, 4, warmup=2)
    assert order == ["a", "b"] * 6
    assert list(result) == ["a", "b"]
    for t in result.values():
        assert (len(t.warmup_s), len(t.times_s)) == (2, 4)
        assert t.median_s == statistics.median(t.times_s)


def test_time_each_passes_the_items_in_order() -> None:
    seen = []
    t = timing.time_each(seen.append, [3, 1, 4, 1, 5], warmup=2)
    assert seen == [3, 1, 4, 1, 5]
    assert (len(t.warmup_s), len(t.times_s)) == (2, 3)


def test_python_m_cnnarray_bench_only_runs_a_worker(capsys) -> None:
    # the whole run it once did is `cnnarray bench`; it says so
    with pytest.raises(SystemExit) as exc:
        worker_main(["--cases", "a,b,matmul", "--compare", "torch", "--json", "out.json"])
    assert exc.value.code == 2
    assert "to run the benchmarks, use `cnnarray bench`" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        worker_main(["--worker", "cnnarray", "tiny", "--out", ".", "--json", "out.json"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --json out.json" in capsys.readouterr().err
