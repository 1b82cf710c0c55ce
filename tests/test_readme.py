"""The README's examples run as written: its Python blocks and its shell commands.

The Python examples call ``backend="cuda"`` / ``.to("cuda")``, as a GPU user
would; on the CPU run the device name is swapped for ``"cpu"`` (the README says
that is the only change needed), so the examples cannot rot unnoticed on a
machine without a GPU.

Every shell command in a ``bash`` block runs through bash, as written, in a
temporary HOME that holds small stand-ins for the files the README names
(``~/data/mnist``, ``~/data/cifar-10-batches-bin``, ``model.safetensors``,
``my_digit.png``); only the commands listed in :data:`SKIPS` are left out, each
with its reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from helpers import CUDA_REASON

README = pathlib.Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 2, "README.md lost its Python examples"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(backend, index, tmp_path, monkeypatch) -> None:
    code = BLOCKS[index]
    assert '"cuda"' in code, "each README example shows the GPU call"
    code = code.replace('"cuda"', f'"{backend}"')
    monkeypatch.chdir(tmp_path)  # an example may write files (a checkpoint)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md python block {index}", "exec"), {})
    printed = out.getvalue()
    # what the examples' comments say they print
    if "edges.shape" in code:
        assert "(255, 255)" in printed
    if "save(" in code:
        assert (tmp_path / "lenet5.safetensors").stat().st_size > 0


# ---------------------------------------------------------------------------
# shell examples

ROOT = README.parent
SHELL_BLOCKS = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _gpus() -> int:
    from cnnarray.backend import available_backends

    return sum(name.startswith("cuda:") for name in available_backends())


# (pattern, reason, applies): a command matching ``pattern`` is skipped when ``applies``
def _no_tensorboard() -> bool:
    """Whether neither writer that ``--log-dir`` uses can be imported."""
    for module in ("tensorboardX", "tensorboard"):
        if importlib.util.find_spec(module) is not None:
            return False
    return True


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


SKIPS = [
    (r"^pip install", "installs packages from the network", True),
    (r"^pytest\b", "runs this test suite itself", True),
    (r"^\.ci/gpu\b", "the whole GPU CI job", True),
    (r"(--device|-d) cuda:1\b", "needs a second GPU", _gpus() < 2),
    (r"(--device|-d) cuda\b", f"needs a GPU: {CUDA_REASON}", CUDA_REASON is not None),
    (r"^cnnarray bench\b", "times every case against its peers: minutes, not a test", True),
    (r"--log-dir\b", "needs tensorboardX (pip install 'cnnarray[tensorboard]')", _no_tensorboard()),
    (r"--nproc\b", "needs mpi4py (pip install 'cnnarray[distributed]')", _missing("mpi4py")),
    # a Dask cluster starts in ~5 s: the same command runs in tests/test_dask_predict.py
    (
        r"--dask\b",
        "run as tests/test_dask_predict.py::test_dask_on_a_local_cluster_equals_predict",
        True,
    ),
]
SLOW = (r"^cnnarray train$", r"cifar10:")  # 60 epochs: 15-30 s each on a 2-core CPU
# Examples that fail for a known reason, fixed on another branch of the same issue: strict,
# so that the fix shows as XPASS (a failure) and the entry is removed then.
PENDING: list[tuple[str, str]] = []


def shell_commands() -> list[str]:
    """Every command of the README's bash blocks: continuation lines joined, comments and
    ``&&`` chains split off."""
    commands = []
    for block in SHELL_BLOCKS:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            commands += [" ".join(part.split()) for part in line.split("&&") if part.strip()]
    return commands


COMMANDS = shell_commands()


def skip_reason(command: str) -> str | None:
    for pattern, reason, applies in SKIPS:
        if applies and re.search(pattern, command):
            return reason
    return None


def _params() -> list:
    params = []
    for command in COMMANDS:
        marks = []
        if (reason := skip_reason(command)) is not None:
            marks.append(pytest.mark.skip(reason=f"README example: {reason}"))
        if any(re.search(pattern, command) for pattern in SLOW):
            marks.append(pytest.mark.slow)
        marks += [pytest.mark.xfail(strict=True, reason=reason)
                  for pattern, reason in PENDING if re.search(pattern, command)]  # fmt: skip
        params.append(pytest.param(command, marks=marks, id=command[:60]))
    return params


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A HOME with the README's files: tiny MNIST and CIFAR-10, a model, a digit image."""
    from PIL import Image
    from test_datasets import make_cifar, make_mnist

    home = tmp_path_factory.mktemp("home")
    (home / "data" / "mnist").mkdir(parents=True)
    make_mnist(home / "data" / "mnist", n_train=32, n_test=16, size=28)
    (home / "data" / "cifar-10-batches-bin").mkdir()
    make_cifar(home / "data" / "cifar-10-batches-bin", per_file=1)
    # every image an example reads (my_digit.png, ...): a white digit-like stroke on black
    digit = np.zeros((28, 28), np.uint8)
    digit[5:23, 12:16] = 255
    for name in input_images():
        Image.fromarray(digit).convert("RGB" if name.endswith(".jpg") else "L").save(home / name)
    # what `cnnarray train` (Quick start) and the mnist example leave behind, made short
    for args in ("train --epochs 1 --out model.safetensors",
                 "train --epochs 1 --dataset mnist:~/data/mnist --model lenet5 "
                 "--out lenet5.safetensors"):  # fmt: skip
        run(f"cnnarray {args}", home)
    return home


OUTPUT_OPTIONS = ("--out", "--plot", "--json", "--show-input")


def input_images() -> set[str]:
    """The image files the examples read: names ending in .png/.jpg not given to an output
    option."""
    names = set()
    for command in COMMANDS:
        words = shlex.split(command)
        for before, word in zip(["", *words], words, strict=False):
            if re.fullmatch(r"[\w.-]+\.(png|jpg|jpeg)", word) and before not in OUTPUT_OPTIONS:
                names.add(word)
    return names


def run(command: str, home: pathlib.Path) -> subprocess.CompletedProcess:
    """Run ``command`` with bash in ``home`` (also $HOME), ``cnnarray`` and ``python`` this
    interpreter with this checkout first on PYTHONPATH; fail with its output if it fails."""
    python = shlex.quote(sys.executable)
    script = f'cnnarray() {{ {python} -m cnnarray "$@"; }}\npython() {{ {python} "$@"; }}\n'
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": path, "COLUMNS": "120"}
    done = subprocess.run(["bash", "-c", script + command], cwd=home, env=env, text=True,
                          capture_output=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_readme_has_shell_examples() -> None:
    assert len(COMMANDS) >= 15, COMMANDS
    assert all(c.startswith(("cnnarray", "python", "pip", "pytest", ".ci/")) for c in COMMANDS), [
        c for c in COMMANDS if not c.startswith(("cnnarray", "python", "pip", "pytest", ".ci/"))
    ]


@pytest.mark.parametrize("command", _params())
def test_readme_shell_example_runs(command, home) -> None:
    run(command, home)
    words = shlex.split(command)
    for option in OUTPUT_OPTIONS:  # the files an example says it writes
        if option in words:
            target = home / words[words.index(option) + 1]
            assert target.is_file() and target.stat().st_size > 0, target
