"""Layer code is written once against ``xp``: no module of cnnarray/ops (nor cnnarray/nn,
cnnarray/optim.py, cnnarray/data/augment.py) imports numpy or cupy, or asks which one it has.

Only cnnarray/backend.py may know about CuPy. The checks read the source with ``ast``,
so docstrings and comments that mention NumPy or CuPy are fine.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cnnarray

PACKAGE = Path(cnnarray.__file__).parent
ARRAY_MODULES = {"numpy", "cupy", "cupyx"}
SHORT_NAMES = ARRAY_MODULES | {"np", "cp"}


def layer_modules() -> list[Path]:
    files = sorted((PACKAGE / "ops").glob("*.py"))
    files += sorted((PACKAGE / "nn").rglob("*.py"))
    files += [PACKAGE / "optim.py", PACKAGE / "data" / "augment.py"]
    assert all(f.is_file() for f in files), files
    return files


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _root(name: str) -> str:
    return name.split(".")[0]


def _is_xp(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id.endswith("xp")) or (
        isinstance(node, ast.Attribute) and node.attr.endswith("xp")
    )


def _is_module_ref(node: ast.AST) -> bool:
    """``numpy``, ``np``, ``something.cupy``: a reference to an array module by name."""
    return (isinstance(node, ast.Name) and node.id in SHORT_NAMES) or (
        isinstance(node, ast.Attribute) and node.attr in SHORT_NAMES
    )


def violations(source: str) -> list[str]:
    """Return one line per forbidden construct in ``source``."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import):
            found += [f"line {line}: import {a.name}" for a in node.names
                      if _root(a.name) in ARRAY_MODULES]  # fmt: skip
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and _root(node.module) in ARRAY_MODULES:
                found.append(f"line {line}: from {node.module} import ...")
        elif isinstance(node, ast.Name) and node.id in SHORT_NAMES:
            found.append(f"line {line}: uses the name {node.id!r}")
        elif isinstance(node, ast.Attribute) and node.attr in {"__name__", "__module__"}:
            if _is_xp(node.value) or node.attr == "__module__":
                found.append(f"line {line}: asks for .{node.attr} (a backend branch)")
        elif isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Is | ast.IsNot) for op in node.ops
        ):
            # `xp is numpy`, `xp is not backend.cupy`; `cached_xp is xp` is a cache check
            if any(_is_module_ref(s) for s in [node.left, *node.comparators]):
                found.append(f"line {line}: compares with an array module (a backend branch)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip().lower()
            if id(node) not in docstrings and _root(text) in ARRAY_MODULES:
                found.append(f"line {line}: string {node.value!r} names an array module")
    return found


def test_there_are_layer_modules_to_check():
    names = {p.name for p in layer_modules()}
    assert {"conv.py", "pool.py", "linear.py", "activation.py", "loss.py"} <= names


@pytest.mark.parametrize("path", layer_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layer_module_is_backend_agnostic(path: Path):
    found = violations(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(PACKAGE.parent)}:\n  " + "\n  ".join(found)


# The checker itself: it must catch each way of reaching for a backend, and pass clean code.
BAD = [
    "import numpy",
    "import numpy as np",
    "import cupy as cp",
    "import cupyx.scipy.signal",
    "from numpy import zeros",
    "from cupy.cuda import Device",
    "def f(xp):\n    if xp is numpy:\n        pass",
    "def f(xp, backend):\n    return xp is not backend.cupy",
    "def f(xp):\n    return xp.__name__ == 'cupy'",
    "def f(self):\n    return self._xp.__name__.startswith('c')",
    "def f(x):\n    return type(x).__module__.startswith('cu')",
    "import importlib\nm = importlib.import_module('cupy')",
    "import sys\nm = sys.modules['numpy']",
    "def f(x):\n    return np.asarray(x)",
]
GOOD = [
    '"""Works with NumPy or CuPy; cupy arrays stay on the GPU."""\nfrom . import conv',
    "def f(x):\n    '''cupy docstring.'''\n    return type(x).__name__",
    "def f(xp, a):\n    return xp.zeros(3) if a is None else a",
    "def f(self, xp):\n    if self._rng_xp is not xp:\n        self._rng_xp = xp",
    "msg = f'expected a NumPy or CuPy array, got {1}'",
    "from . import conv\nfrom .. import _args",
]


@pytest.mark.parametrize("source", BAD)
def test_checker_catches(source):
    assert violations(source), source


@pytest.mark.parametrize("source", GOOD)
def test_checker_passes(source):
    assert violations(source) == [], source
