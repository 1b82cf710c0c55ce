"""Every figure of cnnarray.plots: its axes and titles, its PNG, and no global matplotlib state."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

import cnnarray
from cnnarray import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def history(epochs: int = 3) -> list[SimpleNamespace]:
    return [SimpleNamespace(epoch=e, train_loss=1.0 / e, val_loss=1.2 / e,
                            train_accuracy=0.5 + 0.1 * e, val_accuracy=0.45 + 0.1 * e)
            for e in range(1, epochs + 1)]  # fmt: skip


def stages() -> list[SimpleNamespace]:
    rng = np.random.default_rng(0)
    return [SimpleNamespace(name="input", output=rng.random((1, 16, 16))),
            SimpleNamespace(name="conv", output=rng.random((3, 14, 14))),
            SimpleNamespace(name="max pool", output=rng.random((3, 7, 7)))]  # fmt: skip


def bench_results() -> dict:
    def record(case, mode, peer, median):
        skipped = median is None
        return {
            "case": case,
            "mode": mode,
            "peer": peer,
            "median_s": median,
            "min_s": None if skipped else 0.9 * median,
            "max_s": None if skipped else 1.2 * median,
        }

    return {"metadata": {"device": "cpu", "device_name": "a test CPU"},
            "records": [record("a", "fwd", "cnnarray", 2e-3), record("a", "fwd", "torch", 1e-3),
                        record("a", "fwd+bwd", "cnnarray", 5e-3),
                        record("a", "fwd+bwd", "torch", None)]}  # fmt: skip


def figures() -> dict[str, Figure]:
    rng = np.random.default_rng(1)
    maps = [("Conv2d", rng.random((4, 8, 8))), ("MaxPool2d", rng.random((4, 4, 4)))]
    return {
        "curves": plots.training_curves(history()),
        "confusion": plots.confusion_matrix(np.array([[5, 1], [2, 7]]), ["cat", "dog"]),
        "demo": plots.demo_grid(stages(), ["a", "b", "c"]),
        "gray filters": plots.filters_and_maps(rng.random((1, 8, 8)),
                                               rng.standard_normal((4, 1, 3, 3)), maps, "x"),
        "bench": plots.benchmark_chart(bench_results()),
        "rgb filters": plots.filters_and_maps(rng.random((3, 8, 8)),
                                              rng.standard_normal((4, 3, 3, 3)), maps, "y"),
    }  # fmt: skip


def titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def test_training_curves_draws_loss_and_accuracy():
    fig = plots.training_curves(history(4))
    loss, accuracy = fig.axes
    assert (loss.get_title(), accuracy.get_title()) == ("loss", "accuracy")
    assert loss.get_yscale() == "log" and loss.get_xlabel() == "epoch"
    assert [line.get_label() for line in loss.get_lines()] == ["train", "validation"]
    np.testing.assert_allclose(accuracy.get_lines()[1].get_ydata(), [55, 65, 75, 85])


def test_confusion_matrix_writes_every_count():
    confusion = np.array([[5, 1, 0], [2, 7, 0], [0, 0, 9]])
    fig = plots.confusion_matrix(confusion, ["a", "b", "c"])
    ax = fig.axes[0]
    assert ax.get_title() == "confusion matrix"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.texts] == [str(v) for v in confusion.ravel()]
    assert len(fig.axes) == 2  # the matrix and its colour bar


def test_demo_grid_has_a_row_per_stage_and_a_column_per_filter():
    fig = plots.demo_grid(stages(), ["a", "b", "c"])
    assert len(fig.axes) == 3 * 3
    assert titles(fig)[0] == "input\n(16, 16)"
    assert titles(fig)[1:3] == ["", ""]  # the input has one map
    assert titles(fig)[4] == "conv\nb\n(14, 14)"
    assert fig.get_suptitle().startswith("cnnarray demo")


def test_filters_and_maps_shows_16_filters_at_most():
    rng = np.random.default_rng(2)
    maps = [("ReLU", rng.random((20, 6, 6)))]
    fig = plots.filters_and_maps(rng.random((1, 6, 6)), rng.standard_normal((20, 1, 3, 3)),
                                 maps, "a digit")  # fmt: skip
    assert len(fig.axes) == 3 * 17  # input, filters, one map row; a label column + 16
    assert "filter 15\n(1, 3, 3)" in titles(fig) and "filter 16\n(1, 3, 3)" not in titles(fig)
    assert titles(fig)[0] == "input (1, 6, 6)"
    assert fig.get_suptitle() == "first-layer filters and activation maps of a digit"


def test_benchmark_chart_has_a_bar_per_timed_run():
    fig = plots.benchmark_chart(bench_results())
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and "a test CPU" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a\nfwd", "a\nfwd+bwd"]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == [1.0, 2.0, 5.0]  # ms; the skipped torch run has no bar
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cnnarray", "torch"]


@pytest.mark.parametrize("name", list(figures()))
def test_png_bytes_is_a_png_of_the_figure(name):
    fig = figures()[name]
    data = plots.png_bytes(fig, dpi=50)
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as png:
        width, height = fig.get_size_inches()
        assert png.size == (round(50 * width), round(50 * height))


def test_the_global_matplotlib_backend_is_left_alone():
    before = matplotlib.get_backend()
    for fig in figures().values():
        plots.png_bytes(fig)
    assert matplotlib.get_backend() == before


def test_pyplot_is_never_imported(tmp_path):
    # In a fresh process: the test session itself may have imported pyplot elsewhere.
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from cnnarray import plots\n"
        "fig = plots.confusion_matrix(np.eye(2, dtype=int), ['a', 'b'])\n"
        "assert plots.png_bytes(fig).startswith(b'\\x89PNG')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)


def test_no_module_selects_a_matplotlib_backend():
    package = Path(cnnarray.__file__).parent
    for path in package.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "matplotlib.use(" not in source, path
        assert "matplotlib.pyplot" not in source and "import pyplot" not in source, path
