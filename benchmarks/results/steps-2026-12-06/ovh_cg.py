import sys

import numpy as np

import cnnarray.ops as ops

x = np.ones((2, 2, 6, 6), np.float32)
w = np.ones((2, 2, 3, 3), np.float32)
b = np.ones(2, np.float32)
cache = ops.ColumnCache()
y = ops.conv2d(x, w, b, padding=1, cache=cache)
g = np.ones_like(y)
for _ in range(int(sys.argv[1])):
    ops.conv2d(x, w, b, padding=1, cache=cache)
    ops.conv2d_backward(g, x, w, b, padding=1, cache=cache)
