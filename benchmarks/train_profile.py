"""Where a training step's time goes, per kind of layer, in cnnarray and in PyTorch.

The loop of ``train_compare.py`` (same model, weights, data, mini-batches,
Adam), one process per framework with ``OPENBLAS_THREAD_TIMEOUT=4``. The first
``--warmup`` epochs are not measured; over the next ``--epochs`` it reports
milliseconds per step for each kind of layer, forward and backward, and for
the optimiser step. cnnarray's figures time each recorded op's forward (the
tape's ``call_op``) and backward (``cnnarray.autograd.backward_times``), by
the kind of layer that calls it;
PyTorch's are the self CPU time of its operators under ``torch.profiler``
(which adds a little overhead of its own), summed per kind; operators outside
:data:`TORCH_OPS` (fills, copies, the loss) are left out, so PyTorch's rows
are lower bounds. The step time is each framework's wall time per step in the
measured epochs (PyTorch's from a run without the profiler).

    python benchmarks/train_profile.py --model vgg_small --dataset digits28
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import time

import train_compare as tc

from cnnarray.bench.timing import Timing, clock

# PyTorch operator -> (kind, pass); operators not listed are left out.
TORCH_OPS = {
    "aten::mkldnn_convolution": ("Conv2d", "forward"),
    "aten::convolution_backward": ("Conv2d", "backward"),
    "aten::native_batch_norm": ("BatchNorm2d", "forward"),
    "aten::native_batch_norm_backward": ("BatchNorm2d", "backward"),
    "aten::max_pool2d_with_indices": ("MaxPool2d", "forward"),
    "aten::max_pool2d_with_indices_backward": ("MaxPool2d", "backward"),
    "aten::clamp_min": ("ReLU", "forward"),
    "aten::relu": ("ReLU", "forward"),
    "aten::threshold_backward": ("ReLU", "backward"),
    "aten::addmm": ("Linear", "forward"),
    "aten::mm": ("Linear", "backward"),
    "aten::adaptive_avg_pool2d": ("AdaptiveAvgPool2d", "forward"),
    "aten::_adaptive_avg_pool2d": ("AdaptiveAvgPool2d", "forward"),
    "aten::_adaptive_avg_pool2d_backward": ("AdaptiveAvgPool2d", "backward"),
}

# cnnarray op recorded by autograd -> the kind of layer that calls it
OP_KINDS = {
    "conv2d": "Conv2d",
    "batch_norm2d": "BatchNorm2d",
    "max_pool2d": "MaxPool2d",
    "relu": "ReLU",
    "flatten": "Flatten",
    "linear": "Linear",
    "mul": "Dropout",
    "add": "Add",
    "adaptive_avg_pool2d": "AdaptiveAvgPool2d",
}


def _measure(args, data, step, start=None) -> Timing:
    """Train ``--warmup`` epochs with ``step``, call ``start()``, then time ``--epochs`` more."""
    tc.train_epochs(step, data, args, range(args.warmup))
    if start is not None:
        start()
    return tc.train_epochs(step, data, args, range(args.warmup, args.warmup + args.epochs))


def _per_step(args, data, timing: Timing, kinds_s: dict[str, float]) -> dict:
    """The worker's result: measured steps, wall ms per step, ms per step of each kind."""
    steps = args.epochs * math.ceil(len(data.y_train) / args.batch_size)
    return {"steps": steps, "step_ms": 1e3 * timing.total_s / steps,
            "kinds": {k: 1e3 * v / steps for k, v in kinds_s.items()}}  # fmt: skip


def profile_cnnarray(args, data, weights) -> dict:
    from cnnarray import autograd, optim
    from cnnarray.autograd import _rules

    model = tc.build(args.model, data, args.seed)
    model.load_state_dict(weights)
    model.train()
    opt = optim.Adam(model.parameters(), lr=args.lr)
    totals: dict[str, float] = collections.defaultdict(float)

    def timed(method, kind):
        def call(*a, **k):
            seconds, out = clock(lambda: method(*a, **k))
            totals[kind] += seconds
            return out

        return call

    # every recorded op's forward, by op: functional calls (resnet's relu) count too
    call_op = _rules.call_op

    def timed_op(op, args, kwargs):
        start = time.perf_counter()
        out = call_op(op, args, kwargs)
        kind = OP_KINDS.get(op.__name__)
        if kind is not None:  # the loss is left out, as PyTorch's is
            totals[f"{kind} forward"] += time.perf_counter() - start
        return out

    _rules.call_op = timed_op
    opt.step = timed(opt.step, "Adam step")
    # the warm-up's layer times are dropped when the measured epochs start
    with autograd.backward_times() as backward:
        timing = _measure(args, data, tc.cnnarray_step(model, opt, data),
                          start=lambda: (totals.clear(), backward.seconds.clear()))  # fmt: skip
    for op, seconds in backward.seconds.items():
        if op in OP_KINDS:  # the loss's backward is left out, as PyTorch's is
            totals[f"{OP_KINDS[op]} backward"] += seconds
    return _per_step(args, data, timing, totals)


def profile_torch(args, data, weights) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    builder = tc.TORCH_MODELS[args.model]

    def fresh_step():
        model = builder(torch, data)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        model.train()
        return tc.torch_step(torch, model, torch.optim.Adam(model.parameters(), lr=args.lr), data)

    timing = _measure(args, data, fresh_step())  # the wall time, unprofiled
    prof = profile(activities=[ProfilerActivity.CPU])
    _measure(args, data, fresh_step(), start=prof.start)  # profiles the measured epochs
    prof.stop()
    totals: dict[str, float] = collections.defaultdict(float)
    for event in prof.key_averages():  # times in microseconds
        if event.key.startswith("Optimizer.step#"):  # a parent record: its total
            totals["Adam step"] += event.cpu_time_total / 1e6
        elif event.key in TORCH_OPS:
            totals[" ".join(TORCH_OPS[event.key])] += event.self_cpu_time_total / 1e6
    return _per_step(args, data, timing, totals)


def worker(args) -> None:
    data, weights = tc.data_and_weights(args)
    run = profile_cnnarray if args.worker == "cnnarray" else profile_torch
    print(json.dumps(run(args, data, weights)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits28", help="digits, digits28 or a train spec")
    parser.add_argument("--model", default="vgg_small", choices=sorted(tc.TORCH_MODELS))
    parser.add_argument("--epochs", type=int, default=2, help="measured epochs")
    parser.add_argument("--warmup", type=int, default=1, help="epochs before measuring")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--worker", choices=["cnnarray", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 1 or args.warmup < 0:
        parser.error("--epochs must be at least 1 and --warmup at least 0")
    if args.worker:
        worker(args)
        return
    results = {}
    for framework in ("cnnarray", "torch"):
        options = ["--dataset", args.dataset, "--model", args.model, "--epochs", str(args.epochs),
                   "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
                   "--lr", str(args.lr), "--seed", str(args.seed),
                   "--threads", str(args.threads)]  # fmt: skip
        results[framework] = tc.worker_result(__file__, framework, options)
    ours, theirs = results["cnnarray"], results["torch"]
    kinds = sorted(set(ours["kinds"]) | set(theirs["kinds"]),
                   key=lambda k: -ours["kinds"].get(k, 0))  # fmt: skip
    print(f"{args.model} on {args.dataset}, batch {args.batch_size}: ms per step "
          f"({ours['steps']} steps measured)\n")  # fmt: skip
    print("| layer | pass | cnnarray | PyTorch | ratio |\n|---|---|---|---|---|")
    for kind in kinds:
        a, b = ours["kinds"].get(kind, 0.0), theirs["kinds"].get(kind, 0.0)
        ratio = f"{a / b:.1f}" if b else ""
        print(f"| {kind.replace(' ', ' | ')} | {a:.2f} | {b:.2f} | {ratio} |")
    a, b = ours["step_ms"], theirs["step_ms"]
    print(f"| whole step | | {a:.1f} | {b:.1f} | {a / b:.1f} |")
    if args.json:
        from cnnarray.io import atomic_write_bytes

        doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
               "model": args.model, "dataset": args.dataset, "batch_size": args.batch_size,
               "threads": args.threads, "results": results}  # fmt: skip
        atomic_write_bytes(args.json, json.dumps(doc, indent=2).encode())


if __name__ == "__main__":
    main()
