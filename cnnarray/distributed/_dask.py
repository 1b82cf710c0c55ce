"""Batch inference on Dask: a trained model mapped over many image files, in partitions.

Each partition is a list of files; a worker loads the checkpoint once (kept
per worker process, keyed by path and modification time) and reports every
file as :func:`cnnarray.data.preprocess.prediction` does for ``cnnarray
predict``, so the two give the same rows. A file that cannot be read gets a
row with its ``error`` and does not stop the run.
"""

from __future__ import annotations

import csv
import glob
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _args

__all__ = ["image_paths", "predict_dask", "predict_files", "write_predictions"]

INSTALL_HINT = "pip install 'cnnarray[dask]'"

# checkpoint (path, mtime, device) -> (model, spec, backend), per worker process
_MODELS: dict[tuple[str, int, str], tuple[Any, dict, Any]] = {}


def image_paths(specs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand folders (their image files, sorted) and glob patterns; keep plain files.

    Raises FileNotFoundError naming a folder without images or a pattern that
    matches nothing; a plain file is kept even when missing (its row says so).
    """
    from ..data.datasets import _image_files

    found: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = _image_files(path)
            if not files:
                raise FileNotFoundError(f"no image files in folder {path}")
            found += files
        elif glob.has_magic(str(spec)) and not path.exists():
            matches = sorted(Path(p) for p in glob.glob(str(spec), recursive=True))
            if not matches:
                raise FileNotFoundError(f"no file matches {str(spec)!r}")
            found += [p for p in matches if p.is_file()]
        else:
            found.append(path)
    return found


def _model(model_path: str, device: str) -> tuple[Any, dict, Any]:
    """The checkpoint's model, loaded once per worker process (again if the file changes)."""
    from ..backend import get_backend
    from ..train import load_model

    key = (model_path, os.stat(model_path).st_mtime_ns, device)
    if key not in _MODELS:
        backend = get_backend(device)
        model, spec, _ = load_model(model_path, backend)
        _MODELS[key] = (model, spec, backend)
    return _MODELS[key]


def predict_files(model_path: str, paths: Sequence[str], top: int = 3,
                  device: str = "cpu") -> list[dict[str, Any]]:  # fmt: skip
    """Predict each file; the body of one partition, run on a worker (or here).

    Returns one dict per file, in order: ``image``, ``top`` (class and
    probability, most probable first), ``unreliable``, ``preprocessing`` as
    ``cnnarray predict --json`` writes them, and ``error`` (None, or why the
    file could not be read).
    """
    from ..data import preprocess
    from ..train import predict_proba

    model, spec, backend = _model(model_path, device)
    record = spec.get("preprocess")
    rows: list[dict[str, Any]] = []
    loaded: list[tuple[int, np.ndarray, list[str]]] = []
    for path in paths:
        try:
            x, steps = preprocess.load_for_model(path, spec["input_shape"], record)
        except (OSError, ValueError) as exc:
            rows.append({"image": str(path), "top": [], "unreliable": [], "preprocessing": [],
                         "error": " ".join(str(exc).split())})  # fmt: skip
            continue
        loaded.append((len(rows), x, steps))
        rows.append({})
    if loaded:
        x = np.stack([xi for _, xi, _ in loaded])
        probs = predict_proba(model, x, backend)
        for (i, xi, steps), p in zip(loaded, probs, strict=True):
            row = preprocess.prediction(str(paths[i]), xi, steps, p, spec["classes"], top, record)
            rows[i] = {**row, "error": None}
    return rows


def predict_dask(
    model_path: str | os.PathLike,
    images: Sequence[str | os.PathLike],
    *,
    scheduler: str | None = None,
    workers: int = 2,
    partitions: int | None = None,
    top: int = 3,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Predict many image files on a Dask cluster; return one row per file, in order.

    Parameters
    ----------
    model_path : path
        A checkpoint written by ``cnnarray train``; every worker must be able
        to read it (and the images) at the same path.
    images : sequence of path
        Image files, folders (their image files) or glob patterns.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``). Default: a
        ``LocalCluster`` of ``workers`` processes bound to 127.0.0.1, closed
        at the end.
    workers : int, default 2
        Worker processes of the local cluster (one thread each).
    partitions : int, optional
        Number of tasks the files are split into (default: 4 per worker, at
        most one per file). Each worker loads the model once, whatever the count.
    top : int, default 3
        Classes reported per image.
    device : str, default "cpu"
        Backend on the workers.
    progress : callable, optional
        ``progress(done, total)`` after each finished partition.

    Returns
    -------
    list of dict
        As :func:`predict_files`; unreadable files have ``error`` set.
    """
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ModuleNotFoundError(
            f"Dask inference needs dask.distributed: {INSTALL_HINT}"
        ) from None
    workers = _args.check_int(workers, "workers", minimum=1)
    top = _args.check_int(top, "top", minimum=1)
    paths = [str(p) for p in image_paths(images)]
    if not paths:
        raise ValueError("images must name at least one file, got none")
    if partitions is None:
        partitions = min(len(paths), 4 * workers)
    partitions = _args.check_int(partitions, "partitions", minimum=1)
    parts = [list(p) for p in np.array_split(np.array(paths, dtype=object), partitions) if len(p)]
    model_path = str(Path(model_path).resolve())
    _model(model_path, device)  # a bad checkpoint fails here, once, with its own message
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)  # fmt: skip
    try:
        with Client(scheduler if cluster is None else cluster) as client:
            futures = {client.submit(predict_files, model_path, part, top, device, pure=False): i
                       for i, part in enumerate(parts)}  # fmt: skip
            results: list[list[dict[str, Any]]] = [[] for _ in parts]
            for done, future in enumerate(as_completed(futures), start=1):
                results[futures[future]] = future.result()
                if progress is not None:
                    progress(done, len(parts))
    finally:
        if cluster is not None:
            cluster.close()
    return [row for part in results for row in part]


def write_predictions(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> list[Path]:
    """Write rows as CSV at ``path`` (atomically), and as Parquet beside it when pyarrow is there.

    Columns: ``image``, ``class_1``, ``probability_1``, ... ``class_K``,
    ``probability_K``, ``unreliable`` and ``error`` (empty when none).
    Returns the files written.
    """
    from ..io import atomic_write_bytes

    path = Path(path)
    k = max((len(r["top"]) for r in rows), default=0)
    header = ["image"] + [f"{c}_{i}" for i in range(1, k + 1) for c in ("class", "probability")]
    header += ["unreliable", "error"]
    table = []
    for r in rows:
        cells: list[Any] = [r["image"]]
        for i in range(k):
            t = r["top"][i] if i < len(r["top"]) else {"class": "", "probability": ""}
            cells += [t["class"], t["probability"]]
        table.append(cells + ["; ".join(r["unreliable"]), r["error"] or ""])
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(table)
    atomic_write_bytes(path, text.getvalue().encode())
    written = [path]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return written
    columns = {name: [row[j] for row in table] for j, name in enumerate(header)}
    for name in header:
        if name.startswith("probability_"):
            columns[name] = [None if v == "" else float(v) for v in columns[name]]
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    parquet = path.with_suffix(".parquet")
    atomic_write_bytes(parquet, buffer.getvalue())
    return [*written, parquet]
