"""What the tape keeps: only the arrays a backward reads, as PyTorch's saved tensors.

An input is held as the node that made it, not as its Tensor, so an activation
nobody else holds is freed during the forward: a batch norm's output once the
ReLU after it has run (the ReLU keeps its own output), a residual sum's
operands once the sum is made.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import cnnarray
from cnnarray import nn, ops


def _conv_bn_relu_residual(x, conv, bn, seen):
    """relu(bn(conv(x)) + x), noting weak references to the intermediate arrays."""
    y = conv(x)
    z = bn(y)
    seen["bn_out"] = weakref.ref(z.data)
    s = z + x
    seen["sum"] = weakref.ref(s.data)
    return ops.relu(s)


def test_intermediate_activations_are_freed_and_gradients_still_flow():
    rng = np.random.default_rng(0)
    conv, bn = nn.Conv2d(3, 3, 3, padding=1, seed=1), nn.BatchNorm2d(3)
    x = cnnarray.tensor(rng.standard_normal((2, 3, 5, 5)).astype(np.float32), requires_grad=True)
    seen: dict[str, weakref.ref] = {}
    out = _conv_bn_relu_residual(x, conv, bn, seen)
    gc.collect()
    assert seen["bn_out"]() is None, "the batch norm's output outlived the ReLU after it"
    assert seen["sum"]() is None, "the residual sum outlived the ReLU after it"
    out.sum().backward()
    # the same step with every intermediate held by the caller gives the same gradients
    grads = [x.grad.copy(), conv.weight.grad.copy(), bn.weight.grad.copy()]
    x.grad = conv.weight.grad = conv.bias.grad = bn.weight.grad = bn.bias.grad = None
    y = conv(x)
    z = bn(y)
    s = z + x
    ops.relu(s).sum().backward()
    for a, b in zip(grads, [x.grad, conv.weight.grad, bn.weight.grad], strict=True):
        np.testing.assert_array_equal(a, b)


def test_relu_gradient_from_its_output_matches_the_op(backend):
    # the rule keeps relu's output, not its input: the same mask, NaN and zeros included
    x = np.array([[-1.0, 0.0, 2.0, np.nan, -0.0, 3.5]])
    t = cnnarray.tensor(backend.asarray(x), requires_grad=True)
    y = ops.relu(t)
    g = backend.asarray(np.arange(1.0, 7.0)[None])
    y.backward(g)
    want = ops.relu_backward(g, backend.asarray(x))
    np.testing.assert_array_equal(cnnarray.to_numpy(t.grad), cnnarray.to_numpy(want))


@pytest.mark.parametrize("name", ["resnet8", "vgg_small"])
def test_a_training_step_holds_no_batch_norm_output(name):
    # after the forward of a whole model, no array of a batch norm's output is alive
    from cnnarray.nn import normalization

    model = nn.build_model(name, in_channels=3, num_classes=4, input_size=16, seed=0)
    model.train()
    outputs: list[weakref.ref] = []
    forward = normalization.BatchNorm2d.forward

    def noting(self, x):
        out = forward(self, x)
        outputs.append(weakref.ref(out.data))
        return out

    x = np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(normalization.BatchNorm2d, "forward", noting)
        loss = ops.cross_entropy(model(cnnarray.tensor(x)), np.arange(4) % 4)
    gc.collect()
    assert outputs and all(ref() is None for ref in outputs)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
