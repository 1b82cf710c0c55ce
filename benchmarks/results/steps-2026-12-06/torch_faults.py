import resource
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "/work/main/benchmarks")
from twins import TORCH_MODELS

torch.set_num_threads(2)


class D:
    input_shape = (1, 28, 28)
    num_classes = 10


m = TORCH_MODELS["vgg_small"](torch, D)
opt = torch.optim.Adam(m.parameters(), lr=1e-3)
rng = np.random.default_rng(0)
x = torch.from_numpy(rng.standard_normal((32, 1, 28, 28), dtype=np.float32))
y = torch.from_numpy(rng.integers(0, 10, 32))


def step():
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(m(x), y)
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
    f"torch step median {statistics.median(ts) * 1e3:.1f} ms min {min(ts) * 1e3:.1f} ms, minor faults/step {statistics.median(fs)}"
)
