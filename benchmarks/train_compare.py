"""Train the same networks with cnnarray and with PyTorch, side by side: issue 16's ratios.

One run measures each part below with both frameworks, prints a table per
part and, at the end, issue 16's targets (measured ratio, limit, met or not),
and writes everything to ``--json`` (after each part, so a cut run keeps what
it measured). Both frameworks use the same models (PyTorch's twins in
``twins.py``, loaded with cnnarray's initial weights by name), data, batch,
optimiser (Adam, lr 2e-3) and number of threads; each runs in worker
processes of its own with ``OPENBLAS_THREAD_TIMEOUT=4`` (see
benchmarks/README.md), ``--rounds`` processes per framework taking turns, their
timed calls pooled (median and interquartile range). The timing parts run on
seeded random images of each case's shape (``speed.py`` says how each is
measured):

``steps``
    Time per training step: LeNet-5 28x28x1 at batch 32 and 128, vgg_small at
    32x32x3 and 28x28x1, resnet20 at 32x32x3, batch 32.
``inference``
    The three models in eval mode without gradients, batch 128.
``memory``
    Peak memory of a training step above what is live at its start: cnnarray
    by tracemalloc, PyTorch by ``torch.profiler``'s allocation events (the
    ratio compared); both by the rise of the peak resident set, beside it.
``batches``
    Images/s of LeNet-5 and vgg_small (28x28x1) training steps at batch sizes 8 to 256.
``layers``
    Cases a-c of ``python -m cnnarray bench --device cpu --compare torch``
    (a subprocess), forward and forward+backward.
``accuracy``
    Test accuracy after training on ``--dataset`` (digits28) from the same
    weights, same order of mini-batches, no augmentation, ``--seeds`` seeds
    (``--accuracy``: LeNet-5 15 epochs, vgg_small 4); the mean gap in points.

    python benchmarks/train_compare.py --json benchmarks/results/train-compare-16.json
    python benchmarks/train_compare.py --quick --only steps --models lenet5

``--model``, ``--epochs`` or ``--dataset`` without ``--only`` run the accuracy
part alone, as this script did before (one model; epoch times reported too):

    python benchmarks/train_compare.py --dataset digits --dataset digits28 \\
        --epochs 15 --json benchmarks/results/train-compare.json
    python benchmarks/train_compare.py --model vgg_small --dataset digits28 \\
        --epochs 10 --json benchmarks/results/train-compare-vgg.json

Datasets: ``digits`` (scikit-learn's 8x8 digits), ``digits28`` (the same
images upsampled to 28x28 with bilinear interpolation: a stand-in for MNIST
on a machine that cannot download it), or any ``cnnarray train --dataset``
spec such as ``mnist:DIR``. ``python benchmarks/targets.py RESULTS.json``
prints a saved run's tables again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from targets import summary
from twins import TORCH_MODELS

from cnnarray.bench.timing import Timing, time_each

WORKER_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4"}


def load(spec: str):
    import numpy as np

    from cnnarray.data import load_dataset
    from cnnarray.data.datasets import Split

    if spec != "digits28":
        return load_dataset(spec)
    from scipy.ndimage import zoom

    d = load_dataset("digits")

    def up(x):
        return np.clip(zoom(x, (1, 1, 3.5, 3.5), order=1), 0, 1).astype(np.float32)

    return Split(up(d.x_train), d.y_train, up(d.x_test), d.y_test, d.classes, "digits28")


def batches(n: int, batch_size: int, seed: int, epoch: int):
    import numpy as np

    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def build(name: str, data, seed: int):
    """The cnnarray model ``name`` for ``data``'s images and classes."""
    from cnnarray import nn

    c, size, _ = data.input_shape
    return nn.build_model(name, in_channels=c, num_classes=data.num_classes, input_size=size,
                          seed=seed)  # fmt: skip


def train_epochs(step, data, args, epochs) -> Timing:
    """Time each epoch in ``epochs`` (epoch numbers): ``step(idx)`` over its mini-batches."""

    def epoch(number):
        for idx in batches(len(data.y_train), args.batch_size, args.seed, number):
            step(idx)

    return time_each(epoch, epochs)


def cnnarray_step(model, opt, data):
    """One training step of the cnnarray ``model``: ``step(idx)`` on those training images."""
    from cnnarray import ops, tensor

    def step(idx):
        # the images do not require grad, so their gradient is skipped, as in PyTorch
        loss = ops.cross_entropy(model(tensor(data.x_train[idx])), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def run_cnnarray(args, data, weights):
    from cnnarray import optim

    model = build(args.model, data, args.seed)
    model.load_state_dict(weights)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    model.train()
    timing = train_epochs(cnnarray_step(model, opt, data), data, args, range(args.epochs))
    model.eval()
    pred = model(data.x_test).argmax(axis=1)
    return float((pred == data.y_test).mean()), timing.times_s


def torch_step(torch, model, opt, data):
    """One training step of the PyTorch ``model``: ``step(idx)`` on those training images."""
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)

    def step(idx):
        idx = torch.from_numpy(idx)
        loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def run_torch(args, data, weights):
    import torch

    torch.set_num_threads(args.threads)
    model = TORCH_MODELS[args.model](torch, data)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    model.train()
    timing = train_epochs(torch_step(torch, model, opt, data), data, args, range(args.epochs))
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(data.x_test)).argmax(dim=1).numpy()
    return float((pred == data.y_test).mean()), timing.times_s


def data_and_weights(args):
    """A worker's dataset and the initial weights both frameworks start from."""
    import numpy as np

    from cnnarray import to_numpy

    data = load(args.dataset)
    init = build(args.model, data, args.seed)
    return data, {k: np.array(to_numpy(v)) for k, v in init.state_dict().items()}


def worker_result(script: str, framework: str, options: list[str]) -> dict:
    """Run ``script --worker framework *options`` in a process of its own, with
    :data:`WORKER_ENV`; return the JSON it prints last."""
    cmd = [sys.executable, script, "--worker", framework, *options]
    env = {**os.environ, **WORKER_ENV}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        what = " ".join(cmd[1:4])
        raise RuntimeError(f"{what} ... failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def worker(args) -> None:
    data, weights = data_and_weights(args)
    run = run_cnnarray if args.worker == "cnnarray" else run_torch
    accuracy, times = run(args, data, weights)
    print(json.dumps({"accuracy": accuracy, "epoch_seconds": times}))


def accuracy_rows(args, runs: list[tuple[str, int]]) -> list[dict]:
    """Train each ``(model, epochs)`` of ``runs`` on each dataset with both frameworks,
    ``args.seeds`` seeds each; one row per model and dataset."""
    results = []
    for model, epochs in runs:
        for dataset in args.dataset:
            row = {"dataset": dataset, "model": model, "epochs": epochs,
                   "batch_size": args.batch_size, "lr": args.lr, "optimizer": "adam"}  # fmt: skip
            for framework in ("cnnarray", "torch"):
                accuracies, epoch_seconds = [], []
                for seed in range(args.seed, args.seed + args.seeds):
                    options = ["--dataset", dataset, "--model", model, "--epochs", str(epochs),
                               "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                               "--seed", str(seed), "--threads", str(args.threads)]  # fmt: skip
                    r = worker_result(__file__, framework, options)
                    accuracies.append(r["accuracy"])
                    epoch_seconds += r["epoch_seconds"]
                row[framework] = {"test_accuracy": sum(accuracies) / len(accuracies),
                                  "test_accuracy_per_seed": accuracies,
                                  "median_epoch_s": Timing(epoch_seconds).median_s,
                                  "epoch_seconds": epoch_seconds}  # fmt: skip
            row["time_ratio"] = row["cnnarray"]["median_epoch_s"] / row["torch"]["median_epoch_s"]
            row["accuracy_gap_points"] = 100 * (
                row["cnnarray"]["test_accuracy"] - row["torch"]["test_accuracy"]
            )
            results.append(row)
            print(f"{model} on {dataset}: cnnarray {100 * row['cnnarray']['test_accuracy']:.2f}% "
                  f"{row['cnnarray']['median_epoch_s']:.3f} s/epoch | torch "
                  f"{100 * row['torch']['test_accuracy']:.2f}% "
                  f"{row['torch']['median_epoch_s']:.3f} s/epoch | time ratio "
                  f"{row['time_ratio']:.2f}, accuracy gap "
                  f"{row['accuracy_gap_points']:+.2f} points", flush=True)  # fmt: skip
    return results


FRAMEWORKS = ("cnnarray", "torch")
PARTS = ("steps", "inference", "memory", "batches", "layers", "accuracy")
# [model, channels, size, batch] of issue 16's targets
STEP_CASES = [("lenet5", 1, 28, 32), ("lenet5", 1, 28, 128), ("vgg_small", 3, 32, 32),
              ("vgg_small", 1, 28, 32), ("resnet20", 3, 32, 32)]  # fmt: skip
INFERENCE_CASES = [("lenet5", 1, 28, 128), ("vgg_small", 3, 32, 128), ("resnet20", 3, 32, 128)]
BATCH_MODELS = [("lenet5", 1, 28), ("vgg_small", 1, 28)]
LAYER_CASES = "a,b,c"


def compare(kind: str, cases: list, args, rounds: int, **task) -> tuple[list[dict], dict]:
    """Measure ``cases`` with both frameworks, ``rounds`` worker processes each, taking
    turns (the first framework alternates); return a row per case and the workers' threads."""
    import speed

    task = {"kind": kind, "configs": [list(c) for c in cases], "seed": args.seed,
            "lr": args.lr, "threads": args.threads, **task}  # fmt: skip
    results = {fw: [[] for _ in cases] for fw in FRAMEWORKS}
    threads = {}
    for r in range(rounds):
        for fw in FRAMEWORKS if r % 2 == 0 else FRAMEWORKS[::-1]:
            out = speed.run(fw, task)
            threads[fw] = out["threads"]
            for pooled, result in zip(results[fw], out["results"], strict=True):
                pooled.append(result)
    rows = []
    for i, (model, channels, size, batch) in enumerate(cases):
        row = {"model": model, "input": [channels, size, size], "batch": batch}
        if kind == "memory":  # the bytes of the first round
            for fw in FRAMEWORKS:
                row[fw] = {k: results[fw][i][0][k] for k in ("peak_bytes", "rss_bytes")}
            row["ratio"] = row["cnnarray"]["peak_bytes"] / row["torch"]["peak_bytes"]
            a, b = row["cnnarray"]["rss_bytes"], row["torch"]["rss_bytes"]
            row["rss_ratio"] = a / b if a is not None and b else None
        else:
            for fw in FRAMEWORKS:
                row[fw] = summary([t for res in results[fw][i] for t in res["times_s"]])
                row[fw]["images_per_s"] = 1e3 * batch / row[fw]["median_ms"]
            row["ratio"] = row["cnnarray"]["median_ms"] / row["torch"]["median_ms"]
        rows.append(row)
    return rows, threads


def layers_part(args) -> dict:
    """Cases a-c of ``cnnarray bench --compare torch`` (a subprocess): ratios of each mode."""
    import tempfile

    options = ["--device", "cpu", "--compare", "torch", "--cases", LAYER_CASES]
    if args.quick:
        options += ["--repeat", "1", "--rounds", "1", "--budget", "0.05"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layers.json")
        cmd = [sys.executable, "-m", "cnnarray", "bench", *options, "--json", path]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"cnnarray bench failed ({out.returncode}):\n{out.stderr[-3000:]}")
        with open(path) as f:
            bench = json.load(f)
    records = {(r["case"], r["mode"], r["peer"]): r for r in bench["records"]}
    rows = []
    for (case, mode, peer), r in records.items():
        theirs = records.get((case, mode, "torch"))
        if peer != "cnnarray" or theirs is None:
            continue
        ok = r["status"] == "ok" and theirs["status"] == "ok"
        rows.append({"case": case, "mode": mode, "cnnarray_ms": 1e3 * (r["median_s"] or 0),
                     "torch_ms": 1e3 * (theirs["median_s"] or 0),
                     "ratio": r.get("ratio_vs_torch") if ok else None})  # fmt: skip
    meta = bench["metadata"]
    return {"command": "python -m cnnarray bench " + " ".join(options), "cpu": meta["cpu"],
            "threads": meta["threads"], "records": rows}  # fmt: skip


def machine(args) -> dict:
    """The CPU, threads, load and versions, for the header and the JSON."""
    from cnnarray.backend import blas_info
    from cnnarray.bench import machine as m

    return {"cpu": m.cpu_model(), "cpu_count": os.cpu_count(), "cpu_affinity": m.cpu_affinity(),
            "threads": args.threads, "load_average": {"start": m.load_average()},
            "versions": m.versions(), "blas": blas_info(), "worker_env": WORKER_ENV}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated parts to run: {','.join(PARTS)} "
                        "(default: all)")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="few steps, one round and seed, one epoch: for testing")  # fmt: skip
    parser.add_argument("--models", default="lenet5,vgg_small,resnet20",
                        help="comma-separated models the parts measure")  # fmt: skip
    parser.add_argument("--steps", type=int, default=30, help="timed steps per worker process")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=3,
                        help="worker processes per framework, in turns; times pooled")  # fmt: skip
    parser.add_argument("--batch-sizes", default="8,16,32,64,128,256")
    parser.add_argument("--batch-budget", type=float, default=1.5,
                        help="seconds of timed steps per batch size and process")  # fmt: skip
    parser.add_argument("--accuracy", default="lenet5:15,vgg_small:4",
                        help="MODEL:EPOCHS,... trained on --dataset (accuracy part)")  # fmt: skip
    parser.add_argument("--dataset", action="append", help="digits, digits28 (default) or a "
                        "train spec, for the accuracy part")  # fmt: skip
    parser.add_argument("--model", choices=sorted(TORCH_MODELS),
                        help="accuracy part only, of this model (the former mode)")  # fmt: skip
    parser.add_argument("--epochs", type=int, help="with --model: its epochs (default 15)")
    parser.add_argument("--batch-size", type=int, default=32, help="of the accuracy part")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=5, help="accuracy runs per framework")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="write the results here (after each part)")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.dataset = (args.dataset or ["digits28"])[0]
        args.model = args.model or "lenet5"
        args.epochs = args.epochs or 15
        worker(args)
        return
    run(args, parser)


def run(args, parser) -> None:
    """Run the parts that ``args`` asks for, print their tables and the targets."""
    from targets import tables, targets, targets_table

    former = args.model or args.epochs or args.dataset  # the accuracy comparison alone
    parts = (args.only or ("accuracy" if former else ",".join(PARTS))).split(",")
    if unknown := set(parts) - set(PARTS):
        parser.error(f"--only must name parts of {','.join(PARTS)}, got {sorted(unknown)}")
    models = args.models.split(",")
    if unknown := set(models) - set(TORCH_MODELS):
        parser.error(f"--models must name models of {sorted(TORCH_MODELS)}, got {sorted(unknown)}")
    args.dataset = args.dataset or ["digits28"]
    try:
        runs = [(m, int(e)) for m, e in (spec.split(":") for spec in args.accuracy.split(","))]
    except ValueError:
        parser.error(f"--accuracy must read MODEL:EPOCHS,..., got {args.accuracy!r}")
    if args.model or args.epochs:
        runs = [(args.model or "lenet5", args.epochs or 15)]
    runs = [r for r in runs if r[0] in models]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.quick:
        args.steps, args.warmup, args.rounds, args.seeds = 5, 2, 1, 1
        runs, sizes, args.batch_budget = [(m, 1) for m, _ in runs[:1]], sizes[:2], 0.05
    doc = {"schema": 1, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "command": " ".join(["python", *sys.argv]), "parts": parts, "quick": args.quick,
           "machine": machine(args),
           "settings": {"optimizer": "adam", "lr": args.lr, "seed": args.seed,
                        "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
                        "batch_budget_s": args.batch_budget,
                        "timing_data": "seeded random images (uniform in [0, 1)) and "
                        "labels of each case's shape, the same for both frameworks; "
                        "accuracy: the real dataset"}}  # fmt: skip
    mach = doc["machine"]
    print(f"train_compare: {mach['cpu']}, {mach['cpu_count']} CPUs "
          f"({mach['cpu_affinity']} usable), {args.threads} threads per framework, "
          f"torch {mach['versions']['torch']}, numpy {mach['versions']['numpy']}; "
          f"parts: {','.join(parts)}{' (quick)' if args.quick else ''}", flush=True)  # fmt: skip
    print(f"timing data: {doc['settings']['timing_data']}", flush=True)
    load = mach["load_average"]["start"]
    if load and load[0] > 0.5:
        print(f"warning: load average {load[0]} before the run: other work on this machine "
              "skews the timings", flush=True)  # fmt: skip
    print(flush=True)
    start = time.perf_counter()
    timed = {"steps": args.steps, "warmup": args.warmup}
    chosen = {
        "steps": [c for c in STEP_CASES if c[0] in models],
        "inference": [c for c in INFERENCE_CASES if c[0] in models],
        "memory": [c for c in STEP_CASES if c[0] in models],
        "batches": [(m, c, s, b) for m, c, s in BATCH_MODELS if m in models for b in sizes],
    }
    for part in parts:
        part_start = time.perf_counter()
        if part in chosen and chosen[part]:
            kind = "steps" if part == "batches" else part
            task = {"warmup": args.warmup} if part == "memory" else dict(timed)
            if part == "batches":
                task = {"steps": 20, "warmup": min(args.warmup, 3),
                        "budget_s": args.batch_budget}  # fmt: skip
            rounds = {"memory": 1, "batches": min(args.rounds, 2)}.get(part, args.rounds)
            doc[part], threads = compare(kind, chosen[part], args, rounds, **task)
            mach.setdefault("worker_threads", {}).update(threads)
        elif part == "layers":
            doc["layers"] = layers_part(args)
        elif part == "accuracy":
            doc["accuracy"] = accuracy_rows(args, runs)
        else:
            continue
        print(*tables({part: doc[part]}), "", sep="\n", flush=True)
        mach["load_average"]["end"] = machine(args)["load_average"]["start"]
        doc.setdefault("part_seconds", {})[part] = time.perf_counter() - part_start
        doc["wall_s"] = time.perf_counter() - start
        doc["targets"] = targets(doc)
        if args.json:
            from cnnarray.io import atomic_write_bytes

            atomic_write_bytes(args.json, json.dumps(doc, indent=2).encode())
    print(targets_table(targets(doc)))
    print(f"\n{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
