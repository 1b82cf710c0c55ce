"""Synchronised batch normalisation: training-mode statistics of the whole global batch.

In data-parallel training each rank sees only its shard of a batch. A plain
:class:`~cnnarray.nn.BatchNorm2d` then normalises with the shard's mean and
variance; :class:`SyncBatchNorm2d` sums the per-channel counts, sums and
centred sums of squares over the ranks, so every rank normalises with the
statistics of the global batch, exactly as one process would. The gradient
flows back through the same sums (the gradient of an allreduce-sum is the
allreduce-sum of the gradients), so the backward pass needs two more small
allreduces per layer. It is written with the tape's Tensor operations plus one
recorded allreduce; the math is the textbook two-pass batch norm.
"""

from __future__ import annotations

from typing import Any

from .. import nn
from ..autograd import Tensor, no_grad
from ..autograd._functions import _record
from ._comm import Communicator

__all__ = ["SyncBatchNorm2d", "convert_sync_batchnorm"]


def _allreduce(t: Tensor, comm: Communicator) -> Tensor:
    """Sum of ``t`` over the ranks, recorded on the tape (its gradient: the same sum)."""
    out = t.data.copy()
    comm.allreduce(out)

    def backward(grad: Any, needs: tuple[bool, ...]) -> tuple[Any]:
        summed = grad.copy()
        comm.allreduce(summed)
        return (summed,)

    return _record(out, "allreduce", (t,), backward, owns=True)


class SyncBatchNorm2d(nn.BatchNorm2d):
    """:class:`~cnnarray.nn.BatchNorm2d` whose training statistics span all ranks.

    Made from a BatchNorm2d by :func:`convert_sync_batchnorm` (its parameters,
    buffers and arguments kept); in evaluation mode it is that BatchNorm2d.
    Its :meth:`spec` is the BatchNorm2d's, so a checkpoint loads in one
    process. Every rank must call it with a non-empty shard (the ranks meet
    in its allreduces).

    See Also
    --------
    torch.nn.SyncBatchNorm
    """

    comm: Communicator

    def spec(self) -> dict[str, Any]:
        return {"type": "BatchNorm2d", "args": self._config()}  # numbers, bools, a dtype name

    def forward(self, x: Any) -> Any:
        if not (self.training and isinstance(x, Tensor)):
            return super().forward(x)  # evaluation, or a call on arrays: the plain layer
        x = self._check(x)
        c = self.num_features
        count = self.comm.sum([x.data.size // c])[0]
        mean = _allreduce(x.sum(axis=(0, 2, 3)), self.comm) / count
        centered = x - mean.reshape(1, c, 1, 1)
        var = _allreduce((centered * centered).sum(axis=(0, 2, 3)), self.comm) / count
        y = centered / (var + self.eps).sqrt().reshape(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.reshape(1, c, 1, 1) + self.bias.reshape(1, c, 1, 1)
        if self.track_running_stats:
            with no_grad():
                self.num_batches_tracked += 1
                factor = self.momentum
                if factor is None:  # cumulative moving average
                    factor = 1.0 / float(self.num_batches_tracked)
                unbiased = var.data * (count / max(count - 1, 1))
                self.running_mean *= 1 - factor
                self.running_mean += factor * mean.data
                self.running_var *= 1 - factor
                self.running_var += factor * unbiased
        return y


def convert_sync_batchnorm(model: nn.Module, comm: Communicator) -> int:
    """Make every BatchNorm2d of ``model`` a :class:`SyncBatchNorm2d` over ``comm``, in place.

    Returns the number of layers converted. The layers keep their
    parameters, buffers and spec, so checkpoints are unchanged.
    """
    converted = 0
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = SyncBatchNorm2d
            module.comm = comm
            converted += 1
    return converted
