"""Issue 19 item 8: user-controlled strings print as text, never as Rich markup.

A file name or class name holding ``[/]`` used to crash ``predict`` and
``evaluate`` with a MarkupError, and ``[bold]`` vanished from the output. Paths
here hold ``[/]`` by spanning a folder: ``x[`` / ``]y.png`` is the path ``x[/]y.png``.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnarray import io
from cnnarray.cli import app

runner = CliRunner()
CLASSES = ["[bold]zero", "one[/]", *[str(i) for i in range(2, 10)]]


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "400"})


def flat(output: str) -> str:
    return " ".join(output.replace("│", " ").replace("┃", " ").split())


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A digits checkpoint whose file and class names are markup, and an image named so too."""
    root = tmp_path_factory.mktemp("markup")
    plain = root / "plain.safetensors"
    result = invoke("train", "-d", "cpu", "--epochs", "1", "--quiet", "--out", str(plain))
    assert result.exit_code == 0, result.output
    tensors, spec, metadata = io.load_checkpoint(plain)
    spec["classes"] = CLASSES
    (root / "m[").mkdir()
    model = root / "m[" / "][bold]m.safetensors"
    io.save_checkpoint(model, tensors, spec, metadata)
    (root / "x[").mkdir()
    image = root / "x[" / "]y[bold].png"
    Image.fromarray((np.eye(8) * 255).astype(np.uint8)).resize((32, 32)).save(image)
    return model, image


def test_predict_prints_file_and_class_names_as_written(hostile):
    model, image = hostile
    result = invoke("predict", str(model), str(image), "-d", "cpu", "--top", "10")
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "][bold]m.safetensors" in text
    assert str(image) in text
    assert "[bold]zero (" in text and "one[/] (" in text


def test_evaluate_prints_file_and_class_names_as_written(hostile):
    model, _ = hostile
    result = invoke("evaluate", str(model), "-d", "cpu", "--dataset", "digits")
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "][bold]m.safetensors on digits" in text
    assert "[bold]zero" in text and "one[/]" in text


def test_train_prints_paths_and_dataset_as_written(tmp_path):
    data = tmp_path / "d[" / "]s[bold]"
    rng = np.random.default_rng(0)
    for label in ("[bold]a", "b[red]"):
        (data / label).mkdir(parents=True)
        for i in range(5):
            pixels = rng.integers(0, 255, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(data / label / f"[i]{i}.png")
    (tmp_path / "o[").mkdir()
    out = tmp_path / "o[" / "][bold]m.safetensors"
    result = invoke("train", "-d", "cpu", "--epochs", "1", "--dataset", f"folder:{data}",
                    "--out", str(out), "--val-split", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert f"saved {out}" in text
    assert "]s[bold]" in text  # the dataset's name: its folder
    classes = io.load_checkpoint(out)[1]["classes"]
    assert classes == ["[bold]a", "b[red]"]


def test_an_error_naming_a_markup_path_prints_it_as_written(tmp_path):
    missing = tmp_path / "n[" / "][bold]missing.safetensors"
    result = invoke("evaluate", str(missing), "-d", "cpu")
    assert result.exit_code != 0
    assert "][bold]missing.safetensors" in flat(result.output)
