"""Backend API (names, conversion, devices) and the rules every public op follows.

The second half runs each public operation (the table ``helpers.OPS``) through
the same checks: dtype kept, integers promoted, bad dtypes rejected, NumPy
inputs and plain lists accepted with ``backend="cpu"``.
"""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
from helpers import (
    CUDA_REASON,
    NOT_ARRAY_OPS,
    OPS,
    OpSpec,
    assert_close,
    requires_cuda,
    requires_no_cuda,
    run_op,
)

import cnnarray
from cnnarray import backend as B

# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["cpu", "numpy", "CPU", "NumPy", " cpu ", "Cpu"])
def test_cpu_names(name):
    be = cnnarray.get_backend(name)
    assert be.name == "cpu" and be.device is None and be.xp is np
    assert str(be) == "cpu" and repr(be) == "Backend('cpu')"


@pytest.mark.parametrize("name", ["tpu", "", "cpu:0", "numpy2", "opencl", "cuda0"])
def test_unknown_backend_name_is_value_error_naming_it(name):
    with pytest.raises(ValueError, match=r"backend must be one of .*got " + re.escape(repr(name))):
        cnnarray.get_backend(name)


@pytest.mark.parametrize("name", ["cuda:x", "gpu:-1", "cupy:1.0", "cuda:\u00b2", "cuda:"])
def test_bad_cuda_device_index_is_value_error(name):
    index = name.partition(":")[2]
    with pytest.raises(ValueError, match=f"expected a device index.*got {re.escape(repr(index))}"):
        cnnarray.get_backend(name)


@pytest.mark.parametrize("value", [0, 1.5, ["cpu"], b"cpu"])
def test_backend_name_of_wrong_type_is_type_error(value):
    with pytest.raises(TypeError, match=f"backend must be a string.*got {type(value).__name__}"):
        cnnarray.get_backend(value)


def test_backend_instance_passes_through():
    be = cnnarray.get_backend("cpu")
    assert cnnarray.get_backend(be) is be


@requires_no_cuda
@pytest.mark.parametrize("name", ["cuda", "CUDA", "cupy", "gpu", "GPU", "cuda:0", "cuda:1"])
def test_cuda_without_gpu_raises_with_the_reason(name):
    with pytest.raises(cnnarray.BackendUnavailableError) as info:
        cnnarray.get_backend(name)
    message = str(info.value)
    assert repr(name) in message and CUDA_REASON in message
    assert isinstance(info.value, RuntimeError)


@requires_no_cuda
def test_auto_falls_back_to_cpu_without_gpu():
    assert cnnarray.get_backend("auto").name == "cpu"
    assert cnnarray.get_backend(None).name == "cpu"
    assert cnnarray.get_backend("AUTO").name == "cpu"
    assert cnnarray.available_backends() == ["cpu"]


@requires_cuda
@pytest.mark.parametrize("name", ["cuda", "CUDA", "cupy", "gpu", "cuda:0", "auto", None])
def test_cuda_names_with_gpu(name):
    be = cnnarray.get_backend(name)
    assert be.name == "cuda" and be.device == 0 and be.xp.__name__ == "cupy"
    assert str(be) == "cuda:0"


@requires_cuda
def test_cuda_device_index_out_of_range():
    count = len([n for n in cnnarray.available_backends() if n.startswith("cuda:")])
    with pytest.raises(cnnarray.BackendUnavailableError, match=f"cuda:{count}.*{count} CUDA"):
        cnnarray.get_backend(f"cuda:{count}")


def test_cuda_unavailable_reason_is_consistent_with_available_backends():
    names = cnnarray.available_backends()
    assert names[0] == "cpu"
    assert ("cuda" in names) == (B.cuda_unavailable_reason() is None)
    if B.cuda_unavailable_reason() is not None:
        assert isinstance(B.cuda_unavailable_reason(), str) and B.cuda_unavailable_reason()


# --------------------------------------------------------------------------- arrays


def test_backend_of_and_asarray(backend, xp):
    a = cnnarray.asarray([[1.0, 2.0], [3.0, 4.0]], backend)
    assert isinstance(a, xp.ndarray) and cnnarray.backend_of(a) == backend
    assert a.dtype == np.float64
    b = cnnarray.asarray(np.arange(3), str(backend), dtype=np.float32)
    assert cnnarray.backend_of(b) == backend and b.dtype == np.float32
    back = cnnarray.to_numpy(b)
    assert type(back) is np.ndarray
    np.testing.assert_array_equal(back, [0.0, 1.0, 2.0])
    # backend=None keeps an array where it is
    assert cnnarray.backend_of(cnnarray.asarray(a)) == backend
    assert cnnarray.asarray(a, backend) is a or backend.name == "cpu"


def test_asarray_without_backend_puts_lists_on_cpu():
    a = cnnarray.asarray([1, 2, 3])
    assert type(a) is np.ndarray and cnnarray.backend_of(a).name == "cpu"


def test_backend_of_numpy_scalar_and_non_arrays():
    assert cnnarray.backend_of(np.float32(1)).name == "cpu"
    for value in ([1.0], 3.0, "x", None):
        with pytest.raises(TypeError, match=f"NumPy or CuPy array, got {type(value).__name__}"):
            cnnarray.backend_of(value)


def test_to_numpy_of_numpy_and_lists():
    a = np.arange(4.0)
    assert cnnarray.to_numpy(a) is a
    np.testing.assert_array_equal(cnnarray.to_numpy([1, 2]), [1, 2])


def test_to_cpu_and_back(backend):
    a = cnnarray.asarray(np.arange(6.0).reshape(2, 3), backend)
    host = cnnarray.asarray(a, "cpu")
    assert type(host) is np.ndarray
    np.testing.assert_array_equal(host, np.arange(6.0).reshape(2, 3))


def test_synchronize_and_activate(backend):
    cnnarray.synchronize(backend)
    backend.synchronize()
    with backend.activate():
        a = backend.asarray([1.0])
    assert cnnarray.backend_of(a) == backend


def test_array_namespace(backend, xp):
    a = cnnarray.asarray([1.0], backend)
    assert B.array_namespace(None, a) is xp
    assert B.array_namespace([1.0], None) is np  # no array given: NumPy


# --------------------------------------------------------------------------- devices


@requires_cuda
def test_inputs_on_different_devices_are_type_error_naming_both():
    x = np.ones((1, 1, 4, 4))
    w = cnnarray.asarray(np.ones((1, 1, 3, 3)), "cuda")
    with pytest.raises(TypeError, match=r"conv2d: x is on cpu but weight is on cuda:0"):
        cnnarray.conv2d(x, w)
    with pytest.raises(TypeError, match=r"linear: x is on cuda:0 but weight is on cpu"):
        cnnarray.linear(cnnarray.asarray(np.ones((2, 3)), "cuda"), np.ones((4, 3)))
    # naming a backend moves everything there instead
    y = cnnarray.conv2d(x, w, backend="cuda")
    assert cnnarray.backend_of(y).name == "cuda"
    y = cnnarray.conv2d(x, w, backend="cpu")
    assert type(y) is np.ndarray


@requires_cuda
def test_cross_entropy_target_on_other_device_is_type_error():
    logits = cnnarray.asarray(np.zeros((2, 3)), "cuda")
    with pytest.raises(TypeError, match="logits is on cuda:0 but target is on cpu"):
        cnnarray.cross_entropy(logits, np.array([0, 1]))


# --------------------------------------------------------------------------- every public op


def test_op_table_covers_every_public_operation():
    public = set(cnnarray.ops.__all__) - NOT_ARRAY_OPS
    assert {spec.name for spec in OPS} == public
    assert public <= set(cnnarray.__all__)


def _arrays_of(out):
    return [a for a in (out if isinstance(out, tuple) else (out,)) if a is not None]


def _replace_float_arrays(args, kwargs, make):
    """Apply ``make(i, array)`` to the float arrays among the arguments, in order."""
    count = 0

    def swap(v):
        nonlocal count
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            count += 1
            return make(count - 1, v)
        return v

    return tuple(swap(a) for a in args), {k: swap(v) for k, v in kwargs.items()}


IDS = [spec.name for spec in OPS]


@pytest.mark.parametrize("spec", OPS, ids=IDS)
def test_op_preserves_float_dtype(backend, dtype, spec: OpSpec):
    args, kwargs = spec.call_args(dtype)
    out = run_op(spec.fn, *args, backend=backend, **kwargs)
    for a in _arrays_of(out):
        assert a.dtype == dtype, f"{spec.name} returned {a.dtype} for {dtype} inputs"


def _ids(specs):
    return [pytest.param(s, id=s.name) for s in specs]


@pytest.mark.parametrize("spec", _ids(OPS))
def test_op_promotes_integer_inputs_to_float32(backend, spec: OpSpec):
    args, kwargs = spec.call_args(np.float64)
    args, kwargs = _replace_float_arrays(
        args, kwargs, lambda i, a: np.round(a * 3).astype(np.int32)
    )
    out = run_op(spec.fn, *args, backend=backend, **kwargs)
    for a in _arrays_of(out):
        assert a.dtype == np.float32, f"{spec.name} returned {a.dtype} for integer inputs"


@pytest.mark.parametrize("spec", _ids(OPS))
@pytest.mark.parametrize(
    "bad", [np.bool_, np.complex128, np.float16], ids=["bool", "complex128", "float16"]
)
def test_op_rejects_bool_complex_and_float16_with_type_error(backend, spec: OpSpec, bad):
    args, kwargs = spec.call_args(np.float32)
    # the image-like input: the last float array of a backward, the first of a forward
    backward = spec.name.endswith("_backward") and not spec.name.startswith("cross")
    n_float = sum(isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in args)
    target = 1 if backward and n_float > 1 else 0
    args, kwargs = _replace_float_arrays(
        args, kwargs, lambda i, a: (a > 0).astype(bad) if i == target else a
    )
    with pytest.raises(TypeError, match=f"got {np.dtype(bad)}"):
        run_op(spec.fn, *args, backend=backend, **kwargs)


MIXED = [s for s in OPS if sum(
    isinstance(a, np.ndarray) and a.dtype.kind == "f"
    for a in (*s.call_args(np.float32)[0], *s.call_args(np.float32)[1].values())
) > 1]  # fmt: skip


@pytest.mark.parametrize(
    "spec",
    _ids(MIXED),
)
@pytest.mark.parametrize("first", [np.float32, np.float64], ids=["f32-then-f64", "f64-then-f32"])
def test_op_rejects_float32_mixed_with_float64(backend, spec: OpSpec, first):
    other = np.float64 if first is np.float32 else np.float32
    args, kwargs = spec.call_args(first)
    args, kwargs = _replace_float_arrays(
        args, kwargs, lambda i, a: a.astype(other) if i == 1 else a
    )
    with pytest.raises(
        TypeError, match=r"share one float dtype, got .*(float32.*float64|float64.*float32)"
    ):
        run_op(spec.fn, *args, backend=backend, **kwargs)


def test_cross_entropy_backward_grad_out_mixed_dtype_case_is_covered():
    assert "cross_entropy_backward" in {s.name for s in MIXED}


def _to_lists(v):
    return v.tolist() if isinstance(v, np.ndarray) else v


@pytest.mark.parametrize("spec", OPS, ids=IDS)
def test_op_accepts_numpy_and_lists_with_backend_cpu(spec: OpSpec):
    args, kwargs = spec.call_args(np.float64)
    desired = spec.fn(*args, **kwargs)
    for call_args, call_kwargs in [
        (args, kwargs),
        (tuple(_to_lists(a) for a in args), {k: _to_lists(v) for k, v in kwargs.items()}),
    ]:
        out = spec.fn(*call_args, backend="cpu", **call_kwargs)
        for got, want in zip(_arrays_of(out), _arrays_of(desired), strict=True):
            assert type(got) in (np.ndarray, np.float64)
            assert_close(got, want, dtype=np.float64, backend="cpu", err_msg=spec.name)
    # lists with backend=None land on the CPU too
    out = spec.fn(*(_to_lists(a) for a in args), **{k: _to_lists(v) for k, v in kwargs.items()})
    assert all(cnnarray.backend_of(a).name == "cpu" for a in _arrays_of(out))


@requires_cuda
@pytest.mark.parametrize("spec", OPS, ids=IDS)
def test_op_moves_numpy_inputs_to_cuda_when_asked(spec: OpSpec):
    args, kwargs = spec.call_args(np.float32)
    out = spec.fn(*args, backend="cuda", **kwargs)
    cpu = spec.fn(*args, backend="cpu", **kwargs)
    for got, want in zip(_arrays_of(out), _arrays_of(cpu), strict=True):
        assert_close(got, want, dtype=np.float32, backend="cuda", err_msg=spec.name)


@pytest.mark.parametrize("spec", _ids(OPS))
def test_op_given_none_for_a_required_array_is_type_error_naming_it(spec: OpSpec):
    args, kwargs = spec.call_args(np.float32)
    params = list(inspect.signature(spec.fn).parameters.values())
    checked = 0
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray) and params[i].default is inspect.Parameter.empty:
            bad = (*args[:i], None, *args[i + 1 :])
            with pytest.raises(TypeError, match=f"{params[i].name} must be an array, got None"):
                spec.fn(*bad, **kwargs)
            checked += 1
    assert checked, f"{spec.name}: no required array argument"
