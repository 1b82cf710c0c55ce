"""The CI scripts run with what the documented extras install."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
GPU_JOB = ROOT / ".ci" / "gpu"


def extras(*names: str) -> set[str]:
    """Distribution names that ``pip install -e '.[names]'`` brings beyond the dependencies."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = set()
    for name in names:
        for requirement in project["optional-dependencies"][name]:
            found.add(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower())
    return found


def test_the_gpu_job_needs_no_more_than_cuda_and_test_extras():
    script = GPU_JOB.read_text()
    brought = extras("cuda", "test")
    assert {"cupy-cuda12x", "pytest", "hypothesis"} <= brought
    pytest_lines = [line for line in script.splitlines() if "-m pytest" in line]
    assert pytest_lines, "the GPU job runs the tests"
    for line in pytest_lines:
        # "-n" is pytest-xdist's option: only from a variable set where xdist imports
        assert not re.search(r"\s-n\s", line) or "pytest-xdist" in brought, line
    assert "pip install -e '.[cuda,test]'" in script
    assert "pip install -e '.[cuda,test]'" in (ROOT / "README.md").read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_the_gpu_job_uses_xdist_only_where_it_is_installed():
    # the lines of the job that choose the pytest workers, run with a python without xdist
    script = GPU_JOB.read_text().splitlines()
    start = next(i for i, line in enumerate(script) if line.startswith("workers="))
    choose = "\n".join(script[start : start + 2])
    has_xdist = importlib.util.find_spec("xdist") is not None
    # "false" / "true" stand for a python that fails / succeeds to import xdist
    for py, expected in (("false", ""), ("true", "-n 8"), (sys.executable, "-n 8" * has_xdist)):
        done = subprocess.run(["bash", "-c", f'py={py}\n{choose}\nprintf %s "$workers"'],
                              capture_output=True, text=True, check=True)  # fmt: skip
        assert done.stdout == expected, (py, done.stdout, done.stderr)
