"""Bad arguments: one test per error, checking its type and that the message names the
argument and the value received. Checks run before any large allocation."""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

import cnnarray

X = np.zeros((2, 3, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)


def f32(*shape):
    return np.zeros(shape, np.float32)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: cnnarray.conv2d(f32(1, 1, 3, 8, 8), W),
            r"x must have shape \(N, C_in, H, W\) or \(C_in, H, W\), got shape \(1, 1, 3, 8, 8\) "
            r"\(ndim=5\)",
        ),
        (lambda: cnnarray.conv2d(f32(8, 8), W), r"x must have shape .* got shape \(8, 8\)"),
        (
            lambda: cnnarray.conv2d(X, f32(4, 3, 3)),
            r"weight must have shape .* got shape \(4, 3, 3\)",
        ),
        (
            lambda: cnnarray.conv2d(X, f32(3, 3)),
            r"x must have shape \(H, W\) to go with a 2-D weight .* got shape \(2, 3, 8, 8\)",
        ),
        (lambda: cnnarray.max_pool2d(f32(8, 8), 2), r"x must have shape .* got shape \(8, 8\)"),
        (lambda: cnnarray.avg_pool2d(f32(1, 1, 1, 8, 8), 2), r"x must have shape .*\(ndim=5\)"),
        (
            lambda: cnnarray.linear(f32(2, 3), f32(4, 3, 1)),
            r"weight must have shape \(out_features, in_features\), got shape \(4, 3, 1\)",
        ),
        (
            lambda: cnnarray.cross_entropy(f32(), np.zeros((), int)),
            r"logits must have shape \(C,\), \(N, C\) or \(N, C, d1, ..., dk\), got shape \(\)",
        ),
    ],
    ids=[
        "conv-x-5d",
        "conv-x-2d",
        "conv-w-3d",
        "conv-2d-weight-4d-x",
        "maxpool-2d",
        "avgpool-5d",
        "linear-w-3d",
        "ce-0d",
    ],
)
def test_wrong_ndim(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_conv_channel_mismatch_with_groups():
    with pytest.raises(
        ValueError,
        match=r"Given groups=2, weight of shape \(4, 2, 3, 3\), expected x of shape "
        r"\(1, 3, 5, 5\) to have 4 channels, but got 3 channels",
    ):
        cnnarray.conv2d(f32(1, 3, 5, 5), f32(4, 2, 3, 3), groups=2)


def test_conv_channel_mismatch_without_groups():
    with pytest.raises(ValueError, match=r"groups=1.*to have 2 channels, but got 3 channels"):
        cnnarray.conv2d(f32(3, 5, 5), f32(4, 2, 3, 3))


def test_conv_groups_not_dividing_filters():
    with pytest.raises(ValueError, match=r"groups=2 must divide .* C_out=3"):
        cnnarray.conv2d(f32(1, 2, 5, 5), f32(3, 1, 3, 3), groups=2)


def test_conv_groups_not_dividing_input_channels():
    with pytest.raises(ValueError, match=r"groups=2, .* to have 4 channels, but got 3 channels"):
        cnnarray.conv2d(f32(1, 3, 5, 5), f32(4, 2, 3, 3), groups=2)


@pytest.mark.parametrize("groups", [0, -1, 1.0, True])
def test_conv_groups_not_a_positive_int(groups):
    with pytest.raises(ValueError, match=f"groups must be a positive int, got {groups!r}"):
        cnnarray.conv2d(X, W, groups=groups)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: cnnarray.conv2d(f32(1, 1, 3, 3), f32(1, 1, 5, 5)),
            r"kernel of size \(5, 5\) after dilation is larger than the padded input \(3, 3\) of x "
            r"with shape \(1, 1, 3, 3\)",
        ),
        (
            lambda: cnnarray.conv2d(f32(1, 1, 5, 5), f32(1, 1, 3, 3), dilation=3),
            r"kernel of size \(7, 7\) after dilation is larger than the padded input \(5, 5\)",
        ),
        (
            lambda: cnnarray.conv2d(f32(1, 1, 3, 3), f32(1, 1, 6, 2), padding=1),
            r"kernel of size \(6, 2\) .* padded input \(5, 5\)",
        ),
        (
            lambda: cnnarray.max_pool2d(f32(1, 1, 2, 2), 3),
            r"kernel of size \(3, 3\) .* larger than the padded input \(2, 2\)",
        ),
        (
            lambda: cnnarray.avg_pool2d(f32(1, 1, 4, 1), (2, 3)),
            r"kernel of size \(2, 3\) .* larger than the padded input \(4, 1\)",
        ),
    ],
    ids=["conv", "conv-dilated", "conv-padded", "maxpool", "avgpool"],
)
def test_kernel_larger_than_padded_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- hyper-parameters


@pytest.mark.parametrize("name", ["stride", "dilation"])
@pytest.mark.parametrize("value", [0, -1, (1, 0), (-2, 1)])
def test_conv_stride_and_dilation_must_be_positive(name, value):
    with pytest.raises(ValueError, match=re.escape(f"{name} must be positive, got {value!r}")):
        cnnarray.conv2d(X, W, **{name: value})


@pytest.mark.parametrize("name", ["kernel_size", "stride", "dilation"])
def test_pool_sizes_must_be_positive(name):
    kwargs = {"kernel_size": 2, name: 0}
    with pytest.raises(ValueError, match=f"{name} must be positive, got 0"):
        cnnarray.max_pool2d(X, **kwargs)


@pytest.mark.parametrize("value", [-1, (0, -2)])
def test_negative_padding(value):
    pattern = re.escape(f"padding must be non-negative, got {value!r}")
    with pytest.raises(ValueError, match=pattern):
        cnnarray.conv2d(X, W, padding=value)
    with pytest.raises(ValueError, match=pattern):
        cnnarray.avg_pool2d(X, 3, padding=value)


@pytest.mark.parametrize("value", ["full", "SAME!", ""])
def test_unknown_padding_string(value):
    with pytest.raises(
        ValueError,
        match=f"padding must be an int, a pair of ints, 'valid' or 'same', got {value!r}",
    ):
        cnnarray.conv2d(X, W, padding=value)


@pytest.mark.parametrize(
    "value, error, match",
    [
        (1.5, TypeError, r"stride must be an int or a pair of ints, got 1\.5 \(float\)"),
        ((1, 2, 3), ValueError, r"stride must be an int or a pair of ints, got \(1, 2, 3\)"),
        ((True, 1), TypeError, r"stride must be an int or a pair of ints, got \(True, 1\)"),
        ("2", TypeError, r"stride must be an int or a pair of ints"),
    ],
)
def test_stride_of_wrong_type(value, error, match):
    with pytest.raises(error, match=match):
        cnnarray.conv2d(X, W, stride=value)


@pytest.mark.parametrize(
    "pool, kwargs, shown",
    [
        (
            cnnarray.max_pool2d,
            {"kernel_size": 3, "padding": 2},
            r"padding=\(2, 2\) for kernel_size=\(3, 3\)",
        ),
        (
            cnnarray.avg_pool2d,
            {"kernel_size": (2, 4), "padding": (1, 3)},
            r"padding=\(1, 3\) for kernel_size=\(2, 4\)",
        ),
        (
            cnnarray.max_pool2d,
            {"kernel_size": 1, "padding": 1},
            r"padding=\(1, 1\) for kernel_size=\(1, 1\)",
        ),
    ],
)
def test_pool_padding_more_than_half_the_kernel(pool, kwargs, shown):
    with pytest.raises(
        ValueError, match="padding must be at most half of kernel_size, got " + shown
    ):
        pool(X, **kwargs)


@pytest.mark.parametrize("stride", [2, (1, 2)])
def test_same_padding_with_stride(stride):
    shown = (stride, stride) if isinstance(stride, int) else stride
    with pytest.raises(
        ValueError, match=re.escape(f"'same' requires stride=1, got stride={shown}")
    ):
        cnnarray.conv2d(X, W, stride=stride, padding="same")


def test_pool_flags_of_wrong_type():
    with pytest.raises(TypeError, match="ceil_mode must be a bool, got 1"):
        cnnarray.max_pool2d(X, 2, ceil_mode=1)
    with pytest.raises(TypeError, match="count_include_pad must be a bool, got 'yes'"):
        cnnarray.avg_pool2d(X, 2, count_include_pad="yes")
    with pytest.raises(ValueError, match="divisor_override must be a non-zero int or None, got 0"):
        cnnarray.avg_pool2d(X, 2, divisor_override=0)
    with pytest.raises(ValueError, match=r"divisor_override .* got 1\.5"):
        cnnarray.avg_pool2d_backward(f32(2, 3, 4, 4), X, 2, divisor_override=1.5)


def test_workspace_limit_must_be_positive():
    with pytest.raises(ValueError, match="workspace_limit must be a positive int, got 0"):
        cnnarray.conv2d(X, W, workspace_limit=0)
    with pytest.raises(ValueError, match="workspace_limit .* got -5"):
        cnnarray.set_workspace_limit(-5)


def test_activation_arguments():
    with pytest.raises(TypeError, match=r"negative_slope must be a number, got '0.1' \(str\)"):
        cnnarray.leaky_relu(X, "0.1")
    with pytest.raises(ValueError, match=r"axis must be an int in \[-4, 4\) .* got 4"):
        cnnarray.softmax(X, axis=4)
    with pytest.raises(ValueError, match=r"axis must be an int in \[-4, 4\) .* got -5"):
        cnnarray.log_softmax_backward(X, X, axis=-5)


def test_flatten_axes():
    with pytest.raises(ValueError, match=r"start_axis must be an int in \[-4, 4\), got 4"):
        cnnarray.flatten(X, 4)
    with pytest.raises(ValueError, match=r"start_axis \(2\) must not come after end_axis \(1\)"):
        cnnarray.flatten(X, 2, 1)


# --------------------------------------------------------------------------- loss


@pytest.mark.parametrize("reduction", ["avg", "MEAN", None, "batchmean"])
def test_unknown_reduction(reduction):
    with pytest.raises(
        ValueError, match=f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
    ):
        cnnarray.cross_entropy(f32(2, 3), np.array([0, 1]), reduction=reduction)


@pytest.mark.parametrize("bad, shown", [(3, "3"), (7, "7"), (-1, "-1")])
def test_target_out_of_range(bad, shown):
    with pytest.raises(
        ValueError,
        match=rf"target must hold class indices in \[0, 3\) for logits "
        rf"with 3 classes, got {shown}",
    ):
        cnnarray.cross_entropy(f32(2, 3), np.array([0, bad]))
    with pytest.raises(ValueError, match=rf"\[0, 3\) .* got {shown}"):
        cnnarray.cross_entropy_backward(f32(3), np.array(bad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.bool_])
def test_target_of_float_or_bool_dtype(dtype):
    with pytest.raises(
        TypeError, match=f"target must hold integer class indices, got {np.dtype(dtype)}"
    ):
        cnnarray.cross_entropy(f32(2, 3), np.array([0, 1], dtype))


def test_target_shape_mismatch():
    with pytest.raises(
        ValueError,
        match=r"target must have shape \(2,\) to match logits of shape "
        r"\(2, 3\), got \(3,\)",
    ):
        cnnarray.cross_entropy(f32(2, 3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"target must have shape \(\) .* got \(1,\)"):
        cnnarray.cross_entropy(f32(3), np.array([0]))


@pytest.mark.parametrize(
    "value, error", [(1.5, ValueError), (-0.1, ValueError), ("0.1", TypeError)]
)
def test_label_smoothing_out_of_range(value, error):
    with pytest.raises(error, match=f"label_smoothing must be .*got {value!r}"):
        cnnarray.cross_entropy(f32(2, 3), np.array([0, 1]), label_smoothing=value)


# --------------------------------------------------------------------------- empty, bias, grad_out


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: cnnarray.conv2d(f32(0, 3, 8, 8), W),
            r"x must not be empty, got shape \(0, 3, 8, 8\)",
        ),
        (lambda: cnnarray.conv2d(f32(3, 0, 8), W), r"x must not be empty, got shape \(3, 0, 8\)"),
        (
            lambda: cnnarray.conv2d(X, f32(0, 3, 3, 3)),
            r"weight must not be empty, got shape \(0, 3, 3, 3\)",
        ),
        (
            lambda: cnnarray.max_pool2d(f32(0, 3, 8, 8), 2),
            r"x must not be empty, got shape \(0, 3, 8, 8\)",
        ),
        (
            lambda: cnnarray.avg_pool2d_backward(f32(0, 3, 4, 4), f32(0, 3, 8, 8), 2),
            r"x must not be empty",
        ),
        (
            lambda: cnnarray.cross_entropy(f32(0, 3), np.zeros(0, int)),
            r"logits must not be empty, got shape \(0, 3\)",
        ),
    ],
    ids=["conv-batch", "conv-width", "conv-filters", "maxpool", "avgpool-backward", "ce"],
)
def test_empty_batch(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bias_wrong_shape():
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\), got \(3,\)"):
        cnnarray.conv2d(X, W, f32(3))
    with pytest.raises(ValueError, match=r"bias must have shape \(C_out,\), got shape \(4, 1\)"):
        cnnarray.conv2d_backward(f32(2, 4, 6, 6), X, W, f32(4, 1))
    with pytest.raises(ValueError, match=r"bias must have shape \(5,\), got \(4,\)"):
        cnnarray.linear(f32(2, 3), f32(5, 3), f32(4))
    with pytest.raises(ValueError, match=r"bias must have shape \(1,\), got \(2,\)"):
        cnnarray.conv2d(f32(8, 8), f32(3, 3), f32(2))


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: cnnarray.conv2d_backward(f32(2, 4, 5, 6), X, W),
            r"grad_out must have shape \(2, 4, 6, 6\), got \(2, 4, 5, 6\)",
        ),
        (
            lambda: cnnarray.max_pool2d_backward(f32(2, 3, 4, 4), X, 2, 1),
            r"grad_out must have shape \(2, 3, 7, 7\), got \(2, 3, 4, 4\)",
        ),
        (
            lambda: cnnarray.avg_pool2d_backward(f32(3, 4, 4), X, 2),
            r"grad_out must have shape \(2, 3, 4, 4\), got \(3, 4, 4\)",
        ),
        (
            lambda: cnnarray.linear_backward(f32(2, 5), f32(2, 3), f32(4, 3)),
            r"grad_out must have shape \(2, 4\), got \(2, 5\)",
        ),
        (
            lambda: cnnarray.relu_backward(f32(2, 3), f32(3, 2)),
            r"grad_out must have the shape of x, \(3, 2\), got \(2, 3\)",
        ),
        (
            lambda: cnnarray.softmax_backward(f32(1, 3), f32(2, 3)),
            r"grad_out must have the shape of x, \(2, 3\), got \(1, 3\)",
        ),
        (
            lambda: cnnarray.flatten_backward(f32(2, 3), f32(2, 2, 2)),
            r"grad_out must have shape \(2, 4\), got \(2, 3\)",
        ),
        (
            lambda: cnnarray.cross_entropy_backward(f32(2, 3), np.array([0, 1]), grad_out=f32(2)),
            r"grad_out must have shape \(\), got \(2,\)",
        ),
        (
            lambda: cnnarray.cross_entropy_backward(
                f32(2, 3), np.array([0, 1]), reduction="none", grad_out=f32()
            ),
            r"grad_out must have shape \(2,\), got \(\)",
        ),
    ],
    ids=[
        "conv",
        "maxpool",
        "avgpool",
        "linear",
        "relu",
        "softmax",
        "flatten",
        "ce-mean",
        "ce-none",
    ],
)
def test_grad_out_wrong_shape(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_linear_in_features_mismatch():
    with pytest.raises(
        ValueError,
        match=r"x must have in_features=3 on its last axis to match "
        r"weight of shape \(4, 3\), got x of shape \(2, 5\)",
    ):
        cnnarray.linear(f32(2, 5), f32(4, 3))
    with pytest.raises(ValueError, match=r"in_features=3 .* got x of shape \(5,\)"):
        cnnarray.linear_backward(f32(4), f32(5), f32(4, 3))
    with pytest.raises(ValueError, match="x must have shape .* got a 0-d array"):
        cnnarray.linear(f32(), f32(4, 3))


def test_unknown_backend_in_an_op():
    with pytest.raises(ValueError, match=r"backend must be one of .* got 'tpu'"):
        cnnarray.relu(X, backend="tpu")


# --------------------------------------------------------------------------- fail fast


def _huge(dtype=np.float32, shape=(100_000, 3, 1000, 1000)):
    """A read-only view that declares 3e11 elements (over 1 TB) but holds one."""
    return np.broadcast_to(np.zeros((), dtype), shape)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: cnnarray.conv2d(x, f32(4, 2, 3, 3)), "to have 2 channels, but got 3"),
        (lambda x: cnnarray.conv2d(x, W, stride=0), "stride must be positive"),
        (lambda x: cnnarray.conv2d(x, W, f32(5)), r"bias must have shape \(4,\)"),
        (lambda x: cnnarray.conv2d_backward(f32(1, 4, 3, 3), x, W), "grad_out must have shape"),
        (lambda x: cnnarray.max_pool2d(x, 2, padding=2), "padding must be at most half"),
        (lambda x: cnnarray.avg_pool2d_backward(f32(1), x, 2), "grad_out must have shape"),
        (lambda x: cnnarray.linear(x, f32(4, 7)), "in_features=7"),
        (lambda x: cnnarray.relu_backward(f32(3), x), "grad_out must have the shape of x"),
        (lambda x: cnnarray.softmax(x, axis=7), "axis must be an int"),
    ],
    ids=[
        "conv-channels",
        "conv-stride",
        "conv-bias",
        "conv-backward-grad",
        "maxpool-padding",
        "avgpool-backward-grad",
        "linear",
        "relu-backward",
        "softmax-axis",
    ],
)
def test_bad_arguments_fail_before_allocating(call, match):
    x = _huge()
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match):
            call(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"peak {peak} bytes traced before the error"


def test_conv2d_backward_checks_grad_out_before_casting_an_integer_x():
    x = _huge(np.uint8, (64, 3, 128, 128))  # 3 MiB of uint8 declared, 12 MiB as float32
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="grad_out must have shape"):
            cnnarray.conv2d_backward(f32(1, 4, 3, 3), x, W)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"peak {peak} bytes traced before the error"
