"""`cnnarray train` / `evaluate` of the U-Net on synthetic shapes and the 1-D CNN on signals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnarray.backend import get_backend
from cnnarray.cli import app
from cnnarray.data import load_dataset
from cnnarray.train import TrainConfig, load_model

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result, " ".join(result.output.split())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Checkpoints of a 2-epoch U-Net on 'shapes:32' and a 2-epoch 1-D CNN on 'signals:64'."""
    folder = tmp_path_factory.mktemp("tasks")
    runs = {}
    for model, dataset in (("unet_small", "shapes:32"), ("cnn1d_small", "signals:64")):
        out, doc = folder / f"{model}.safetensors", folder / f"{model}.json"
        result, text = invoke("train", "-d", "cpu", "--model", model, "--dataset", dataset,
                              "--epochs", "2", "--out", str(out), "--json", str(doc))  # fmt: skip
        runs[model] = (result, text, out, json.loads(doc.read_text()) if doc.exists() else None)
    return runs


def test_unet_trains_on_shapes_and_reports_iou(trained):
    result, text, out, doc = trained["unet_small"]
    assert result.exit_code == 0, result.output
    assert "epoch 1/2" in text and "epoch 2/2" in text
    assert "test mean IoU" in text and "pixel accuracy" in text
    assert out.exists()
    assert doc["config"]["augment"] == "none"  # shift would move images, not masks
    assert 0 <= doc["test_mean_iou"] <= 1 and 0 <= doc["test_accuracy"] <= 1
    assert doc["test_samples"] == 8  # shapes:32 -> 32 // 4 test images


def test_cnn1d_trains_on_signals_and_reports_accuracy(trained):
    result, text, out, doc = trained["cnn1d_small"]
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in text and "test accuracy" in text and "16 test signals" in text
    assert "IoU" not in text and "test_mean_iou" not in doc
    model, spec, _ = load_model(out, get_backend("cpu"))
    assert spec["input_shape"] == [1, 128] and spec["preprocess"] is None


@pytest.mark.parametrize("model", ["unet_small", "cnn1d_small"])
def test_evaluate_reads_the_checkpoint_and_gives_the_same_numbers(trained, model):
    _, _, out, doc = trained[model]
    result, text = invoke("evaluate", str(out), "-d", "cpu")
    assert result.exit_code == 0, result.output
    assert f"pixel accuracy {100 * doc['test_accuracy']:.2f}%" in text or (
        f"test accuracy {100 * doc['test_accuracy']:.2f}%" in text
    )
    if model == "unet_small":
        assert f"test mean IoU {doc['test_mean_iou']:.4f}" in text
        assert "/8192 pixels" in text  # 8 masks of 32 x 32, counted per pixel


@pytest.mark.parametrize("model", ["unet_small", "cnn1d_small"])
def test_predict_refuses_them_in_one_line(trained, model, tmp_path):
    _, _, out, _ = trained[model]
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    for dask in ([], ["--dask"]):
        result, text = invoke("predict", str(out), str(image), "-d", "cpu", *dask)
        assert result.exit_code == 2, result.output
        assert f"predict takes image classifiers; {out} holds {model}" in text


@pytest.mark.parametrize(
    ("model", "dataset", "needs"),
    [
        ("unet_small", "digits", "images (N, C, H, W) with a class mask (N, H, W)"),
        ("cnn1d_small", "shapes:8", "1-D signals (N, C, L)"),
        ("small_cnn", "signals:8", "images (N, C, H, W) with one class label"),
        ("small_cnn", "shapes:8", "images (N, C, H, W) with one class label"),
    ],
)
def test_a_model_dataset_mismatch_is_one_clear_error(tmp_path, model, dataset, needs):
    out = tmp_path / "m.safetensors"
    result, text = invoke("train", "-d", "cpu", "--model", model, "--dataset", dataset,
                          "--epochs", "1", "--out", str(out))  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"error: model {model} needs {needs}" in text
    assert not out.exists()


@pytest.mark.parametrize("augment", ["shift", "flip", "none,crop"])
def test_moving_augmentations_are_refused_for_masks_and_signals(tmp_path, augment):
    out = tmp_path / "m.safetensors"
    result, text = invoke("train", "-d", "cpu", "--model", "unet_small", "--dataset", "shapes:8",
                          "--augment", augment, "--out", str(out))  # fmt: skip
    assert result.exit_code == 2
    assert "augment must be 'none' for unet_small" in text
    with pytest.raises(ValueError, match="augment must be 'none' for cnn1d_small"):
        TrainConfig(model="cnn1d_small", augment=augment).validate()


def test_the_synthetic_dataset_specs():
    shapes = load_dataset("shapes:12")
    assert shapes.x_train.shape == (12, 1, 32, 32) and shapes.y_train.shape == (12, 32, 32)
    assert len(shapes.y_test) == 3 and shapes.input_shape == (1, 32, 32)
    signals = load_dataset("signals:8")
    assert signals.input_shape == (1, 128) and len(signals.y_test) == 2
    assert "signal=(1, 128)" in repr(signals)
    assert len(load_dataset("signals").y_train) == 1024
    for bad in ("shapes:x", "signals:3", "shapes:"):
        with pytest.raises(ValueError, match="needs N, the number of training samples"):
            load_dataset(bad)
