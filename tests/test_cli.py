"""The Typer app, driven through CliRunner: exit codes, output and the files it writes."""

from __future__ import annotations

import json
import re

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


def test_predict_reads_image_files(trained, tmp_path):
    _, model, _ = trained
    image = tmp_path / "digit.png"
    Image.fromarray(np.full((16, 16), 200, np.uint8)).save(image)
    result = invoke("predict", str(model), str(image), "-d", "cpu", "-k", "2")
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
