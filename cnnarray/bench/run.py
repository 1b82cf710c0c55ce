"""One benchmark run: the plan, the schedule of worker processes, the records and ratios.

:func:`run_benchmarks` checks its arguments, plans which peer runs which case
and mode (:func:`_plan`), orders the worker processes round by round
(:func:`_schedule`), runs them (:func:`_run_schedule`), then pools each
(case, mode, peer)'s reports into one record (:func:`_record`) and fills the
ratios measured within the run (:func:`_fill_ratios`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._args import check_int, check_real
from ..backend import get_backend
from . import machine, worker
from .cases import CASES, DEFAULT_CASES, MODES, Case
from .peers import ONE_ROUND_PEERS, PEERS, skip_reason
from .timing import Timing

ROUNDS = 3  # worker processes per (case, fast peer), interleaved; see run_benchmarks
_SCHEMA = 1

# (case, peer, modes to run, {mode: why it is skipped}): what one peer does on one case
Plan = list[tuple[Case, str, list[str], dict[str, str]]]
# (case name, mode, peer) -> the reports of that mode from every worker that ran it
Reports = dict[tuple[str, str, str], list[dict[str, Any]]]
# (case name, mode, peer) -> (max_abs_diff, grad_max_abs_diff) against cnnarray's outputs
Diffs = dict[tuple[str, str, str], tuple[float | None, float | None]]


def run_benchmarks(
    device: str = "cpu",
    cases: Sequence[str] | str | None = None,
    compare: Sequence[str] | str | None = None,
    repeat: int = 7,
    progress: Callable[[int, int, str], None] | None = None,
    *,
    seed: int = 0,
    budget_s: float = 3.0,
    slow_limit_s: float = 3.0,
    timeout_s: float = 900.0,
    thread_timeout: int | None = worker.THREAD_TIMEOUT,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """Time cnnarray and its peers on the benchmark cases; return JSON-able results.

    Parameters
    ----------
    device : str, default "cpu"
        cnnarray's backend (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``). On a
        CUDA device torch runs on that GPU too; scipy and naive stay on the CPU.
    cases : list of str or comma-separated str, optional
        Case names from :data:`DEFAULT_CASES` (default: all of them). The
        "% of GEMM ceiling" column needs ``"matmul"`` among them.
    compare : list of str or comma-separated str, optional
        Peers to time besides cnnarray (always timed): ``"torch"``, ``"scipy"``,
        ``"naive"``. A peer that is not installed gets a "skipped" record.
    repeat : int, default 7
        Timed calls per (case, mode, peer) after warm-up; fewer (at least 3) when
        they would take more than ``budget_s``.
    progress : callable(done, total, label), optional
        Called before each worker process starts and once at the end with
        ``done == total``; ``label`` is e.g. ``"torch on b"``.
    seed : int, default 0
        Seed of the inputs.
    budget_s : float, default 3.0
        Target total time of the timed calls of one (case, mode, peer).
    slow_limit_s : float, default 3.0
        scipy and naive are skipped ("skipped: too slow") where one call is
        estimated to take longer than this.
    timeout_s : float, default 900.0
        Limit of one worker process.
    thread_timeout : int or None, default 4
        ``OPENBLAS_THREAD_TIMEOUT`` of the workers (4 to 30; OpenBLAS threads
        spin ``2**thread_timeout`` cycles after a call). None keeps the caller's
        environment, to measure what a user who sets nothing gets.
    rounds : int, default 3
        Worker processes per (case, peer) for cnnarray and torch, run round by
        round with the peers' order flipped each round, so that a slow spell of
        the machine falls on both sides of a ratio; their timed calls are
        pooled. scipy and naive (:data:`ONE_ROUND_PEERS`) run once.

    Returns
    -------
    dict
        ``{"schema": 1, "metadata": {...}, "records": [...]}``. One record per
        (case, mode, peer) with ``status`` ("ok", "skipped: ..." or "error: ..."),
        ``median_s``, ``min_s``, ``max_s`` (over the timed calls of every round),
        ``repeats`` (timed calls in all), ``rounds`` (worker processes),
        ``round_medians_s`` (each one's median), ``times_s``, ``flop``,
        ``gflops``, ``fraction_of_gemm_ceiling``, ``ratio_vs_cnnarray`` (this
        peer's median / cnnarray's: how many times slower), ``ratio_vs_torch``
        (this peer's median / torch's), ``max_abs_diff`` (forward output vs
        cnnarray's) and ``grad_max_abs_diff``; timings are None unless ok.

    Raises
    ------
    ValueError
        On an unknown case, peer or device name, or a number out of its range
        (e.g. ``repeat < 1``), before any worker starts.
    TypeError
        On a number of the wrong type (:class:`cnnarray._args.ArgumentTypeError`,
        also a ValueError).
    """
    case_names = _names(cases, list(CASES), "case") or list(DEFAULT_CASES)
    peers = ["cnnarray"] + [p for p in _names(compare, PEERS, "peer") if p != "cnnarray"]
    repeat = check_int(repeat, "repeat", minimum=1)
    rounds = check_int(rounds, "rounds", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    budget_s = check_real(budget_s, "budget_s", low=0)
    slow_limit_s = check_real(slow_limit_s, "slow_limit_s", low=0)
    timeout_s = check_real(timeout_s, "timeout_s", low=0, low_open=True)
    if thread_timeout is not None:  # None: the caller's environment
        thread_timeout = check_int(thread_timeout, "thread_timeout", minimum=4, maximum=30)
    device = str(get_backend(device))
    threads = machine.blas_threads()
    env, env_set, removed = worker.environment(thread_timeout)
    started = time.perf_counter()
    load_start = machine.load_average()
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")

    plan = _plan(case_names, peers, slow_limit_s)
    with tempfile.TemporaryDirectory(prefix="cnnarray-bench-") as tmp:
        workers = _Workers(device, repeat, threads, seed, budget_s, timeout_s, env, Path(tmp))
        schedule = _schedule(plan, rounds)
        reports, diffs, peer_info = _run_schedule(schedule, peers, rounds, workers, progress)
    records = _records(plan, reports, diffs, device)
    # Group the rows by (case, mode) with the peers in the order asked for.
    records.sort(
        key=lambda r: (case_names.index(r["case"]), MODES.index(r["mode"]), peers.index(r["peer"]))
    )
    ceiling = _fill_ratios(records)
    cpu = machine.cpu_model()
    metadata = {
        "date": date,
        "wall_s": time.perf_counter() - started,
        "device": device,
        "device_name": (peer_info.get("cnnarray") or {}).get("device_name") or cpu,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": machine.cpu_affinity(),
        "platform": platform.platform(),
        "load_average": {"start": load_start, "end": machine.load_average()},
        "threads": {"blas": threads, "torch": threads if "torch" in peers else None},
        "versions": machine.versions(),
        "blas": machine.blas(),
        "worker_env": {"set": env_set, "unset": removed,
                       "inherited": {v: os.environ[v] for v in worker.THREAD_VARS
                                     if v in os.environ}},
        "repeat": repeat,
        "rounds": rounds,
        "budget_s": budget_s,
        "slow_limit_s": slow_limit_s,
        "seed": seed,
        "peers": peers,
        "peer_info": peer_info,
        "cases": {name: CASES[name].describe() for name in case_names},
        "gemm_ceiling": ceiling,
    }  # fmt: skip
    return {"schema": _SCHEMA, "metadata": metadata, "records": records}


def _names(value: Sequence[str] | str | None, valid: Sequence[str], what: str) -> list[str]:
    """Return the names in ``value`` (a list, or a comma-separated str), lower-cased, once each.

    Raises ValueError on a name not in ``valid``, listing the valid ones (but
    not the hidden cases).
    """
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    names = []
    for raw in value:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in valid:
            listed = ", ".join(v for v in valid if not (what == "case" and CASES[v].hidden))
            raise ValueError(f"unknown {what} {raw!r}; valid {what}s: {listed}")
        if name not in names:
            names.append(name)
    return names


def _plan(case_names: list[str], peers: list[str], slow_limit_s: float) -> Plan:
    """Plan what each peer does on each case: the modes it runs, why it skips the others."""
    plan: Plan = []
    for name in case_names:
        case = CASES[name]
        for peer in peers:
            skipped = {}
            for mode in case.modes:
                reason = skip_reason(peer, case, mode, slow_limit_s)
                if reason:
                    skipped[mode] = reason
            plan.append((case, peer, [m for m in case.modes if m not in skipped], skipped))
    return plan


def _schedule(plan: Plan, rounds: int) -> list[tuple[int, Case, str, list[str]]]:
    """Return the worker runs, round by round: ``(round, case, peer, modes)``.

    Round 0 runs every (case, peer) of ``plan`` that has a mode to run, in the
    plan's order; each later round runs the fast peers (not
    :data:`ONE_ROUND_PEERS`) again, case by case, with their order reversed in
    every other round (cnnarray, torch; torch, cnnarray; ...), so neither side
    of a ratio always runs first or right after a slow loop.
    """
    runs = []
    for round_ in range(rounds):
        for case in dict.fromkeys(case for case, *_ in plan):
            peers = [(p, m) for c, p, m, _ in plan if c is case and m]
            if round_ > 0:
                peers = [(p, m) for p, m in peers if p not in ONE_ROUND_PEERS]
            if round_ % 2:
                peers.reverse()
            runs += [(round_, case, peer, modes) for peer, modes in peers]
    return runs


@dataclass(frozen=True)
class _Workers:
    """How the worker processes of one run start: their settings, environment and folder."""

    device: str
    repeat: int
    threads: int
    seed: int
    budget_s: float
    timeout_s: float
    env: dict[str, str]
    out_dir: Path

    def run(self, peer: str, case: Case, modes: list[str], outputs: bool) -> dict[str, Any]:
        """Run one worker process; on failure return a report whose modes carry the error.

        ``outputs``: the worker saves its first call's outputs for the comparison.
        """
        command = worker.command(peer, case.name, modes, self.device, self.repeat, self.threads,
                                 self.seed, self.budget_s, self.out_dir, outputs)  # fmt: skip
        report_path = worker.report_path(self.out_dir, peer, case.name)
        report_path.unlink(missing_ok=True)
        try:
            proc = subprocess.run(
                command, env=self.env, capture_output=True, text=True, timeout=self.timeout_s
            )
        except subprocess.TimeoutExpired:
            error = f"error: worker timed out after {self.timeout_s:g} s"
        else:
            if proc.returncode == 0 and report_path.exists():
                return json.loads(report_path.read_text())
            lines = (proc.stderr or proc.stdout or "").strip().splitlines()
            error = f"error: worker exited with {proc.returncode}: {lines[-1] if lines else ''}"
        return {"modes": [{"mode": m, "status": error} for m in modes]}


def _run_schedule(
    schedule: list[tuple[int, Case, str, list[str]]],
    peers: list[str],
    rounds: int,
    workers: _Workers,
    progress: Callable[[int, int, str], None] | None,
) -> tuple[Reports, Diffs, dict[str, Any]]:
    """Run the worker processes of ``schedule`` one after the other.

    Returns each (case, mode, peer)'s reports, the peers' output differences
    from cnnarray's (compared, then deleted, once a case's first round is
    over), and each peer's worker info (from its first worker).
    """
    total = len(schedule)
    # the case's outputs are compared once its first round is over
    first_round_ends = {case.name: i for i, (r, case, *_) in enumerate(schedule) if r == 0}
    reports: Reports = {}
    diffs: Diffs = {}
    peer_info: dict[str, Any] = {}
    for done, (round_, case, peer, modes) in enumerate(schedule):
        if progress is not None:
            runs = 1 if peer in ONE_ROUND_PEERS else rounds
            label = f"{peer} on {case.name}" + (f", round {round_ + 1}/{runs}" * (runs > 1))
            progress(done, total, label)
        report = workers.run(peer, case, modes, outputs=round_ == 0)
        for mode in report["modes"]:
            reports.setdefault((case.name, mode["mode"], peer), []).append(mode)
        if "info" in report:
            peer_info.setdefault(peer, report["info"])
        if first_round_ends[case.name] == done:
            diffs.update(_output_diffs(case, peers, workers.out_dir))
    if progress is not None:
        progress(total, total, "done")
    return reports, diffs, peer_info


def _records(plan: Plan, reports: Reports, diffs: Diffs, device: str) -> list[dict[str, Any]]:
    """Make one record per (case, mode, peer) of ``plan``: from its reports, else the reason."""
    records = []
    for case, peer, _, skipped in plan:
        for mode in case.modes:
            runs = reports.get((case.name, mode, peer))
            if runs is None:
                runs = [{"status": skipped.get(mode, "error: not run")}]
            records.append(
                _record(case, mode, peer, runs, device, diffs.get((case.name, mode, peer)))
            )
    return records


def _record(
    case: Case,
    mode: str,
    peer: str,
    runs: list[dict[str, Any]],
    device: str,
    diff: tuple[float | None, float | None] | None = None,
) -> dict[str, Any]:
    """Make one record from the worker reports of every round (``runs``) for one mode.

    Their timed calls are pooled; the first status that is not "ok", if any,
    wins. ``diff`` is (max_abs_diff, grad_max_abs_diff) against cnnarray's
    outputs, kept when the record is ok.
    """
    status = next((e.get("status") for e in runs if e.get("status") != "ok"), "ok")
    ok = status == "ok" and all(e.get("times_s") for e in runs)
    pooled = Timing([t for e in runs for t in e["times_s"]]) if ok else None
    flop = case.flop(mode)
    max_abs_diff, grad_max_abs_diff = diff if ok and diff else (None, None)
    return {
        "case": case.name,
        "mode": mode,
        "peer": peer,
        "device": runs[0].get("device", "cpu" if peer in ("scipy", "naive") else device),
        "status": status if status else "error: no report",
        "median_s": pooled.median_s if pooled else None,
        "min_s": pooled.min_s if pooled else None,
        "max_s": pooled.max_s if pooled else None,
        "repeats": len(pooled.times_s) if pooled else 0,
        "rounds": len(runs) if ok else 0,
        "round_medians_s": [Timing(e["times_s"]).median_s for e in runs] if ok else [],
        "warmup": sum(len(e.get("warmup_s") or []) for e in runs),
        "times_s": pooled.times_s if pooled else [],
        "flop": flop,
        "gflops": flop / pooled.median_s / 1e9 if pooled and flop else None,
        "fraction_of_gemm_ceiling": None,
        "ratio_vs_cnnarray": None,
        "ratio_vs_torch": None,
        "max_abs_diff": max_abs_diff,
        "grad_max_abs_diff": grad_max_abs_diff,
    }


def _output_diffs(case: Case, peers: list[str], out_dir: Path) -> Diffs:
    """Compare each peer's saved outputs of ``case`` with cnnarray's.

    Returns ``(case, mode, peer) -> (max_abs_diff, grad_max_abs_diff)``: of the
    forward output, and the largest over the gradients.

    The saved outputs are deleted once compared.
    """
    found: Diffs = {}
    for mode in case.modes:
        paths = {peer: worker.outputs_path(out_dir, peer, case.name, mode) for peer in peers}
        saved = {peer: worker.load_outputs(path) for peer, path in paths.items()}
        for path in paths.values():
            path.unlink(missing_ok=True)
        reference = saved["cnnarray"]
        if reference is None:
            continue
        for peer, outputs in saved.items():
            if outputs is None:
                continue
            grads = [_max_abs_diff(a, b) for a, b in zip(outputs[1:], reference[1:], strict=True)]
            grads = [d for d in grads if d is not None]
            found[case.name, mode, peer] = (
                _max_abs_diff(outputs[0], reference[0]),
                max(grads) if grads else None,
            )
    return found


def _max_abs_diff(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None or a.size != b.size:
        return None
    return float(np.max(np.abs(a.reshape(-1).astype(np.float64) - b.reshape(-1)), initial=0.0))


def _fill_ratios(records: list[dict]) -> dict[str, Any] | None:
    """Fill the ratios and GEMM fractions; return the ceiling (best matmul) or None."""
    medians = {(r["case"], r["mode"], r["peer"]): r["median_s"] for r in records}
    gemm = [r for r in records if CASES[r["case"]].op == "matmul" and r["gflops"]]
    best = max(gemm, key=lambda r: r["gflops"], default=None)
    for r in records:
        if r["median_s"] is None:
            continue
        for peer, key in (("cnnarray", "ratio_vs_cnnarray"), ("torch", "ratio_vs_torch")):
            other = medians.get((r["case"], r["mode"], peer))
            if other:
                r[key] = r["median_s"] / other
        if best is not None and r["gflops"] and r["device"] == best["device"]:
            r["fraction_of_gemm_ceiling"] = r["gflops"] / best["gflops"]
    if best is None:
        return None
    return {"gflops": best["gflops"], "peer": best["peer"], "case": best["case"],
            "device": best["device"]}  # fmt: skip
