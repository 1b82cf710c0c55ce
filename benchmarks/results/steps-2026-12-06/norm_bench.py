import importlib.util
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, "/work/wt-N")
import cnnarray.ops.norm as new

spec = importlib.util.spec_from_file_location("cnnarray.ops._norm_old", "/tmp/bnN/norm_old.py")
old = importlib.util.module_from_spec(spec)
spec.loader.exec_module(old)
rng = np.random.default_rng(0)
SH = [(32, 32, 28, 28), (32, 64, 14, 14), (32, 128, 7, 7)]


def mk(shape):
    c = shape[1]
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal(c).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    return x, g, w, b


def old_step(x, g, w, b, rm, rv):
    y = old._batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5, (4,), "bn")
    r = old._batch_norm_backward(g, x, rm, rv, w, b, True, 1e-5, (4,), "bn")
    return y, r


def new_step(x, g, w, b, rm, rv):
    y, mean, inv_std = new._batch_norm(
        x, rm, rv, w, b, True, 0.1, 1e-5, (4,), "bn", return_stats=True
    )
    r = new._batch_norm_backward(
        g, x, rm, rv, w, b, True, 1e-5, (4,), "bn", mean=mean, inv_std=inv_std
    )
    return y, r


def old_fwd(x, g, w, b, rm, rv):
    return old._batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5, (4,), "bn")


def new_fwd(x, g, w, b, rm, rv):
    return new._batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5, (4,), "bn")


def old_bwd(x, g, w, b, rm, rv):
    return old._batch_norm_backward(g, x, rm, rv, w, b, True, 1e-5, (4,), "bn")


def new_bwd(x, g, w, b, rm, rv, st={}):
    return new._batch_norm_backward(g, x, rm, rv, w, b, True, 1e-5, (4,), "bn", **st)


mode = sys.argv[1] if len(sys.argv) > 1 else "step"
pairs = {"step": (old_step, new_step), "fwd": (old_fwd, new_fwd), "bwd": (old_bwd, new_bwd)}[mode]
R = 21
tot = [0, 0]
for shape in SH:
    x, g, w, b = mk(shape)
    c = shape[1]
    args = (x, g, w, b, np.zeros(c, np.float32), np.ones(c, np.float32))
    if mode == "bwd":
        y, mean, inv_std = new._batch_norm(
            x, None, None, w, b, True, 0.1, 1e-5, (4,), "bn", return_stats=True
        )
        st = {"mean": mean, "inv_std": inv_std}
        fns = (pairs[0], lambda *a: new_bwd(*a, st=st))
    else:
        fns = pairs
    ts = [[], []]
    for f in fns:
        f(*args)
    for r in range(R):
        for i, f in enumerate(fns):
            t = time.perf_counter()
            f(*args)
            ts[i].append(time.perf_counter() - t)
    m = [statistics.median(t) * 1e3 for t in ts]
    tot[0] += m[0]
    tot[1] += m[1]
    print(f"{mode} {shape}: old {m[0]:.3f} ms  new {m[1]:.3f} ms  ratio {m[0] / m[1]:.2f}")
print(f"{mode} sum of 3 shapes: old {tot[0]:.3f} new {tot[1]:.3f}")
