"""The measuring worker of ``train_compare.py``: one framework, one process, one task.

    python benchmarks/speed.py --worker torch --task '{"kind": "steps", ...}'

prints one JSON line. The task's ``configs`` are ``[model, channels, size,
batch]``; for each one the worker builds the cnnarray model (``seed``), copies
its initial weights into the framework's model (the PyTorch twin of
``twins.py`` for torch), and measures on seeded random images of that shape
with random labels (the same in both frameworks):

``steps``
    Training steps as ``train_compare.py`` trains (cross-entropy, Adam,
    ``model.train()``), cycling over ``CYCLE`` mini-batches: ``warmup``
    untimed steps, then up to ``steps`` timed ones (fewer when ``budget_s``
    would be exceeded, but at least 3), with the garbage collector off while
    timed (the timing loop of :mod:`cnnarray.bench.timing`).
``inference``
    The model in eval mode on one batch, no gradient (cnnarray: arrays in,
    arrays out, nothing recorded; PyTorch: ``torch.no_grad()``); timed as steps.
``memory``
    Bytes of one training step, after ``warmup`` steps, above what is live when
    it starts (activations, gradients, temporaries; not the weights and Adam's
    state, which persist): ``peak_bytes`` is cnnarray's tracemalloc peak (NumPy
    reports its buffers to tracemalloc) or the peak of PyTorch's allocations
    in ``torch.profiler(profile_memory=True)`` (the running sum of its
    allocation and free events); ``rss_bytes`` is measured the same way for
    both: the rise of the peak resident set (``VmHWM``) over the resident set
    at the step's start, after ``malloc_trim`` and a reset of the peak
    (``/proc/self/clear_refs``; None where Linux does not allow it).
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import train_compare as tc

from cnnarray.bench.machine import blas_threads
from cnnarray.bench.timing import time_calls

CYCLE = 4  # distinct mini-batches a timed loop goes round
NUM_CLASSES = 10
DATA_NOTE = "seeded random images (uniform in [0, 1)) and labels, the same for both frameworks"


def random_split(channels: int, size: int, batch: int, seed: int):
    """A Split of ``CYCLE * batch`` seeded random training images (and ``batch`` test ones)."""
    from cnnarray.data.datasets import Split

    rng = np.random.default_rng([seed, channels, size, batch])
    x = rng.random((CYCLE * batch, channels, size, size), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, len(x))
    classes = [str(k) for k in range(NUM_CLASSES)]
    return Split(x, y, x[:batch], y[:batch], classes, f"random {channels}x{size}x{size}")


def initial_weights(model: str, data, seed: int) -> dict[str, np.ndarray]:
    """The cnnarray model's initial state dict as NumPy arrays: both frameworks start here."""
    from cnnarray import to_numpy

    init = tc.build(model, data, seed)
    return {k: np.array(to_numpy(v)) for k, v in init.state_dict().items()}


class CnnarrayRunner:
    """Builds cnnarray models and their training step / inference call; NumPy's BLAS and
    cnnarray's pool use ``threads`` threads."""

    name = "cnnarray"

    def __init__(self, threads: int) -> None:
        from cnnarray.backend import set_num_threads

        set_num_threads(threads)
        try:
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(threads, user_api="blas")
        except ImportError:  # the BLAS keeps its default (the CPU count)
            pass

    def model(self, name, data, weights):
        model = tc.build(name, data, 0)
        model.load_state_dict(weights)
        return model

    def train_step(self, name, data, weights, lr):
        from cnnarray import optim

        model = self.model(name, data, weights)
        model.train()
        return tc.cnnarray_step(model, optim.Adam(model.parameters(), lr=lr), data)

    def inference(self, name, data, weights):
        model = self.model(name, data, weights)
        model.eval()
        x = data.x_test
        return lambda: model(x)

    def step_peak_bytes(self, step, idx) -> int:
        """tracemalloc's peak over one step, above what is traced when it starts."""
        tracemalloc.start()
        try:
            step(idx)  # so that what this step frees was allocated under tracing
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            step(idx)
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()


class TorchRunner(CnnarrayRunner):
    """The same for the PyTorch twins, with ``torch.set_num_threads(threads)``."""

    name = "torch"

    def __init__(self, threads: int) -> None:
        import torch

        # only torch's own setting: threadpoolctl's limits slow PyTorch's kernels down
        torch.set_num_threads(threads)
        self.torch = torch

    def model(self, name, data, weights):
        model = tc.TORCH_MODELS[name](self.torch, data)
        model.load_state_dict({k: self.torch.from_numpy(v) for k, v in weights.items()})
        return model

    def train_step(self, name, data, weights, lr):
        model = self.model(name, data, weights)
        model.train()
        opt = self.torch.optim.Adam(model.parameters(), lr=lr)
        return tc.torch_step(self.torch, model, opt, data)

    def inference(self, name, data, weights):
        model = self.model(name, data, weights)
        model.eval()
        x = self.torch.from_numpy(data.x_test)

        def call():
            with self.torch.no_grad():
                return model(x)

        return call

    def step_peak_bytes(self, step, idx) -> int:
        """The peak of the running sum of the allocation events of one profiled step
        (the one inside the "measured" range), above the sum at its start."""
        from torch.profiler import ProfilerActivity, profile, record_function

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step(idx)  # so that what the measured step frees was allocated under profiling
            with record_function("measured"):
                step(idx)
        events = prof.profiler.kineto_results.events()
        (marker,) = [e for e in events if e.name() == "measured"]
        memory = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
        live, base, peak = 0, None, 0
        for t, nbytes in memory:
            if t > marker.end_ns():
                break
            if base is None and t >= marker.start_ns():
                base = peak = live
            live += nbytes
            if base is not None:
                peak = max(peak, live)
        return 0 if base is None else peak - base


def rss_step_bytes(step, idx) -> int | None:
    """The rise of the peak resident set over one step (Linux), after returning free heap
    memory to the system; None where the peak cannot be reset."""
    status = Path("/proc/self/status")

    def kib(field: str) -> int:
        for line in status.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
        raise LookupError(field)

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to VmRSS
        before = kib("VmRSS:")
        step(idx)
        return 1024 * (kib("VmHWM:") - before)
    except (OSError, LookupError, AttributeError):
        return None


def measure(runner, task: dict, config: list) -> dict:
    """Measure one config ``[model, channels, size, batch]`` of the task."""
    model, channels, size, batch = config
    data = random_split(channels, size, batch, task["seed"])
    weights = initial_weights(model, data, task["seed"])
    kind = task["kind"]
    if kind == "inference":
        call = runner.inference(model, data, weights)
    else:
        step = runner.train_step(model, data, weights, task["lr"])
        batches = itertools.cycle(np.arange(i * batch, (i + 1) * batch) for i in range(CYCLE))
        call = lambda: step(next(batches))  # noqa: E731
    if kind == "memory":
        for _ in range(task["warmup"]):
            call()
        idx = np.arange(batch)
        rss = rss_step_bytes(step, idx)
        return {"peak_bytes": runner.step_peak_bytes(step, idx), "rss_bytes": rss}
    timing = time_calls(call, task["steps"], budget_s=task.get("budget_s"),
                        min_warmup=task["warmup"], max_warmup=task["warmup"])  # fmt: skip
    return {"times_s": timing.times_s}


def worker(framework: str, task: dict) -> dict:
    runner = (TorchRunner if framework == "torch" else CnnarrayRunner)(task["threads"])
    results = [{"config": c, **measure(runner, task, c)} for c in task["configs"]]
    threads = {"blas": blas_threads()}
    if framework == "torch":
        threads["torch"] = runner.torch.get_num_threads()
    return {"framework": framework, "kind": task["kind"], "threads": threads, "results": results}


def run(framework: str, task: dict) -> dict:
    """Run ``task`` in a worker process of its own (``train_compare.worker_result``)."""
    options = ["--task", json.dumps(task)]
    return tc.worker_result(os.path.abspath(__file__), framework, options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=["cnnarray", "torch"], required=True)
    parser.add_argument("--task", required=True, help="the task as JSON")
    args = parser.parse_args()
    print(json.dumps(worker(args.worker, json.loads(args.task))))


if __name__ == "__main__":
    main()
