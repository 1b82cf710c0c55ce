"""Training-step time before and after a change: two checkouts, alternating processes.

Each round runs ``benchmarks/train_compare.py --worker cnnarray`` of the *old*
checkout, then of the *new* one (each with its own code on PYTHONPATH, so
each times its own training step: before autograd ``model.backward``, after
it ``loss.backward()``), for every model; the first epoch of each process is
a warm-up. Printed: the median ms per step over all rounds' measured epochs,
min and max, and new / old. Also times the functional array API (a case-c
conv2d and a max-pool, forward + backward, ``../house-2026-12-06/ab_step.py``).

    python ab_train.py OLD_CHECKOUT NEW_CHECKOUT --rounds 5 --json ab_train.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ENV = {"OPENBLAS_THREAD_TIMEOUT": "4"}


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(tree: pathlib.Path, args: list[str]) -> str:
    slow = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # they slow NumPy down
    env = {k: v for k, v in os.environ.items() if k not in slow}
    env.update(ENV, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=pathlib.Path)
    parser.add_argument("new", type=pathlib.Path)
    parser.add_argument("--models", default="lenet5,vgg_small")
    parser.add_argument("--dataset", default="digits28")
    parser.add_argument("--epochs", type=int, default=3, help="per process, the first a warm-up")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    steps = {}  # (model, tree) -> ms per step of each measured epoch
    ops = {"old": [], "new": []}  # functional API: [pool ms, conv ms] per round
    n_train = None
    for _ in range(args.rounds):
        for model in args.models.split(","):
            for name, tree in (("old", args.old), ("new", args.new)):
                line = run(tree, ["benchmarks/train_compare.py", "--worker", "cnnarray",
                                  "--model", model, "--dataset", args.dataset,
                                  "--epochs", str(args.epochs)])  # fmt: skip
                result = json.loads(line)
                if n_train is None:  # digits28 is digits upsampled: the same count
                    sys.path.insert(0, str(args.new))
                    from cnnarray.data import load_dataset

                    spec = "digits" if args.dataset == "digits28" else args.dataset
                    n_train = len(load_dataset(spec).y_train)
                per_epoch = math.ceil(n_train / 32)
                steps.setdefault(f"{model} {name}", []).extend(
                    1e3 * s / per_epoch for s in result["epoch_seconds"][1:]
                )
        for name, tree in (("old", args.old), ("new", args.new)):
            line = run(tree, [str(HERE.parent / "house-2026-12-06" / "ab_step.py"), name])
            ops[name].append([float(v) for v in line.split()[1:]])
    rows = []
    for model in args.models.split(","):
        old, new = steps[f"{model} old"], steps[f"{model} new"]
        rows.append((f"{model} train step", statistics.median(old), min(old), max(old),
                     statistics.median(new), min(new), max(new)))  # fmt: skip
    for i, label in enumerate(("max_pool2d fwd+bwd (arrays)", "conv2d case c fwd+bwd (arrays)")):
        old = [r[i] for r in ops["old"]]
        new = [r[i] for r in ops["new"]]
        rows.append((label, statistics.median(old), min(old), max(old),
                     statistics.median(new), min(new), max(new)))  # fmt: skip
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {args.rounds} rounds, ms")
    head = ("old median", "(min-max)", "new median", "(min-max)", "new/old")
    print(f"{'':32} {head[0]:>10} {head[1]:>15} {head[2]:>10} {head[3]:>15} {head[4]:>8}")
    for label, om, olo, ohi, nm, nlo, nhi in rows:
        print(f"{label:32} {om:10.3f} {f'({olo:.2f}-{ohi:.2f})':>15} {nm:10.3f} "
              f"{f'({nlo:.2f}-{nhi:.2f})':>15} {nm / om:8.3f}")  # fmt: skip
    if args.json:
        keys = ["case", "old_median", "old_min", "old_max", "new_median", "new_min", "new_max"]
        record = {"cpu": cpu_model(), "cores": os.cpu_count(), "rounds": args.rounds,
                  "dataset": args.dataset, "steps_ms": steps, "ops_ms": ops,
                  "rows": [dict(zip(keys, r, strict=True)) for r in rows]}  # fmt: skip
        pathlib.Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
