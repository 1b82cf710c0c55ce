"""Scale-out figures: data-parallel training with 1 and 2 MPI ranks, Dask inference with 1 and
2 workers, and the allreduce times that the step-time model of docs/scaling.md is fitted to.

Training: each rank runs the step of :func:`cnnarray.train.fit` (forward, cross-entropy,
backward, :meth:`DataParallel.after_backward`, Adam) on its shard of a global batch of synthetic
images, one BLAS thread per rank (so 1 rank uses 1 core and 2 ranks 2 cores); ``--warmup``
steps, then ``--steps`` timed ones. Per step: the wall time, and the time of ``after_backward``
(packing, allreduce, unpacking), after a barrier whose time (the wait for the slower rank)
is recorded apart. Allreduce: the median time of a
float32 sum-allreduce of each size in :data:`SIZES` over the ranks. Dask: ``predict_dask`` of
``--images`` PNG files on a LocalCluster of 1 and then 2 worker processes, started before the
clock (the model is loaded on each worker inside the timed call).

    python benchmarks/scaling.py train --json benchmarks/results/scaling-train.json
    python benchmarks/scaling.py dask --json benchmarks/results/scaling-dask.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

#: Bytes per allreduce in the microbenchmark: 4 KiB to 16 MiB.
SIZES = [2**k for k in range(12, 25, 2)]
#: Input shape of each model's synthetic images.
SHAPES = {"lenet5": (1, 28, 28), "vgg_small": (3, 32, 32), "resnet20": (3, 32, 32)}


def _metadata() -> dict:
    from cnnarray.bench import machine

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": machine.cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": machine.load_average(),
        "versions": machine.versions(),
        "note": "2-core machine shared with other sessions while measured",
    }


# -- one rank ---------------------------------------------------------------------------------


def _rank(args: argparse.Namespace) -> None:
    """Under mpiexec: time training steps and allreduces; rank 0 prints one JSON line."""
    from cnnarray import get_backend, nn, ops, optim
    from cnnarray.autograd import Tensor
    from cnnarray.data.loader import shard_rows
    from cnnarray.distributed import Communicator, DataParallel

    cpu = get_backend("cpu")
    comm = Communicator(cpu)
    shape = SHAPES[args.model]
    kwargs = {} if args.model == "vgg_small" else {"input_size": shape[1]}
    model = nn.build_model(args.model, in_channels=shape[0], num_classes=10, seed=0, **kwargs)
    parallel = DataParallel(model, comm)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, *shape)).astype(np.float32)
    y = rng.integers(0, 10, size=args.batch)
    part = shard_rows(args.batch, comm.rank, comm.size)
    steps, waits, reduces = [], [], []
    for i in range(args.warmup + args.steps):
        comm.barrier()
        start = time.perf_counter()
        opt.zero_grad()
        loss = ops.cross_entropy(model(Tensor(x[part])), y[part])
        loss.backward()
        computed = time.perf_counter()
        comm.barrier()  # waiting for the slower rank, apart from the allreduce itself
        middle = time.perf_counter()
        parallel.after_backward(len(y[part]), args.batch)
        reduced = time.perf_counter()
        opt.step()
        end = time.perf_counter()
        if i >= args.warmup:
            steps.append(end - start)
            waits.append(middle - computed)
            reduces.append(reduced - middle)
    # medians of each rank, gathered by a sum of one-hot vectors
    mine = [0.0] * (3 * comm.size)
    mine[3 * comm.rank : 3 * comm.rank + 3] = [
        statistics.median(v) for v in (steps, waits, reduces)
    ]
    medians = comm.sum(mine)
    allreduce = {}
    for nbytes in SIZES:
        buf = np.ones(nbytes // 4, dtype=np.float32)
        times = []
        for _ in range(args.repeats):
            comm.barrier()
            t0 = time.perf_counter()
            comm.allreduce(buf)
            times.append(time.perf_counter() - t0)
        allreduce[str(nbytes)] = statistics.median(times)
    if comm.rank == 0:
        step = max(medians[0::3])
        record = {
            "model": args.model, "ranks": comm.size, "global_batch": args.batch,
            "steps": args.steps, "warmup": args.warmup, "method": comm.method,
            "parameters": sum(p.data.size for p in model.parameters()),
            "parameter_bytes": sum(p.data.nbytes for p in model.parameters()),
            "buckets": len(parallel.buckets),
            "step_s": step, "rank_step_s": medians[0::3], "wait_s": medians[1::3],
            "allreduce_step_s": medians[2::3], "images_per_s": args.batch / step,
            "allreduce_s_by_bytes": allreduce,
        }  # fmt: skip
        print("RESULT " + json.dumps(record), flush=True)


# -- the commands -----------------------------------------------------------------------------


def train(args: argparse.Namespace) -> dict:
    """Launch ``mpiexec -n P`` for each model and rank count; collect rank 0's records."""
    from cnnarray.distributed import _launch

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}  # fmt: skip
    records = []
    for model in args.models:
        for ranks in args.ranks:
            command = [_launch.mpiexec(), "-n", str(ranks), sys.executable, __file__, "_rank",
                       "--model", model, "--batch", str(args.batch), "--steps", str(args.steps),
                       "--warmup", str(args.warmup), "--repeats", str(args.repeats)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
            record = json.loads(line[len("RESULT ") :])
            records.append(record)
            print(f"{model:10s} {ranks} rank(s): {record['images_per_s']:8.1f} images/s, "
                  f"step {1e3 * record['step_s']:7.1f} ms, waiting "
                  f"{1e3 * max(record['wait_s']):6.2f} ms, allreduce "
                  f"{1e3 * max(record['allreduce_step_s']):6.2f} ms", flush=True)  # fmt: skip
    return {"metadata": _metadata(), "command": " ".join(sys.argv), "records": records}


def dask(args: argparse.Namespace) -> dict:
    """Time ``predict_dask`` over ``--images`` files with 1 and 2 local workers."""
    from dask.distributed import LocalCluster
    from PIL import Image

    from cnnarray import get_backend
    from cnnarray import train as training
    from cnnarray.data.datasets import load_digits
    from cnnarray.distributed import predict_dask

    records = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data, cpu = load_digits(), get_backend("cpu")
        config = training.TrainConfig(model=args.dask_model, epochs=1)
        model_path = folder / "model.safetensors"
        training.save(training.new_state(config, data, cpu), model_path)
        images = folder / "images"
        images.mkdir()
        for i in range(args.images):
            pixels = (data.x_test[i % len(data.x_test), 0] * 255).astype(np.uint8)
            Image.fromarray(pixels).resize((28, 28)).save(images / f"{i:05d}.png")
        for workers in args.workers:
            with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                              dashboard_address=None) as cluster:  # fmt: skip
                times = []
                for _ in range(args.repeats_dask):
                    t0 = time.perf_counter()
                    rows = predict_dask(model_path, [images], scheduler=cluster.scheduler_address,
                                        workers=workers)  # fmt: skip
                    times.append(time.perf_counter() - t0)
            assert len(rows) == args.images and not any(r["error"] for r in rows)
            median = statistics.median(times)
            records.append({"workers": workers, "images": args.images, "model": args.dask_model,
                            "median_s": median, "times_s": times,
                            "images_per_s": args.images / median})  # fmt: skip
            print(f"dask, {workers} worker(s): {args.images / median:8.1f} images/s "
                  f"({median:.2f} s for {args.images})", flush=True)  # fmt: skip
    return {"metadata": _metadata(), "command": " ".join(sys.argv), "records": records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["train", "dask", "_rank"])
    parser.add_argument("--models", nargs="+", default=list(SHAPES))
    parser.add_argument("--model", default="lenet5")  # _rank
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch", type=int, default=64, help="global batch")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30, help="allreduce repeats per size")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--dask-model", default="small_cnn")
    parser.add_argument("--repeats-dask", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.mode == "_rank":
        _rank(args)
        return
    result = train(args) if args.mode == "train" else dask(args)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
