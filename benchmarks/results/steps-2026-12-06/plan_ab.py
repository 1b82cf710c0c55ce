import sys
import time

import numpy as np

import cnnarray.ops as ops
from cnnarray.ops import _conv_plan

rng = np.random.default_rng(0)
shape = eval(sys.argv[1]) if len(sys.argv) > 1 else (32, 6, 14, 14, 16, 5, 0)
n, c, h, w_, co, k, p = shape
x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
w = (rng.standard_normal((co, c, k, k)) * 0.1).astype(np.float32)
b = np.zeros(co, np.float32)
cache = ops.ColumnCache()
y = ops.conv2d(x, w, b, padding=p, cache=cache)
g = np.ones_like(y)


def fb():
    ops.conv2d(x, w, b, padding=p, cache=cache)
    ops.conv2d_backward(g, x, w, b, padding=p, cache=cache)


orig = _conv_plan.PER_IMAGE_MAX_STEP, _conv_plan.PER_IMAGE_MAX_K
ts = {"plan": [], "cm": [], "pi": []}
for r in range(30):
    for mode in ts:
        if mode == "plan":
            _conv_plan.PER_IMAGE_MAX_STEP, _conv_plan.PER_IMAGE_MAX_K = orig
        if mode == "cm":
            _conv_plan.PER_IMAGE_MAX_STEP, _conv_plan.PER_IMAGE_MAX_K = 0, 0
        if mode == "pi":
            _conv_plan.PER_IMAGE_MAX_STEP, _conv_plan.PER_IMAGE_MAX_K = 2**40, 10**9
        fb()
        fb()
        t = time.perf_counter()
        fb()
        ts[mode].append(time.perf_counter() - t)
print(shape, {m: round(1e3 * min(v), 3) for m, v in ts.items()})
