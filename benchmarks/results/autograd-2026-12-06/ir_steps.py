"""Run K training steps of a model with the cnnarray on PYTHONPATH, for callgrind.

Instruction counts are unmoved by a busy machine: ``Ir(K) - Ir(0)`` over K
steps is the cost of a step, and its ratio between two checkouts is a second
opinion beside ``ab_train.py``'s timings. Each checkout times its own step
(``benchmarks/train_compare.py``'s ``cnnarray_step``)::

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=TREE valgrind --tool=callgrind \\
        --callgrind-out-file=OUT python ir_steps.py TREE lenet5 10
"""

import sys

sys.path.insert(0, sys.argv[1] + "/benchmarks")

import numpy as np  # noqa: E402
import train_compare as tc  # noqa: E402

from cnnarray import optim  # noqa: E402

data = tc.load("digits28")
model = tc.build(sys.argv[2], data, 0)
model.train()
step = tc.cnnarray_step(model, optim.Adam(model.parameters(), lr=2e-3), data)
idx = np.arange(32)
step(idx)  # the first step allocates what the others reuse
for _ in range(int(sys.argv[3])):
    step(idx)
