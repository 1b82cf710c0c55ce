import sys

sys.path.insert(0, "/tmp/pP")
import time

import numpy as np
from old import load_old

import cnnarray.ops as ops

old = load_old("cnnarray.ops.pool", "cnnarray/ops/pool.py")
rng = np.random.default_rng(0)
for shape in [(32, 6, 28, 28), (32, 16, 10, 10), (32, 64, 16, 16)]:
    x = np.maximum(rng.standard_normal(shape, dtype=np.float32), 0)
    assert np.array_equal(
        old.max_pool2d(x, 2, return_indices=True)[1], ops.max_pool2d(x, 2, return_indices=True)[1]
    )
    fs = {
        "main": lambda: old.max_pool2d(x, 2, return_indices=True),
        "branch": lambda: ops.max_pool2d(x, 2, return_indices=True),
    }
    ts = {k: [] for k in fs}
    for r in range(51):
        for k, f in fs.items():
            t = time.thread_time()
            f()
            ts[k].append(time.thread_time() - t)
    print(
        "return_indices", shape, "  ".join(f"{k} {np.median(v) * 1e6:.0f}us" for k, v in ts.items())
    )
