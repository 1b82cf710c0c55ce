"""One worker process: one peer timed on one case, in a Python process of its own.

:func:`command` and :func:`environment` say how :mod:`cnnarray.bench.run`
starts a worker; :func:`main` is what runs in it (``python -m cnnarray.bench
--worker PEER CASE ...``, an internal command line). The worker writes a JSON
report to :func:`report_path` and, when asked, the first call's outputs to
:func:`outputs_path`, where the parent compares them across peers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import get_backend, threadpools
from .cases import CASES, make_inputs
from .machine import blas_threads
from .peers import PEERS, Skip, cuda_index, runner, torch_ieee_fp32
from .timing import time_calls

# Default OPENBLAS_THREAD_TIMEOUT of each worker: OpenBLAS threads wait 2**4
# cycles after a call before sleeping instead of the default 2**28 (~0.1 s of
# spinning on every core). OpenBLAS accepts 4 to 30.
THREAD_TIMEOUT = 4
# Removed for each worker: they force a core type / cache size and slow NumPy down.
_WORKER_UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Passed on as they are; the record lists the ones that were set.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def thread_timeout(text: str) -> int | None:
    """Parse ``--thread-timeout``: an int (range checked by run_benchmarks) or "none"."""
    if text.strip().lower() == "none":
        return None
    if text.strip().isdigit():
        return int(text)
    raise ValueError(f"--thread-timeout: expected an int from 4 to 30 or 'none', got {text!r}")


def environment(thread_timeout: int | None) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Return (environment of the workers, variables set, variables removed)."""
    env = dict(os.environ)
    removed = [name for name in _WORKER_UNSET if env.pop(name, None) is not None]
    changed = {} if thread_timeout is None else {"OPENBLAS_THREAD_TIMEOUT": str(thread_timeout)}
    env.update(changed)
    # Let the worker import this very checkout even when it is not installed.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env, changed, removed


def command(
    peer: str, case: str, modes: Sequence[str], device: str, repeat: int, threads: int,
    seed: int, budget_s: float, out_dir: Path, outputs: bool = True,
) -> list[str]:  # fmt: skip
    """Return the command line of a worker timing ``peer`` on ``case`` in ``modes``."""
    return [
        sys.executable, "-m", "cnnarray.bench", "--worker", peer, case,
        "--modes", ",".join(modes), "--device", device, "--repeat", str(repeat),
        "--threads", str(threads), "--seed", str(seed), "--budget", str(budget_s),
        "--out", str(out_dir),
    ] + ([] if outputs else ["--no-outputs"])  # fmt: skip


def report_path(out_dir: Path, peer: str, case: str) -> Path:
    """Return where the worker of ``peer`` on ``case`` writes its JSON report."""
    return out_dir / f"{peer}-{case}.json"


def outputs_path(out_dir: Path, peer: str, case: str, mode: str) -> Path:
    """Return where that worker saves the first call's outputs in ``mode`` (``.npz``)."""
    return out_dir / f"{peer}-{case}-{mode.replace('+', '')}.npz"


def load_outputs(path: Path) -> list[np.ndarray | None] | None:
    """Load the outputs saved at ``path`` (y, then up to three gradients); None if none were."""
    if not path.exists():
        return None
    with np.load(path) as z:
        return [z[f"out{i}"] if f"out{i}" in z else None for i in range(4)]


def info(peer: str, device: str, threads: int) -> dict[str, Any]:
    """Return what this worker process ran with: versions, threads, device name."""
    found: dict[str, Any] = {"pid": os.getpid(), "threadpools": threadpools()}
    if peer == "torch":
        import torch

        found["torch"] = torch.__version__
        found["torch_threads"] = torch.get_num_threads()
        found["fp32"] = torch_ieee_fp32(torch)
        found["torch_config"] = torch.__config__.show()
        if device != "cpu" and torch.cuda.is_available():
            found["device_name"] = torch.cuda.get_device_name(cuda_index(device))
            found["cudnn"] = torch.backends.cudnn.version()
            found["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    elif peer == "cnnarray":
        backend = get_backend(device)
        if backend.device is not None:
            props = backend.xp.cuda.runtime.getDeviceProperties(backend.device)
            name = props["name"]
            found["device_name"] = name.decode() if isinstance(name, bytes) else str(name)
            found["cupy"] = backend.xp.__version__
    return found


def run(args: argparse.Namespace) -> int:
    """Run one peer on one case in every requested mode; write its report.

    A mode that fails or cannot run gets a status saying why; the others still run.
    """
    case = CASES[args.case]
    out_dir = Path(args.out)
    data = make_inputs(case, args.seed)
    report: dict[str, Any] = {"peer": args.peer, "case": case.name, "modes": []}
    for mode in args.modes.split(","):
        entry: dict[str, Any] = {"mode": mode, "device": "cpu"}
        try:
            call, sync, where, to_numpy = runner(
                args.peer, case, mode, data, args.device, args.threads
            )
            entry["device"] = where
            timing = time_calls(call, args.repeat, sync=sync, budget_s=args.budget)
            if not args.no_outputs:
                arrays = {f"out{i}": to_numpy(o) for i, o in enumerate(timing.output)
                          if o is not None}  # fmt: skip
                np.savez(outputs_path(out_dir, args.peer, case.name, mode), **arrays)
            entry.update(status="ok", warmup_s=timing.warmup_s, times_s=timing.times_s)
        except Skip as exc:
            entry["status"] = str(exc)
        except Exception as exc:  # one failing mode must not hide the others
            entry["status"] = f"error: {type(exc).__name__}: {exc}"
        report["modes"].append(entry)
    report["info"] = info(args.peer, args.device, args.threads)
    report_path(out_dir, args.peer, case.name).write_text(json.dumps(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one worker: ``python -m cnnarray.bench --worker PEER CASE ...`` (internal)."""
    parser = argparse.ArgumentParser(
        prog="python -m cnnarray.bench",
        description="Internal: time one peer on one case and exit. "
        "To run the benchmarks, use `cnnarray bench` (see `cnnarray bench --help`).",
    )
    parser.add_argument("--worker", nargs=2, metavar=("PEER", "CASE"),
                        help="the peer and the case to time")  # fmt: skip
    parser.add_argument("--modes", default="fwd,fwd+bwd")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch's threads; 0: BLAS's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=3.0)
    parser.add_argument("--out", help="folder for its report and outputs")
    parser.add_argument("--no-outputs", action="store_true",
                        help="do not save the first call's outputs")  # fmt: skip
    args, unknown = parser.parse_known_args(argv)
    if not args.worker:  # e.g. the whole-run options this command line had before
        parser.error("this runs one worker of `cnnarray bench` (--worker PEER CASE ...); "
                     "to run the benchmarks, use `cnnarray bench`")  # fmt: skip
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.peer, args.case = args.worker
    if args.peer not in PEERS or args.case not in CASES or not args.out:
        parser.error(f"--worker needs PEER in {PEERS}, a known CASE, and --out")
    args.threads = args.threads or blas_threads()
    return run(args)
