"""``Module`` and ``Parameter``: the containers every layer is built from.

A module holds parameters (Tensors that require grad), buffers (state that
is saved but not trained, such as BatchNorm's running statistics) and child
modules, all found by attribute assignment as in PyTorch. A subclass writes
``forward`` only: the ops it calls on Tensors are recorded by
:mod:`cnnarray.autograd`, and ``loss.backward()`` fills every parameter's
``.grad``. The math itself lives in :mod:`cnnarray.ops`.

Architectures are described by :meth:`Module.spec`, a JSON-able dict of type
names and constructor arguments, and rebuilt by :func:`from_spec`: a
checkpoint stores that spec and the :meth:`Module.state_dict` arrays, and
never needs pickle.
"""

from __future__ import annotations

import inspect
import reprlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, TypeVar

from .. import _args
from ..autograd import Tensor, is_grad_enabled, no_grad
from ..backend import asarray, backend_of, get_backend
from .init import make_rng, shapes_only

__all__ = [
    "MAX_SPEC_DEPTH",
    "MAX_SPEC_MODULES",
    "IncompatibleKeys",
    "Module",
    "Parameter",
    "check_spec",
    "from_spec",
    "register",
]


class Parameter(Tensor):
    """A trainable Tensor: a leaf that requires grad, found by :meth:`Module.parameters`.

    Attributes
    ----------
    data : array
        The value. Optimisers update it in place.
    grad : array or None
        Gradient of the loss with respect to ``data``, accumulated by
        :meth:`Tensor.backward` until :meth:`Module.zero_grad` resets it to None.
    """

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        super().__init__(data, requires_grad)

    def accumulate(self, grad: Any) -> None:
        """Add ``grad`` to ``self.grad`` (which starts as None), as backward does for a leaf."""
        if self.grad is None:
            self.grad = grad.copy()
        else:
            self.grad += grad

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype}, on {backend_of(self.data)})"


class IncompatibleKeys(NamedTuple):
    """What :meth:`Module.load_state_dict` did not match."""

    missing_keys: list[str]
    unexpected_keys: list[str]


M = TypeVar("M", bound="Module")


class Module:
    """Base class of layers and models.

    Subclasses call ``super().__init__()`` first, assign their parameters,
    buffers (:meth:`register_buffer`) and children as attributes, name the
    constructor arguments that :meth:`spec` and ``repr`` show in
    ``_config_names`` (or override ``_config``), and define :meth:`forward`.
    Decorated with :func:`register`, a subclass is rebuilt from its spec by
    :func:`from_spec` (and so from a checkpoint).

    Attributes
    ----------
    training : bool
        True (the default) after :meth:`train`, False after :meth:`eval`.
        Dropout and BatchNorm2d behave differently in the two modes, and a
        call on arrays records for :meth:`backward` only in training mode.
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_param_names", [])
        object.__setattr__(self, "_buffer_names", [])
        object.__setattr__(self, "_module_names", [])
        self.training = True
        self._graph: tuple[Any, ...] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if "_param_names" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() has run; call "
                f"super().__init__() first in {type(self).__name__}.__init__"
            )
        for names in (self._param_names, self._module_names):
            if name in names:
                names.remove(name)
        if isinstance(value, Parameter):
            self._param_names.append(name)
        elif isinstance(value, Module):
            self._module_names.append(name)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: Any) -> None:
        """Add a saved, untrained array (e.g. running statistics) called ``name``."""
        if name not in self._buffer_names:
            self._buffer_names.append(name)
        setattr(self, name, value)

    # -- computation -------------------------------------------------------

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Return the output for the inputs (Tensors): the one method a subclass writes."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run :meth:`forward`. Tensors in, a Tensor out, recorded for autograd.

        Arrays in, arrays out: the arrays are wrapped in Tensors for
        :meth:`forward` and the result unwrapped. In training mode (with grad
        enabled) the graph is kept for :meth:`backward`; otherwise nothing is
        recorded.
        """
        if (args and isinstance(args[0], Tensor)) or _any_tensor(args, kwargs):
            return self.forward(*args, **kwargs)
        self._graph = None
        if not (self.training and is_grad_enabled()):
            with no_grad():
                return _unwrap(self.forward(*(_wrap(a, False) for a in args), **kwargs))
        inputs = tuple(_wrap(a, True) for a in args)
        out = self.forward(*inputs, **kwargs)
        if not isinstance(out, Tensor) or out.requires_grad:
            self._graph = (inputs, out)
        return _unwrap(out)

    def backward(self, grad: Any, input_grad: bool = True) -> Any:
        """Backpropagate ``grad`` (the gradient of the loss with respect to the output of the
        last call with arrays) through the graph that call kept; add the parameters'
        gradients into their ``.grad``; return the gradient with respect to the input.

        This is the array API of a layer; with Tensors, call ``loss.backward()``
        instead. ``input_grad=False`` skips the input's gradient (None is returned).
        """
        if self._graph is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward needs a forward pass in training mode on arrays "
                f"first (training={self.training}); each backward uses up what its forward kept"
            )
        (inputs, out), self._graph = self._graph, None
        if not isinstance(out, Tensor):
            raise TypeError(
                f"{type(self).__name__}.backward takes the gradient of one output, but forward "
                f"returned {type(out).__name__}; call .backward() on a Tensor loss instead"
            )
        if not input_grad:
            for t in inputs:
                if isinstance(t, Tensor):
                    t.requires_grad = False
        out.backward(grad)
        grads = tuple(t.grad if isinstance(t, Tensor) else None for t in inputs)
        return grads[0] if len(grads) == 1 else grads

    # -- traversal -----------------------------------------------------------

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Yield ``(name, module)`` for the direct children, in assignment order."""
        for name in self._module_names:
            yield name, getattr(self, name)

    def children(self) -> Iterator[Module]:
        """Yield the direct children."""
        for _, child in self.named_children():
            yield child

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield ``(dotted name, module)`` for this module ("") and all below it."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        """Yield this module and all below it."""
        for _, module in self.named_modules():
            yield module

    def _named(self, kind: str) -> Iterator[tuple[str, Any]]:
        for prefix, module in self.named_modules():
            for name in getattr(module, kind):
                yield (f"{prefix}.{name}" if prefix else name), getattr(module, name)

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted name, Parameter)``, e.g. ``("features.0.weight", p)``."""
        return self._named("_param_names")

    def parameters(self) -> list[Parameter]:
        """Return the list of all parameters (what an optimiser takes)."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(dotted name, array)`` for every buffer."""
        return self._named("_buffer_names")

    def buffers(self) -> list[Any]:
        """Return the list of all buffers."""
        return [b for _, b in self.named_buffers()]

    # -- state -----------------------------------------------------------------

    def zero_grad(self) -> None:
        """Reset every parameter's gradient to None."""
        for p in self.parameters():
            p.grad = None

    def train(self: M, mode: bool = True) -> M:
        """Set training mode (``mode=True``) or evaluation mode on every module; return self.

        What the last call on arrays recorded for backward is dropped.
        """
        _args.check_bool(mode, "mode")
        for module in self.modules():
            module.training = mode
            module._graph = None
        return self

    def eval(self: M) -> M:
        """Set evaluation mode; same as ``train(False)``."""
        return self.train(False)

    def to(self: M, backend: Any) -> M:
        """Move parameters, gradients and buffers to ``backend`` ("cpu", "cuda", ...); return self.

        What the last call on arrays recorded for backward is dropped.
        """
        target = get_backend(backend)
        for module in self.modules():
            for name in module._param_names:
                p = getattr(module, name)
                p.data = target.asarray(p.data)
                if p.grad is not None:
                    p.grad = target.asarray(p.grad)
            for name in module._buffer_names:
                setattr(module, name, target.asarray(getattr(module, name)))
            module._graph = None
        return self

    def state_dict(self) -> OrderedDict[str, Any]:
        """Return every parameter and buffer by dotted name.

        The arrays are the module's own, not copies (as in PyTorch): copy them
        to keep a snapshot while training goes on.
        """
        state: OrderedDict[str, Any] = OrderedDict()
        for prefix, module in self.named_modules():
            for name in module._param_names:
                state[f"{prefix}.{name}" if prefix else name] = getattr(module, name).data
            for name in module._buffer_names:
                state[f"{prefix}.{name}" if prefix else name] = getattr(module, name)
        return state

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy arrays from ``state`` into the parameters and buffers, in place.

        Every entry is checked before anything is copied, so a failed load
        leaves the module as it was. Arrays may live on any backend; they are
        copied to where each parameter lives.

        Parameters
        ----------
        state : mapping of str to array
            As returned by :meth:`state_dict` (or read from a checkpoint).
        strict : bool, default True
            Require the keys of ``state`` to match exactly.

        Returns
        -------
        IncompatibleKeys
            ``(missing_keys, unexpected_keys)``, both empty when ``strict``.

        Raises
        ------
        ValueError
            If ``strict`` and keys are missing or unexpected, or if an array
            has another shape or dtype than the one it would replace.
        """
        own = self.state_dict()
        missing, unexpected, values = _check_state(type(self).__name__, own, state, strict)
        for key, value in values.items():
            target = own[key]
            target[...] = backend_of(target).asarray(value)
        return IncompatibleKeys(missing, unexpected)

    # -- description -------------------------------------------------------------

    #: Constructor arguments that the module keeps as attributes of the same name,
    #: in signature order: what :meth:`_config` returns unless a subclass adds more.
    _config_names: tuple[str, ...] = ()

    def _config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this module (see :meth:`spec`)."""
        return {name: getattr(self, name) for name in self._config_names}

    def spec(self) -> dict[str, Any]:
        """Return a JSON-able description: ``{"type": name, "args": {constructor args}}``.

        See Also
        --------
        from_spec
        """
        _check_registered(self)
        return {"type": type(self).__name__, "args": _jsonable(self._config())}

    @classmethod
    def _check_spec(cls, spec: Mapping[str, Any], where: str, depth: int, count: list[int]) -> None:
        """Check ``spec`` of this class before building it (see :func:`check_spec`).

        ``{"type": ..., "args": {...}}`` where the arguments bind to the
        constructor; a subclass that reads other entries overrides this and
        checks its children with ``_check_node(child, where, depth + 1, count)``.
        """
        extra = sorted(set(spec) - {"type", "args"})
        if extra:
            raise ValueError(f"{where}: unknown entries {extra} in the spec of {cls.__name__}")
        args = spec.get("args", {})
        if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
            raise ValueError(
                f"{where}: spec of {cls.__name__}: 'args' must be an object, got {_short(args)}"
            )
        refused = sorted(set(args) & set(REFUSED_SPEC_ARGS))
        if refused:
            raise ValueError(
                f"{where}: {cls.__name__} argument {refused[0]!r} is not allowed in a spec (where "
                f"the model goes and how it is drawn are the caller's choice)"
            )
        try:
            inspect.signature(cls).bind(**args)
        except TypeError as exc:
            raise ValueError(f"{where}: spec of {cls.__name__} has bad arguments: {exc}") from None

    @classmethod
    def _from_spec(cls, spec: Mapping[str, Any], rng: Any) -> Module:
        args = spec.get("args", {})
        if not isinstance(args, Mapping):
            raise ValueError(f"spec of {cls.__name__}: 'args' must be an object, got {args!r}")
        args = dict(args)
        if "rng" in inspect.signature(cls).parameters:
            args["rng"] = rng
        try:
            return cls(**args)
        except TypeError as exc:
            raise ValueError(
                f"spec of {cls.__name__} has bad arguments {spec['args']}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"


def _any_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return any(isinstance(a, Tensor) for a in args) or any(
        isinstance(v, Tensor) for v in kwargs.values()
    )


def _wrap(value: Any, requires_grad: bool) -> Any:
    """An array (or array-like) as a leaf Tensor; other arguments (None, ints) as they are."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    t = Tensor(value)
    if requires_grad and t.dtype.kind == "f":
        t.requires_grad = True
    return t


def _unwrap(value: Any) -> Any:
    """Tensors to their arrays, inside tuples and lists too."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, tuple | list):
        return type(value)(_unwrap(v) for v in value)
    return value


def _jsonable(value: Any) -> Any:
    """Turn tuples into lists, recursively, so that ``json.loads(json.dumps(x)) == x``."""
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _check_state(
    name: str, own: Mapping[str, Any], state: Any, strict: bool
) -> tuple[list[str], list[str], dict[str, Any]]:
    """Compare ``state`` with a module's own arrays ``own``; return missing, unexpected, matches.

    Raises ValueError (TypeError for a non-mapping) naming every key whose
    array has another shape or dtype, and, if ``strict``, the keys that are
    missing or unexpected.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping of name -> array, got {type(state)}")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        raise ValueError(
            f"error loading state into {name}: missing keys {missing}, unexpected keys {unexpected}"
        )
    values, problems = {}, []
    for key, target in own.items():
        if key not in state:
            continue
        value = state[key]
        if not hasattr(value, "shape"):
            value = asarray(value)
        if tuple(value.shape) != tuple(target.shape):
            problems.append(
                f"{key!r} has shape {tuple(value.shape)}, expected {tuple(target.shape)}"
            )
        elif value.dtype != target.dtype:
            problems.append(f"{key!r} has dtype {value.dtype}, expected {target.dtype}")
        else:
            values[key] = value
    if problems:
        raise ValueError(f"error loading state into {name}: " + "; ".join(problems))
    return missing, unexpected, values


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a spec may be huge)."""
    text = reprlib.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_REGISTRY: dict[str, type[Module]] = {}

#: Deepest nesting of module specs (a Sequential in a Sequential ...) accepted.
MAX_SPEC_DEPTH = 32
#: Most module specs (layers, at every depth) in one spec.
MAX_SPEC_MODULES = 10_000
#: Constructor arguments a spec may not give: where parameters live, what draws them.
REFUSED_SPEC_ARGS = ("backend", "rng")

T = TypeVar("T", bound=type[Module])


def _check_registered(module: Module) -> None:
    """Refuse to describe a module that :func:`from_spec` could not rebuild."""
    cls = type(module)
    if _REGISTRY.get(cls.__name__) is not cls:
        raise ValueError(
            f"{cls.__name__} is not registered, so a checkpoint could not rebuild it: decorate "
            f"the class with @cnnarray.nn.register (its constructor arguments named in "
            f"_config_names)"
        )


def register(cls: T) -> T:
    """Class decorator: make ``cls`` buildable by :func:`from_spec` under its class name."""
    _REGISTRY[cls.__name__] = cls
    return cls


def _check_node(spec: Any, where: str, depth: int, count: list[int]) -> None:
    """Check one module spec and, through its class, those below it."""
    if depth > MAX_SPEC_DEPTH:
        raise ValueError(f"the spec nests modules more than {MAX_SPEC_DEPTH} deep")
    count[0] += 1
    if count[0] > MAX_SPEC_MODULES:
        raise ValueError(f"the spec describes more than {MAX_SPEC_MODULES} modules")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("type"), str):
        raise ValueError(
            f"{where}: a module spec must be a dict with a 'type' entry (a string), "
            f"got {_short(spec)}"
        )
    cls = _REGISTRY.get(spec["type"])
    if cls is None:
        raise ValueError(
            f"{where}: unknown module type {_short(spec['type'])} in spec; "
            f"known types: {sorted(_REGISTRY)}"
        )
    cls._check_spec(spec, where, depth, count)


def check_spec(spec: Any, state: Mapping[str, Any] | None = None) -> None:
    """Check a module spec, and the arrays meant for it, before anything is built.

    Without ``state``: the structure (registered types, at most
    :data:`MAX_SPEC_DEPTH` deep and :data:`MAX_SPEC_MODULES` modules,
    arguments that bind to each constructor, none of :data:`REFUSED_SPEC_ARGS`).
    With ``state``: also the values, by building the model with placeholder
    arrays that take no memory (:func:`cnnarray.nn.init.shapes_only`; each
    constructor checks its argument types and ranges), and its parameter and
    buffer names, shapes and dtypes against ``state``, so that a model is
    never larger than the arrays given for it (a checkpoint's tensors).

    Parameters
    ----------
    spec : dict
        As returned by :meth:`Module.spec` (possibly through untrusted JSON).
    state : mapping of str to array, optional
        The arrays to load into the model (anything with ``shape`` and ``dtype``).

    Raises
    ------
    ValueError
        Naming the first problem (an ``ArgumentTypeError``, also a TypeError,
        for an argument of the wrong type).

    See Also
    --------
    from_spec, Module.load_state_dict
    """
    _check_node(spec, "spec", 0, [0])
    if state is None:
        return
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping of name -> array, got {type(state)}")
    with shapes_only(max_arrays=len(state)):
        try:
            model = build(spec, make_rng(None))
        except (TypeError, ValueError, OverflowError, MemoryError) as exc:
            raise ValueError(f"spec: {exc}") from None
    _check_state(type(model).__name__, model.state_dict(), state, strict=True)


def build(spec: Mapping[str, Any], rng: Any) -> Module:
    """Build one module from its spec, drawing initial weights from ``rng``."""
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ValueError(f"a module spec must be a dict with a 'type' entry, got {_short(spec)}")
    cls = _REGISTRY.get(spec["type"])
    if cls is None:
        raise ValueError(
            f"unknown module type {spec['type']!r} in spec; known types: {sorted(_REGISTRY)}"
        )
    return cls._from_spec(spec, rng)


def from_spec(spec: Mapping[str, Any], *, backend: Any = None, seed: int | None = None) -> Module:
    """Rebuild a module from :meth:`Module.spec` (weights freshly initialised).

    The spec's structure is checked first (:func:`check_spec`); to check it
    against the arrays to be loaded before anything is allocated, call
    ``check_spec(spec, state)``.

    Parameters
    ----------
    spec : dict
        As returned by ``module.spec()`` (possibly through JSON).
    backend : str, optional
        Where to put the parameters (default "cpu"); never taken from the spec.
    seed : int, optional
        Seed of the initial weights; load a state dict to restore trained ones.

    Examples
    --------
    >>> from cnnarray import nn
    >>> model = nn.Sequential(nn.Linear(4, 2), nn.ReLU())
    >>> twin = nn.from_spec(model.spec())
    >>> twin.load_state_dict(model.state_dict())
    IncompatibleKeys(missing_keys=[], unexpected_keys=[])
    """
    check_spec(spec)
    module = build(spec, make_rng(seed))
    return module if backend is None else module.to(backend)
