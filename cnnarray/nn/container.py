"""Containers: ``Sequential``, which chains modules."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from ._fold import conv_bn_forward, foldable
from .module import Module, _check_node, build, register

__all__ = ["Sequential"]


@register
class Sequential(Module):
    """Chain modules: ``forward`` runs them in order.

    At inference (evaluation mode, no gradient recorded) a Conv2d followed by a
    BatchNorm2d runs as one convolution with the BatchNorm folded into its
    weights (see :func:`cnnarray.nn._fold.conv_bn_forward`): the same result, one pass less.

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
        layers = list(self)
        i = 0
        while i < len(layers):
            # at inference a Conv2d - BatchNorm2d pair runs as one folded convolution
            if i + 1 < len(layers) and foldable(layers[i], layers[i + 1], x):
                x = conv_bn_forward(layers[i], layers[i + 1], x)
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return x

    def spec(self) -> dict[str, Any]:
        # A list, not a dict: checkpoint headers are written with sorted keys.
        spec: dict[str, Any] = {"type": "Sequential", "layers": [m.spec() for m in self]}
        names = list(self._module_names)
        if names != [str(i) for i in range(len(names))]:
            spec["names"] = names
        return spec

    @classmethod
    def _check_spec(cls, spec: Mapping[str, Any], where: str, depth: int, count: list[int]) -> None:
        extra = sorted(set(spec) - {"type", "layers", "names"})
        if extra:
            raise ValueError(f"{where}: unknown entries {extra} in the spec of Sequential")
        layers, names = spec.get("layers"), spec.get("names")
        if not isinstance(layers, list):
            raise ValueError(f"{where}: spec of Sequential needs a 'layers' list")
        if names is not None and (
            not isinstance(names, list)
            or len(names) != len(layers)
            or not all(isinstance(n, str) for n in names)
        ):
            raise ValueError(
                f"{where}: spec of Sequential: 'names' must be a list of {len(layers)} strings"
            )
        for i, layer in enumerate(layers):
            _check_node(layer, f"{where}.layers[{i}]", depth + 1, count)

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
