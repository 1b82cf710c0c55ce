"""Data-parallel training over MPI: 2 ranks on loopback against one process.

The ranks run under the mpiexec of the ``distributed`` extra (the MPICH wheel);
without mpi4py or mpiexec those tests skip, with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnnarray import get_backend
from cnnarray import train as training
from cnnarray.data.loader import DataLoader, shard_rows

ROOT = Path(__file__).resolve().parents[1]

# Shared by the ranks (through the file the test writes) and by the test's own process.
SETUP = '''
import numpy as np
from cnnarray import get_backend, nn
from cnnarray import train as training
from cnnarray.data.datasets import Split


def data(dtype):
    """38 training images after the validation split: batches of 10 end in an uneven 8."""
    rng = np.random.default_rng(0)
    y = np.arange(60) % 4
    x = np.clip(rng.normal(0.15 + 0.2 * y[:, None, None, None], 0.05, (60, 1, 8, 8)), 0, 1)
    x = x.astype(dtype)
    return Split(x[:48], y[:48], x[48:], y[48:], ["a", "b", "c", "d"], "synthetic")


def state(dtype, optimizer, model="small_cnn"):
    config = training.TrainConfig(model=model, epochs=2, batch_size=10, val_split=0.2,
                                  augment="shift", optimizer=optimizer,
                                  lr=0.05 if optimizer == "sgd" else 0.002)
    if model == "small_cnn":
        s = training.new_state(config, data(dtype), get_backend("cpu"))
        for p in s.model.parameters():
            p.data = p.data.astype(dtype)
        return s
    config.validate()  # a VGG with BatchNorm, small enough for 8x8 images, in dtype
    net = nn.vgg_small(1, 4, 8, widths=(4, 8), hidden=16, dtype=dtype, seed=0)
    opt = training.build_optimizer(config, net)
    return training.TrainState(net, opt, training.build_scheduler(config, opt), config, {})
'''

WORKER = """
RUNS = [("float64", "float64", "sgd", "small_cnn"), ("float32", "float32", "adam", "small_cnn"),
        ("syncbn", "float64", "sgd", "vgg_small"), ("perrank", "float64", "sgd", "vgg_small")]
import os, sys, time
from cnnarray.distributed import DataParallel, failing_together

out, mode = sys.argv[1], sys.argv[2]
cpu = get_backend("cpu")
with failing_together():
    for name, dtype, optimizer, model in RUNS:
        s = state(dtype, optimizer, model)
        parallel = DataParallel(s.model, bucket_bytes=4096,  # several buckets
                                sync_batchnorm=name == "syncbn")

        def on_batch(i, loss, accuracy):
            if parallel.rank == 1 and i == 1 and mode == "hang":
                time.sleep(600)
            if parallel.rank == 1 and i == 1 and mode == "kill":
                os.kill(os.getpid(), 9)

        training.fit(s, data(dtype), cpu, training.Callbacks(on_batch=on_batch),
                     parallel=parallel)
        np.savez(f"{out}/{name}.rank{parallel.rank}.npz", **s.model.state_dict())
        if parallel.rank == 0:
            np.savez(f"{out}/{name}.npz", **s.model.state_dict())
            if name == "float32":  # checkpoints hold float32 models
                training.save(s, f"{out}/{name}.safetensors")
            history = [(h.train_loss, h.train_accuracy, h.val_loss) for h in s.history]
            np.save(f"{out}/{name}.history.npy", np.array(history))
"""


def _mpiexec() -> str:
    pytest.importorskip("mpi4py", reason="needs the distributed extra (mpi4py)")
    from cnnarray.distributed import _launch

    try:
        return _launch.mpiexec()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def _ranks(tmp_path: Path, mode: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    script = tmp_path / "worker.py"
    script.write_text(SETUP + WORKER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CNNARRAY_DIST_TIMEOUT": str(timeout),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}  # fmt: skip
    command = [_mpiexec(), "-n", "2", sys.executable, str(script), str(tmp_path), mode]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """One 2-rank run of each of RUNS; rank 0's weights, histories and a checkpoint."""
    out = tmp_path_factory.mktemp("ranks")
    done = _ranks(out, "train")
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _one_process(dtype: str, optimizer: str, model: str = "small_cnn") -> training.TrainState:
    scope: dict = {}
    exec(SETUP, scope)  # the very functions the ranks ran
    s = scope["state"](dtype, optimizer, model)
    training.fit(s, scope["data"](dtype), get_backend("cpu"))
    return s


@pytest.mark.parametrize(
    ("name", "dtype", "optimizer", "model", "rtol"),
    [
        ("float64", "float64", "sgd", "small_cnn", 1e-10),
        # float32: the halves' gradients are summed in another order than one batch's, a few
        # ulp a step; Adam's division grows that to ~1e-6 of the largest weight (measured
        # 1.2e-6 at lr 0.002) in 8 steps
        ("float32", "float32", "adam", "small_cnn", 2e-5),
        # BatchNorm with sync_batchnorm: the statistics of the global batch, as in one process
        ("syncbn", "float64", "sgd", "vgg_small", 1e-10),
    ],
)
def test_two_ranks_reach_the_weights_of_one_process(two_ranks, name, dtype, optimizer, model,
                                                    rtol):  # fmt: skip
    single = _one_process(dtype, optimizer, model)
    weights = np.load(two_ranks / f"{name}.npz")
    for key, value in single.model.state_dict().items():
        got = weights[key]
        assert got.dtype == value.dtype
        scale = max(float(np.max(np.abs(value))), 1e-30)
        assert np.max(np.abs(got - value)) <= rtol * scale, key
    history = np.load(two_ranks / f"{name}.history.npy")
    expected = [(h.train_loss, h.train_accuracy, h.val_loss) for h in single.history]
    np.testing.assert_allclose(history, expected, rtol=rtol)


@pytest.mark.parametrize("name", ["float64", "float32", "syncbn", "perrank"])
def test_the_ranks_end_with_identical_models(two_ranks, name):
    # the same summed gradients and steps on every rank; with per-rank BatchNorm the running
    # statistics differ until sync_buffers gives every rank rank 0's, after each epoch
    ranks = [np.load(two_ranks / f"{name}.rank{r}.npz") for r in (0, 1)]
    for key in ranks[0]:
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)


def test_per_rank_batchnorm_is_not_one_process_training(two_ranks):
    """Without sync_batchnorm each rank normalises with its shard's statistics: the run
    differs from one process (which is why the option exists)."""
    single = _one_process("float64", "sgd", "vgg_small")
    weights = np.load(two_ranks / "perrank.npz")
    differences = [np.max(np.abs(weights[k] - v)) for k, v in single.model.state_dict().items()]
    assert max(differences) > 1e-6


def test_a_distributed_checkpoint_loads_and_resumes_in_one_process(two_ranks):
    cpu = get_backend("cpu")
    scope: dict = {}
    exec(SETUP, scope)
    path = two_ranks / "float32.safetensors"
    model, _, metadata = training.load_model(path, cpu)
    weights = np.load(two_ranks / "float32.npz")
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, weights[name], err_msg=name)
    assert metadata["epoch"] == 2
    resumed = training.resume(path, scope["data"]("float32"), cpu, epochs=3)
    training.fit(resumed, scope["data"]("float32"), cpu)
    assert resumed.epoch == 3 and np.isfinite(resumed.history[-1].train_loss)


def test_a_hung_rank_ends_the_run_with_a_clear_error_within_the_timeout(tmp_path):
    start = time.monotonic()
    done = _ranks(tmp_path, "hang", timeout=3)
    assert done.returncode != 0
    assert "error: rank 0: RankFailure" in done.stderr, done.stderr[-3000:]
    assert "did not finish within 3 s" in done.stderr
    assert time.monotonic() - start < 60


def test_a_killed_rank_ends_the_run(tmp_path):
    start = time.monotonic()
    done = _ranks(tmp_path, "kill", timeout=3)
    assert done.returncode != 0
    # MPICH's mpiexec ends the job itself when a rank dies; else rank 0's watchdog does
    said = done.stdout + done.stderr
    assert "BAD TERMINATION" in said or "did not finish within 3 s" in said, said[-3000:]
    assert time.monotonic() - start < 60


# -- pieces, without MPI ------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 7, 8])
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_shards_cover_each_batch_once_in_order(length, ranks):
    parts = [shard_rows(length, r, ranks) for r in range(ranks)]
    rows = [i for p in parts for i in range(length)[p]]
    assert rows == list(range(length))
    sizes = [len(range(length)[p]) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_sharded_loader_yields_the_parts_of_the_same_batches():
    x, y = np.arange(22.0).reshape(11, 1, 1, 2), np.arange(11)
    whole = DataLoader(x, y, batch_size=4, shuffle=True, seed=3)
    parts = [DataLoader(x, y, batch_size=4, shuffle=True, seed=3, shard=(r, 2)) for r in (0, 1)]
    for (xb, yb), (x0, y0), (x1, y1) in zip(whole, *parts, strict=True):
        np.testing.assert_array_equal(np.concatenate([y0, y1]), yb)
        np.testing.assert_array_equal(np.concatenate([x0, x1]), xb)
    assert [whole.batch_length(b) for b in range(3)] == [4, 4, 3]


def test_a_transform_sees_the_whole_batch_before_the_cut():
    x, y = np.zeros((6, 1, 2, 2)), np.arange(6)

    def add_noise(xb, rng):
        return xb + rng.normal(size=xb.shape)

    whole = next(iter(DataLoader(x, y, batch_size=6, seed=1, transform=add_noise)))[0]
    half = next(iter(DataLoader(x, y, batch_size=6, seed=1, transform=add_noise, shard=(1, 2))))
    np.testing.assert_array_equal(half[0], whole[3:])


@pytest.mark.parametrize(("shard", "match"), [((2, 2), "shard rank must be below"),
                                              ((0, 0), "shard ranks"), (3, "pair")])  # fmt: skip
def test_bad_shards_are_named(shard, match):
    with pytest.raises(ValueError, match=match):
        DataLoader(np.zeros((2, 1)), np.zeros(2), shard=shard)


def test_strip_option_takes_both_spellings():
    from cnnarray.distributed import _launch

    argv = ["train", "--nproc", "2", "--epochs", "1", "--nproc=3"]
    assert _launch.strip_option(argv, "--nproc") == ["train", "--epochs", "1"]


def test_buckets_pack_parameters_in_order_up_to_the_limit():
    from cnnarray import nn
    from cnnarray.distributed._data_parallel import _buckets

    model = nn.build_model("lenet5", in_channels=1, num_classes=10, input_size=28, seed=0)
    params = model.parameters()
    buckets = _buckets(params, 4096)
    assert [p for group, _ in buckets for p in group] == params
    for group, flat in buckets:
        assert flat.size == sum(p.data.size for p in group)
        assert len(group) == 1 or flat.nbytes <= 4096
    assert len(_buckets(params, 2**30)) == 1


def test_sync_batchnorm_keeps_the_spec_and_state_of_batchnorm():
    from cnnarray import nn
    from cnnarray.distributed import SyncBatchNorm2d, convert_sync_batchnorm

    model = nn.vgg_small(1, 4, 8, widths=(4, 8), hidden=16, seed=0)
    spec, state = model.spec(), dict(model.state_dict())
    assert convert_sync_batchnorm(model, comm=None) == 4
    assert sum(isinstance(m, SyncBatchNorm2d) for m in model.modules()) == 4
    assert model.spec() == spec and dict(model.state_dict()).keys() == state.keys()
    rebuilt = nn.from_spec(model.spec())  # what a checkpoint rebuilds in one process
    assert not any(isinstance(m, SyncBatchNorm2d) for m in rebuilt.modules())


def test_distributed_without_mpi4py_is_a_usage_error_before_any_work(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import cnnarray.distributed as dist
    from cnnarray.cli import app

    def missing(initialize: bool = True):
        raise ModuleNotFoundError("distributed training needs mpi4py: pip install ...")

    monkeypatch.setattr(dist, "load_mpi", missing)
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", "--distributed", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "--distributed: distributed training needs mpi4py" in result.output
    assert not out.exists()
