"""The results of a run as a JSON file, a rich table and a bar chart."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..io import atomic_write_bytes


def write_json(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``results`` to ``path`` as JSON, atomically (temp file, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(results, indent=2, allow_nan=False) + "\n").encode())
    return path


def plot(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Save :func:`cnnarray.plots.benchmark_chart` of ``results`` as PNG at ``path``."""
    from .. import plots  # matplotlib only when a chart is asked for, not in every worker

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, plots.png_bytes(plots.benchmark_chart(results), dpi=120))
    return path


def _fmt(value: float) -> str:
    """Three significant digits, without exponent up to the thousands."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def render_table(results: dict[str, Any]) -> Any:
    """Return a ``rich.table.Table`` with one row per record.

    Columns: case, mode, peer, median ms, min-max ms, GFLOP/s, % of the GEMM
    ceiling, "vs cnnarray" and "vs torch" (median / their median: above 1 is
    slower), max |diff| vs cnnarray's outputs (forward output, and gradients in
    fwd+bwd), and a note saying why a row was skipped or failed.
    """
    from rich.markup import escape
    from rich.table import Table

    meta = results.get("metadata", {})
    threads = (meta.get("threads") or {}).get("blas")
    title = f"cnnarray bench on {meta.get('device', '?')} ({meta.get('device_name', '')})"
    if threads and meta.get("device") == "cpu":
        title += f", {threads} BLAS threads"
    caption = "vs X: median / X's median (above 1: slower than X)."
    if (meta.get("rounds") or 1) > 1:
        caption += (f" cnnarray and torch: {meta['rounds']} interleaved worker processes"
                    " per case, their timed calls pooled.")  # fmt: skip
    ceiling = meta.get("gemm_ceiling")
    if ceiling:
        caption += f" GEMM ceiling: {_fmt(ceiling['gflops'])} GFLOP/s ({ceiling['peer']} matmul)."
    table = Table(title=title, caption=caption)
    for name in ("case", "mode", "peer", "median ms", "min-max ms", "GFLOP/s", "% GEMM",
                 "vs cnnarray", "vs torch", "max |diff|", "note"):  # fmt: skip
        left = name in ("case", "mode", "peer", "note")
        table.add_column(name, justify="left" if left else "right")
    previous = None
    for r in results["records"]:
        group = (r["case"], r["mode"])
        if previous is not None and group != previous:
            table.add_section()
        row = [r["case"], r["mode"]] if group != previous else ["", ""]
        previous = group
        row.append(r["peer"])
        if r["median_s"] is None:
            table.add_row(*row, "-", *[""] * 6, f"[dim]{escape(r['status'])}[/]")
            continue
        frac = r["fraction_of_gemm_ceiling"]
        diffs = [d for d in (r["max_abs_diff"], r["grad_max_abs_diff"]) if d is not None]
        table.add_row(
            *row,
            _fmt(r["median_s"] * 1e3),
            f"{_fmt(r['min_s'] * 1e3)}-{_fmt(r['max_s'] * 1e3)}",
            "" if r["gflops"] is None else _fmt(r["gflops"]),
            "" if frac is None else f"{100 * frac:.1f}%",
            *(
                "" if v is None else f"{v:.3g}"
                for v in (r["ratio_vs_cnnarray"], r["ratio_vs_torch"])
            ),
            "ref" if r["peer"] == "cnnarray" else f"{max(diffs):.1e}" if diffs else "",
            "",
        )
    return table
