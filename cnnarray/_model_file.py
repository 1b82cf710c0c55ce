"""What a checkpoint of :mod:`cnnarray.train` holds beside its tensors, checked before use.

:func:`cnnarray.io.load_checkpoint` vouches that a file is the one that was
saved (its digest) and that its JSON is within bounds; this module checks that
what the JSON says makes sense, so that no command trusts a field it has not
checked: the model spec against the tensors actually in the file (no model is
larger than its file), the input shape and class names within limits and
consistent with the model, the preprocessing record consistent with the input
shape, the training configuration a dict. Absent optional fields get defaults
(classes "0", "1", ...; no preprocessing record; an empty configuration); a
preprocessing record, when present, must hold every field prediction reads.
Every problem is a one-line :class:`~cnnarray.io.CheckpointError` naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _args, nn
from .data.preprocess import RECORD_FIELDS
from .io import CheckpointError

__all__ = [
    "MAX_CLASSES",
    "MAX_CLASS_NAME",
    "MAX_INPUT_CHANNELS",
    "MAX_INPUT_SIDE",
    "check_classes",
    "check_metadata",
    "check_model_spec",
    "saved_config",
    "saved_dataset",
]

#: Most classes a checkpoint may name (evaluate's confusion matrix is classes x classes).
MAX_CLASSES = 4096
#: Longest class name, in characters.
MAX_CLASS_NAME = 256
#: Most input channels, and the largest input height or width, a checkpoint may declare.
MAX_INPUT_CHANNELS = 64
MAX_INPUT_SIDE = 4096
_LAYOUTS = ("glyph", "natural")
_INKS = (None, "light-on-dark", "dark-on-light")
_CENTRES = ("mass", "frame")


def _fail(path: str | Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: {what}")


def check_model_spec(path: str | Path, spec: Any, state: Mapping[str, Any]) -> dict[str, Any]:
    """Check the spec of a train checkpoint and its model against ``state``; return the spec.

    Parameters
    ----------
    path : str or Path
        The file (for messages).
    spec : dict
        The checkpoint's spec: ``model`` (required), ``input_shape`` (required),
        ``classes``, ``preprocess``, ``dataset``, ``model_name``.
    state : mapping of str to array
        The model's tensors from the file (``model.`` prefix removed).

    Returns
    -------
    dict
        A copy of ``spec`` (``classes`` is checked, or filled in, by
        :func:`check_classes` once the model is built).
    """
    if "model" not in spec:
        raise _fail(path, "the spec has no 'model' entry: not a cnnarray model file")
    try:
        nn.check_spec(spec["model"], state)
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"the model spec does not fit the file: {exc}") from None
    spec = dict(spec)
    spec["input_shape"] = _input_shape(path, spec.get("input_shape"))
    for key in ("dataset", "model_name"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise _fail(path, f"spec entry {key!r} must be a string, got {_kind(spec[key])}")
    _check_preprocess(path, spec.get("preprocess"), spec["input_shape"])
    return spec


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{text[:40]}... ({type(value).__name__})" if len(text) > 40 else text


def _input_shape(path: str | Path, shape: Any) -> list[int]:
    if shape is None:
        raise _fail(path, "the spec has no 'input_shape' (channels, height, width)")
    if not isinstance(shape, list) or len(shape) not in (2, 3):
        raise _fail(
            path,
            "input_shape must be a list [channels, height, width] (images) or [channels, "
            f"length] (signals), got {_kind(shape)}",
        )
    limits = (
        ("channels", MAX_INPUT_CHANNELS),
        ("height", MAX_INPUT_SIDE),
        ("width", MAX_INPUT_SIDE),
    )
    if len(shape) == 2:
        limits = (("channels", MAX_INPUT_CHANNELS), ("length", MAX_INPUT_SIDE**2))
    try:
        return [_args.check_int(v, f"input_shape {name}", minimum=1, maximum=top)
                for v, (name, top) in zip(shape, limits, strict=True)]  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise _fail(path, str(exc)) from None


def _number(path: str | Path, value: Any, name: str, low: float, high: float) -> float:
    try:
        return _args.check_real(value, name, low=low, high=high, finite=True)
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"preprocess record: {exc}") from None


def _check_preprocess(path: str | Path, record: Any, input_shape: list[int]) -> None:
    """Check the record of :func:`cnnarray.data.preprocess.describe_inputs` against the shape."""
    if record is None:
        return
    if not isinstance(record, dict):
        raise _fail(path, f"preprocess record must be an object, got {_kind(record)}")
    missing = [key for key in RECORD_FIELDS if key not in record]
    if missing:  # every record cnnarray writes has them all: this one was edited
        raise _fail(path, f"preprocess record has no {missing[0]!r} (a record holds "
                          f"{', '.join(RECORD_FIELDS)})")  # fmt: skip
    if len(input_shape) != 3:
        raise _fail(path, f"a preprocess record is for images, but input_shape is {input_shape}")
    channels, height, width = input_shape
    if record.get("size") != [height, width] or record.get("channels") != channels:
        raise _fail(path, f"preprocess record of size {_kind(record.get('size'))} and channels "
                          f"{_kind(record.get('channels'))} does not match input_shape "
                          f"{input_shape}")  # fmt: skip
    for key, choices in (("layout", _LAYOUTS), ("ink", _INKS), ("centre", _CENTRES)):
        if record.get(key) not in choices:
            raise _fail(path, f"preprocess record: {key} must be one of {list(choices)}, "
                              f"got {_kind(record.get(key))}")  # fmt: skip
    if record["layout"] == "glyph" and record["ink"] is None:  # the polarity decides inversion
        raise _fail(path, "preprocess record: a glyph layout needs ink 'light-on-dark' or "
                          "'dark-on-light', got None")  # fmt: skip
    _number(path, record["fill"], "fill", 0.0, 1.0)
    if "histogram" in record:
        bins = record["histogram"]
        if not isinstance(bins, list) or not 1 <= len(bins) <= 1024:
            raise _fail(path, f"preprocess record: histogram must be a list, got {_kind(bins)}")
        for i, v in enumerate(bins):
            _number(path, v, f"histogram[{i}]", 0.0, 1.0)
        _number(path, record.get("histogram_limit"), "histogram_limit", 0.0, 1.0)


def _output_size(model: nn.Module) -> int | None:
    """Outputs of the model's last Linear layer (its classes), or None without one."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def check_classes(path: str | Path, spec: dict[str, Any], model: nn.Module) -> list[str]:
    """Return the checkpoint's class names, checked against the model's output size.

    Absent: ``"0"``, ``"1"``, ... for each output of the model's last Linear.
    """
    outputs = _output_size(model)
    classes = spec.get("classes")
    if classes is None:
        if outputs is None:
            raise _fail(path, "the spec names no classes and the model has no Linear output")
        return [str(i) for i in range(outputs)]
    if not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES:
        got = f"{len(classes)} names" if isinstance(classes, list) else _kind(classes)
        raise _fail(path, f"classes must be a list of 1 to {MAX_CLASSES} names, got {got}")
    for i, name in enumerate(classes):
        if not isinstance(name, str) or not 0 < len(name) <= MAX_CLASS_NAME:
            raise _fail(path, f"classes[{i}] must be a name of 1 to {MAX_CLASS_NAME} characters, "
                              f"got {_kind(name)}")  # fmt: skip
    if outputs is not None and len(classes) != outputs:
        raise _fail(path, f"the spec names {len(classes)} classes but the model has {outputs} "
                          f"outputs")  # fmt: skip
    return classes


def check_metadata(path: str | Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Return ``metadata`` with ``config`` checked to be a dict (``{}`` when absent).

    A configuration's ``dataset``, if given, must be a string; the fields of a
    resumed run are checked by :class:`cnnarray.train.TrainConfig` itself.
    """
    metadata = dict(metadata)
    config = metadata.setdefault("config", {})
    if not isinstance(config, dict):
        raise _fail(path, f"metadata 'config' must be an object, got {_kind(config)}")
    if not isinstance(config.get("dataset", ""), str):
        raise _fail(path, f"config 'dataset' must be a string, got {_kind(config['dataset'])}")
    epoch = metadata.get("epoch", 0)
    if type(epoch) is not int or epoch < 0:
        raise _fail(path, f"metadata 'epoch' must be a non-negative int, got {_kind(epoch)}")
    return metadata


def saved_config(path: str | Path, metadata: dict[str, Any], names: Any) -> dict[str, Any]:
    """Return the saved training configuration, whose keys must be among ``names``.

    ``val_split`` defaults to 0 (runs before the validation split trained on
    all of the training set).
    """
    saved = dict(check_metadata(path, metadata)["config"])
    if not saved:
        raise _fail(path, "no training configuration: not a checkpoint of train")
    saved.setdefault("val_split", 0.0)
    unknown = sorted(set(saved) - set(names))
    if unknown:
        raise _fail(path, f"unknown training settings {unknown} in the configuration")
    return saved


def saved_dataset(spec: Mapping[str, Any], metadata: Mapping[str, Any]) -> str | None:
    """Return the saved data set spec when it is the bundled digits or a synthetic one.

    ``"digits"``, ``"shapes[:N]"`` or ``"signals[:N]"``; else None: any other
    data set is a path on disk, which a checkpoint may not choose for the user
    (the caller asks for the data set instead).
    """
    named = metadata.get("config", {}).get("dataset") or spec.get("dataset") or "digits"
    named = named.strip().lower()
    if named == "digits" or named.partition(":")[0] in ("shapes", "signals"):
        return named
    return None
