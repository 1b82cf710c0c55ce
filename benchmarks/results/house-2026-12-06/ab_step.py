import statistics, sys, time
import numpy as np, cnnarray
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 64, 32, 32), dtype=np.float32)
def pool():
    y = cnnarray.max_pool2d(x, 2)
    cnnarray.max_pool2d_backward(np.ones_like(y), x, 2, output=y)
xc = rng.standard_normal((32, 64, 16, 16), dtype=np.float32)
w = rng.standard_normal((128, 64, 3, 3), dtype=np.float32); b = np.zeros(128, np.float32)
cache = cnnarray.ColumnCache()
def conv():
    y = cnnarray.conv2d(xc, w, b, padding=1, cache=cache)
    cnnarray.conv2d_backward(np.ones_like(y), xc, w, b, padding=1, cache=cache)
out = []
for f in (pool, conv):
    for _ in range(3): f()
    ts = []
    for _ in range(15):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    out.append(statistics.median(ts) * 1e3)
print(sys.argv[1], *(f"{v:.3f}" for v in out))
