"""Batch inference on Dask: a LocalCluster on 127.0.0.1 against ``cnnarray predict``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnarray import get_backend
from cnnarray import train as training
from cnnarray.cli import app
from cnnarray.data.datasets import load_digits
from cnnarray.distributed import image_paths, predict_files, write_predictions

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An untrained digits checkpoint, 12 test digits as PNG files and one broken file."""
    folder = tmp_path_factory.mktemp("dask")
    data, cpu = load_digits(), get_backend("cpu")
    state = training.new_state(training.TrainConfig(epochs=1), data, cpu)
    model = folder / "m.safetensors"
    training.save(state, model)
    images = folder / "images"
    images.mkdir()
    for i in range(12):
        pixels = (data.x_test[i, 0] * 255).astype(np.uint8)
        Image.fromarray(pixels).resize((24, 24)).save(images / f"d{i:02d}.png")
    (images / "zz_broken.png").write_bytes(b"not an image")
    return model, images


def _predict_json(model, paths, tmp_path):
    out = tmp_path / "p.json"
    result = invoke("predict", str(model), *map(str, paths), "-d", "cpu", "--json", str(out))
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())["predictions"]


def test_dask_on_a_local_cluster_equals_predict(files, tmp_path):
    pytest.importorskip("dask.distributed", reason="needs the dask extra")
    model, images = files
    out = tmp_path / "dask.csv"
    result = invoke("predict", str(model), str(images), "-d", "cpu", "--dask", "--workers", "2",
                    "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "predicted 12 of 13 images on Dask" in result.output
    assert "zz_broken.png is not a readable image" in result.output  # reported, run not stopped
    with out.open(newline="") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    good = sorted(images.glob("d*.png"))
    expected = _predict_json(model, good, tmp_path)
    assert len(rows) == 13 and rows[str(images / "zz_broken.png")]["error"]
    for e in expected:
        row = rows[e["image"]]
        assert row["error"] == ""
        assert [row[f"class_{i + 1}"] for i in range(3)] == [t["class"] for t in e["top"]]
        # float32: a partition is another batch than predict's, so the last bit may differ
        got = [float(row[f"probability_{i + 1}"]) for i in range(3)]
        np.testing.assert_allclose(got, [t["probability"] for t in e["top"]], rtol=1e-6)
        assert row["unreliable"] == "; ".join(e["unreliable"])


def test_one_partition_gives_exactly_the_rows_of_predict(files, tmp_path):
    model, images = files
    good = sorted(images.glob("d*.png"))
    rows = predict_files(str(model), [str(p) for p in good], top=3, device="cpu")
    expected = _predict_json(model, good, tmp_path)
    assert [{k: v for k, v in r.items() if k != "error"} for r in rows] == expected
    assert all(r["error"] is None for r in rows)


def test_an_unreadable_file_gets_its_own_row(files):
    model, images = files
    paths = [str(images / "d00.png"), str(images / "zz_broken.png"), str(images / "missing.png")]
    rows = predict_files(str(model), paths)
    assert [r["image"] for r in rows] == paths
    assert rows[0]["error"] is None and rows[0]["top"]
    assert "not a readable image" in rows[1]["error"] and rows[1]["top"] == []
    assert rows[2]["error"] and "missing.png" in rows[2]["error"]


def test_folders_and_globs_expand_to_sorted_files(files):
    _, images = files
    assert image_paths([images]) == sorted(images.glob("*.png"))
    assert image_paths([str(images / "d0*.png")]) == sorted(images.glob("d0*.png"))
    with pytest.raises(FileNotFoundError, match="no file matches"):
        image_paths([str(images / "*.jpeg")])


def test_the_csv_has_one_column_pair_per_class_and_the_error(tmp_path):
    rows = [{"image": "a.png", "top": [{"class": "1", "probability": 0.75},
                                       {"class": "7", "probability": 0.25}],
             "unreliable": [], "preprocessing": [], "error": None},
            {"image": "b.png", "top": [], "unreliable": [], "preprocessing": [],
             "error": "b.png is not a readable image"}]  # fmt: skip
    written = write_predictions(rows, tmp_path / "p.csv")
    assert written[0] == tmp_path / "p.csv"
    with written[0].open(newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["image", "class_1", "probability_1", "class_2", "probability_2",
                        "unreliable", "error"]  # fmt: skip
    assert table[1] == ["a.png", "1", "0.75", "7", "0.25", "", ""]
    assert table[2] == ["b.png", "", "", "", "", "", "b.png is not a readable image"]


def test_parquet_beside_the_csv_when_pyarrow_is_there(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet needs pyarrow")
    rows = [{"image": "a.png", "top": [{"class": "1", "probability": 0.75}], "unreliable": [],
             "preprocessing": [], "error": None},
            {"image": "b.png", "top": [], "unreliable": [], "preprocessing": [],
             "error": "b.png is not a readable image"}]  # fmt: skip
    written = write_predictions(rows, tmp_path / "p.csv")
    assert written == [tmp_path / "p.csv", tmp_path / "p.parquet"]
    assert pq.read_table(written[1]).to_pylist() == [
        {"image": "a.png", "class_1": "1", "probability_1": 0.75, "unreliable": "", "error": ""},
        {"image": "b.png", "class_1": "", "probability_1": None, "unreliable": "",
         "error": "b.png is not a readable image"},
    ]  # fmt: skip
