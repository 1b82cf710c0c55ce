"""The house's rules, read from the source with ``ast``.

1. Layer code is written once against ``xp``: no module of cnnarray/ops (nor cnnarray/nn,
   cnnarray/optim.py, cnnarray/data/augment.py) imports numpy or cupy, or asks which one it
   has. Only cnnarray/backend.py may know about CuPy; docstrings and comments that mention
   NumPy or CuPy are fine.
2. Imports point one way:
   cli -> train/bench/distributed -> nn/optim/data/io/plots -> ops -> backend/_args.
   An import inside a function (a lazy one) counts as much as one at the top.
3. No file of the package grows past 600 lines without saying at its top why it is one file.
4. Scalar arguments are checked through ``_args`` (check_int, check_real, check_bool), never by
   a hand-written ``isinstance(value, bool) or ...``.
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


# --------------------------------------------------------------------------- arrows

ROOT = "cnnarray"

# part of the package -> parts it must never import
_ABOVE_OPS = {"nn", "optim", "data", "io", "plots", "train", "bench", "distributed", "cli"}
FORBIDDEN = {
    "backend": {"autograd", "ops", *_ABOVE_OPS, "ROOT"},
    "_workspace": {"autograd", "ops", *_ABOVE_OPS, "ROOT"},
    "_args": {"backend", "autograd", "ops", *_ABOVE_OPS},
    # the tape reaches the ops through backend.dispatch's __cnnarray_function__ hook
    "ops": {"autograd", *_ABOVE_OPS, "ROOT"},
    "autograd": {*_ABOVE_OPS, "ROOT"},
    "nn": {"optim", "data", "plots", "train", "bench", "distributed", "cli", "ROOT"},
    "optim": {"data", "plots", "train", "bench", "distributed", "cli", "ROOT"},
    # data and io may use the public ``cnnarray.nn`` package, never its internals (below)
    "data": {"optim", "plots", "train", "bench", "distributed", "cli", "ROOT"},
    "io": {"optim", "plots", "train", "bench", "distributed", "cli", "ROOT"},
    "plots": {"train", "bench", "distributed", "cli", "ROOT"},
    # train defines the Parallel hooks; cnnarray.distributed implements them
    "train": {"bench", "distributed", "cli", "callbacks", "progress"},
    "distributed": {"bench", "cli"},
    "callbacks": {"bench", "cli"},
    "progress": {"bench", "cli"},
    "bench": {"train", "cli"},
}
MAX_LINES = 600
LONG_FILE_MARK = "Length:"  # a long module's docstring says why it is one file


def all_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def dotted(path: Path, package: Path = PACKAGE) -> str:
    parts = (ROOT, *path.relative_to(package).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(name: str) -> str | None:
    """``cnnarray.ops.conv`` -> ``ops``; ``cnnarray`` itself -> ``ROOT``; outside -> None."""
    pieces = name.split(".")
    if pieces[0] != ROOT:
        return None
    return pieces[1] if len(pieces) > 1 else "ROOT"


def imported(path: Path, package_dir: Path = PACKAGE) -> list[tuple[int, str]]:
    """Every cnnarray module that ``path`` imports, as (line, dotted name)."""
    name = dotted(path, package_dir)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if node.module is None or module == ROOT:
                # `from .. import _args`: the names are the modules imported
                found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return [(line, name) for line, name in found if part_of(name) is not None]


def import_violations(path: Path, package_dir: Path = PACKAGE) -> list[str]:
    """One line per import of ``path`` (a file of the package in ``package_dir``) that
    points the wrong way."""
    me = part_of(dotted(path, package_dir))
    rel = path.relative_to(package_dir).as_posix()
    found = []
    for line, name in imported(path, package_dir):
        target = part_of(name)
        if target == "cli" and rel != "__main__.py":
            found.append(f"line {line}: imports {name} (nothing imports the command line)")
        elif target != me and target in FORBIDDEN.get(me, ()):
            found.append(f"line {line}: {me} imports {name}")
        elif me in ("data", "io") and target == "nn" and name != f"{ROOT}.nn":
            found.append(f"line {line}: {me} imports nn internals ({name})")
    return found


@pytest.mark.parametrize("path", all_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_point_one_way(path: Path) -> None:
    found = import_violations(path)
    assert not found, f"{path.relative_to(PACKAGE.parent)}:\n  " + "\n  ".join(found)


@pytest.mark.parametrize("path", all_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_long_files_say_why(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    lines = source.count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(source)) or ""
    assert LONG_FILE_MARK in doc, (
        f"{path.relative_to(PACKAGE.parent)} has {lines} lines (over {MAX_LINES}): split it by "
        f"job, or say at its top why it is one file (a '{LONG_FILE_MARK}' line in its docstring)"
    )


# The import checker itself, on made-up files.
@pytest.mark.parametrize(
    ("rel", "source", "bad"),
    [
        ("ops/x.py", "from ..nn import Conv2d", True),
        ("ops/x.py", "def f():\n    from cnnarray.train import fit", True),
        (
            "ops/x.py",
            "from .. import _args\nfrom ..backend import dispatch\nfrom . import pool",
            False,
        ),
        ("ops/x.py", "import cnnarray", True),
        ("nn/x.py", "from ..train import fit", True),
        ("nn/x.py", "from ..ops import conv2d\nfrom .module import Module", False),
        ("data/x.py", "from ..nn.module import Parameter", True),
        ("io.py", "from . import nn", False),
        ("train.py", "from .cli import app", True),
        ("__main__.py", "from .cli import main", False),
        ("bench/x.py", "from .. import cli", True),
        ("bench/x.py", "from ..ops import conv2d\nfrom . import cases", False),
        ("backend.py", "from . import ops", True),
    ],
)
def test_import_checker(tmp_path: Path, rel: str, source: str, bad: bool) -> None:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    assert bool(import_violations(path, tmp_path)) is bad, import_violations(path, tmp_path)


# --------------------------------------------------------------------------- one idiom


def hand_checks(source: str) -> list[int]:
    """Lines of ``isinstance(value, bool)``: the start of a hand-written scalar check,
    which belongs in ``_args`` (check_int, check_real, check_bool)."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "isinstance"
        and len(node.args) == 2
        and isinstance(node.args[1], ast.Name)
        and node.args[1].id == "bool"
    ]


@pytest.mark.parametrize("path", all_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_scalar_checks_go_through_args(path: Path) -> None:
    if path.name == "_args.py" and path.parent == PACKAGE:
        return
    lines = hand_checks(path.read_text(encoding="utf-8"))
    assert not lines, f"{path.relative_to(PACKAGE.parent)}: hand-written check at lines {lines}"


def test_hand_check_finder() -> None:
    assert hand_checks("if isinstance(v, bool) or not isinstance(v, int) or v < 1:\n    pass")
    assert hand_checks("ok = not isinstance(flag, bool)")
    assert not hand_checks("n = _args.check_int(v, 'n', minimum=1)\nok = isinstance(v, int)")
