"""Median ms of a max-pool and a case-c conv2d step (fwd+bwd) with the cnnarray on PYTHONPATH.

Run alternately against two checkouts, a process each:
``PYTHONPATH=OLD python ab_step.py base; PYTHONPATH=NEW python ab_step.py new``.
Written against the public API only, so that it runs on the code before and after.
"""

import statistics
import sys
import time

import numpy as np

import cnnarray

rng = np.random.default_rng(0)
x = rng.standard_normal((64, 64, 32, 32), dtype=np.float32)
xc = rng.standard_normal((32, 64, 16, 16), dtype=np.float32)
w = rng.standard_normal((128, 64, 3, 3), dtype=np.float32)
b = np.zeros(128, np.float32)
cache = cnnarray.ColumnCache()


def pool() -> None:
    y = cnnarray.max_pool2d(x, 2)
    cnnarray.max_pool2d_backward(np.ones_like(y), x, 2, output=y)


def conv() -> None:
    y = cnnarray.conv2d(xc, w, b, padding=1, cache=cache)
    cnnarray.conv2d_backward(np.ones_like(y), xc, w, b, padding=1, cache=cache)


medians = []
for step in (pool, conv):
    for _ in range(3):
        step()
    times = []
    for _ in range(15):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    medians.append(statistics.median(times) * 1e3)
print(sys.argv[1], *(f"{v:.3f}" for v in medians))
