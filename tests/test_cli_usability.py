"""The command line as a user meets it: help text, one-line errors, figures and reports.

Kept apart from test_cli.py, which covers what each command computes.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image
from rich.text import Text
from typer.main import get_command
from typer.testing import CliRunner

from cnnarray import __version__, plots
from cnnarray.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def flat(output: str) -> str:
    """The output with Rich's box characters and line breaks folded into single spaces."""
    return " ".join(output.replace("│", " ").split())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained for one epoch on the digits, and what `train` printed."""
    folder = tmp_path_factory.mktemp("usability")
    model = folder / "m.safetensors"
    result = invoke("train", "-d", "cpu", "--epochs", "1", "--out", str(model),
                    "--json", str(folder / "m.json"))  # fmt: skip
    assert result.exit_code == 0, result.output
    return model, json.loads((folder / "m.json").read_text()), result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"cnnarray {__version__}"


def printed_as_written(text: str) -> bool:
    """Whether Rich prints ``text`` whole: markup eats ``[default: ...]`` unless escaped."""
    return Text.from_markup(text).plain == text.replace("\\[", "[")


COMMANDS = ["", *get_command(app).commands]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help_that_rich_prints_as_written(name):
    group = get_command(app)
    command = group.commands[name] if name else group
    assert printed_as_written(command.help), name
    for param in command.params:
        if param.name == "help":
            continue
        text = getattr(param, "help", None)
        assert text, f"{name} {param.name} has no help text"
        assert printed_as_written(text), f"{name} {param.name}: {text!r}"
    if name == "train":
        result = invoke("train", "--help")
        assert result.exit_code == 0
        assert "60, or as saved with --resume" in flat(result.output)


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch):
    import cnnarray.check

    def broken(*args, **kwargs):
        raise RuntimeError("something broke\nover two lines")

    monkeypatch.setattr(cnnarray.check, "run_checks", broken)
    result = invoke("check", "-d", "cpu")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: RuntimeError: something broke over two lines "
                     "(cnnarray --debug ... shows the traceback)"]  # fmt: skip
    result = invoke("--debug", "check", "-d", "cpu")
    assert isinstance(result.exception, RuntimeError)


def test_an_output_folder_without_write_permission_is_named(monkeypatch, tmp_path):
    import os

    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: path != tmp_path and real_access(path, mode)
    )
    result = invoke("demo", "-d", "cpu", "--out", str(tmp_path / "d.png"))
    assert result.exit_code == 2, result.output
    assert f"cannot write {tmp_path / 'd.png'}: no permission to write in {tmp_path}" in flat(
        result.output
    )


def test_evaluate_checks_the_plot_path_before_computing(trained, monkeypatch, tmp_path):
    from cnnarray import train as training

    def not_called(*args, **kwargs):
        raise AssertionError("evaluate computed before checking --plot")

    monkeypatch.setattr(training, "evaluate", not_called)
    model, _, _ = trained
    for option, path, message in [
        ("--plot", "/nonexistent/dir/c.png", "folder /nonexistent/dir does not exist"),
        ("--plot", str(tmp_path), "it is a directory; expected a file name"),
        ("--plot", str(tmp_path / "c.bmp"), "cannot tell the image format of"),
        ("--json", "/nonexistent/dir/e.json", "folder /nonexistent/dir does not exist"),
    ]:
        result = invoke("evaluate", str(model), "-d", "cpu", option, path)
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '{option}'" in flat(result.output)
        assert message in flat(result.output)


@pytest.mark.parametrize(
    ("args", "message"),
    [(("--stride", "600"), "stride 600 leaves 1x1 maps of the 512x512 image, smaller than the "
                           "2x2 pool: expected a stride of at most 509 with pool 2"),
     (("--pool", "1000"), "pool 1000 is larger than the 510x510 maps the 3x3 conv with stride 1 "
                          "leaves of the 512x512 image: expected a pool of at most 510")],
)  # fmt: skip
def test_demo_refuses_a_stride_or_pool_that_leaves_nothing_to_pool(args, message, tmp_path):
    result = invoke("demo", "-d", "cpu", *args, "--out", str(tmp_path / "d.png"))
    assert result.exit_code == 2, result.output
    assert message in flat(result.output)
    assert not (tmp_path / "d.png").exists()


def test_predict_refuses_an_image_over_pillows_pixel_limit(trained, tmp_path, monkeypatch):
    from PIL import Image as PILImage

    image = tmp_path / "huge.png"
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(image)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # 900 pixels: over twice the limit
    model, _, _ = trained
    result = invoke("predict", str(model), str(image), "-d", "cpu")
    assert result.exit_code == 2, result.output
    assert f"{image} is too large to read safely" in flat(result.output)


def test_a_directory_given_as_model_is_called_a_directory(tmp_path):
    for command in ("evaluate", "visualize"):
        result = invoke(command, str(tmp_path), "-d", "cpu")
        assert result.exit_code == 2, result.output
        assert f"{tmp_path} is a directory; expected a checkpoint file" in flat(result.output)


def test_figures_are_written_in_the_format_their_suffix_names(trained, tmp_path):
    model, _, _ = trained
    result = invoke("visualize", str(model), "-d", "cpu", "--out", str(tmp_path / "vis.jpg"))
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "vis.jpg") as image:
        assert image.format == "JPEG"
    result = invoke("demo", "-d", "cpu", "--stride", "4", "--out", str(tmp_path / "demo.pdf"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo.pdf").read_bytes().startswith(b"%PDF")
    result = invoke("visualize", str(model), "-d", "cpu", "--out", str(tmp_path / "vis.bmp"))
    assert result.exit_code == 2
    assert "expected a file name ending in .png, .jpg" in flat(result.output)


def test_train_says_1_epoch_not_1_epochs(trained):
    _, _, output = trained
    assert re.search(r"after 1 epoch\b", output) and "1 epochs" not in output, output


@pytest.mark.parametrize("epochs", [1, 3])
def test_training_curves_show_a_single_epoch_and_whole_epoch_ticks(epochs):
    from cnnarray import train as training
    from cnnarray.backend import get_backend
    from cnnarray.data import load_dataset

    backend, data = get_backend("cpu"), load_dataset("digits")
    state = training.new_state(training.TrainConfig(epochs=epochs), data, backend)
    training.fit(state, data, backend)
    fig = plots.training_curves(state.history)
    plots.png_bytes(fig)  # draw, so that the tick locations are final
    for ax in fig.axes:
        for line in ax.get_lines():
            assert line.get_marker() not in (None, "None", ""), "a single point must show"
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def _texts(fig) -> str:
    parts = [t.get_text() for ax in fig.axes for t in ax.texts]
    parts += [ax.get_title() for ax in fig.axes]
    return "\n".join(parts)


def test_filters_plot_says_what_part_of_the_layer_it_shows():
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    maps = [("Conv2d", rng.random((32, 8, 8)).astype(np.float32))]
    fig = plots.filters_and_maps(rng.random((1, 10, 10)), weights, maps, "test")
    text = _texts(fig)
    assert "conv1 filters\n(32, 1, 3, 3)\nfirst 16 of 32" in text
    assert "Conv2d\n(32, 8, 8)\nfirst 16 of 32 maps" in text


def test_demo_grid_says_why_a_map_is_black():
    from cnnarray import demo
    from cnnarray.backend import get_backend

    stages = demo.run_demo(get_backend("cpu"), demo.load_grayscale(size=64), stride=2)
    text = _texts(plots.demo_grid(stages, demo.FILTER_NAMES))
    assert "random 2\n(31, 31)\nall < 0: ReLU will zero it" in text  # the conv row
    assert "random 2\n(31, 31)\nall 0 (black): its responses\nwere all negative" in text


def test_evaluate_json_batch_size_and_titles(trained, tmp_path):
    model, metrics, _ = trained
    out, png = tmp_path / "e.json", tmp_path / "cm.png"
    result = invoke("evaluate", str(model), "-d", "cpu", "--batch-size", "7",
                    "--json", str(out), "--plot", str(png))  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert doc["dataset"] == "digits" and doc["split"] == "test"
    assert np.trace(doc["confusion"]) == doc["correct"] and np.sum(doc["confusion"]) == doc["total"]
    title = f"m.safetensors on digits (test set): accuracy {100 * doc['test_accuracy']:.2f}%"
    assert title in result.output
    assert invoke("evaluate", str(model), "-d", "cpu", "--batch-size", "0").exit_code == 2
    fig = plots.confusion_matrix(np.eye(2, dtype=int), ["a", "b"], title="m on d: 100%")
    assert fig.axes[0].get_title() == "m on d: 100%"
