import sys
import tracemalloc

sys.path.insert(0, "/work/main/benchmarks")
import numpy as np

from cnnarray import nn, ops, optim, tensor

name = sys.argv[1]
c, size, batch = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
model = nn.build_model(name, in_channels=c, num_classes=10, input_size=size, seed=0)
opt = optim.Adam(model.parameters(), lr=2e-3)
model.train()
rng = np.random.default_rng(0)
x = rng.random((batch, c, size, size), dtype=np.float32)
y = rng.integers(0, 10, batch)


def step(snap=False):
    out = model(tensor(x))
    loss = ops.cross_entropy(out, y)
    s = tracemalloc.take_snapshot() if snap else None
    opt.zero_grad()
    loss.backward()
    opt.step()
    return s


for _ in range(3):
    step()
tracemalloc.start(8)
base = tracemalloc.get_traced_memory()[0]
tracemalloc.reset_peak()
snap = step(True)
print("peak MiB", (tracemalloc.get_traced_memory()[1] - base) / 2**20)
stats = snap.statistics("lineno")
print("after forward MiB", sum(s.size for s in stats) / 2**20)
for s in stats[:12]:
    print(f"{s.size / 2**20:8.2f} MiB {s.count:5d} {s.traceback}")
