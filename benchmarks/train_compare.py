"""Train the same network with cnnarray and with PyTorch, side by side.

Same architecture (``--model``: LeNet-5 by default, or the VGG-style
``vgg_small`` with batch normalisation), same initial weights (PyTorch's
copied from cnnarray's, names and all), same data, same order of
mini-batches, same optimiser (Adam) and epochs, no augmentation. Each
framework trains in its own process with ``OPENBLAS_THREAD_TIMEOUT=4`` (see
benchmarks/README.md) and the same number of threads; reported are the test
accuracy after the last epoch and the median time per epoch.

Datasets: ``digits`` (scikit-learn's 8x8 digits), ``digits28`` (the same
images upsampled to 28x28 with bilinear interpolation: a stand-in for MNIST
on a machine that cannot download it), or any ``cnnarray train --dataset``
spec such as ``mnist:DIR``.

    python benchmarks/train_compare.py --dataset digits --dataset digits28 \\
        --epochs 15 --json benchmarks/results/train-compare.json
    python benchmarks/train_compare.py --model vgg_small --dataset digits28 \\
        --epochs 10 --json benchmarks/results/train-compare-vgg.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

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


def torch_lenet5(torch, data):
    c, h, _ = data.input_shape
    pad1 = 0 if h >= 32 else 2
    size1 = (h + 2 * pad1 - 4) // 2
    pad2 = 0 if size1 >= 10 else 2
    size2 = (size1 + 2 * pad2 - 4) // 2
    return torch.nn.Sequential(
        torch.nn.Conv2d(c, 6, 5, padding=pad1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5, padding=pad2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(16 * size2 * size2, 120), torch.nn.ReLU(),
        torch.nn.Linear(120, 84), torch.nn.ReLU(), torch.nn.Linear(84, data.num_classes),
    )  # fmt: skip


def torch_vgg_small(torch, data):
    """cnnarray.nn.vgg_small's defaults, layer for layer (so the parameter names match)."""
    from collections import OrderedDict

    channels, size, _ = data.input_shape
    features = []
    for width in (32, 64, 128):
        for _ in range(2):
            features += [torch.nn.Conv2d(channels, width, 3, padding=1, bias=False),
                         torch.nn.BatchNorm2d(width), torch.nn.ReLU()]  # fmt: skip
            channels = width
        features.append(torch.nn.MaxPool2d(2))
    size //= 8
    classifier = [torch.nn.Flatten(), torch.nn.Linear(channels * size * size, 256),
                  torch.nn.ReLU(), torch.nn.Linear(256, data.num_classes)]  # fmt: skip
    parts = {"features": features, "classifier": classifier}
    return torch.nn.Sequential(OrderedDict((k, torch.nn.Sequential(*v)) for k, v in parts.items()))


# The PyTorch twin of each cnnarray model, built layer for layer.
TORCH_MODELS = {"lenet5": torch_lenet5, "vgg_small": torch_vgg_small}


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
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def worker(args) -> None:
    data, weights = data_and_weights(args)
    run = run_cnnarray if args.worker == "cnnarray" else run_torch
    accuracy, times = run(args, data, weights)
    print(json.dumps({"accuracy": accuracy, "epoch_seconds": times}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", action="append", help="digits, digits28 or a train spec")
    parser.add_argument("--model", default="lenet5", choices=["lenet5", "vgg_small"])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=3, help="runs per framework, seeds averaged")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--worker", choices=["cnnarray", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.dataset = args.dataset[0]
        worker(args)
        return
    results = []
    for dataset in args.dataset or ["digits", "digits28"]:
        row = {"dataset": dataset, "model": args.model, "epochs": args.epochs,
               "batch_size": args.batch_size, "lr": args.lr, "optimizer": "adam"}  # fmt: skip
        for framework in ("cnnarray", "torch"):
            accuracies, epoch_seconds = [], []
            for seed in range(args.seed, args.seed + args.seeds):
                options = ["--dataset", dataset, "--model", args.model,
                           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                           "--lr", str(args.lr), "--seed", str(seed),
                           "--threads", str(args.threads)]  # fmt: skip
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
        print(f"{dataset}: cnnarray {100 * row['cnnarray']['test_accuracy']:.2f}% "
              f"{row['cnnarray']['median_epoch_s']:.3f} s/epoch | torch "
              f"{100 * row['torch']['test_accuracy']:.2f}% "
              f"{row['torch']['median_epoch_s']:.3f} s/epoch | time ratio "
              f"{row['time_ratio']:.2f}, accuracy gap "
              f"{row['accuracy_gap_points']:+.2f} points")  # fmt: skip
    if args.json:
        from cnnarray.io import atomic_write_bytes

        doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
               "threads": args.threads, "seeds": args.seeds, "results": results}  # fmt: skip
        atomic_write_bytes(args.json, json.dumps(doc, indent=2).encode())


if __name__ == "__main__":
    main()
