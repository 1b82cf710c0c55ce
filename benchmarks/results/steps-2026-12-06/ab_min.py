import sys
import time

import numpy as np

import cnnarray.ops as ops
from cnnarray.ops import _conv_plan

n, c, h, w_, co, k, p = eval(sys.argv[1])
mode = sys.argv[2]
if mode == "pi":
    _conv_plan.PER_IMAGE_MAX_STEP, _conv_plan.PER_IMAGE_MAX_K = 2**40, 10**9
if mode == "cm":
    _conv_plan.PER_IMAGE_MAX_STEP, _conv_plan.PER_IMAGE_MAX_K = 0, 0
rng = np.random.default_rng(0)
x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
w = (rng.standard_normal((co, c, k, k)) * 0.1).astype(np.float32)
b = np.zeros(co, np.float32)
cache = ops.ColumnCache()
y = ops.conv2d(x, w, b, padding=p, cache=cache)
g = np.ones_like(y)
f, bw = [], []
for _ in range(60):
    t = time.perf_counter()
    ops.conv2d(x, w, b, padding=p, cache=cache)
    t1 = time.perf_counter()
    ops.conv2d_backward(g, x, w, b, padding=p, cache=cache)
    t2 = time.perf_counter()
    f.append(t1 - t)
    bw.append(t2 - t1)
f.sort()
bw.sort()
print(
    f"fwd min {1e3 * f[0]:.3f} p10 {1e3 * f[6]:.3f}  bwd min {1e3 * bw[0]:.3f} p10 {1e3 * bw[6]:.3f}"
)
