"""benchmarks/train_compare.py and its modules: the PyTorch twins, the measuring worker,
the targets table, and a --quick run of one part (skipped without torch)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench_modules():
    """benchmarks/ on sys.path (its scripts import each other by name) for this module."""
    sys.path.insert(0, str(BENCHMARKS))
    import speed
    import targets
    import twins

    yield speed, targets, twins
    sys.path.remove(str(BENCHMARKS))


def _row(model, c, size, batch, ratio, **extra):
    return {"model": model, "input": [c, size, size], "batch": batch, "ratio": ratio, **extra}


def test_targets_rows_hold_each_measured_ratio_against_its_limit(bench_modules) -> None:
    _, targets, _ = bench_modules
    accuracy = {"model": "lenet5", "dataset": "digits28", "epochs": 15, "accuracy_gap_points": -0.4,
                "cnnarray": {"test_accuracy_per_seed": [0.9] * 5}}  # fmt: skip
    doc = {
        "steps": [
            _row("lenet5", 1, 28, 32, 1.01),
            _row("vgg_small", 3, 32, 32, 1.29),
            _row("resnet20", 3, 32, 32, 1.31),
        ],  # fmt: skip
        "inference": [_row("lenet5", 1, 28, 128, 0.99)],
        "memory": [_row("vgg_small", 3, 32, 32, 1.5)],
        "layers": {"records": [{"case": "b", "mode": "fwd+bwd", "ratio": None}]},
        "accuracy": [accuracy],
    }
    rows = targets.targets(doc)
    met = {r["target"]: r["met"] for r in rows}
    assert met == {
        "training step lenet5 28x28x1 b32": False,  # limit 1.0
        "training step vgg_small 32x32x3 b32": True,  # limit 1.3
        "training step resnet20 32x32x3 b32": False,
        "inference lenet5 28x28x1 b128": True,
        "peak memory vgg_small 32x32x3 b32": True,  # the limit itself is met
        "layer case b fwd+bwd": False,  # not measured is not met
        "accuracy lenet5 digits28 (5 seeds, 15 epochs)": False,  # |-0.4| > 0.3
    }
    table = targets.targets_table(rows)
    assert "3 of 7 met" in table and "| -0.40 points | |gap| <= 0.3 | NOT met |" in table


def test_summary_gives_median_and_quartiles_in_ms(bench_modules) -> None:
    _, targets, _ = bench_modules
    s = targets.summary([0.004, 0.001, 0.003, 0.002, 0.005])
    assert (s["median_ms"], s["q1_ms"], s["q3_ms"], s["n"]) == pytest.approx((3, 2, 4, 5))
    assert s["iqr_ms"] == pytest.approx(2)


@pytest.mark.parametrize("model, channels, size", [("lenet5", 1, 28), ("vgg_small", 1, 28),
                                                   ("resnet20", 3, 32)])  # fmt: skip
def test_torch_twin_takes_cnnarray_weights_and_computes_the_same(
    bench_modules, model, channels, size
) -> None:
    torch = pytest.importorskip("torch")
    speed, _, twins = bench_modules
    data = speed.random_split(channels, size, 4, seed=0)
    weights = speed.initial_weights(model, data, seed=0)
    ours = speed.CnnarrayRunner(threads=1).model(model, data, weights)
    theirs = twins.TORCH_MODELS[model](torch, data)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})  # strict
    for train in (True, False):
        ours.train(train)
        theirs.train(train)
        with torch.no_grad():
            expected = theirs(torch.from_numpy(data.x_test)).numpy()
        np.testing.assert_allclose(np.asarray(ours(data.x_test)), expected, atol=1e-5)


def test_step_peak_bytes_cover_the_activations(bench_modules) -> None:
    # LeNet-5's first convolution alone outputs 8 x 6 x 28 x 28 float32 values: a step's
    # peak must hold them (and its ReLU's output), in both frameworks' accounts.
    pytest.importorskip("torch")
    speed, _, _ = bench_modules
    data = speed.random_split(1, 28, 8, seed=0)
    weights = speed.initial_weights("lenet5", data, seed=0)
    idx = np.arange(8)
    for runner in (speed.CnnarrayRunner(threads=1), speed.TorchRunner(threads=1)):
        step = runner.train_step("lenet5", data, weights, lr=1e-3)
        step(idx)
        peak = runner.step_peak_bytes(step, idx)
        assert 2 * 8 * 6 * 28 * 28 * 4 < peak < 2**24, (runner.name, peak)


def test_quick_run_prints_the_ratios_and_writes_the_json(tmp_path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "h16.json"
    cmd = [sys.executable, str(BENCHMARKS / "train_compare.py"), "--quick", "--only", "steps",
           "--models", "lenet5", "--threads", "1", "--json", str(out)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    doc = json.loads(out.read_text())
    assert doc["parts"] == ["steps"] and doc["quick"] and doc["machine"]["cpu"]
    assert [(r["model"], r["batch"]) for r in doc["steps"]] == [("lenet5", 32), ("lenet5", 128)]
    for row in doc["steps"]:
        assert row["cnnarray"]["n"] == row["torch"]["n"] == 5
        assert row["ratio"] == pytest.approx(
            row["cnnarray"]["median_ms"] / row["torch"]["median_ms"]
        )
    assert doc["machine"]["worker_threads"]["torch"]["torch"] == 1
    assert [t["target"] for t in doc["targets"]] == [
        "training step lenet5 28x28x1 b32",
        "training step lenet5 28x28x1 b128",
    ]
    assert "Targets of issue 16:" in run.stdout and "| lenet5 28x28x1 b128 |" in run.stdout


def test_timing_table_marks_a_noisy_timing(bench_modules) -> None:
    _, targets, _ = bench_modules
    quiet, noisy = targets.summary([0.010, 0.010, 0.011]), targets.summary([0.01, 0.02, 0.04])
    table = targets.timing_table([_row("lenet5", 1, 28, 32, 0.5, cnnarray=quiet, torch=noisy)],
                                 "Time per training step")  # fmt: skip
    assert "| lenet5 28x28x1 b32 | 10.00 (0.50) | 20.00 (15.00) * | 0.50 |" in table
    assert "* noisy" in table
