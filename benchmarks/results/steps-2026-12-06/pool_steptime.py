import json
import sys
import time

import numpy as np

import cnnarray
from cnnarray import nn

batch = int(sys.argv[2])
n = int(sys.argv[1])
model = nn.lenet5(seed=0)
opt = cnnarray.optim.Adam(model.parameters(), lr=1e-3)
rng = np.random.default_rng(0)
X = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
Y = rng.integers(0, 10, batch)
lossf = nn.CrossEntropyLoss()


def step():
    opt.zero_grad()
    loss = lossf(model(cnnarray.tensor(X)), Y)
    loss.backward()
    opt.step()


for _ in range(10):
    step()
ts = []
for _ in range(n):
    t = time.thread_time()
    step()
    ts.append(time.thread_time() - t)
print(json.dumps(ts))
