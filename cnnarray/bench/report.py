"""The results of a run as a JSON file, a rich table and a bar chart."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..io import atomic_write_bytes
from .cases import CASES
from .peers import ONE_ROUND_PEERS, _estimated_call_s
from .timing import MIN_REPEATS, MIN_WARMUP


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


def render_table(results: dict[str, Any], wide: bool = False) -> Any:
    """Return a ``rich.table.Table`` of the records that ran, with notes on the rest.

    Narrow (default, fits 80 columns): case, mode, peer, median ms, GFLOP/s,
    % of the GEMM ceiling and "vs cnnarray" (median / cnnarray's median: above
    1 is slower). ``wide`` adds min-max ms, "vs torch" (when torch ran), max
    |diff| vs cnnarray's outputs (forward output, and gradients in fwd+bwd)
    and a note column. Skipped runs get no row: the caption says, once per
    peer, which were not installed, not applicable or too slow (with the
    ``--slow-limit`` that would time them); failed runs keep a row, their
    error in the notes.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    meta = results.get("metadata", {})
    records = [r for r in results["records"] if not r["status"].startswith("skipped")]
    ran = [p for p in meta.get("peers") or _peers(records) if _timed(records, p)]
    threads = (meta.get("threads") or {}).get("blas")
    title = f"cnnarray bench on {meta.get('device', '?')} ({meta.get('device_name', '')})"
    if threads and meta.get("device") == "cpu":
        title += f", {threads} BLAS threads"
    # narrow: no vertical rules, to leave 80 columns to the numbers
    table = Table(title=title, caption="\n".join(notes(results)), caption_justify="left",
                  **({} if wide else {"box": box.SIMPLE_HEAD, "pad_edge": False}))  # fmt: skip
    columns = ["case", "mode", "peer", "median ms", *(["min-max ms"] if wide else []),
               "GFLOP/s", "% GEMM", *(["vs cnnarray"] if len(ran) > 1 else []),
               *(["vs torch"] if wide and "torch" in ran else []),
               *(["max |diff|", "note"] if wide else [])]  # fmt: skip
    rows, previous = [], None
    for r in records:
        group = (r["case"], r["mode"])
        cells = {"case": r["case"], "mode": r["mode"]} if group != previous else {}
        previous = group
        cells["peer"] = r["peer"]
        if r["median_s"] is None:
            cells["median ms"] = "failed"
            cells["note"] = Text(r["status"], style="dim")  # the error as text, not markup
        else:
            frac, ratio = r["fraction_of_gemm_ceiling"], r["ratio_vs_torch"]
            diffs = [d for d in (r["max_abs_diff"], r["grad_max_abs_diff"]) if d is not None]
            cells.update({
                "median ms": _fmt(r["median_s"] * 1e3),
                "min-max ms": f"{_fmt(r['min_s'] * 1e3)}-{_fmt(r['max_s'] * 1e3)}",
                "GFLOP/s": "" if r["gflops"] is None else _fmt(r["gflops"]),
                "% GEMM": "" if frac is None else f"{100 * frac:.1f}%",
                "vs cnnarray": "" if r["ratio_vs_cnnarray"] is None else
                               f"{r['ratio_vs_cnnarray']:.3g}",
                "vs torch": "" if ratio is None else f"{ratio:.3g}",
                "max |diff|": "ref" if r["peer"] == "cnnarray" else
                              f"{max(diffs):.1e}" if diffs else "",
            })  # fmt: skip
        rows.append((group, cells))
    # a column empty in every row (GFLOP/s of pooling, % GEMM without matmul) is left out
    keep = ("case", "mode", "peer", "median ms")
    columns = [c for c in columns if c in keep or any(cells.get(c) for _, cells in rows)]
    for name in columns:
        table.add_column(name, justify="left" if name in ("case", "mode", "peer", "note")
                         else "right")  # fmt: skip
    for i, (group, cells) in enumerate(rows):
        if i and group != rows[i - 1][0]:
            table.add_section()
        table.add_row(*[cells.get(name, "") for name in columns])
    return table


def _peers(records: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["peer"] for r in records))


def _timed(records: list[dict[str, Any]], peer: str) -> bool:
    return any(r["peer"] == peer and r["median_s"] is not None for r in records)


def notes(results: dict[str, Any]) -> list[str]:
    """The table's footnotes: how to read it, and why runs are missing or failed.

    Only peers that ran are named in the method notes; each peer that did not
    run somewhere gets one line (not installed / not applicable / too slow,
    with the ``--slow-limit`` that would time it and about how long that takes).
    """
    meta = results.get("metadata", {})
    records = results["records"]
    ran = [p for p in meta.get("peers") or _peers(records) if _timed(records, p)]
    lines = []
    if len(ran) > 1:
        lines.append("vs X: median / X's median (above 1: slower than X).")
    fast = [p for p in ran if p not in ONE_ROUND_PEERS]
    if (meta.get("rounds") or 1) > 1 and fast:
        lines.append(f"{' and '.join(fast)}: {meta['rounds']} interleaved worker processes "
                     "per case, their timed calls pooled.")  # fmt: skip
    ceiling = meta.get("gemm_ceiling")
    if ceiling:
        lines.append(f"GEMM ceiling: {_fmt(ceiling['gflops'])} GFLOP/s ({ceiling['peer']} matmul).")
    for peer in meta.get("peers") or _peers(records):
        mine = [r for r in records if r["peer"] == peer]
        missing = [r for r in mine if r["status"].endswith("not installed")]
        if missing:
            lines.append(f"{peer}: {missing[0]['status'][len('skipped: ') :]}, left out.")
            continue
        na = _labels([r for r in mine if r["status"] == "skipped: not applicable"])
        if na:
            lines.append(f"{peer}: not applicable to {na}.")
        slow = [r for r in mine if r["status"].startswith("skipped: too slow")]
        if slow:
            calls = [_estimated_call_s(peer, CASES[r["case"]], r["mode"]) or 0.0 for r in slow]
            extra = sum(calls) * (MIN_WARMUP + MIN_REPEATS)  # warm-up and timed calls
            limit = max(calls) * 1.2
            lines.append(
                f"{peer}: skipped where one call would take over "
                f"{meta.get('slow_limit_s', '?')} s: {_labels(slow)}; --slow-limit "
                f"{math.ceil(limit) if limit >= 1 else _fmt(limit)} times them too (about "
                f"{f'{extra / 60:.0f} min' if extra >= 90 else f'{extra:.0g} s'} more)."
            )
        for r in mine:
            if r["status"].startswith("error"):
                lines.append(f"{peer} on {r['case']} {r['mode']}: {r['status']}")
    return lines


def _labels(records: list[dict[str, Any]]) -> str:
    """``"a, b (fwd+bwd)"``: the cases of ``records``, a mode named where not all are in."""
    modes: dict[str, list[str]] = {}
    for r in records:
        modes.setdefault(r["case"], []).append(r["mode"])
    return ", ".join(case if len(m) == len(CASES[case].modes) else f"{case} ({', '.join(m)})"
                     for case, m in modes.items())  # fmt: skip
