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
clock; ``--repeats-dask`` calls each, the first of which also loads the model on each worker
(the median is a warm call).

    python benchmarks/scaling.py train --json benchmarks/results/scaling-train.json
    python benchmarks/scaling.py dask --json benchmarks/results/scaling-dask.json
    python benchmarks/scaling.py model --json benchmarks/results/scaling-model.json

``model`` fits the per-hop latency and the bandwidth of the step-time model (docs/scaling.md)
to the 2-rank allreduces, compares its 2-rank step with the measured one, and predicts the
allreduce share of a step for the networks in :data:`NETWORKS`.
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


#: Assumed networks for the predictions: per-hop latency (s) and allreduce bandwidth (bytes/s).
NETWORKS = {
    # NCCL on one node's NVLink 4 (H100 SXM): ~300 GB/s bus bandwidth reached, ~2 us a hop
    "8 GPUs, NVLink": {"ranks": 8, "alpha_s": 2e-6, "bandwidth": 300e9},
    # MPI over TCP on 100 Gb/s Ethernet: ~10 GB/s of the 12.5, ~25 us a hop; nodes with one
    # GPU each, or CPU nodes like this one (each rank keeping the 2-rank run's per-rank batch)
    "64 GPU nodes, 100 Gb/s Ethernet": {"ranks": 64, "alpha_s": 25e-6, "bandwidth": 10e9},
    "64 CPU nodes, 100 Gb/s Ethernet": {"ranks": 64, "alpha_s": 25e-6, "bandwidth": 10e9},
}
#: Estimated cnnarray step on one GPU at a small per-GPU batch (launch-bound: ~1 ms per conv
#: layer forward and backward in benchmarks/results/cuda-h200.json), in seconds.
GPU_STEP_S = {"lenet5": 0.004, "vgg_small": 0.015, "resnet20": 0.040}


def allreduce_s(nbytes: float, ranks: int, alpha: float, bandwidth: float, messages: int) -> float:
    """Step-time model of one gradient allreduce: latency per message, then the bytes.

    ``messages * 2 log2(p) * alpha`` (recursive halving and doubling; a ring has
    ``2 (p - 1)`` hops instead) ``+ 2 (p - 1) / p * nbytes / bandwidth``.
    """
    if ranks == 1:
        return 0.0
    return messages * 2 * np.log2(ranks) * alpha + 2 * (ranks - 1) / ranks * nbytes / bandwidth


def model(args: argparse.Namespace) -> dict:
    """Fit latency and bandwidth to the measured 2-rank allreduces; check and predict."""
    doc = json.loads(args.input.read_text())
    records = {(r["model"], r["ranks"]): r for r in doc["records"]}
    by_size: dict[int, list[float]] = {}
    for (_, ranks), r in records.items():
        if ranks == 2:
            for nbytes, t in r["allreduce_s_by_bytes"].items():
                if int(nbytes) <= 2**22:  # above 4 MiB the shared cores' noise dominates
                    by_size.setdefault(int(nbytes), []).append(t)
    sizes = sorted(by_size)
    times = [statistics.median(by_size[n]) for n in sizes]  # the median of the runs
    # t = 2 log2(2) alpha + (2 (2 - 1) / 2) n / bw = 2 alpha + n / bw, least squares on
    # relative errors (rows divided by t), so the small sizes set alpha and the large ones bw
    t = np.asarray(times)
    design = np.column_stack([np.full(len(sizes), 2.0), np.asarray(sizes, float)]) / t[:, None]
    (alpha, inverse_bw), *_ = np.linalg.lstsq(design, np.ones(len(t)), rcond=None)
    alpha = max(float(alpha), 1e-7)
    here = {"alpha_s": alpha, "bandwidth": 1 / float(inverse_bw)}
    print(f"this machine, 2 ranks: alpha {1e6 * alpha:.1f} us a hop, "
          f"bandwidth {here['bandwidth'] / 1e9:.2f} GB/s")  # fmt: skip
    rows = []
    for name in SHAPES:
        one, two = records.get((name, 1)), records.get((name, 2))
        if one is None or two is None:
            continue
        nbytes, messages = two["parameter_bytes"], two["buckets"]
        predicted = one["step_s"] / 2 + allreduce_s(nbytes, 2, here["alpha_s"],
                                                    here["bandwidth"], messages)  # fmt: skip
        row = {"model": name, "parameter_bytes": nbytes, "messages": messages,
               "step_1_rank_s": one["step_s"], "step_2_ranks_s": two["step_s"],
               "predicted_2_ranks_s": predicted,
               "measured_allreduce_in_step_s": max(two["allreduce_step_s"]),
               "predicted_allreduce_s": predicted - one["step_s"] / 2}  # fmt: skip
        for label, net in NETWORKS.items():
            a = allreduce_s(nbytes, net["ranks"], net["alpha_s"], net["bandwidth"], messages)
            # weak scaling: each rank keeps the per-rank batch of the 2-rank run
            compute = GPU_STEP_S[name] if "GPU" in label else one["step_s"] / 2
            row[label] = {"allreduce_s": a, "compute_s": compute,
                          "efficiency": compute / (compute + a)}  # fmt: skip
        rows.append(row)
        print(
            f"{name:10s} {nbytes / 1e6:5.2f} MB: 2 ranks measured "
            f"{1e3 * two['step_s']:7.1f} ms, predicted {1e3 * predicted:7.1f} ms; "
            + "; ".join(
                f"{k}: allreduce {1e3 * row[k]['allreduce_s']:.3f} ms, "
                f"efficiency {100 * row[k]['efficiency']:.1f} %"
                for k in NETWORKS
            )
        )
    return {"command": " ".join(sys.argv), "fitted": here, "networks": NETWORKS,
            "gpu_step_s": GPU_STEP_S, "rows": rows}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["train", "dask", "model", "_rank"])
    parser.add_argument("--input", type=Path, default=Path("benchmarks/results/scaling-train.json"))
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
    result = {"train": train, "dask": dask, "model": model}[args.mode](args)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
