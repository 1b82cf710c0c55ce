"""Training, evaluation and checkpoints of a classifier built from :mod:`cnnarray.nn`.

The loop is the textbook one: forward, softmax cross-entropy, backward,
optimiser step, per mini-batch; evaluation in eval mode after every epoch.
Progress is reported through callbacks, so the CLI can draw a progress bar
and a library user can log as they like.

A checkpoint is one safetensors file (see :mod:`cnnarray.io`): the model's
state dict under ``model.*``, the optimiser's arrays under ``optim.*``, and as
JSON the architecture spec (enough to rebuild the model from the file alone),
the training configuration, history and the scalar optimiser state for
``--resume``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _args, nn, ops, optim
from .autograd import Tensor
from .backend import Backend, to_numpy
from .data import augment
from .data.datasets import Split
from .data.loader import DataLoader
from .data.preprocess import describe_inputs
from .io import CheckpointError, load_checkpoint, save_checkpoint

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "step")
AUGMENTATIONS = ("none", "shift", "crop", "flip", "noise")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint)."""

    dataset: str = "digits"
    model: str = "small_cnn"
    epochs: int = 60
    batch_size: int = 16
    lr: float = 2e-3
    optimizer: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    augment: str = "shift"
    label_smoothing: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        """Raise ValueError naming the first field with a bad value.

        NumPy integers in ``epochs`` and ``batch_size`` become ints, so the
        configuration stays JSON-able for the checkpoint.
        """
        self.epochs = _args.check_int(self.epochs, "epochs", minimum=1)
        self.batch_size = _args.check_int(self.batch_size, "batch_size", minimum=1)
        _args.check_real(self.lr, "lr", low=0, low_open=True)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.model not in nn.MODELS:
            raise ValueError(f"model must be one of {sorted(nn.MODELS)}, got {self.model!r}")
        for part in self.augment.split(","):
            if part.strip() not in AUGMENTATIONS:
                raise ValueError(
                    f"augment must be a comma-separated list of {AUGMENTATIONS}, "
                    f"got {self.augment!r}"
                )


@dataclass
class EpochStats:
    """Metrics of one epoch; accuracies are fractions in [0, 1]."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float
    images_per_second: float
    lr: float


@dataclass
class Callbacks:
    """Hooks the loop calls; each may be None."""

    on_epoch_start: Callable[[int, int], None] | None = None  # (epoch, batches)
    on_batch: Callable[[int, float, float], None] | None = None  # (batch, loss, accuracy)
    on_epoch_end: Callable[[EpochStats], None] | None = None


@dataclass
class TrainState:
    """A model with its optimiser, schedule and history: what a checkpoint holds."""

    model: nn.Module
    optimizer: optim.Optimizer
    scheduler: optim.LRScheduler | None
    config: TrainConfig
    spec: dict[str, Any]
    history: list[EpochStats] = field(default_factory=list)

    @property
    def epoch(self) -> int:
        """Number of epochs done."""
        return len(self.history)


def build_model(config: TrainConfig, data: Split, backend: Backend) -> tuple[nn.Module, dict]:
    """Build ``config.model`` for the data's input shape; return it and its file spec."""
    channels, height, _ = data.input_shape
    kwargs = {"in_channels": channels, "num_classes": data.num_classes}
    if config.model != "vgg_small":
        kwargs["input_size"] = height
    model = nn.build_model(config.model, **kwargs, seed=config.seed).to(backend)
    spec = {
        "model": model.spec(),
        "model_name": config.model,
        "input_shape": list(data.input_shape),
        "classes": list(data.classes),
        "dataset": data.name,
        # how predict makes a user's image look like these training images
        "preprocess": describe_inputs(data.x_train),
    }
    return model, spec


def build_optimizer(config: TrainConfig, model: nn.Module) -> optim.Optimizer:
    """Return the optimiser named by ``config.optimizer`` over the model's parameters."""
    params = model.parameters()
    if config.optimizer == "sgd":
        return optim.SGD(params, lr=config.lr, momentum=config.momentum,
                         weight_decay=config.weight_decay)  # fmt: skip
    if config.optimizer == "adam":
        return optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(config: TrainConfig, optimizer: optim.Optimizer) -> optim.LRScheduler | None:
    """Return the per-epoch learning-rate schedule named by ``config.schedule``."""
    if config.schedule == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "step":
        return optim.StepLR(optimizer, step_size=max(1, config.epochs // 3), gamma=0.1)
    return None


def build_augment(spec: str, input_shape: tuple[int, int, int]) -> augment.Compose | None:
    """Turn ``"shift,flip"`` into a transform; shifts scale with the image (1 px per 8)."""
    _, h, w = input_shape
    shift = max(1, min(h, w) // 8)
    parts = {
        "shift": augment.RandomShift(shift),
        "crop": augment.RandomCrop((h, w), padding=shift),
        "flip": augment.RandomHorizontalFlip(),
        "noise": augment.GaussianNoise(0.02, clip=(0.0, 1.0)),
    }
    chosen = [parts[p.strip()] for p in spec.split(",") if p.strip() != "none"]
    return augment.Compose(chosen) if chosen else None


def new_state(config: TrainConfig, data: Split, backend: Backend) -> TrainState:
    """Return a freshly initialised model, optimiser and schedule for ``config``."""
    config.validate()
    model, spec = build_model(config, data, backend)
    optimizer = build_optimizer(config, model)
    return TrainState(model, optimizer, build_scheduler(config, optimizer), config, spec)


def evaluate(
    model: nn.Module, x: np.ndarray, y: np.ndarray, backend: Backend, batch_size: int = 256
) -> tuple[float, float, np.ndarray]:
    """Return mean loss, accuracy and the predicted classes of ``model`` on ``(x, y)``."""
    model.eval()
    losses, predictions = [], []
    for xb, yb in DataLoader(x, y, batch_size=batch_size, backend=backend):
        logits = model(xb)
        losses.append(float(ops.cross_entropy(logits, yb, reduction="sum")))
        predictions.append(to_numpy(logits.argmax(axis=1)))
    pred = np.concatenate(predictions)
    return sum(losses) / len(y), float(np.mean(pred == y)), pred


def predict_proba(
    model: nn.Module, x: np.ndarray, backend: Backend, batch_size: int = 256
) -> np.ndarray:
    """Return class probabilities, shape (N, classes), as a NumPy array."""
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        xb = backend.asarray(x[start : start + batch_size])
        out.append(to_numpy(ops.softmax(model(xb), axis=1)))
    return np.concatenate(out)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Count the samples of each true class by the class predicted for them.

    Parameters
    ----------
    y_true : numpy.ndarray, shape (N,), integer
        Labels, each in ``0 .. num_classes - 1``.
    y_pred : numpy.ndarray, shape (N,), integer
        Predicted classes, e.g. the third result of :func:`evaluate`.
    num_classes : int
        K, the number of classes.

    Returns
    -------
    numpy.ndarray, shape (K, K), int64
        Entry ``[i, j]`` counts the samples of class ``i`` predicted as ``j``;
        the trace counts the correct predictions.

    Examples
    --------
    >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 2)
    array([[1, 0],
           [1, 1]])
    """
    k = _args.check_int(num_classes, "num_classes", minimum=1)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    _args.check_same_shape(y_pred, "y_pred", y_true, "y_true")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer array, got dtype {y.dtype}")
        if y.ndim != 1:
            raise ValueError(f"{name} must be 1-d, got shape {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= k):
            raise ValueError(
                f"{name} must hold classes in 0..{k - 1}, got values from {y.min()} to {y.max()}"
            )
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    return confusion


def fit(state: TrainState, data: Split, backend: Backend, callbacks: Callbacks | None = None,
        epochs: int | None = None) -> list[EpochStats]:  # fmt: skip
    """Train ``state`` on ``data`` from its current epoch to ``config.epochs`` (or ``epochs``).

    Each epoch shuffles with a seed derived from ``config.seed`` and the epoch
    number, so a resumed run sees the same batches as an uninterrupted one.
    The history in ``state`` grows by one :class:`EpochStats` per epoch, so an
    interrupted run can be checkpointed between epochs.
    """
    callbacks = callbacks or Callbacks()
    config, model = state.config, state.model
    loader = DataLoader(data.x_train, data.y_train, batch_size=config.batch_size, shuffle=True,
                        seed=config.seed, backend=backend,
                        transform=build_augment(config.augment, data.input_shape))  # fmt: skip
    last = config.epochs if epochs is None else min(config.epochs, state.epoch + epochs)
    while state.epoch < last:
        loader.epoch = state.epoch
        if callbacks.on_epoch_start:
            callbacks.on_epoch_start(state.epoch, len(loader))
        model.train()
        start = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        lr = state.optimizer.param_groups[0]["lr"]
        for i, (xb, yb) in enumerate(loader):
            logits = model(Tensor(xb))
            loss = ops.cross_entropy(logits, yb, label_smoothing=config.label_smoothing)
            state.optimizer.zero_grad()
            loss.backward()
            state.optimizer.step()
            batch_loss, hits = float(loss.data), int((logits.data.argmax(axis=1) == yb).sum())
            total_loss += batch_loss * len(yb)
            correct += hits
            seen += len(yb)
            if callbacks.on_batch:
                callbacks.on_batch(i, batch_loss, hits / len(yb))
        backend.synchronize()
        seconds = time.perf_counter() - start
        if state.scheduler is not None:
            state.scheduler.step()
        test_loss, test_acc, _ = evaluate(model, data.x_test, data.y_test, backend)
        stats = EpochStats(state.epoch + 1, total_loss / seen, correct / seen, test_loss,
                           test_acc, seconds, seen / seconds, lr)  # fmt: skip
        state.history.append(stats)
        if callbacks.on_epoch_end:
            callbacks.on_epoch_end(stats)
    return state.history


# -- checkpoints ---------------------------------------------------------------


def save(state: TrainState, path: str | Path) -> Path:
    """Write model, optimiser and history to ``path`` atomically (safetensors + JSON)."""
    tensors = {f"model.{k}": to_numpy(v) for k, v in state.model.state_dict().items()}
    opt = state.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in opt["state"].items():
        for name, value in entries.items():
            if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
                tensors[f"optim.{index}.{name}"] = to_numpy(value)
            else:
                scalars.setdefault(str(index), {})[name] = _plain(value)
    metadata = {
        "config": asdict(state.config),
        "epoch": state.epoch,
        "history": [asdict(h) for h in state.history],
        "optimizer": {"param_groups": _plain(opt["param_groups"]), "scalars": scalars},
        "scheduler": None if state.scheduler is None else _plain(state.scheduler.state_dict()),
    }
    return save_checkpoint(path, tensors, state.spec, metadata)


def _plain(value: Any) -> Any:
    """Turn NumPy scalars, tuples and nested containers into JSON-able values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value


def load_model(path: str | Path, backend: Backend) -> tuple[nn.Module, dict, dict]:
    """Rebuild the model in a checkpoint from the file alone; return it, spec and metadata."""
    tensors, spec, metadata = load_checkpoint(path)
    return _rebuild(path, tensors, spec, backend), spec, metadata


def _rebuild(path: str | Path, tensors: dict, spec: dict, backend: Backend) -> nn.Module:
    """The model of a loaded checkpoint, in eval mode, its ``model.*`` weights loaded."""
    if "model" not in spec:
        raise CheckpointError(f"{path}: the spec has no 'model' entry: not a cnnarray model file")
    try:
        model = nn.from_spec(spec["model"], backend=backend)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model from its spec: {exc}") from exc
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except ValueError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model: {exc}") from exc
    return model.eval()


def resume(path: str | Path, data: Split, backend: Backend,
           epochs: int | None = None) -> TrainState:  # fmt: skip
    """Restore a training run from a checkpoint written by :func:`save`.

    ``epochs`` raises the total number of epochs to train (default: as saved).
    """
    tensors, spec, metadata = load_checkpoint(path)  # read (and hash-checked) once
    model = _rebuild(path, tensors, spec, backend)
    if list(data.input_shape) != spec.get("input_shape"):
        raise CheckpointError(
            f"{path}: the model was trained on inputs of shape {spec.get('input_shape')}, "
            f"the dataset has {list(data.input_shape)}"
        )
    config = TrainConfig(**metadata["config"])
    if epochs is not None:
        config.epochs = epochs
    optimizer = build_optimizer(config, model)
    saved = metadata["optimizer"]
    opt_state: dict[str, dict[str, Any]] = {k: dict(v) for k, v in saved["scalars"].items()}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            opt_state.setdefault(index, {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": saved["param_groups"]})
    scheduler = build_scheduler(config, optimizer)
    if scheduler is not None and metadata.get("scheduler"):
        scheduler.load_state_dict(metadata["scheduler"])
    history = [EpochStats(**h) for h in metadata["history"]]
    return TrainState(model, optimizer, scheduler, config, spec, history)
