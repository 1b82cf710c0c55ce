"""Mini-batch iteration over in-memory arrays."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import _args
from ..backend import Backend, asarray, get_backend

__all__ = ["DataLoader", "shard_rows"]

Transform = Callable[[Any, Any], Any]


class DataLoader:
    """Iterate over ``(x, y)`` in mini-batches, optionally shuffled and augmented.

    The data stay in host memory; each batch is sliced (or gathered, when
    shuffling) on the CPU, moved to ``backend`` and then passed through
    ``transform`` on that device.

    Parameters
    ----------
    x : array_like, shape (N, ...)
        Samples, e.g. images of shape ``(N, C, H, W)``.
    y : array_like, shape (N,) or (N, ...)
        Targets, one per sample.
    batch_size : int, default 64
        Samples per batch; the last batch may be smaller unless ``drop_last``.
    shuffle : bool, default False
        Draw a new permutation at the start of every epoch (every call to
        ``iter``).
    seed : int, optional
        Seed of the NumPy generators used for shuffling and for ``transform``;
        each epoch gets its own pair, derived from ``seed`` and the epoch
        number (see :meth:`generators`). The same seed gives the same sequence
        of epochs, on any backend. None draws fresh entropy once, at construction.
    drop_last : bool, default False
        Skip the last batch when it has fewer than ``batch_size`` samples.
    backend : str or Backend, optional
        Where batches go (``"cpu"``, ``"cuda"``, ...; see
        :func:`cnnarray.backend.get_backend`). None leaves them as NumPy arrays.
    transform : callable, optional
        ``transform(xb, rng) -> xb`` applied to every image batch after it has
        been moved, e.g. a :class:`cnnarray.data.augment.Compose`. ``rng`` is
        the epoch's ``numpy.random.Generator`` for transforms.
    shard : (int, int), optional
        ``(rank, ranks)``: yield only this process's part of every batch, for
        data-parallel training. Each batch (the same batches, in the same order,
        as without ``shard``) is cut into ``ranks`` contiguous parts whose sizes
        differ by at most one, and part ``rank`` is yielded (possibly empty, for
        a short last batch). ``transform`` sees the whole batch before the cut,
        so that augmentation draws the same numbers as in one process.

    Attributes
    ----------
    epoch : int
        Number of epochs started so far, i.e. the index of the next epoch. Set
        it to replay or resume from a given epoch.

    Examples
    --------
    >>> x = np.zeros((10, 1, 4, 4), dtype=np.float32)
    >>> y = np.arange(10)
    >>> loader = DataLoader(x, y, batch_size=4)
    >>> len(loader), [len(yb) for _, yb in loader]
    (3, [4, 4, 2])
    """

    def __init__(
        self,
        x: Any,
        y: Any,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
        backend: str | Backend | None = None,
        transform: Transform | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        batch_size = _args.check_int(batch_size, "batch_size", minimum=1)
        shuffle = _args.check_bool(shuffle, "shuffle")
        drop_last = _args.check_bool(drop_last, "drop_last")
        if transform is not None and not callable(transform):
            raise TypeError(
                f"transform must be a callable transform(x, rng) or None, "
                f"got {type(transform).__name__}"
            )
        if seed is not None:
            seed = _args.check_int(seed, "seed", minimum=0)
        if shard is not None:
            shard = _check_shard(shard)
        x = np.asarray(x) if not hasattr(x, "shape") else x
        y = np.asarray(y) if not hasattr(y, "shape") else y
        if x.ndim == 0 or y.ndim == 0:
            raise ValueError(
                f"x and y must have a leading sample axis, got shapes {x.shape} and {y.shape}"
            )
        if len(x) != len(y):
            raise ValueError(
                f"x and y must hold the same number of samples, got len(x)={len(x)} "
                f"and len(y)={len(y)}"
            )
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.backend = None if backend is None else get_backend(backend)
        self.transform = transform
        self.shard = shard
        self.epoch = 0
        # Fixed once, so that seed=None still gives reproducible epochs within this loader.
        self._entropy = np.random.SeedSequence(seed).entropy

    @property
    def num_samples(self) -> int:
        """Number of samples per epoch, before dropping an incomplete batch."""
        return len(self.x)

    def __len__(self) -> int:
        """Number of batches per epoch."""
        full, rest = divmod(len(self.x), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def batch_length(self, b: int) -> int:
        """Number of samples in batch ``b`` of an epoch, over all shards."""
        return min(self.batch_size, len(self.x) - b * self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        """Start a new epoch and return an iterator over its ``(xb, yb)`` batches."""
        epoch = self.epoch
        self.epoch += 1
        return self._batches(epoch)

    def generators(self, epoch: int) -> tuple[np.random.Generator, np.random.Generator]:
        """Return the shuffling and the transform generator of epoch ``epoch``.

        Both depend only on ``seed`` and ``epoch`` (not on how far earlier
        epochs were iterated), so setting :attr:`epoch` replays an epoch, e.g.
        when resuming training.
        """
        children = np.random.SeedSequence(self._entropy, spawn_key=(epoch,)).spawn(2)
        return np.random.default_rng(children[0]), np.random.default_rng(children[1])

    def _batches(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        shuffle_rng, transform_rng = self.generators(epoch)
        order = shuffle_rng.permutation(len(self.x)) if self.shuffle else None
        for b in range(len(self)):
            start = b * self.batch_size
            stop = min(start + self.batch_size, len(self.x))
            rows, part = slice(start, stop), self._part(stop - start)
            if self.transform is None:  # cut first: only this shard's rows are copied
                rows, part = slice(start + part.start, start + part.stop), slice(None)
            index = rows if order is None else order[rows]
            xb, yb = self.x[index], self.y[index]
            if self.backend is not None:
                xb = asarray(xb, backend=self.backend)
                yb = asarray(yb, backend=self.backend)
            if self.transform is not None:
                xb = self.transform(xb, transform_rng)
            yield xb[part], yb[part]

    def _part(self, length: int) -> slice:
        """The rows of a batch of ``length`` samples that belong to this shard."""
        return slice(0, length) if self.shard is None else shard_rows(length, *self.shard)

    def __repr__(self) -> str:
        return (
            f"DataLoader(samples={len(self.x)}, batch_size={self.batch_size}, "
            f"batches={len(self)}, shuffle={self.shuffle}, backend={self.backend})"
        )


def shard_rows(length: int, rank: int, ranks: int) -> slice:
    """Part ``rank`` of ``ranks`` contiguous parts of ``length`` rows (sizes differ by <= 1)."""
    return slice(length * rank // ranks, length * (rank + 1) // ranks)


def _check_shard(shard: object) -> tuple[int, int]:
    """``(rank, ranks)`` with ``0 <= rank < ranks``, else ValueError naming the value."""
    if not isinstance(shard, tuple | list) or len(shard) != 2:
        raise ValueError(f"shard must be a pair (rank, ranks), got {shard!r}")
    ranks = _args.check_int(shard[1], "shard ranks", minimum=1)
    rank = _args.check_int(shard[0], "shard rank", minimum=0)
    if rank >= ranks:
        raise ValueError(f"shard rank must be below the number of ranks {ranks}, got {rank}")
    return rank, ranks
