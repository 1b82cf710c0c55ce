"""The benchmark harness on its hidden tiny cases: record shape, outputs, validation.

Timings are only checked to be positive numbers, never compared with anything.
"""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pytest
from rich.console import Console
from rich.table import Table

import cnnarray
from cnnarray import bench

TINY = ["tiny", "tiny2d", "tinypool", "tinymatmul"]
RECORD_KEYS = {
    "case", "mode", "peer", "device", "status", "median_s", "min_s", "max_s", "repeats",
    "warmup", "times_s", "flop", "gflops", "fraction_of_gemm_ceiling", "ratio_vs_cnnarray",
    "ratio_vs_torch", "max_abs_diff", "grad_max_abs_diff", "rounds", "round_medians_s",
}  # fmt: skip


@pytest.fixture(scope="module")
def progress_calls() -> list[tuple[int, int, str]]:
    return []


@pytest.fixture(scope="module")
def results(progress_calls: list) -> dict:
    """One run of every tiny case with the CPU-only peers, cnnarray in two rounds
    (a few seconds)."""
    return bench.run_benchmarks(
        "cpu",
        TINY,
        ["scipy", "naive"],
        repeat=2,
        progress=lambda done, total, label: progress_calls.append((done, total, label)),
        budget_s=0.05,
        rounds=2,
    )


def _by_key(results: dict) -> dict[tuple[str, str, str], dict]:
    return {(r["case"], r["mode"], r["peer"]): r for r in results["records"]}


def test_one_record_per_case_mode_and_peer(results: dict) -> None:
    keys = [(r["case"], r["mode"], r["peer"]) for r in results["records"]]
    expected = [
        (case, mode, peer)
        for case in TINY
        for mode in bench.CASES[case].modes
        for peer in ("cnnarray", "scipy", "naive")
    ]
    assert keys == expected
    for r in results["records"]:
        assert set(r) == RECORD_KEYS


def test_timings_are_positive_and_ordered(results: dict) -> None:
    ok = [r for r in results["records"] if r["status"] == "ok"]
    assert {r["peer"] for r in ok} == {"cnnarray", "scipy", "naive"}
    for r in ok:
        rounds = 1 if r["peer"] in bench.ONE_ROUND_PEERS else 2
        assert r["rounds"] == len(r["round_medians_s"]) == rounds
        assert r["repeats"] == len(r["times_s"]) >= rounds
        assert r["warmup"] >= 2 * rounds
        assert all(isinstance(t, float) and t > 0 for t in r["times_s"])
        assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["ratio_vs_cnnarray"] > 0
        assert r["device"] == "cpu"


def test_cnnarray_runs_every_case(results: dict) -> None:
    for case in TINY:
        for mode in bench.CASES[case].modes:
            r = _by_key(results)[case, mode, "cnnarray"]
            assert r["status"] == "ok", r["status"]
            assert r["ratio_vs_cnnarray"] == 1.0
            assert r["ratio_vs_torch"] is None  # torch was not compared


def test_inapplicable_peers_are_skipped_with_a_reason(results: dict) -> None:
    table = _by_key(results)
    for key in [("tinypool", "fwd", "scipy"), ("tinypool", "fwd+bwd", "scipy"),
                ("tinymatmul", "fwd", "scipy"), ("tinymatmul", "fwd", "naive")]:  # fmt: skip
        r = table[key]
        assert r["status"] == "skipped: not applicable"
        assert r["median_s"] is None and r["repeats"] == 0 and r["times_s"] == []


def test_peers_agree_with_cnnarray(results: dict) -> None:
    compared = 0
    for r in results["records"]:
        if r["status"] != "ok" or r["peer"] == "cnnarray" or r["case"] == "tinymatmul":
            continue
        assert r["max_abs_diff"] is not None and r["max_abs_diff"] < 1e-4, r
        if r["mode"] == "fwd+bwd":
            assert r["grad_max_abs_diff"] is not None and r["grad_max_abs_diff"] < 1e-4, r
        compared += 1
    assert compared == 10  # scipy: 2 conv cases x 2 modes; naive: 3 cases x 2 modes


def test_flops_and_gemm_ceiling(results: dict) -> None:
    table = _by_key(results)
    tiny = bench.CASES["tiny"]
    out_h, out_w = tiny.out_hw
    fwd_flop = 2 * tiny.n * tiny.c_out * out_h * out_w * tiny.c_in * tiny.k**2
    assert table["tiny", "fwd", "cnnarray"]["flop"] == fwd_flop
    assert table["tiny", "fwd+bwd", "cnnarray"]["flop"] == 3 * fwd_flop
    assert table["tiny", "fwd", "cnnarray"]["gflops"] > 0
    assert table["tinypool", "fwd", "cnnarray"]["gflops"] is None
    ceiling = results["metadata"]["gemm_ceiling"]
    assert ceiling["peer"] == "cnnarray" and ceiling["gflops"] > 0
    assert table["tinymatmul", "fwd", "cnnarray"]["fraction_of_gemm_ceiling"] == 1.0
    assert table["tiny", "fwd", "scipy"]["fraction_of_gemm_ceiling"] > 0


def test_metadata(results: dict) -> None:
    meta = results["metadata"]
    assert results["schema"] == 1
    datetime.fromisoformat(meta["date"])
    assert meta["wall_s"] > 0
    assert meta["device"] == "cpu" and meta["device_name"]
    assert meta["versions"]["cnnarray"] == cnnarray.__version__
    assert meta["versions"]["numpy"] == np.__version__
    assert meta["threads"]["blas"] >= 1
    assert meta["worker_env"]["set"] == {"OPENBLAS_THREAD_TIMEOUT": "4"}
    assert set(meta["cases"]) == set(TINY)
    assert meta["peers"] == ["cnnarray", "scipy", "naive"]
    json.dumps(results, allow_nan=False)  # JSON-able as it stands


def test_progress_counts_workers_up_to_total(results: dict, progress_calls: list) -> None:
    # cnnarray: every case, twice; scipy: the conv cases; naive: all but matmul
    workers = 2 * 4 + 2 + 3
    assert [c[0] for c in progress_calls] == list(range(workers + 1))
    assert all(c[1] == workers for c in progress_calls)
    assert progress_calls[0][2] == "cnnarray on tiny, round 1/2"
    assert progress_calls[1][2] == "scipy on tiny"
    assert progress_calls[workers - 1][2] == "cnnarray on tinymatmul, round 2/2"


def test_rounds_pool_every_worker_process(results: dict) -> None:
    for r in results["records"]:
        if r["status"] != "ok":
            continue
        # each round's timed calls are in times_s, in order, and its median is recorded
        per_round = len(r["times_s"]) // r["rounds"]
        chunks = [r["times_s"][i * per_round : (i + 1) * per_round] for i in range(r["rounds"])]
        assert r["round_medians_s"] == [float(np.median(c)) for c in chunks]
        assert r["median_s"] == float(np.median(r["times_s"]))
    assert results["metadata"]["rounds"] == 2


def test_schedule_interleaves_the_fast_peers() -> None:
    a, b = bench.CASES["tiny"], bench.CASES["tinypool"]
    plan = [
        (a, "cnnarray", ["fwd"], {}), (a, "torch", ["fwd"], {}), (a, "naive", ["fwd"], {}),
        (b, "cnnarray", ["fwd"], {}), (b, "torch", [], {"fwd": "skipped: x"}),
    ]  # fmt: skip
    runs = [(r, c.name, p) for r, c, p, _ in bench.run._schedule(plan, 3)]
    assert runs == [
        (0, "tiny", "cnnarray"), (0, "tiny", "torch"), (0, "tiny", "naive"),
        (0, "tinypool", "cnnarray"),
        (1, "tiny", "torch"), (1, "tiny", "cnnarray"), (1, "tinypool", "cnnarray"),
        (2, "tiny", "cnnarray"), (2, "tiny", "torch"), (2, "tinypool", "cnnarray"),
    ]  # fmt: skip


def test_a_failed_round_fails_the_record() -> None:
    case = bench.CASES["tiny"]
    good = {"status": "ok", "device": "cpu", "warmup_s": [0.1, 0.1], "times_s": [1.0, 3.0]}
    bad = {"status": "error: worker timed out after 1 s"}
    record = bench.run._record(case, "fwd", "cnnarray", [good, bad], "cpu")
    assert record["status"] == bad["status"]
    assert record["median_s"] is None and record["times_s"] == [] and record["rounds"] == 0
    record = bench.run._record(case, "fwd", "cnnarray", [good, {**good, "times_s": [2.0]}], "cpu")
    assert record["status"] == "ok" and record["times_s"] == [1.0, 3.0, 2.0]
    assert record["median_s"] == 2.0 and record["round_medians_s"] == [2.0, 2.0]
    assert (record["min_s"], record["max_s"], record["repeats"], record["warmup"]) == (1, 3, 3, 4)


def test_write_json_is_atomic_and_round_trips(results: dict, tmp_path) -> None:
    path = tmp_path / "out" / "cpu.json"
    bench.write_json(results, path)
    bench.write_json(results, path)  # overwrite in place
    assert json.loads(path.read_text()) == results
    assert [p.name for p in path.parent.iterdir()] == ["cpu.json"]  # no temp file left


def test_plot_writes_a_png(results: dict, tmp_path) -> None:
    path = bench.plot(results, tmp_path / "cpu.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["cpu.png"]


def test_render_table(results: dict) -> None:
    table = bench.render_table(results)
    assert isinstance(table, Table)
    ran = [r for r in results["records"] if not r["status"].startswith("skipped")]
    assert table.row_count == len(ran)  # skipped runs are in the notes, not in rows
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "tinymatmul" in text and "scipy: not applicable to tinypool, tinymatmul." in text


def text_of(table, width: int = 80) -> str:
    console = Console(width=width, record=True)
    console.print(table)
    return console.export_text()


def test_the_default_table_fits_80_columns_and_wide_has_every_column(results: dict) -> None:
    narrow = text_of(bench.render_table(results))
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert "vs cnnarray" in narrow and "max |diff|" not in narrow
    header = next(line for line in narrow.splitlines() if "median ms" in line)
    assert "median ms" in header and "GFLOP/s" in header  # no header cut to "med…"
    wide = text_of(bench.render_table(results, wide=True), width=200)
    for column in ("min-max ms", "max |diff|"):  # "note" only where a run failed
        assert column in wide
    assert "vs torch" not in wide  # torch was not compared


def synthetic(statuses: dict[str, str]) -> dict:
    """Results of case tiny (fwd) with cnnarray ok and each other peer in ``statuses``."""

    def record(peer: str, status: str) -> dict:
        ok = status == "ok"
        return {"case": "tiny", "mode": "fwd", "peer": peer, "status": status,
                "median_s": 1e-3 if ok else None, "min_s": 9e-4 if ok else None,
                "max_s": 2e-3 if ok else None, "gflops": 1.0 if ok else None,
                "fraction_of_gemm_ceiling": None, "ratio_vs_cnnarray": 2.0 if ok else None,
                "ratio_vs_torch": None, "max_abs_diff": 1e-6 if ok else None,
                "grad_max_abs_diff": None}  # fmt: skip

    peers = ["cnnarray", *statuses]
    records = [record(p, statuses.get(p, "ok")) for p in peers]
    return {"metadata": {"device": "cpu", "device_name": "a CPU", "rounds": 3, "peers": peers,
                         "slow_limit_s": 3.0}, "records": records}  # fmt: skip


def test_a_peer_not_installed_is_one_note_and_not_named_elsewhere() -> None:
    results = synthetic({"torch": "skipped: torch not installed"})
    table = bench.render_table(results, wide=True)
    text = " ".join(text_of(table, width=200).split())
    assert table.row_count == 1
    assert "torch: torch not installed, left out." in text
    assert text.count("torch") == 2  # that note only: no column, no method footnote
    assert "cnnarray: 3 interleaved worker processes" in text


def test_too_slow_runs_say_which_limit_would_time_them() -> None:
    results = synthetic({"naive": "skipped: too slow (estimated 8.39 s per call)"})
    results["records"][1]["case"] = "a"
    notes = bench.notes(results)
    assert any(n.startswith("naive: skipped where one call would take over 3.0 s: a (fwd);")
               and "--slow-limit 11 times them too" in n for n in notes), notes  # fmt: skip


def test_a_failed_run_keeps_its_row_and_its_error() -> None:
    results = synthetic({"scipy": "error: worker timed out after 1 s"})
    table = bench.render_table(results)
    assert table.row_count == 2
    text = " ".join(text_of(table).split())  # the notes wrap at the table's width
    assert "scipy on tiny fwd: error: worker timed out after 1 s" in text


def test_the_plot_has_legend_entries_only_for_peers_that_ran(tmp_path) -> None:
    from cnnarray import plots

    results = synthetic({"torch": "skipped: torch not installed", "scipy": "ok"})
    (ax,) = plots.benchmark_chart(results).axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cnnarray", "scipy"]
    colours = {p.get_facecolor() for p in ax.patches}
    assert len(colours) == 2  # scipy keeps its own colour, not the one torch would take


def test_help_describes_every_case() -> None:
    text = bench.cases_help()
    for name in bench.DEFAULT_CASES:
        assert f"{name}: {bench.CASES[name].about}: {bench.CASES[name].describe()}" in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cases": ["a", "zz"]}, "unknown case 'zz'; valid cases: a, b, c, d, e, f, pool, matmul"),
        ({"compare": "torch,jax"}, "unknown peer 'jax'; valid peers: cnnarray, torch, scipy"),
        ({"repeat": 0}, "repeat must be a positive int, got 0"),
        ({"rounds": 0}, "rounds must be a positive int, got 0"),
        ({"device": "tpu"}, "backend must be one of"),
        ({"thread_timeout": 2}, "thread_timeout must be an int from 4 to 30, got 2"),
    ],
)
def test_bad_arguments_raise_before_running(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        bench.run_benchmarks(**{"cases": ["tiny"], **kwargs})


def test_slow_peers_are_skipped_by_estimate() -> None:
    assert bench.peers.skip_reason("naive", bench.CASES["a"], "fwd", 3.0).startswith(
        "skipped: too slow"
    )
    assert bench.peers.skip_reason("naive", bench.CASES["d"], "fwd", 3.0) is None
    assert bench.peers.skip_reason("scipy", bench.CASES["c"], "fwd+bwd", 3.0).startswith(
        "skipped: too slow"
    )
    results = bench.run_benchmarks("cpu", ["tiny"], ["naive"], repeat=1, slow_limit_s=0.0, rounds=1)
    naive = [r for r in results["records"] if r["peer"] == "naive"]
    assert [r["status"][:17] for r in naive] == ["skipped: too slow"] * 2


def test_a_failing_worker_becomes_an_error_record() -> None:
    results = bench.run_benchmarks("cpu", ["tinymatmul"], [], repeat=1, timeout_s=0.01, rounds=1)
    (record,) = results["records"]
    assert record["status"] == "error: worker timed out after 0.01 s"
    assert record["median_s"] is None
    assert results["metadata"]["gemm_ceiling"] is None


def test_thread_timeout_none_keeps_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "30")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    results = bench.run_benchmarks(
        "cpu", ["tinymatmul"], [], repeat=1, thread_timeout=None, rounds=1
    )
    assert results["records"][0]["status"] == "ok"
    env = results["metadata"]["worker_env"]
    assert env["set"] == {} and env["unset"] == ["OPENBLAS_CORETYPE"]


def test_inputs_are_seeded_float32() -> None:
    for name in TINY:
        first, second = (
            bench.make_inputs(bench.CASES[name], 3),
            bench.make_inputs(bench.CASES[name], 3),
        )
        assert first.keys() == second.keys()
        for key, value in first.items():
            if value is not None:
                assert value.dtype == np.float32
                np.testing.assert_array_equal(value, second[key])


def test_default_cases_hide_the_tiny_ones() -> None:
    assert bench.DEFAULT_CASES == ("a", "b", "c", "d", "e", "f", "pool", "matmul")


def test_runs_on_each_backend(backend: cnnarray.Backend) -> None:
    results = bench.run_benchmarks(str(backend), ["tiny"], [], repeat=2, budget_s=0.05, rounds=1)
    assert results["metadata"]["device"] == str(backend)
    for r in results["records"]:
        assert r["status"] == "ok" and r["device"] == str(backend) and r["median_s"] > 0


@pytest.mark.slow
def test_torch_peer_matches_and_uses_blas_threads() -> None:
    pytest.importorskip("torch")
    results = bench.run_benchmarks("cpu", ["tiny", "tiny2d"], ["torch"], repeat=2, budget_s=0.05)
    table = _by_key(results)
    for case in ("tiny", "tiny2d"):
        for mode in bench.MODES:
            cnn, torch_record = table[case, mode, "cnnarray"], table[case, mode, "torch"]
            assert torch_record["status"] == "ok", torch_record["status"]
            assert torch_record["ratio_vs_torch"] == 1.0
            assert math.isclose(cnn["ratio_vs_torch"], cnn["median_s"] / torch_record["median_s"])
            assert torch_record["max_abs_diff"] < 1e-4
            if mode == "fwd+bwd":
                assert torch_record["grad_max_abs_diff"] < 1e-4
    meta = results["metadata"]
    assert meta["threads"]["torch"] == meta["threads"]["blas"]
    assert meta["peer_info"]["torch"]["torch_threads"] == meta["threads"]["blas"]
    assert meta["versions"]["torch"]


def test_train_profile_worker_times_every_kind_of_layer() -> None:
    # benchmarks/train_profile.py's cnnarray worker on LeNet-5 and the 8x8 digits, one
    # epoch: a row per kind of layer and pass, each under the whole step's time.
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(__file__).parents[1] / "benchmarks" / "train_profile.py"
    cmd = [sys.executable, str(script), "--worker", "cnnarray", "--model", "lenet5",
           "--dataset", "digits", "--epochs", "1", "--warmup", "0", "--threads", "1"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    from cnnarray.data import load_dataset

    assert result["steps"] == math.ceil(len(load_dataset("digits").y_train) / 32)
    kinds = result["kinds"]
    for layer in ("Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"):
        assert kinds[f"{layer} forward"] > 0 and kinds[f"{layer} backward"] > 0, layer
    assert kinds["Adam step"] > 0
    assert sum(kinds.values()) < result["step_ms"]


def test_bench_command_without_torch_leaves_it_out_with_one_note(monkeypatch) -> None:
    import importlib.util

    from typer.testing import CliRunner

    from cnnarray.cli import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))  # fmt: skip
    args = ["bench", "-d", "cpu", "--cases", "tinymatmul", "--repeat", "1", "--rounds", "1"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "torch: torch not installed, left out." in " ".join(result.output.split())
    assert "vs torch" not in result.output and "vs cnnarray" not in result.output


def test_bench_help_says_what_the_cases_are() -> None:
    from typer.testing import CliRunner

    from cnnarray.cli import app

    result = CliRunner().invoke(app, ["bench", "--help"], env={"COLUMNS": "80"})
    text = " ".join(result.output.replace("│", " ").split())
    assert "LeNet-5's first layer on MNIST" in text and "the GEMM ceiling" in text
    assert "--wide" in text
