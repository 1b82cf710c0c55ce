"""conv2d's measured rules: the column layout, the FFT, and batch chunks under the workspace limit.

The thresholds come from timings on a 2-core Xeon with OpenBLAS, made by
``benchmarks/layout_rule.py`` and ``benchmarks/fft_rule.py`` (tables in
``benchmarks/README.md``); the FFT rule itself is
:data:`cnnarray.ops._conv_fft.FFT_RULES`.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _args
from . import _conv_fft
from ._conv_geometry import ROW_PAD, Geometry, grad_image_width

__all__ = ["PADDING_MIN_REFUSED", "check_limit", "check_padded_maps", "check_padding", "chunks",
           "default_limit", "set_default_limit", "use_fft", "use_per_image"]  # fmt: skip

_workspace_limit = 256 * 2**20
# Column layout rule (use_per_image), measured by benchmarks/layout_rule.py (table in
# benchmarks/README.md). Per-image for short reductions (K = C_in/groups * kh * kw
# up to this: 2.2x faster for 3 -> 32 channels, 3x3) ...
PER_IMAGE_MAX_K = 32
# ... channel-major for a batch through wide weights (K * C_out/groups at least
# this: the per-image GEMMs are long and thin, up to 3x slower per step) ...
CHANNEL_MAJOR_MIN_WEIGHTS = 2**14
# ... else per-image below this many outputs for a forward pass alone (1.2-1.4x
# faster on LeNet's layers at batch 32) ...
PER_IMAGE_MAX_OUTPUT = 2**19
# ... and, for a training step (a ColumnCache, or the backward), below this
# N * K * C_out/groups: the backward's per-image GEMMs fall behind sooner. 2**17 on the
# Xeon; on an AMD EPYC channel-major was 16-43 % faster from 2**16 on (ResNet-20's
# 16-channel 32x32 layers at batch 32: 7.6 against 10.6 ms), while the Xeon's rows between
# the two favoured per-image by 4-7 % (benchmarks/README.md, "Column layout").
PER_IMAGE_MAX_STEP = 2**16
# check_padding never refuses a padding that adds less than this, whatever the limit: a small
# limit chunks the batch, it does not forbid a valid padding of a small image.
PADDING_MIN_REFUSED = 2**24


def check_limit(nbytes: Any) -> int:
    """Return a workspace limit in bytes: a positive int."""
    return _args.check_int(nbytes, "workspace_limit", minimum=1)


def set_default_limit(nbytes: int) -> None:
    """Set the limit of calls that give none (:func:`cnnarray.ops.set_workspace_limit`)."""
    global _workspace_limit
    _workspace_limit = check_limit(nbytes)


def default_limit() -> int:
    """The limit of calls that give none."""
    return _workspace_limit


def _call_bytes(geo: Geometry, pads: tuple[int, int, int, int], itemsize: int) -> int:
    """Bytes of a call's buffers with paddings ``pads`` (top, bottom, left, right) that no
    chunking splits: one image's padded input and columns (with the row of ones), and the
    output of the whole batch."""
    pt, pb, pl, pr = pads
    out_h = max(0, _args.conv_out_size(geo.h, pt + pb, geo.kh, geo.sh, geo.dh))
    out_w = max(0, _args.conv_out_size(geo.w, pl + pr, geo.kw, geo.sw, geo.dw))
    k = geo.c_in // geo.groups * geo.kh * geo.kw + 1
    image = geo.c_in * (geo.h + pt + pb) * (geo.w + pl + pr)
    return (image + (k + geo.n * geo.c_out) * out_h * out_w) * itemsize


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _bound(limit: int | None) -> int:
    """The bytes of zeros a padding may add: the workspace limit, at least PADDING_MIN_REFUSED."""
    return max(_workspace_limit if limit is None else check_limit(limit), PADDING_MIN_REFUSED)


def _limit_text(bound: int) -> str:
    return (f"over the limit of {bound} bytes (the workspace limit: cnnarray.set_workspace_limit "
            f"or conv2d's workspace_limit=, at least {PADDING_MIN_REFUSED})")  # fmt: skip


# the (geometry, itemsize, limit, default limit) that check_padding passed
_PASSED: set[tuple[Any, ...]] = set()
_PASSED_MAX = 1024


def check_padding(geo: Geometry, itemsize: int, limit: int | None) -> None:
    """:func:`_check_padding`, remembered per call that passed it (a layer makes the same
    call every step)."""
    key = (geo, itemsize, limit, _workspace_limit)
    if key in _PASSED:
        return
    _check_padding(geo, itemsize, limit)
    if len(_PASSED) >= _PASSED_MAX:
        _PASSED.clear()
    _PASSED.add(key)


def _check_padding(geo: Geometry, itemsize: int, limit: int | None) -> None:
    """Refuse a conv2d padding that makes one image's buffers mostly zeros, and large.

    The batch is chunked to fit the workspace limit, but a single image runs
    whatever its size, so an 8x8 image with padding 12000 would ask for
    gigabytes. A ValueError, before anything is allocated, when the padding
    past the kernel's reach ``d * (k - 1)`` (outputs computed from zeros
    alone) adds more than ``limit`` bytes to one image's padded input and
    columns and the batch's output, or when the padding adds more than ``limit`` bytes to the
    image itself and more than the image holds (a huge dilation's padding,
    see :func:`check_padded_maps`); never under :data:`PADDING_MIN_REFUSED`
    bytes. "same" padding, or any padding of an image that is not tiny beside
    it, passes.
    """
    bound = _bound(limit)
    if not geo.padded:
        return
    pads = (geo.pt, geo.pb, geo.pl, geo.pr)
    reach_h, reach_w = geo.dh * (geo.kh - 1), geo.dw * (geo.kw - 1)
    within = (min(geo.pt, reach_h), min(geo.pb, reach_h), min(geo.pl, reach_w),
              min(geo.pr, reach_w))  # fmt: skip
    needed = _call_bytes(geo, pads, itemsize)
    beyond = needed - _call_bytes(geo, within, itemsize)
    if beyond > bound:
        raise ValueError(
            f"padding (top, bottom, left, right) = {pads} goes past the kernel's reach "
            f"{(reach_h, reach_w)}: its outputs computed from zeros alone add {beyond} bytes "
            f"to the call's buffers (the output of {geo.n} image(s), one image's padded input "
            f"and columns: {needed} bytes, {_mib(needed)}), {_limit_text(bound)}; give a "
            f"smaller padding"
        )
    padded = (geo.h + geo.pt + geo.pb, geo.w + geo.pl + geo.pr)
    check_padded_maps(f"padding (top, bottom, left, right) = {pads}", (geo.h, geo.w), padded,
                      geo.c_in, itemsize, limit)  # fmt: skip


def check_padded_maps(what: str, size: tuple[int, ...], padded: tuple[int, ...], maps: int,
                      itemsize: int, limit: int | None = None) -> None:  # fmt: skip
    """Refuse padding that adds more than the limit to an image of ``maps`` maps, and more
    than the image holds: ``what`` (the padding, as given) names the culprit.

    conv2d's and pooling's padded copy of their input is one image's (or
    map's) at least, whatever the chunking; a padding a few pixels wide
    around an image of any useful size passes.
    """
    bound = _bound(limit)
    image = maps * math.prod(size) * itemsize
    grown = maps * math.prod(padded) * itemsize - image
    if grown <= max(bound, image):
        return
    raise ValueError(
        f"{what} pads maps of size {size} to {padded}: {grown} bytes ({_mib(grown)}) of "
        f"padding per image of {maps} map(s), more than the image holds and {_limit_text(bound)}"
    )


def use_per_image(geo: Geometry, training: bool = False) -> bool:
    """Choose the column layout: per-image for short reductions and small layers.

    ``training`` is True for a forward pass that keeps its columns for the
    backward (a :class:`ColumnCache`) and for the backward itself: there the
    channel-major layout wins on smaller layers than for a forward alone. One
    image keeps the forward's rule in both (one GEMM either way).
    """
    k = geo.c_in // geo.groups * geo.kh * geo.kw
    weights = k * (geo.c_out // geo.groups)
    if k <= PER_IMAGE_MAX_K:
        return True
    if geo.n > 1 and weights >= CHANNEL_MAJOR_MIN_WEIGHTS:
        return False
    if training and geo.n > 1:
        return geo.n * weights < PER_IMAGE_MAX_STEP
    return geo.n * geo.c_out * geo.out_h * geo.out_w < PER_IMAGE_MAX_OUTPUT


def chunks(geo: Geometry, itemsize: int, buffers: int, limit: int | None) -> list[slice]:
    """Split the batch so ``buffers`` column buffers fit in the workspace limit."""
    limit = _workspace_limit if limit is None else check_limit(limit)
    # one row more than im2col needs: the row of ones of a folded bias; the
    # grad columns' rows carry guards (col2im_flat, col2im_wide) and may be wider than
    # the columns (col2im_wide), counted for every image, and each chunk's rows
    # ROW_PAD spare values
    rows = buffers * (geo.c_in * geo.kh * geo.kw + 1)
    width = max(geo.out_h * geo.out_w, grad_image_width(geo))
    per_image = rows * width * itemsize
    step = max(1, min(geo.n, (limit - rows * ROW_PAD * itemsize) // max(per_image, 1)))
    return [slice(s, min(s + step, geo.n)) for s in range(0, geo.n, step)]


def use_fft(geo: Geometry, itemsize: int, limit: int | None) -> bool:
    """FFT for large kernels over few channels (stride 1), when its spectra fit the limit."""
    cg = geo.c_in // geo.groups
    if not _conv_fft.prefer_fft(geo.n, cg, geo.c_out, geo.kh, geo.kw, (geo.sh, geo.sw),
                                (geo.dh, geo.dw)):  # fmt: skip
        return False
    rows = _conv_fft.fast_length(geo.h + geo.pt + geo.pb)
    cols = _conv_fft.fast_length(geo.w + geo.pl + geo.pr) // 2 + 1
    spectra = geo.n * geo.c_in + geo.n * geo.c_out + geo.c_out * cg
    # complex values are two floats; the transposed copies for the products double it
    nbytes = 4 * spectra * rows * cols * itemsize
    return nbytes <= (_workspace_limit if limit is None else check_limit(limit))
