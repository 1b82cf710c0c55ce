"""Data-parallel training: the hooks that :func:`cnnarray.train.fit` calls on every rank.

The ChainerMN / Horovod scheme: every rank holds the whole model; rank 0's
initial parameters and buffers are broadcast; each rank computes the gradient
of its shard of every global batch; the gradients are summed by allreduce,
bucketed into a few flat contiguous buffers; every rank then takes the same
optimiser step, so the models stay identical without sending any weights.
"""

from __future__ import annotations

from typing import Any

from .. import _args, nn
from ..backend import array_namespace, backend_of
from ._comm import Communicator
from ._sync_batchnorm import convert_sync_batchnorm

__all__ = ["DEFAULT_BUCKET_BYTES", "DataParallel"]

#: Gradient bytes per allreduce message (PyTorch DDP uses 25 MB buckets too).
DEFAULT_BUCKET_BYTES = 25 * 2**20


class DataParallel:
    """Keep one model in step across the ranks of an MPI job.

    Pass it as ``parallel`` to :func:`cnnarray.train.fit` (which every rank
    runs) or call its methods from a loop of your own: after
    ``loss.backward()`` on the rank's shard of the batch, call
    :meth:`after_backward`, then ``optimizer.step()``.

    Parameters
    ----------
    model : Module
        The model, built the same way on every rank; rank 0's parameters and
        buffers are broadcast to the others here.
    communicator : Communicator, optional
        Default: all ranks of ``MPI.COMM_WORLD``, on the model's backend.
    bucket_bytes : int, default 25 MiB
        Gradient bytes per allreduce message: parameters are packed in order
        into flat buffers of about this size (one message each), so a model of
        many small tensors costs few message latencies.
    sync_batchnorm : bool, default False
        Turn every BatchNorm2d into a :class:`SyncBatchNorm2d`, which
        normalises with the statistics of the global batch (two small
        allreduces per layer forward, two backward).

    Examples
    --------
    A script run as ``mpiexec -n 4 python train.py`` (each rank the same code)::

        state = train.new_state(config, data, backend)
        parallel = DataParallel(state.model, sync_batchnorm=True)
        train.fit(state, data, backend, parallel=parallel)
        if parallel.rank == 0:
            train.save(state, "model.safetensors")

    Notes
    -----
    With ``b`` samples of a global batch of ``B`` on this rank, the local
    gradient of the mean loss is scaled by ``b / B`` before the sum, so the
    result is the gradient of the mean over the whole batch, whatever the
    sizes of the shards (the last batch of an epoch may split unevenly).

    By default BatchNorm normalises with the statistics of each rank's shard
    (as ChainerMN, Horovod and PyTorch DDP do), so a model with BatchNorm
    trains like single-process training with a batch of ``B / ranks`` for the
    statistics, and :meth:`sync_buffers` gives every rank rank 0's running
    statistics before each validation and checkpoint (DDP's
    ``broadcast_buffers``). With ``sync_batchnorm=True`` the statistics are
    the global batch's, and the run reaches the weights of one process.
    Models without Dropout (whose masks each rank draws for its own shard)
    then reach the same weights as single-process training, up to rounding.
    """

    def __init__(self, model: nn.Module, communicator: Communicator | None = None,
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES,
                 sync_batchnorm: bool = False) -> None:  # fmt: skip
        self.bucket_bytes = _args.check_int(bucket_bytes, "bucket_bytes", minimum=1)
        sync_batchnorm = _args.check_bool(sync_batchnorm, "sync_batchnorm")
        params = model.parameters()
        if not params:
            raise ValueError("DataParallel needs a model with parameters, got none")
        self.model = model
        self.comm = communicator or Communicator(backend_of(params[0].data))
        self.rank, self.size = self.comm.rank, self.comm.size
        self.buckets = _buckets(params, self.bucket_bytes)
        self.synced_batchnorms = convert_sync_batchnorm(model, self.comm) if sync_batchnorm else 0
        for p in params:
            self.comm.bcast(p.data)
        self.sync_buffers()

    def __repr__(self) -> str:
        return (f"DataParallel(rank={self.rank}, size={self.size}, "
                f"buckets={len(self.buckets)}, method={self.comm.method!r})")  # fmt: skip

    def after_backward(self, samples: int, total: int) -> None:
        """Replace each ``.grad`` by the gradient of the whole global batch.

        Parameters
        ----------
        samples : int
            Samples of the global batch on this rank (0 is allowed: this rank
            then adds zeros).
        total : int
            Samples in the global batch, over all ranks.
        """
        scale = samples / total
        for params, flat in self.buckets:
            xp = array_namespace(flat)
            offset = 0
            for p in params:  # pack: (size,) views of flat, in the bucket's order
                view = flat[offset : offset + p.data.size]
                view[...] = 0 if p.grad is None else xp.reshape(p.grad, (-1,))
                offset += p.data.size
            flat *= scale
            self.comm.allreduce(flat)
            offset = 0
            for p in params:  # unpack into the gradients the optimiser reads
                summed = xp.reshape(flat[offset : offset + p.data.size], p.shape)
                if p.grad is None:
                    p.grad = summed.copy()
                else:
                    p.grad[...] = summed
                offset += p.data.size

    def sum(self, values: list[float]) -> list[float]:
        """Return each number summed over the ranks."""
        return self.comm.sum(values)

    def sync_buffers(self) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank, in place."""
        for buffer in self.model.buffers():
            self.comm.bcast(buffer)


def _buckets(params: list[nn.Parameter], limit: int) -> list[tuple[list[nn.Parameter], Any]]:
    """Group parameters in order into flat zero buffers of at most ``limit`` bytes (or one
    parameter) each, one dtype per buffer."""
    groups: list[list[nn.Parameter]] = []
    for p in params:
        last = groups[-1] if groups else None
        if (last and last[0].dtype == p.dtype
                and sum(q.data.nbytes for q in last) + p.data.nbytes <= limit):  # fmt: skip
            last.append(p)
        else:
            groups.append([p])
    buckets = []
    for group in groups:
        xp = array_namespace(group[0].data)
        with backend_of(group[0].data).activate():
            flat = xp.zeros(sum(p.data.size for p in group), dtype=group[0].dtype)
        buckets.append((group, flat))
    return buckets
