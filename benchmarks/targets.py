"""Issue 16's targets, checked against a ``train_compare.py`` results document, and its tables.

Pure functions of the JSON document (no timing, no torch), so that a saved
result can be re-read: ``python benchmarks/targets.py RESULTS.json`` prints its
tables again.
"""

from __future__ import annotations

import json
import statistics
import sys

# Time per training step, cnnarray / PyTorch, at most (issue 16, "Targets").
STEP_LIMITS = {"lenet5": 1.0, "vgg_small": 1.3, "resnet20": 1.3}
INFERENCE_LIMIT = 1.0
LAYER_LIMIT = 1.2  # cases a-c of `cnnarray bench`, forward and forward+backward
MEMORY_LIMIT = 1.5  # peak memory of a training step
ACCURACY_POINTS = 0.3  # |mean test accuracy gap| on 5 seeds, in percentage points


def summary(times_s: list[float]) -> dict:
    """Median, quartiles and interquartile range (ms) of some timed calls, and their count."""
    ms = sorted(1e3 * t for t in times_s)
    q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else ms * 3
    return {"median_ms": statistics.median(ms), "q1_ms": q1, "q3_ms": q3, "iqr_ms": q3 - q1,
            "n": len(ms)}  # fmt: skip


def label(row: dict) -> str:
    """``lenet5 28x28x1 b32``: the model, its input (H x W x C) and batch size."""
    c, h, w = row["input"]
    return f"{row['model']} {h}x{w}x{c} b{row['batch']}"


def targets(doc: dict) -> list[dict]:
    """One row per target that ``doc`` measured: what, measured value, limit, met."""
    rows = []

    def add(target, measured, limit, met, unit="x"):
        rows.append({"target": target, "measured": measured, "limit": limit, "unit": unit,
                     "met": bool(met)})  # fmt: skip

    for r in doc.get("steps", []):
        limit = STEP_LIMITS.get(r["model"], 1.0)
        add(f"training step {label(r)}", r["ratio"], limit, r["ratio"] <= limit)
    for r in doc.get("inference", []):
        add(f"inference {label(r)}", r["ratio"], INFERENCE_LIMIT, r["ratio"] <= INFERENCE_LIMIT)
    for r in doc.get("layers", {}).get("records", []):
        ratio = r["ratio"]
        add(f"layer case {r['case']} {r['mode']}", ratio, LAYER_LIMIT,
            ratio is not None and ratio <= LAYER_LIMIT)  # fmt: skip
    for r in doc.get("memory", []):
        add(f"peak memory {label(r)}", r["ratio"], MEMORY_LIMIT, r["ratio"] <= MEMORY_LIMIT)
    for r in doc.get("accuracy", []):
        gap = r["accuracy_gap_points"]
        add(f"accuracy {r['model']} {r['dataset']} ({len(r['cnnarray']['test_accuracy_per_seed'])}"
            f" seeds, {r['epochs']} epochs)", gap, ACCURACY_POINTS, abs(gap) <= ACCURACY_POINTS,
            unit=" points")  # fmt: skip
    return rows


NOISY = 0.25  # an IQR above this fraction of the median marks a timing as noisy


def _noisy(s: dict) -> bool:
    return s["iqr_ms"] > NOISY * s["median_ms"]


def _ms(s: dict) -> str:
    return f"{s['median_ms']:.2f} ({s['iqr_ms']:.2f}){' *' if _noisy(s) else ''}"


def timing_table(rows: list[dict], title: str) -> str:
    """Markdown table of a timed part: median ms (IQR) of each framework and the ratio."""
    lines = [f"{title}: median ms (IQR), {rows[0]['cnnarray']['n']} calls pooled",
             "", "| case | cnnarray | PyTorch | ratio |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {label(r)} | {_ms(r['cnnarray'])} | {_ms(r['torch'])} | {r['ratio']:.2f} |"
              for r in rows]  # fmt: skip
    if any(_noisy(r[fw]) for r in rows for fw in ("cnnarray", "torch")):
        lines += ["", f"* noisy: the IQR is above {NOISY:.0%} of the median (other work on "
                  "the machine?); rerun those on a quiet machine"]  # fmt: skip
    return "\n".join(lines)


def memory_table(rows: list[dict]) -> str:
    mib = 2.0**20

    def fmt(value):
        return "n/a" if value is None else f"{value / mib:.1f}"

    lines = ["Peak memory of one training step above what is live at its start, MiB: "
             "cnnarray by tracemalloc, PyTorch by torch.profiler's allocations (their ratio is "
             "the target's); both by the rise of the peak RSS, beside it",
             "", "| case | cnnarray | PyTorch | ratio | RSS cnnarray | RSS PyTorch | RSS ratio |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        a, b = r["cnnarray"], r["torch"]
        rss = "n/a" if r["rss_ratio"] is None else f"{r['rss_ratio']:.2f}"
        lines.append(f"| {label(r)} | {fmt(a['peak_bytes'])} | {fmt(b['peak_bytes'])} | "
                     f"{r['ratio']:.2f} | {fmt(a['rss_bytes'])} | {fmt(b['rss_bytes'])} | "
                     f"{rss} |")  # fmt: skip
    return "\n".join(lines)


def batches_table(rows: list[dict]) -> str:
    """Images/s of training steps against the batch size, one line per model and batch."""
    lines = ["Training images/s against batch size (median step)", "",
             "| model | input | batch | cnnarray img/s | PyTorch img/s | time ratio |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        c, h, w = r["input"]
        lines.append(f"| {r['model']} | {h}x{w}x{c} | {r['batch']} | "
                     f"{r['cnnarray']['images_per_s']:,.0f} | {r['torch']['images_per_s']:,.0f} | "
                     f"{r['ratio']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def accuracy_table(rows: list[dict]) -> str:
    lines = ["Test accuracy after training on the real data, mean of the seeds", "",
             "| model | dataset | epochs | seeds | cnnarray % | PyTorch % | gap (points) |"
             " s/epoch cnnarray | s/epoch PyTorch |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        a, b = r["cnnarray"], r["torch"]
        lines.append(f"| {r['model']} | {r['dataset']} | {r['epochs']} | "
                     f"{len(a['test_accuracy_per_seed'])} | {100 * a['test_accuracy']:.2f} | "
                     f"{100 * b['test_accuracy']:.2f} | {r['accuracy_gap_points']:+.2f} | "
                     f"{a['median_epoch_s']:.3f} | {b['median_epoch_s']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def layers_table(layers: dict) -> str:
    lines = [f"`cnnarray bench` layer cases ({layers['cpu']}): median ms", "",
             "| case | mode | cnnarray | PyTorch | ratio |", "|---|---|---|---|---|"]  # fmt: skip
    for r in layers["records"]:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"| {r['case']} | {r['mode']} | {r['cnnarray_ms']:.3f} | "
                     f"{r['torch_ms']:.3f} | {ratio} |")  # fmt: skip
    return "\n".join(lines)


def targets_table(rows: list[dict]) -> str:
    """The closing table: target, measured, limit, met / not met, and the count met."""
    lines = ["| target | measured | limit | |", "|---|---|---|---|"]
    for r in rows:
        measured = "n/a" if r["measured"] is None else f"{r['measured']:.2f}{r['unit']}"
        bound = f"|gap| <= {r['limit']}" if r["unit"] == " points" else f"<= {r['limit']}x"
        lines.append(f"| {r['target']} | {measured} | {bound} | "
                     f"{'met' if r['met'] else 'NOT met'} |")  # fmt: skip
    met = sum(r["met"] for r in rows)
    return "\n".join([f"Targets of issue 16: {met} of {len(rows)} met", "", *lines])


def tables(doc: dict) -> list[str]:
    """The table of each part that ``doc`` has, in the order of a run."""
    out = []
    for key, title in (("steps", "Time per training step"),
                       ("inference", "Inference (eval, no grad) per batch")):  # fmt: skip
        if doc.get(key):
            out.append(timing_table(doc[key], title))
    for key, table in (("memory", memory_table), ("batches", batches_table),
                       ("layers", layers_table), ("accuracy", accuracy_table)):  # fmt: skip
        if doc.get(key):
            out.append(table(doc[key]))
    return out


def report(doc: dict) -> str:
    """Every table of ``doc``, then the targets."""
    return "\n\n".join([*tables(doc), targets_table(targets(doc))])


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(report(json.load(f)))
