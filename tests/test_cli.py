"""The Typer app, driven through CliRunner: exit codes, output and the files it writes."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
from helpers import CUDA_REASON
from PIL import Image
from typer.testing import CliRunner

from cnnarray.backend import describe_device, parse_device
from cnnarray.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_info_lists_the_backends():
    result = invoke("info")
    assert result.exit_code == 0, result.output
    assert "backend cpu" in result.output and "backend cuda" in result.output
    assert "BLAS" in result.output


def test_check_on_the_cpu_passes_every_op():
    result = invoke("check", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert re.search(r"all \d+ checks passed on cpu", result.output), result.output
    assert "FAIL" not in result.output


@pytest.mark.skipif(CUDA_REASON is None, reason="a CUDA device answers here")
def test_check_on_cuda_without_a_gpu_fails_with_one_line():
    result = invoke("check", "--device", "cuda")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --device cuda:"), result.output


def test_unknown_device_is_a_usage_error():
    result = invoke("check", "--device", "tpu")
    assert result.exit_code == 2
    assert "expected cpu, cuda, cuda:N or auto" in result.output


@pytest.mark.parametrize(
    ("value", "canonical"),
    [("cpu", "cpu"), ("NumPy", "cpu"), (" auto ", "auto"), ("cuda", "cuda"), ("gpu", "cuda"),
     ("cupy:1", "cuda:1"), ("CUDA:01", "cuda:1")],
)  # fmt: skip
def test_parse_device_returns_the_canonical_name(value, canonical):
    assert parse_device(value) == canonical


@pytest.mark.parametrize("value", ["tpu", "", "cpu:0", "auto:1", "cuda:", "cuda:x", "cuda:-1",
                                   "cuda:\u00b2"])  # fmt: skip
def test_parse_device_refuses_a_bad_spelling(value):
    with pytest.raises(ValueError, match=r"expected cpu, cuda, cuda:N or auto, got"):
        parse_device(value)
    assert invoke("check", "--device", value).exit_code == 2


def test_describe_device_on_the_cpu():
    facts = describe_device("cpu")
    assert isinstance(facts["name"], str) and facts["name"] and facts["memory_gib"] is None


@pytest.mark.skipif(CUDA_REASON is not None, reason=f"needs a CUDA device: {CUDA_REASON}")
def test_describe_device_names_the_gpu_and_its_memory():
    facts = describe_device("cuda:0")
    assert facts["name"] and facts["memory_gib"] > 0
    result = invoke("info")
    assert f"{facts['name']}, {facts['memory_gib']:.1f} GiB" in result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained for two epochs on the digits, with its JSON metrics."""
    folder = tmp_path_factory.mktemp("train")
    model, metrics = folder / "m.safetensors", folder / "m.json"
    result = invoke("train", "-d", "cpu", "--epochs", "2", "--out", str(model),
                    "--json", str(metrics), "--plot", str(folder / "curves.png"))  # fmt: skip
    assert result.exit_code == 0, result.output
    return folder, model, json.loads(metrics.read_text())


def test_train_writes_checkpoint_metrics_and_plot(trained):
    folder, model, metrics = trained
    assert model.stat().st_size > 0
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["epochs"] == 2
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    with Image.open(folder / "curves.png") as png:
        assert png.format == "PNG"


def test_train_resume_continues_the_epoch_count(trained, tmp_path):
    _, model, _ = trained
    out = tmp_path / "resumed.safetensors"
    result = invoke("train", "-d", "cpu", "--resume", str(model), "--epochs", "3",
                    "--out", str(out), "--json", str(tmp_path / "r.json"))  # fmt: skip
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "r.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_evaluate_reports_the_saved_accuracy(trained, tmp_path):
    _, model, metrics = trained
    result = invoke("evaluate", str(model), "-d", "cpu", "--plot", str(tmp_path / "cm.png"))
    assert result.exit_code == 0, result.output
    assert f"test accuracy {100 * metrics['test_accuracy']:.2f}%" in result.output
    assert (tmp_path / "cm.png").exists()


def test_predict_reads_image_files(trained, tmp_path, monkeypatch):
    _, model, _ = trained
    Image.fromarray(np.full((16, 16), 200, np.uint8)).save(tmp_path / "digit.png")
    monkeypatch.chdir(tmp_path)  # a short name: the table folds long paths to its width
    result = invoke("predict", str(model), "digit.png", "-d", "cpu", "-k", "2")
    assert result.exit_code == 0, result.output
    assert "digit.png" in result.output and "%" in result.output


def test_predict_refuses_a_file_that_is_not_an_image(trained, tmp_path):
    _, model, _ = trained
    bogus = tmp_path / "notes.png"
    bogus.write_text("not an image")
    result = invoke("predict", str(model), str(bogus), "-d", "cpu")
    assert result.exit_code == 2
    assert "not a readable image" in result.output


def test_demo_and_predict_refuse_a_missing_image(trained, tmp_path):
    _, model, _ = trained
    missing = tmp_path / "missing.png"
    for args in (("demo", str(missing)), ("predict", str(model), str(missing))):
        result = invoke(*args, "-d", "cpu")
        assert result.exit_code == 2
        assert "does not exist" in result.output


def test_a_tampered_checkpoint_is_refused(trained, tmp_path):
    _, model, _ = trained
    data = bytearray(model.read_bytes())
    data[-5] ^= 0xFF  # flip bits in the tensor data
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    result = invoke("evaluate", str(bad), "-d", "cpu")
    assert result.exit_code == 2
    assert "bad.safetensors" in result.output


def test_demo_and_visualize_write_pngs(trained, tmp_path):
    _, model, _ = trained
    result = invoke("demo", "-d", "cpu", "--stride", "2", "--out", str(tmp_path / "demo.png"))
    assert result.exit_code == 0, result.output
    assert "(5, 255, 255)" in result.output  # 5 filters, 512 -> 255 with stride 2
    assert "(5, 127, 127)" in result.output  # after 2x2 pooling
    result = invoke("visualize", str(model), "-d", "cpu", "--out", str(tmp_path / "vis.png"))
    assert result.exit_code == 0, result.output
    for name in ("demo.png", "vis.png"):
        with Image.open(tmp_path / name) as png:
            assert png.format == "PNG" and png.size[0] > 100


def test_bench_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = invoke("bench", "-d", "cpu", "--cases", "tiny", "--compare", "naive",
                    "--repeat", "3", "--rounds", "2", "--json", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    records = results["records"]
    assert {r["peer"] for r in records} == {"cnnarray", "naive"}
    assert all(r["status"] == "ok" and r["median_s"] > 0 for r in records)
    assert results["metadata"]["rounds"] == 2
    assert {r["peer"]: r["rounds"] for r in records} == {"cnnarray": 2, "naive": 1}


def test_bench_slow_limit_skips_the_slow_peers(tmp_path):
    out = tmp_path / "bench.json"
    result = invoke("bench", "-d", "cpu", "--cases", "tiny", "--compare", "naive",
                    "--repeat", "3", "--rounds", "1", "--slow-limit", "0",
                    "--json", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    naive = [r for r in json.loads(out.read_text())["records"] if r["peer"] == "naive"]
    assert naive and all(r["status"].startswith("skipped: too slow") for r in naive)


def test_bench_rejects_an_unknown_case():
    result = invoke("bench", "-d", "cpu", "--cases", "zzz")
    assert result.exit_code == 2


def test_bench_passes_seed_budget_and_thread_timeout(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    out = tmp_path / "bench.json"
    result = invoke("bench", "-d", "cpu", "--cases", "tinymatmul", "--compare", "",
                    "--repeat", "9", "--rounds", "1", "--seed", "5", "--budget", "0",
                    "--thread-timeout", "None", "--json", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    meta = results["metadata"]
    assert (meta["seed"], meta["budget_s"], meta["worker_env"]["set"]) == (5, 0.0, {})
    (record,) = results["records"]
    assert record["status"] == "ok" and record["repeats"] == 3  # the budget's floor, not 9


@pytest.mark.parametrize(
    ("value", "message"),
    [("2", "thread_timeout must be an int from 4 to 30, got 2"), ("x", "or 'none', got 'x'")],
)
def test_bench_rejects_a_bad_thread_timeout(value, message):
    result = invoke("bench", "-d", "cpu", "--cases", "tiny", "--thread-timeout", value)
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())


def test_ctrl_c_saves_the_last_finished_epoch(monkeypatch, tmp_path):
    from cnnarray import train as training

    real_fit = training.fit

    def interrupted_fit(state, data, backend, callbacks=None, epochs=None):
        real_fit(state, data, backend, callbacks, epochs=1)  # one epoch, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "fit", interrupted_fit)
    out = tmp_path / "interrupted.safetensors"
    result = invoke("train", "-d", "cpu", "--epochs", "5", "--out", str(out))
    assert result.exit_code == 130
    assert "saved epoch 1" in result.output
    monkeypatch.setattr(training, "fit", real_fit)
    resumed = tmp_path / "resumed.safetensors"
    result = invoke("train", "-d", "cpu", "--resume", str(out), "--epochs", "2",
                    "--out", str(resumed), "--json", str(tmp_path / "r.json"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    assert len(json.loads((tmp_path / "r.json").read_text())["history"]) == 2


def test_paths_expand_tilde_and_variables(tmp_path, monkeypatch) -> None:
    # The shell does not expand ~ after "mnist:" nor inside quotes; the CLI does, everywhere.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CNNARRAY_TEST_OUT", "runs")
    (tmp_path / "runs").mkdir()
    out = "~/$CNNARRAY_TEST_OUT/m.safetensors"
    result = invoke("train", "-d", "cpu", "--epochs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "m.safetensors").is_file()
    result = invoke("evaluate", "~/runs/m.safetensors", "-d", "cpu")
    assert result.exit_code == 0, result.output
    result = invoke("train", "-d", "cpu", "--epochs", "1", "--dataset", "mnist:~/nowhere")
    assert result.exit_code != 0
    assert f"~/nowhere (= {tmp_path / 'nowhere'})" in " ".join(result.output.split())


# -- train: resume, safety, validation, options, progress (issue 15) ----------


def _tensors(path):
    from cnnarray.io import load_checkpoint

    return load_checkpoint(path)[0]


def test_resume_writes_back_to_the_resumed_file(trained, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run.safetensors"
    shutil.copy(trained[1], run)
    result = invoke("train", "-d", "cpu", "--resume", str(run), "--epochs", "3")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "model.safetensors").exists()  # nothing else overwritten
    assert f"saved{run}" in "".join(result.output.split())  # the console wraps long paths
    from cnnarray.io import load_checkpoint

    assert load_checkpoint(run)[2]["epoch"] == 3


def test_resume_refuses_options_that_differ_from_the_saved_run(trained):
    _, model, _ = trained
    result = invoke("train", "-d", "cpu", "--resume", str(model), "--epochs", "3",
                    "--model", "lenet5", "--batch-size", "32", "--lr", "0.01")  # fmt: skip
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "--model lenet5 (saved: small_cnn), --batch-size 32 (saved: 16)" in text, text
    assert "--lr" not in text.split("differ from the saved run")[1]  # a new lr is applied
    result = invoke("train", "-d", "cpu", "--resume", str(model), "--epochs", "1")
    assert result.exit_code == 2
    assert "epochs must be at least the 2 epochs already done" in " ".join(result.output.split())


def test_an_interrupted_and_resumed_run_equals_an_uninterrupted_one(monkeypatch, tmp_path):
    from cnnarray import train as training

    straight = tmp_path / "straight.safetensors"
    args = ("train", "-d", "cpu", "--epochs", "2", "--model", "lenet5")
    assert invoke(*args, "--out", str(straight)).exit_code == 0
    real_fit = training.fit

    def fit_stopped_in_epoch_2(state, data, backend, callbacks=None, epochs=None):
        inner = callbacks.on_batch

        def on_batch(i, loss, acc):
            inner(i, loss, acc)
            if state.epoch == 1 and i == 5:
                raise KeyboardInterrupt  # Ctrl-C in the middle of the second epoch

        callbacks.on_batch = on_batch
        return real_fit(state, data, backend, callbacks, epochs)

    monkeypatch.setattr(training, "fit", fit_stopped_in_epoch_2)
    halted = tmp_path / "halted.safetensors"
    result = invoke(*args, "--out", str(halted))
    assert result.exit_code == 130
    text = " ".join(result.output.split())
    assert f"saved epoch 1 to {halted}; continue with: cnnarray train --resume {halted}" in text
    monkeypatch.setattr(training, "fit", real_fit)
    result = invoke("train", "-d", "cpu", "--resume", str(halted))
    assert result.exit_code == 0, result.output
    expected, actual = _tensors(straight), _tensors(halted)
    assert expected.keys() == actual.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


def test_ctrl_c_in_the_first_epoch_saves_the_initial_model(monkeypatch, tmp_path):
    from cnnarray import train as training

    real_fit = training.fit

    def fit_stopped_at_once(state, data, backend, callbacks=None, epochs=None):
        def on_batch(i, loss, acc):
            raise KeyboardInterrupt

        callbacks.on_batch = on_batch
        return real_fit(state, data, backend, callbacks, epochs)

    monkeypatch.setattr(training, "fit", fit_stopped_at_once)
    out = tmp_path / "m.safetensors"
    result = invoke("train", "-d", "cpu", "--epochs", "3", "--out", str(out))
    assert result.exit_code == 130
    assert "saved epoch 0" in result.output and "--resume" in result.output
    assert out.is_file()


@pytest.mark.parametrize("option", ["--out", "--plot", "--json"])
def test_a_bad_output_path_fails_before_training(option, tmp_path):
    target = tmp_path / "missing" / "file"
    result = invoke("train", "-d", "cpu", "--epochs", "1", option, str(target))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {option}: cannot write {target}: folder {target.parent} does "
                     "not exist"], result.output  # fmt: skip


def test_an_output_folder_without_permission_fails_before_training(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = invoke("train", "-d", "cpu", "--epochs", "1", "--out", str(locked / "m.st"))
    assert result.exit_code == 2
    assert "no permission to write in folder" in result.output
    assert "training" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [(("--lr", "inf"), "lr must be a finite positive number, got inf"),
     (("--lr", "nan"), "lr must be a finite positive number, got nan"),
     (("--lr", "0"), "lr must be a finite positive number, got 0.0"),
     (("--weight-decay", "-1"), "weight_decay must be a finite non-negative number, got -1.0"),
     (("--weight-decay", "inf"), "weight_decay must be a finite non-negative number, got inf"),
     (("--val-split", "1"), "val_split must be a number in [0, 1), got 1.0"),
     (("--val-split", "0", "--save-best"), "--save-best needs a validation set")],
)  # fmt: skip
def test_bad_training_numbers_are_one_line(args, message):
    result = invoke("train", "-d", "cpu", "--epochs", "1", *args)
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {message}" or message in result.output, result.output
    assert "training" not in result.output


def test_train_options_reach_the_saved_config(tmp_path):
    out = tmp_path / "m.safetensors"
    result = invoke("train", "-d", "cpu", "--epochs", "1", "--optimizer", "sgd", "--momentum",
                    "0.8", "--label-smoothing", "0.1", "--val-split", "0.2", "--out", str(out),
                    "--save-every", "1", "--save-best", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    from cnnarray.io import load_checkpoint

    config = load_checkpoint(out)[2]["config"]
    assert (config["optimizer"], config["lr"], config["momentum"]) == ("sgd", 0.05, 0.8)
    assert (config["label_smoothing"], config["val_split"]) == (0.1, 0.2)
    assert (tmp_path / "m.best.safetensors").is_file()
    # --quiet: the result line only
    assert result.output.startswith("test accuracy") and "epoch 1/1:" not in result.output


def test_train_prints_each_epoch_once_and_a_table_for_80_columns(tmp_path):
    result = runner.invoke(app, ["train", "-d", "cpu", "--epochs", "2", "--model", "lenet5",
                                 "--log-every", "40", "--out", str(tmp_path / "m.st")],
                           env={"COLUMNS": "80"})  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for epoch in (1, 2):
        summary = [line for line in lines if line.startswith(f"epoch {epoch}/2: train loss")]
        assert len(summary) == 1 and "val loss" in summary[0], result.output
        assert any(line.startswith(f"epoch {epoch}/2 batch 40/") for line in lines)
    assert all(len(line) <= 80 for line in lines), result.output
    assert "…" not in result.output and "val acc" in result.output
    assert "test images, measured once after 2 epochs" in " ".join(result.output.split())


def test_train_log_dir_writes_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboardX", reason="tensorboardX is an optional extra")
    result = invoke("train", "-d", "cpu", "--epochs", "1", "--model", "lenet5", "--out",
                    str(tmp_path / "m.st"), "--log-dir", str(tmp_path / "runs" / "a"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert any(p.name.startswith("events.") for p in (tmp_path / "runs" / "a").iterdir())


def test_train_log_dir_without_a_writer_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if neither were installed
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    result = invoke("train", "-d", "cpu", "--epochs", "1", "--out", str(tmp_path / "m.st"),
                    "--log-dir", str(tmp_path / "runs"))  # fmt: skip
    assert result.exit_code == 2
    assert "pip install 'cnnarray[tensorboard]'" in result.output
    assert not (tmp_path / "m.st").exists()
