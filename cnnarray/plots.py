"""Every figure cnnarray draws, each a :class:`matplotlib.figure.Figure` built directly.

No function here touches pyplot or selects a matplotlib backend: a figure is
drawn on its own Agg canvas and :func:`png_bytes` renders it, so calling these
from a notebook leaves the notebook's backend and its open figures alone.
Writing the bytes is the caller's job (:func:`cnnarray.io.atomic_write_bytes`).

Examples
--------
>>> fig = training_curves([])
>>> png_bytes(fig)[:8]
b'\\x89PNG\\r\\n\\x1a\\n'
"""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "FORMATS",
    "benchmark_chart",
    "confusion_matrix",
    "demo_grid",
    "figure_bytes",
    "figure_format",
    "filters_and_maps",
    "png_bytes",
    "training_curves",
]

#: File formats a figure can be written in, by file suffix (what Agg's savefig writes)
FORMATS = ("png", "jpg", "jpeg", "webp", "tif", "tiff", "gif", "pdf", "svg", "svgz", "eps", "ps")


def _figure(width: float, height: float) -> Figure:
    """Return an empty figure of ``width`` x ``height`` inches on its own Agg canvas."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, dpi: int = 90) -> bytes:
    """Render ``fig`` as PNG at ``dpi`` dots per inch and return the file's bytes.

    Any figure works, one from pyplot too: savefig renders on a temporary Agg
    canvas when the figure's own canvas cannot write PNG.
    """
    return figure_bytes(fig, "png", dpi)


def figure_format(path: Any) -> str:
    """Return the format a figure written to ``path`` should have, from its suffix.

    Raises
    ------
    ValueError
        If the suffix is not one of :data:`FORMATS`; the message lists them.

    Examples
    --------
    >>> figure_format("curves.JPG")
    'jpg'
    """
    suffix = str(path).rpartition(".")[2].lower() if "." in str(path) else ""
    if suffix not in FORMATS:
        raise ValueError(f"cannot tell the image format of {path}: expected a file name ending "
                         f"in .{', .'.join(FORMATS)}")  # fmt: skip
    return suffix


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 90) -> bytes:
    """Render ``fig`` in format ``fmt`` (one of :data:`FORMATS`) and return the file's bytes.

    JPEG has no transparency: the figure is drawn on its white background.
    """
    buffer = BytesIO()
    fig.savefig(buffer, format=figure_format(f".{fmt}"), dpi=dpi)
    return buffer.getvalue()


def training_curves(history: Sequence[Any]) -> Figure:
    """Draw loss (log scale) and accuracy per epoch, training beside validation.

    Parameters
    ----------
    history : sequence of EpochStats
        Anything with ``epoch``, ``train_loss``, ``val_loss``,
        ``train_accuracy`` and ``val_accuracy`` (fractions) attributes; the
        validation curves are left out when their values are None.
    """
    epochs = [h.epoch for h in history]
    fig = _figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h.train_loss for h in history], label="train")
    validated = history[0].val_loss is not None if history else False
    if validated:
        ax_loss.plot(epochs, [h.val_loss for h in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss", yscale="log")
    ax_acc.plot(epochs, [100 * h.train_accuracy for h in history], label="train")
    if validated:
        ax_acc.plot(epochs, [100 * h.val_accuracy for h in history], label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        for line in ax.get_lines():  # a one-epoch run is a single point: show it
            line.set(marker="o", markersize=3)
        if len(epochs) <= 12:  # epochs are whole numbers: a tick for each
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_matrix(
    confusion: np.ndarray, classes: Sequence[str], title: str = "confusion matrix"
) -> Figure:
    """Draw a confusion matrix with its counts written in the cells.

    Parameters
    ----------
    confusion : numpy.ndarray, shape (K, K), integer
        ``confusion[i, j]`` counts samples of class ``i`` predicted as ``j``
        (see :func:`cnnarray.train.confusion_matrix`).
    classes : sequence of str, length K
        Class names, for the tick labels.
    title : str, default "confusion matrix"
        The figure's title: say which model, which data and the accuracy.
    """
    fig = _figure(6, 5)
    ax = fig.subplots()
    im = ax.imshow(confusion, cmap="Blues")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted",
           ylabel="true", title=title)  # fmt: skip
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    for (i, j), v in np.ndenumerate(confusion):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                color="white" if v > confusion.max() / 2 else "black")  # fmt: skip
    fig.colorbar(im)
    fig.tight_layout()
    return fig


def _sign_note(m: np.ndarray) -> str:
    """Say why a map is black: a filter whose every response is negative, cut by ReLU."""
    if m.max() > 0:
        return ""
    if m.min() < 0:
        return "\nall < 0: ReLU will zero it"
    return "\nall 0 (black): its responses\nwere all negative before ReLU"


def demo_grid(stages: Sequence[Any], filter_names: Sequence[str]) -> Figure:
    """Draw the demo's maps: a row per stage, a column per filter, shapes in the titles.

    Parameters
    ----------
    stages : sequence of cnnarray.demo.Stage
        Anything with ``name`` (str) and ``output`` (array of shape (C, H, W));
        the stage named ``"input"`` gets no filter name in its titles.
    filter_names : sequence of str
        Name of the filter behind each channel, at least as many as the widest stage.
        A map with no positive value says why in its title (ReLU zeroes negatives).
    """
    cols = max(s.output.shape[0] for s in stages)
    fig = _figure(2.6 * cols, 2.8 * len(stages))
    axes = fig.subplots(len(stages), cols)
    for r, stage in enumerate(stages):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c >= stage.output.shape[0]:
                continue
            m = stage.output[c]
            ax.imshow(m, cmap="gray")
            label = "" if stage.name == "input" else f"\n{filter_names[c]}"
            ax.set_title(f"{stage.name}{label}\n{tuple(m.shape)}{_sign_note(m)}", fontsize=8)
    fig.suptitle("cnnarray demo: filters -> ReLU -> pooling (shape of each map in its title)")
    fig.tight_layout()
    return fig


def filters_and_maps(image: np.ndarray, weights: np.ndarray,
                     maps: Sequence[tuple[str, np.ndarray]], title: str) -> Figure:  # fmt: skip
    """Draw an image, a conv layer's filters and the image's activation maps (16 at most).

    Parameters
    ----------
    image : numpy.ndarray, shape (C, H, W)
        The input, grayscale (C = 1) or RGB (C = 3).
    weights : numpy.ndarray, shape (C_out, C_in, kh, kw)
        The filters: the first input channel of each is drawn on a blue-white-red
        scale around 0, or all three as colour when ``C_in == 3``.
    maps : sequence of (str, numpy.ndarray of shape (C, H', W'))
        The layer's name and its output, one row each.
    title : str
        What the image is, for the figure's title.
    """
    n = min(weights.shape[0], 16)  # a readable grid: the first 16 filters and maps
    # say what is drawn where it is less than what the shape says
    shown = "" if n == weights.shape[0] else f"\nfirst {n} of {weights.shape[0]}"
    rows = 2 + len(maps)
    fig = _figure(1.6 * (n + 1), 1.8 * rows)
    axes = fig.subplots(rows, n + 1, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0),
                      cmap="gray")  # fmt: skip
    axes[0, 0].set_title(f"input {tuple(image.shape)}", fontsize=7)
    for k in range(n):
        w = weights[k]
        if w.shape[0] == 3:
            w = (w - w.min()) / (np.ptp(w) + 1e-12)
            axes[1, k + 1].imshow(w.transpose(1, 2, 0))
        else:
            axes[1, k + 1].imshow(w[0], cmap="bwr", vmin=-abs(w).max(), vmax=abs(w).max())
        axes[1, k + 1].set_title(f"filter {k}\n{tuple(w.shape)}", fontsize=7)
    axes[1, 0].text(0.5, 0.5, f"conv1 filters\n{tuple(weights.shape)}{shown}",
                    ha="center", va="center", fontsize=8)  # fmt: skip
    for r, (name, m) in enumerate(maps, start=2):
        maps_shown = "" if m.shape[0] <= n else f"\nfirst {n} of {m.shape[0]} maps"
        axes[r, 0].text(0.5, 0.5, f"{name}\n{tuple(m.shape)}{maps_shown}", ha="center",
                        va="center", fontsize=8)  # fmt: skip
        for k in range(min(n, m.shape[0])):
            axes[r, k + 1].imshow(m[k], cmap="viridis")
            axes[r, k + 1].set_title(f"map {k} {tuple(m[k].shape)}", fontsize=6)
    fig.suptitle(f"first-layer filters and activation maps of {title}", fontsize=9)
    fig.tight_layout()
    return fig


_PEER_COLOURS = {"cnnarray": "C0", "torch": "C1", "scipy": "C2", "naive": "C3"}


def _bench_groups(results: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    groups: list[tuple[str, str]] = []
    peers: list[str] = []
    for r in results["records"]:
        if (r["case"], r["mode"]) not in groups:
            groups.append((r["case"], r["mode"]))
        if r["peer"] not in peers and r["median_s"] is not None:
            peers.append(r["peer"])  # a peer that never ran gets no legend entry
    return groups, peers


def benchmark_chart(results: dict[str, Any]) -> Figure:
    """Return a bar chart of ``cnnarray bench`` results: the median time of each
    case/mode and peer (ms, log scale); error bars span min to max, skipped and
    failed runs have no bar."""
    groups, peers = _bench_groups(results)
    by_key = {(r["case"], r["mode"], r["peer"]): r for r in results["records"]}
    fig = _figure(max(6.0, 0.9 * len(groups) + 2.0), 4.8)
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(peers), 1)
    for j, peer in enumerate(peers):
        xs, ys, low, high = [], [], [], []
        for i, (case, mode) in enumerate(groups):
            r = by_key.get((case, mode, peer))
            if r is None or r["median_s"] is None:
                continue
            xs.append(i - 0.4 + (j + 0.5) * width)
            ys.append(r["median_s"] * 1e3)
            low.append((r["median_s"] - r["min_s"]) * 1e3)
            high.append((r["max_s"] - r["median_s"]) * 1e3)
        colour = _PEER_COLOURS.get(peer)  # the same for a peer whichever others ran
        ax.bar(xs, ys, width, yerr=[low, high], capsize=2, label=peer, color=colour)
    ax.set_yscale("log")
    ax.set_ylabel("median time per call (ms, log scale)")
    ax.set_xticks(range(len(groups)), [f"{c}\n{m}" for c, m in groups])
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend()
    meta = results.get("metadata", {})
    ax.set_title(f"cnnarray bench on {meta.get('device', '?')} ({meta.get('device_name', '')})")
    return fig
