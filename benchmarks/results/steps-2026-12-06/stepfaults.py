import resource
import statistics
import time

import numpy as np

import cnnarray
from cnnarray import optim
from cnnarray.nn import models

m = models.vgg_small(in_channels=1, num_classes=10, input_size=28, seed=0)
opt = optim.Adam(m.parameters(), lr=1e-3)
rng = np.random.default_rng(0)
x = rng.standard_normal((32, 1, 28, 28), dtype=np.float32)
y = rng.integers(0, 10, 32)


def step():
    opt.zero_grad()
    loss = cnnarray.cross_entropy(m(cnnarray.tensor(x)), y)
    loss.backward()
    opt.step()


flt = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
ts, fs = [], []
for _ in range(20):
    f0 = flt()
    t = time.perf_counter()
    step()
    ts.append(time.perf_counter() - t)
    fs.append(flt() - f0)
print(
    f"step median {statistics.median(ts) * 1e3:.1f} ms min {min(ts) * 1e3:.1f} ms, minor faults/step {statistics.median(fs)}"
)
