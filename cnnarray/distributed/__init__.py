"""Scale out: data-parallel training over MPI, batch inference on Dask.

Training (the ChainerMN / Horovod way, on mpi4py): every rank runs
:func:`cnnarray.train.fit` with a :class:`DataParallel`, which broadcasts
rank 0's initial weights, gives each rank its shard of every global batch and
sums the gradients by allreduce before each optimiser step. Start it with
``mpiexec -n 2 cnnarray train --distributed ...`` or ``cnnarray train --nproc 2
...``. The transport is chosen by :class:`Communicator`: MPI for NumPy arrays;
NCCL, CUDA-aware MPI or host staging for CuPy arrays.

Install with ``pip install 'cnnarray[distributed]'`` (mpi4py and the MPICH
wheel, so no system MPI is needed); Dask inference needs ``cnnarray[dask]``.
Nothing here is imported by ``import cnnarray``.
"""

from ._comm import (
    DEFAULT_TIMEOUT,
    Communicator,
    RankFailure,
    communicator_summary,
    load_mpi,
)
from ._dask import image_paths, predict_dask, predict_files, write_predictions
from ._data_parallel import DEFAULT_BUCKET_BYTES, DataParallel
from ._launch import failing_together, launch
from ._sync_batchnorm import SyncBatchNorm2d, convert_sync_batchnorm

__all__ = [
    "DEFAULT_BUCKET_BYTES",
    "DEFAULT_TIMEOUT",
    "Communicator",
    "DataParallel",
    "RankFailure",
    "SyncBatchNorm2d",
    "communicator_summary",
    "convert_sync_batchnorm",
    "failing_together",
    "image_paths",
    "launch",
    "predict_dask",
    "predict_files",
    "write_predictions",
    "load_mpi",
]
