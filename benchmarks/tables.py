"""Print a results JSON of ``cnnarray bench`` as a Markdown table.

python benchmarks/tables.py benchmarks/results/cpu.json
"""

from __future__ import annotations

import json
import sys


def _ms(record: dict) -> str:
    if record["status"] != "ok":
        return record["status"].replace("skipped: ", "")
    lo, hi = record["min_s"] * 1e3, record["max_s"] * 1e3
    return f"{record['median_s'] * 1e3:,.3g} ({lo:,.3g}-{hi:,.3g})"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:,.3g}"


def table(results: dict) -> str:
    peers = [p for p in results["metadata"]["peers"] if p != "cnnarray"]
    slow = [p for p in peers if p != "torch"]
    header = ["case", "mode", "cnnarray ms (min-max)", "GFLOP/s", "% GEMM ceiling"]
    header += [f"{p} ms" for p in peers]
    header += ["cnnarray / torch"] if "torch" in peers else []
    header += [f"{p} / cnnarray" for p in slow]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_key = {(r["case"], r["mode"], r["peer"]): r for r in results["records"]}
    for (case, mode, peer), r in by_key.items():
        if peer != "cnnarray":
            continue
        frac = r.get("fraction_of_gemm_ceiling")
        cells = [case, mode, _ms(r), "" if r.get("gflops") is None else f"{r['gflops']:,.3g}",
                 "" if frac is None else f"{100 * frac:.0f} %"]  # fmt: skip
        others = [by_key.get((case, mode, p)) for p in peers]
        cells += [_ms(o) if o else "" for o in others]
        cells += [_ratio(r.get("ratio_vs_torch"))] if "torch" in peers else []
        for p in slow:
            o = by_key.get((case, mode, p))
            cells.append(_ratio(o.get("ratio_vs_cnnarray")) if o and o["status"] == "ok" else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(table(json.load(open(path))))
