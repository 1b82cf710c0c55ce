"""The ``cnnarray`` command line.

Each command that computes takes ``--device/-d cpu|cuda|cuda:N|auto`` after
its name, e.g. ``cnnarray check --device cuda``.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .backend import Backend, BackendUnavailableError, cuda_unavailable_reason, get_backend

app = typer.Typer(
    name="cnnarray",
    help="Convolutional neural networks on NumPy (CPU) and CuPy (CUDA) from one code base.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console()
err_console = Console(stderr=True)


def _parse_device(value: str) -> str:
    """Validate the spelling of --device; availability is checked by :func:`_backend`."""
    kind, sep, index = value.strip().lower().partition(":")
    known = kind in ("cpu", "numpy", "auto", "cuda", "cupy", "gpu")
    if not known or (sep and (kind not in ("cuda", "cupy", "gpu") or not index.isdigit())):
        raise typer.BadParameter(f"expected cpu, cuda, cuda:N or auto, got {value!r}")
    return value


DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        "-d",
        help="Where to compute: cpu, cuda, cuda:N (GPU N) or auto (CUDA if usable, else CPU).",
        callback=_parse_device,
    ),
]


def _backend(device: str) -> Backend:
    """Return the backend for --device, or exit 1 with a one-line reason."""
    try:
        return get_backend(device)
    except BackendUnavailableError as exc:
        err_console.print(f"error: --device {device}: {exc}", soft_wrap=True, markup=False)
        raise typer.Exit(1) from None


def _blas_info() -> tuple[str, str]:
    """Return (library, threads) of the BLAS NumPy uses."""
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                name = f"{pool.get('internal_api')} {pool.get('version') or ''}".strip()
                return name, str(pool.get("num_threads"))
    except ImportError:
        pass
    import numpy as np

    config = np.show_config(mode="dicts") if hasattr(np, "show_config") else {}
    blas = config.get("Build Dependencies", {}).get("blas", {}) if config else {}
    return str(blas.get("name", "unknown")), "unknown"


@app.command()
def info() -> None:
    """Show versions, which backends are usable (and why not), the GPU and the BLAS."""
    import numpy as np
    import scipy

    table = Table(title=f"cnnarray {__version__}", show_header=False)
    table.add_row("python", f"{platform.python_version()} ({sys.executable})")
    table.add_row("platform", platform.platform())
    table.add_row("numpy", np.__version__)
    table.add_row("scipy", scipy.__version__)
    blas, threads = _blas_info()
    table.add_row("BLAS", f"{blas}, {threads} threads")
    table.add_row("CPU cores", str(os.cpu_count()))
    table.add_row("backend cpu", "[green]usable[/]")
    reason = cuda_unavailable_reason()
    if reason is None:
        cupy = get_backend("cuda").xp
        table.add_row("backend cuda", f"[green]usable[/] (CuPy {cupy.__version__})")
        for i in range(cupy.cuda.runtime.getDeviceCount()):
            props = cupy.cuda.runtime.getDeviceProperties(i)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            gib = props["totalGlobalMem"] / 2**30
            table.add_row(f"cuda:{i}", f"{name}, {gib:.1f} GiB")
    else:
        table.add_row("backend cuda", f"[red]unavailable[/]: {escape(reason)}")
    table.add_row("auto", str(get_backend("auto")))
    console.print(table)


@app.command()
def check(
    device: DeviceOption = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the random test inputs.")] = 0,
) -> None:
    """Check every operation, forward and backward, against the SciPy/float64 oracle.

    Prints one row per comparison and exits with status 1 on any mismatch.
    """
    from .check import run_checks

    backend = _backend(device)
    results = run_checks(backend, seed=seed)
    table = Table(title=f"cnnarray check on {backend}")
    for column in ("op", "case", "dtype", "max error", "tolerance", "ok"):
        table.add_column(
            column, justify="right" if column in ("max error", "tolerance") else "left"
        )
    for r in results:
        table.add_row(r.op, r.case, r.dtype, f"{r.error:.2e}", f"{r.tolerance:.0e}",
                      "[green]ok[/]" if r.ok else "[red]FAIL[/]")  # fmt: skip
    console.print(table)
    failed = [r for r in results if not r.ok]
    if failed:
        err_console.print(f"{len(failed)} of {len(results)} checks FAILED on {backend}")
        raise typer.Exit(1)
    console.print(f"all {len(results)} checks passed on {backend}")


def main() -> None:
    """Entry point of the ``cnnarray`` console script."""
    app()


if __name__ == "__main__":
    main()
