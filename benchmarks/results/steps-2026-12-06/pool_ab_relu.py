import sys

sys.path.insert(0, "/tmp/pP")
import time

import numpy as np
from old import load_old

import cnnarray.ops as ops

old = load_old("cnnarray.ops.activation", "cnnarray/ops/activation.py")
rng = np.random.default_rng(0)
for shape in [
    (32, 6, 28, 28),
    (32, 16, 10, 10),
    (32, 120),
    (32, 32, 32, 32),
    (32, 64, 16, 16),
    (128, 6, 28, 28),
]:
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    assert np.array_equal(old.relu(x), ops.relu(x)) and np.array_equal(
        old.relu_backward(g, x), ops.relu_backward(g, x)
    )
    fs = {
        "old fwd": lambda: old.relu(x),
        "new fwd": lambda: ops.relu(x),
        "old bwd": lambda: old.relu_backward(g, x),
        "new bwd": lambda: ops.relu_backward(g, x),
    }
    ts = {k: [] for k in fs}
    for r in range(101):
        for k, f in fs.items():
            t = time.thread_time()
            f()
            ts[k].append(time.thread_time() - t)
    print(shape, "  ".join(f"{k} {np.median(v) * 1e6:.0f}us" for k, v in ts.items()))
