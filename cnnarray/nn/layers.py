"""Layers: thin classes that hold parameters and call the functions of :mod:`cnnarray.ops`.

Each layer's ``forward`` calls an op and, in training mode, keeps the inputs
its backward op needs; ``backward`` calls the matching ``*_backward`` op,
adds the parameter gradients into ``param.grad`` and returns the input
gradient. Names, arguments and default initialisation follow ``torch.nn``.

Three layers have no op to call yet and carry their (short) math here as
private functions: Dropout, AdaptiveAvgPool2d and BatchNorm2d.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from .. import _args
from ..backend import array_namespace, get_backend
from ..ops import (
    ColumnCache,
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    batch_norm2d,
    batch_norm2d_backward,
    conv2d,
    conv2d_backward,
    flatten,
    flatten_backward,
    leaky_relu,
    leaky_relu_backward,
    linear,
    linear_backward,
    max_pool2d,
    max_pool2d_backward,
    relu,
    relu_backward,
)
from . import init
from .module import Module, Parameter, build, register

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "Sequential",
]


def _is_positive_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


def _positive_int(value: Any, name: str) -> int:
    if not _is_positive_int(value):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def _setup(backend: Any, dtype: Any, seed: Any = None, rng: Any = None) -> tuple[Any, Any, Any]:
    """Resolve a parametric layer's backend (default "cpu"), dtype and init generator."""
    target = get_backend("cpu" if backend is None else backend)
    return target, init.resolve_dtype(target.xp, dtype), init.make_rng(seed, rng)


def _data(p: Parameter | None) -> Any:
    return None if p is None else p.data


# -- containers ---------------------------------------------------------------


@register
class Sequential(Module):
    """Chain modules: ``forward`` runs them in order, ``backward`` in reverse.

    Parameters
    ----------
    *layers : Module
        Children named "0", "1", ...; or one dict/OrderedDict of name -> Module.

    Examples
    --------
    >>> from cnnarray import nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> [name for name, _ in model.named_parameters()]
    ['0.weight', '0.bias', '2.weight', '2.bias']
    """

    skips_input_grad = True

    def __init__(self, *layers: Module | Mapping[str, Module]) -> None:
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], Mapping):
            items = list(layers[0].items())
        else:
            items = [(str(i), layer) for i, layer in enumerate(layers)]
        for name, layer in items:
            self._add(name, layer)

    def _add(self, name: Any, layer: Any) -> None:
        if not isinstance(layer, Module):
            raise TypeError(f"Sequential takes Modules, got {type(layer).__name__} for {name!r}")
        if not isinstance(name, str) or not name or "." in name or hasattr(self, name):
            raise ValueError(
                f"layer name must be a non-empty string without '.' that is not already an "
                f"attribute of Sequential, got {name!r}"
            )
        setattr(self, name, layer)

    def append(self, layer: Module) -> Sequential:
        """Add ``layer`` at the end, named by its position; return self."""
        self._add(str(len(self)), layer)
        return self

    def __len__(self) -> int:
        return len(self._module_names)

    def __iter__(self) -> Iterator[Module]:
        return self.children()

    def __getitem__(self, index: int | slice) -> Any:
        items = list(self.named_children())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[index][1]

    def forward(self, x: Any) -> Any:
        for layer in self:
            x = layer(x)
        return x

    def backward(self, grad: Any, input_grad: bool = True) -> Any:
        """Backpropagate through the layers in reverse order.

        ``input_grad=False`` lets the first layer skip the gradient of the
        network's input (returned as None) when it can, as a training loop
        never uses it.
        """
        layers = list(self)
        for i, layer in reversed(list(enumerate(layers))):
            if i == 0 and not input_grad and layer.skips_input_grad:
                return layer.backward(grad, input_grad=False)
            grad = layer.backward(grad)
        return grad

    def spec(self) -> dict[str, Any]:
        # A list, not a dict: checkpoint headers are written with sorted keys.
        spec: dict[str, Any] = {"type": "Sequential", "layers": [m.spec() for m in self]}
        names = list(self._module_names)
        if names != [str(i) for i in range(len(names))]:
            spec["names"] = names
        return spec

    @classmethod
    def _from_spec(cls, spec: Mapping[str, Any], rng: Any) -> Module:
        layers = spec.get("layers")
        if not isinstance(layers, list):
            raise ValueError(f"spec of Sequential needs a 'layers' list, got {layers!r}")
        children = [build(s, rng) for s in layers]
        names = spec.get("names")
        if names is None:
            return cls(*children)
        if not isinstance(names, list) or len(names) != len(children):
            raise ValueError(
                f"spec of Sequential: 'names' must be a list of {len(children)} names, "
                f"got {names!r}"
            )
        return cls(OrderedDict(zip(names, children, strict=True)))

    def __repr__(self) -> str:
        lines = [
            f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self.named_children()
        ]
        return "Sequential(\n" + "\n".join(lines) + "\n)" if lines else "Sequential()"


# -- layers with parameters ---------------------------------------------------


@register
class Conv2d(Module):
    """2-D convolution layer over (N, C_in, H, W) images.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation, groups
        As in :func:`cnnarray.ops.conv2d` (padding may be "same" or "valid").
    bias : bool, default True
    backend : str, optional
        Where the parameters live (default "cpu").
    dtype : {"float32", "float64"}, default "float32"
    seed : int, optional
    rng : numpy.random.Generator, optional
        Source of the initial weights (give at most one of seed and rng).

    Notes
    -----
    ``weight`` has shape (out_channels, in_channels / groups, kh, kw) and is
    drawn, like ``bias``, from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with
    ``fan_in = in_channels / groups * kh * kw``: PyTorch's default
    (Kaiming-uniform with ``a = sqrt(5)``).

    In training mode the layer keeps the forward pass's im2col columns in a
    :class:`cnnarray.ops.ColumnCache` for its backward pass (at most the
    workspace limit, :func:`cnnarray.ops.set_workspace_limit`); evaluation
    mode frees them.

    See Also
    --------
    torch.nn.Conv2d, cnnarray.ops.conv2d
    """

    skips_input_grad = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _args.IntPair,
        stride: _args.IntPair = 1,
        padding: _args.IntPair | str = 0,
        dilation: _args.IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        backend: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.groups = _positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.kernel_size = _args._pair(kernel_size, "kernel_size", minimum=1)
        self.stride = _args._pair(stride, "stride", minimum=1)
        self.dilation = _args._pair(dilation, "dilation", minimum=1)
        _args.conv_padding(padding, self.kernel_size, self.dilation, self.stride)  # validate
        self.padding = (
            padding if isinstance(padding, str) else _args._pair(padding, "padding", minimum=0)
        )
        target, dtype, rng = _setup(backend, dtype, seed, rng)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(init.kaiming_uniform(shape, rng, dtype, target, a=math.sqrt(5)))
        fan_in, _ = init.calculate_fan_in_and_fan_out(shape)
        bound = 1 / math.sqrt(fan_in)
        self.bias = (
            Parameter(init.uniform((out_channels,), bound, rng, dtype, target)) if bias else None
        )
        self._columns = ColumnCache()

    def _config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "bias": self.bias is not None,
            "dtype": self.weight.dtype.name,
        }

    def _geometry(self) -> tuple[Any, ...]:
        return self.stride, self.padding, self.dilation, self.groups

    def forward(self, x: Any) -> Any:
        self._save(x)
        if not self.training:
            self._columns.release()
            return conv2d(x, self.weight.data, _data(self.bias), *self._geometry())
        return conv2d(x, self.weight.data, _data(self.bias), *self._geometry(),
                      cache=self._columns)  # fmt: skip

    def backward(self, grad: Any, input_grad: bool = True) -> Any:
        (x,) = self._saved()
        gx, gw, gb = conv2d_backward(grad, x, self.weight.data, _data(self.bias), *self._geometry(),
                                     input_grad=input_grad, cache=self._columns)  # fmt: skip
        self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx


@register
class Linear(Module):
    """Fully connected layer ``y = x @ weight.T + bias`` over (..., in_features) inputs.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    backend, dtype, seed, rng
        As in :class:`Conv2d`.

    Notes
    -----
    ``weight`` (out_features, in_features) and ``bias`` are drawn from
    ``U(-1/sqrt(in_features), 1/sqrt(in_features))``, as in PyTorch.

    See Also
    --------
    torch.nn.Linear, cnnarray.ops.linear
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        backend: Any = None,
        dtype: Any = "float32",
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        target, dtype, rng = _setup(backend, dtype, seed, rng)
        shape = (out_features, in_features)
        self.weight = Parameter(init.kaiming_uniform(shape, rng, dtype, target, a=math.sqrt(5)))
        bound = 1 / math.sqrt(in_features)
        self.bias = (
            Parameter(init.uniform((out_features,), bound, rng, dtype, target)) if bias else None
        )

    def _config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "dtype": self.weight.dtype.name,
        }

    def forward(self, x: Any) -> Any:
        self._save(x)
        return linear(x, self.weight.data, _data(self.bias))

    def backward(self, grad: Any) -> Any:
        (x,) = self._saved()
        gx, gw, gb = linear_backward(grad, x, self.weight.data, _data(self.bias))
        self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx


@register
class BatchNorm2d(Module):
    """Normalise each channel of (N, C, H, W) inputs, then scale and shift.

    In training mode the batch's mean and biased variance over (N, H, W)
    normalise the input, and the running statistics move towards them:
    ``running = (1 - momentum) * running + momentum * batch``, with the
    unbiased variance ``var * n / (n - 1)``, ``n = N * H * W``, as in PyTorch
    (``momentum=None``: a cumulative average). In evaluation mode the running
    statistics are used.

    Parameters
    ----------
    num_features : int
        Channels C.
    eps : float, default 1e-5
    momentum : float or None, default 0.1
    affine : bool, default True
        Learn ``weight`` (init 1) and ``bias`` (init 0).
    track_running_stats : bool, default True
        Keep the buffers ``running_mean`` (init 0), ``running_var`` (init 1) and
        ``num_batches_tracked``; without them batch statistics are used in both modes.
    backend, dtype
        As in :class:`Conv2d`.

    See Also
    --------
    torch.nn.BatchNorm2d
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        backend: Any = None,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features")
        if isinstance(eps, bool) or not isinstance(eps, int | float) or eps <= 0:
            raise ValueError(f"eps must be a positive float, got {eps!r}")
        if momentum is not None and (
            isinstance(momentum, bool)
            or not isinstance(momentum, int | float)
            or not 0 <= momentum <= 1
        ):
            raise ValueError(f"momentum must be a float in [0, 1] or None, got {momentum!r}")
        self.eps, self.momentum = float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        target, dtype, _ = _setup(backend, dtype)
        xp = target.xp
        with target.activate():
            self.weight = Parameter(xp.ones(num_features, dtype)) if affine else None
            self.bias = Parameter(xp.zeros(num_features, dtype)) if affine else None
            if track_running_stats:
                self.register_buffer("running_mean", xp.zeros(num_features, dtype))
                self.register_buffer("running_var", xp.ones(num_features, dtype))
                self.register_buffer("num_batches_tracked", xp.zeros((), xp.int64))
        self._dtype = dtype

    def _config(self) -> dict[str, Any]:
        return {
            "num_features": self.num_features,
            "eps": self.eps,
            "momentum": self.momentum,
            "affine": self.affine,
            "track_running_stats": self.track_running_stats,
            "dtype": self._dtype.name,
        }

    def _check(self, x: Any) -> Any:
        _args.check_ndim(x, "x", (4,), f"(N, {self.num_features}, H, W)")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm2d({self.num_features}) expected x with {self.num_features} "
                f"channels, got x of shape {tuple(x.shape)}"
            )
        if x.dtype.kind in "iu":
            return x.astype(self._dtype)
        if x.dtype != self._dtype:
            raise TypeError(
                f"x has dtype {x.dtype} but the parameters of BatchNorm2d are {self._dtype}; "
                f"cast one of them"
            )
        return x

    def forward(self, x: Any) -> Any:
        x = self._check(x)
        batch_stats = self.training or not self.track_running_stats
        factor = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        running = (self.running_mean, self.running_var) if self.track_running_stats else (None,) * 2
        # Running statistics are updated in place, so state_dict() arrays handed out stay live.
        y = batch_norm2d(x, *running, _data(self.weight), _data(self.bias),
                         training=batch_stats, momentum=factor or 0.0, eps=self.eps)  # fmt: skip
        self._save(x, batch_stats)
        return y

    def backward(self, grad: Any) -> Any:
        x, batch_stats = self._saved()
        running = (self.running_mean, self.running_var) if self.track_running_stats else (None,) * 2
        gx, gw, gb = batch_norm2d_backward(grad, x, *running, _data(self.weight),
                                           _data(self.bias), training=batch_stats,
                                           eps=self.eps)  # fmt: skip
        if self.affine:
            self.weight.accumulate(gw)
            self.bias.accumulate(gb)
        return gx


# -- layers without parameters ------------------------------------------------


@register
class ReLU(Module):
    """``max(x, 0)`` elementwise. See ops.relu."""

    def forward(self, x: Any) -> Any:
        self._save(x)
        return relu(x)

    def backward(self, grad: Any) -> Any:
        (x,) = self._saved()
        return relu_backward(grad, x)


@register
class LeakyReLU(Module):
    """``x`` where positive, ``negative_slope * x`` elsewhere. See ops.leaky_relu."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, int | float):
            raise TypeError(f"negative_slope must be a float, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def _config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}

    def forward(self, x: Any) -> Any:
        self._save(x)
        return leaky_relu(x, self.negative_slope)

    def backward(self, grad: Any) -> Any:
        (x,) = self._saved()
        return leaky_relu_backward(grad, x, self.negative_slope)


@register
class MaxPool2d(Module):
    """Max pooling; arguments as :func:`cnnarray.ops.max_pool2d` (stride defaults to kernel_size).

    See Also
    --------
    torch.nn.MaxPool2d
    """

    def __init__(
        self,
        kernel_size: _args.IntPair,
        stride: _args.IntPair | None = None,
        padding: _args.IntPair = 0,
        dilation: _args.IntPair = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = _args._pair(kernel_size, "kernel_size", minimum=1)
        self.stride = (
            self.kernel_size if stride is None else _args._pair(stride, "stride", minimum=1)
        )
        self.padding = _args._pair(padding, "padding", minimum=0)
        self.dilation = _args._pair(dilation, "dilation", minimum=1)
        self.ceil_mode = _bool(ceil_mode, "ceil_mode")

    def _config(self) -> dict[str, Any]:
        return {
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "ceil_mode": self.ceil_mode,
        }

    def forward(self, x: Any) -> Any:
        y = max_pool2d(x, **self._config())
        self._save(x, y)  # y: the window maxima, not computed again in backward
        return y

    def backward(self, grad: Any) -> Any:
        x, y = self._saved()
        return max_pool2d_backward(grad, x, **self._config(), output=y)


@register
class AvgPool2d(Module):
    """Average pooling; arguments as :func:`cnnarray.ops.avg_pool2d`.

    See Also
    --------
    torch.nn.AvgPool2d
    """

    def __init__(
        self,
        kernel_size: _args.IntPair,
        stride: _args.IntPair | None = None,
        padding: _args.IntPair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = _args._pair(kernel_size, "kernel_size", minimum=1)
        self.stride = (
            self.kernel_size if stride is None else _args._pair(stride, "stride", minimum=1)
        )
        self.padding = _args._pair(padding, "padding", minimum=0)
        self.ceil_mode = _bool(ceil_mode, "ceil_mode")
        self.count_include_pad = _bool(count_include_pad, "count_include_pad")
        self.divisor_override = divisor_override

    def _config(self) -> dict[str, Any]:
        return {
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "ceil_mode": self.ceil_mode,
            "count_include_pad": self.count_include_pad,
            "divisor_override": self.divisor_override,
        }

    def forward(self, x: Any) -> Any:
        self._save(x)
        return avg_pool2d(x, **self._config())

    def backward(self, grad: Any) -> Any:
        (x,) = self._saved()
        return avg_pool2d_backward(grad, x, **self._config())


@register
class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size, whatever the input size.

    See :func:`cnnarray.ops.adaptive_avg_pool2d`.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        ``(out_h, out_w)``; None keeps that input size.

    See Also
    --------
    torch.nn.AdaptiveAvgPool2d
    """

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        super().__init__()
        sizes = output_size if isinstance(output_size, tuple | list) else (output_size,) * 2
        if len(sizes) != 2 or not all(s is None or _is_positive_int(s) for s in sizes):
            raise ValueError(
                f"output_size must be a positive int or a pair of positive ints or None, "
                f"got {output_size!r}"
            )
        self.output_size = tuple(sizes)

    def _config(self) -> dict[str, Any]:
        return {"output_size": self.output_size}

    def forward(self, x: Any) -> Any:
        self._save(x)
        return adaptive_avg_pool2d(x, self.output_size)

    def backward(self, grad: Any) -> Any:
        (x,) = self._saved()
        return adaptive_avg_pool2d_backward(grad, x, self.output_size)


@register
class Flatten(Module):
    """Merge axes ``start_dim..end_dim``, by default (N, C, H, W) -> (N, C*H*W)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def _config(self) -> dict[str, Any]:
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}

    def forward(self, x: Any) -> Any:
        self._save(x)
        return flatten(x, self.start_dim, self.end_dim)

    def backward(self, grad: Any) -> Any:
        (x,) = self._saved()
        return flatten_backward(grad, x, self.start_dim, self.end_dim)


@register
class Dropout(Module):
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).

    Identity in evaluation mode. The mask comes from ``xp.random.default_rng(seed)``
    of the input's array module, created on the first call on each backend.

    Parameters
    ----------
    p : float in [0, 1], default 0.5
    seed : int, optional
        Seed of the mask generator, for reproducible runs.

    See Also
    --------
    torch.nn.Dropout
    """

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.p, self.seed = float(p), seed
        self._rng: Any = None
        self._rng_xp: Any = None

    def _config(self) -> dict[str, Any]:
        return {"p": self.p} if self.seed is None else {"p": self.p, "seed": self.seed}

    def forward(self, x: Any) -> Any:
        if not self.training or self.p == 0:
            self._save(None)
            return x
        xp = array_namespace(x)
        x = x.astype(_args.float_dtype(xp, x=x), copy=False)
        if self._rng_xp is not xp:
            self._rng, self._rng_xp = xp.random.default_rng(self.seed), xp
        keep = self._rng.random(x.shape, dtype=x.dtype) >= self.p
        mask = keep.astype(x.dtype) * (1 / (1 - self.p) if self.p < 1 else 0.0)
        self._save(mask)
        return x * mask

    def backward(self, grad: Any) -> Any:
        (mask,) = self._saved()
        return grad if mask is None else grad * mask
