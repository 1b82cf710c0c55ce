"""What a training run writes as it goes: checkpoints and TensorBoard logs.

Both are driven from :class:`cnnarray.train.Callbacks` (or any loop): call
their ``epoch_end`` after each epoch.
"""

from __future__ import annotations

from pathlib import Path

from . import _args
from .io import save_checkpoint
from .train import EpochStats, TrainState, save, snapshot

__all__ = ["Checkpointing", "TensorBoardLog", "best_path"]


def best_path(path: str | Path) -> Path:
    """Where ``--save-best`` keeps the best epoch of a run saved at ``path`` (``m.best.st``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.best{path.suffix}")


class Checkpointing:
    """Write a run's checkpoints as it trains, each atomically.

    ``path`` gets the run every ``every`` epochs and at the end; with
    ``best_path``, that file gets each epoch whose validation loss is the best
    so far. The last finished epoch is kept in memory, so that
    :meth:`interrupted` can write it whenever training stops (during the
    first epoch that is the state the run started from).

    Parameters
    ----------
    state : TrainState
        The run, as it starts (new or resumed).
    path : str or Path
        The checkpoint to write.
    every : int, default 1
        Write every this many epochs.
    best_path : str or Path, optional
        Where to keep the best epoch by validation loss.
    """

    def __init__(self, state: TrainState, path: str | Path, every: int = 1,
                 best_path: str | Path | None = None) -> None:  # fmt: skip
        self.path = Path(path)
        self.every = _args.check_int(every, "every", minimum=1)
        self.best_path = None if best_path is None else Path(best_path)
        self._last, self.last_epoch = snapshot(state), state.epoch
        self.saved_epoch: int | None = None  # last epoch written to path
        self.best_epoch: int | None = None  # last epoch written to best_path

    def epoch_end(self, state: TrainState) -> None:
        """Remember the finished epoch; write it when it is due or the best so far."""
        self._last, self.last_epoch = snapshot(state), state.epoch
        if state.epoch % self.every == 0:
            save_checkpoint(self.path, *self._last)
            self.saved_epoch = state.epoch
        if self.best_path is not None and state.best is state.history[-1]:
            save_checkpoint(self.best_path, *self._last)
            self.best_epoch = state.epoch

    def finish(self, state: TrainState) -> Path:
        """Write the final state (with its test result, if any) to ``path``."""
        self.saved_epoch = state.epoch
        return save(state, self.path)

    def interrupted(self) -> int:
        """Write the last finished epoch to ``path``; return its number."""
        save_checkpoint(self.path, *self._last)
        self.saved_epoch = self.last_epoch
        return self.last_epoch


class TensorBoardLog:
    """Write a run's curves as TensorBoard event files under ``log_dir``.

    Uses ``tensorboardX`` or, failing that, ``torch.utils.tensorboard`` (which
    needs the ``tensorboard`` package): install with ``pip install
    'cnnarray[tensorboard]'``. Scalars: ``loss/train``, ``loss/val``,
    ``accuracy/train``, ``accuracy/val`` (percent), ``lr`` per epoch, and
    ``batch/loss`` with ``batch/accuracy`` (running means) from :meth:`batch`.
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ModuleNotFoundError(
                    "writing TensorBoard logs needs tensorboardX (or torch with tensorboard): "
                    "pip install 'cnnarray[tensorboard]'"
                ) from None
        self.writer = SummaryWriter(str(log_dir))

    def batch(self, step: int, loss: float, accuracy: float) -> None:
        """Log the running means at global batch ``step``."""
        self.writer.add_scalar("batch/loss", loss, step)
        self.writer.add_scalar("batch/accuracy", 100 * accuracy, step)

    def epoch_end(self, stats: EpochStats) -> None:
        """Log one epoch's metrics and learning rate."""
        values = {
            "loss/train": stats.train_loss,
            "accuracy/train": 100 * stats.train_accuracy,
            "lr": stats.lr,
            "throughput/images_per_second": stats.images_per_second,
        }
        if stats.val_loss is not None:
            values["loss/val"] = stats.val_loss
            values["accuracy/val"] = 100 * stats.val_accuracy
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, stats.epoch)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
