"""Resizing layers: ``Upsample`` (with ``UpsamplingNearest2d`` and ``UpsamplingBilinear2d``),
``PixelShuffle`` and ``PixelUnshuffle``, each one op of :mod:`cnnarray.ops.resize`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _args
from ..ops import resize
from ._layer import OpLayer
from .module import register

__all__ = ["PixelShuffle", "PixelUnshuffle", "Upsample", "UpsamplingBilinear2d",
           "UpsamplingNearest2d"]  # fmt: skip

_INTERPOLATE_ARGS = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor")


@register
class Upsample(OpLayer):
    """Resize the spatial axes; arguments as :func:`cnnarray.ops.interpolate`.

    Parameters
    ----------
    size : int or sequence of int, optional
    scale_factor : float or sequence of float, optional
        Exactly one of the two.
    mode : str, default "nearest"
        "nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear" or "area".
    align_corners : bool, optional
        Linear and cubic modes only.
    recompute_scale_factor : bool, optional

    See Also
    --------
    torch.nn.Upsample
    """

    _op = staticmethod(resize.interpolate)
    _config_names = _INTERPOLATE_ARGS

    def __init__(
        self,
        size: int | Sequence[int] | None = None,
        scale_factor: float | Sequence[float] | None = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
    ) -> None:
        super().__init__()
        self.size, self.scale_factor = resize.check_options(
            size, scale_factor, mode, align_corners, recompute_scale_factor
        )
        self.mode, self.align_corners = mode, align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def _op_args(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _INTERPOLATE_ARGS}


@register
class UpsamplingNearest2d(Upsample):
    """``Upsample(size, scale_factor, mode="nearest")``.

    See Also
    --------
    torch.nn.UpsamplingNearest2d
    """

    _config_names = ("size", "scale_factor")

    def __init__(self, size: int | Sequence[int] | None = None, scale_factor: Any = None) -> None:
        super().__init__(size, scale_factor, mode="nearest")


@register
class UpsamplingBilinear2d(Upsample):
    """``Upsample(size, scale_factor, mode="bilinear", align_corners=True)``.

    See Also
    --------
    torch.nn.UpsamplingBilinear2d
    """

    _config_names = ("size", "scale_factor")

    def __init__(self, size: int | Sequence[int] | None = None, scale_factor: Any = None) -> None:
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)


@register
class PixelShuffle(OpLayer):
    """(*, C * r**2, H, W) -> (*, C, H * r, W * r); see :func:`cnnarray.ops.pixel_shuffle`.

    See Also
    --------
    torch.nn.PixelShuffle
    """

    _op = staticmethod(resize.pixel_shuffle)
    _config_names = ("upscale_factor",)

    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        self.upscale_factor = _args.check_int(upscale_factor, "upscale_factor", minimum=1)


@register
class PixelUnshuffle(OpLayer):
    """(*, C, H * r, W * r) -> (*, C * r**2, H, W); see :func:`cnnarray.ops.pixel_unshuffle`.

    See Also
    --------
    torch.nn.PixelUnshuffle
    """

    _op = staticmethod(resize.pixel_unshuffle)
    _config_names = ("downscale_factor",)

    def __init__(self, downscale_factor: int) -> None:
        super().__init__()
        self.downscale_factor = _args.check_int(downscale_factor, "downscale_factor", minimum=1)
