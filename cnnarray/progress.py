"""What a training run shows on the console: a progress bar or plain lines, and its table."""

from __future__ import annotations

import time

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

__all__ = ["TrainingProgress", "epoch_line", "history_table"]


def history_table(history: list) -> Table:
    """Return the per-epoch table of ``history``, narrow enough for 80 columns."""
    table = Table(title="training summary (val: held-back part of the training set)",
                  box=box.SIMPLE_HEAD, pad_edge=False)  # fmt: skip
    for column in ("epoch", "lr", "train loss", "train acc", "val loss", "val acc", "s",
                   "img/s"):  # fmt: skip
        table.add_column(column, justify="right", no_wrap=True)
    for h in history:
        val = ("-", "-") if h.val_loss is None else (f"{h.val_loss:.4f}",
                                                     f"{100 * h.val_accuracy:.2f}%")  # fmt: skip
        table.add_row(str(h.epoch), f"{h.lr:.3g}", f"{h.train_loss:.4f}",
                      f"{100 * h.train_accuracy:.2f}%", *val, f"{h.seconds:.1f}",
                      f"{h.images_per_second:.0f}")  # fmt: skip
    return table


def epoch_line(stats, epochs: int) -> str:
    """Return the summary line of one epoch: training and validation loss and accuracy."""
    line = (f"epoch {stats.epoch}/{epochs}: train loss {stats.train_loss:.4f} "
            f"acc {100 * stats.train_accuracy:.2f}%")  # fmt: skip
    if stats.val_loss is not None:
        line += f", val loss {stats.val_loss:.4f} acc {100 * stats.val_accuracy:.2f}%"
    return f"{line}, {stats.seconds:.1f} s"


class TrainingProgress:
    """Show a run's progress: a Rich bar on a terminal, plain lines otherwise.

    The bar shows the epoch's running-mean loss and accuracy, throughput and
    ETA, and gives way to one summary line per epoch; without a terminal only
    the summary lines (and with ``log_every`` a line every N batches) are
    printed, each once. Pass :meth:`start`, :meth:`batch` and :meth:`end` to
    :class:`cnnarray.train.Callbacks`.

    Parameters
    ----------
    console : rich.console.Console
        Where to print.
    state : TrainState
        The run (for its configuration).
    log_every : int
        Report every this many batches too (0: per epoch only).
    logger : TensorBoardLog, optional
        Also gets the per-batch (every ``log_every``) and per-epoch numbers.
    quiet : bool
        Print nothing (the logger still gets its numbers).
    """

    def __init__(self, console: Console, state, log_every: int, logger, quiet: bool) -> None:
        self.console, self.state = console, state
        self.log_every, self.logger, self.quiet = log_every, logger, quiet
        self.live = console.is_terminal and not quiet
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(bar_width=16),
            MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
            TextColumn("acc {task.fields[acc]}"), TextColumn("{task.fields[speed]} img/s"),
            TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True,
        )  # fmt: skip
        self.task, self.batches, self.t0, self.epoch = None, 0, 0.0, 0

    def __enter__(self):
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.progress.stop()

    def start(self, epoch: int, batches: int) -> None:
        """Begin epoch ``epoch`` (0-based) of ``batches`` batches."""
        self.epoch, self.batches, self.t0 = epoch, batches, time.perf_counter()
        if self.live:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task("", total=batches, epoch=self._label(),
                                               loss="-", acc="-", speed="-")  # fmt: skip

    def _label(self) -> str:
        return f"{self.epoch + 1}/{self.state.config.epochs}"

    def batch(self, i: int, loss: float, acc: float) -> None:
        """Show batch ``i`` done, with the epoch's running-mean loss and accuracy."""
        # The last batch may be smaller: the rate is slightly high until the epoch ends.
        speed = (i + 1) * self.state.config.batch_size / max(time.perf_counter() - self.t0, 1e-9)
        if self.live:
            self.progress.update(self.task, advance=1, loss=f"{loss:.4f}", acc=f"{acc:.1%}",
                                 speed=f"{speed:.0f}")  # fmt: skip
        due = self.log_every and (i + 1) % self.log_every == 0
        if due and self.logger is not None:
            self.logger.batch(self.epoch * self.batches + i + 1, loss, acc)
        if due and not self.live and not self.quiet:
            line = (f"epoch {self._label()} batch {i + 1}/{self.batches}: loss {loss:.4f} "
                    f"acc {100 * acc:.2f}%, {speed:.0f} img/s")  # fmt: skip
            self.console.print(line, highlight=False)

    def end(self, stats) -> None:
        """Print the epoch's summary line (and log it)."""
        if self.logger is not None:
            self.logger.epoch_end(stats)
        if not self.quiet:
            self.console.print(epoch_line(stats, self.state.config.epochs), highlight=False)
