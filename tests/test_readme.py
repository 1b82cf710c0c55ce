"""The README's Python examples run as written, on every available backend.

The examples call ``backend="cuda"`` / ``.to("cuda")``, as a GPU user would; on
the CPU run the device name is swapped for ``"cpu"`` (the README says that is
the only change needed), so the examples cannot rot unnoticed on a machine
without a GPU.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import pytest

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
