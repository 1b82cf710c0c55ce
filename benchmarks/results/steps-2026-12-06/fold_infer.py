import statistics
import sys
import time

import numpy as np

import cnnarray.nn._fold as fold
import cnnarray.nn.container as cont
from cnnarray import nn
from cnnarray.nn import models

real = fold.foldable


def set_fold(on):
    f = real if on else (lambda *a: False)
    fold.foldable = f
    cont.foldable = f


rng = np.random.default_rng(0)
cases = [
    (
        "vgg_small",
        models.vgg_small(in_channels=1, num_classes=10, input_size=28, seed=0),
        (128, 1, 28, 28),
    ),
    ("resnet20", models.resnet20(seed=0), (128, 3, 32, 32)),
]
R = int(sys.argv[1]) if len(sys.argv) > 1 else 15
for name, m, shape in cases:
    # non-trivial running statistics and affine parameters
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean[...] = rng.standard_normal(c)
            mod.running_var[...] = rng.random(c) + 0.5
            mod.weight.data[...] = rng.standard_normal(c)
            mod.bias.data[...] = rng.standard_normal(c)
    m.eval()
    x = rng.standard_normal(shape, dtype=np.float32)
    set_fold(False)
    ref = m(x)
    set_fold(True)
    got = m(x)
    err = np.abs(got - ref).max() / np.abs(ref).max()
    ts = {False: [], True: []}
    for r in range(R):
        for on in (False, True):
            set_fold(on)
            t = time.perf_counter()
            m(x)
            ts[on].append(time.perf_counter() - t)
    a, b = statistics.median(ts[False]) * 1e3, statistics.median(ts[True]) * 1e3
    print(
        f"{name} eval batch {shape[0]}: unfolded {a:.1f} ms  folded {b:.1f} ms  ratio {a / b:.2f}  max rel diff {err:.2e}"
    )
