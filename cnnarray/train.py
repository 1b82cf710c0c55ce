"""Training, evaluation and checkpoints of a classifier built from :mod:`cnnarray.nn`.

The loop is the textbook one: forward, softmax cross-entropy, backward,
optimiser step, per mini-batch; evaluation on a held-back validation part of
the training set after every epoch (early stopping and the best epoch are
chosen on it; the test set is left for one evaluation at the end). Progress
is reported through callbacks, so the CLI can draw a progress bar and a
library user can log as they like.

A checkpoint is one safetensors file (see :mod:`cnnarray.io`): the model's
state dict under ``model.*``, the optimiser's arrays under ``optim.*``, and as
JSON the architecture spec (enough to rebuild the model from the file alone),
the training configuration, history and the scalar optimiser state for
``--resume``. A resumed run is bit-identical to an uninterrupted one on the
CPU: shuffling and augmentation draw from generators derived from the seed
and the epoch number (see :meth:`cnnarray.data.loader.DataLoader.generators`),
and the dropout masks' generator states are saved under ``rng``.

Data-parallel training (:mod:`cnnarray.distributed`) runs this same loop on
every rank, through the :class:`Parallel` hooks of :func:`fit`.

Length: the loop, its configuration and its checkpoints are one job (what a run
is and how it is saved); the checkpoint half reads the loop's own state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import _args, nn, ops, optim
from ._model_file import check_classes, check_metadata, check_model_spec, saved_config
from .autograd import Tensor
from .backend import Backend, to_numpy
from .data import augment
from .data.datasets import Split
from .data.loader import DataLoader, shard_rows
from .data.preprocess import describe_inputs
from .io import CheckpointError, load_checkpoint, save_checkpoint

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "step")
AUGMENTATIONS = ("none", "shift", "crop", "flip", "noise")
#: The learning rate of each optimiser when none is given: SGD needs a larger one than Adam(W).
LEARNING_RATES = {"sgd": 0.05, "adam": 2e-3, "adamw": 2e-3}
#: Fields of :class:`TrainConfig` that ``resume`` may change; the others must match the run.
RESUME_CHANGES = ("dataset", "epochs", "lr", "patience")
#: Every model ``train`` builds: image classifiers, segmentation and 1-D signal models.
ALL_MODELS = {**nn.MODELS, **nn.SEGMENTATION_MODELS, **nn.SIGNAL_MODELS}


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint)."""

    dataset: str = "digits"
    model: str = "small_cnn"
    epochs: int = 60
    batch_size: int = 16
    lr: float | None = None  # None: LEARNING_RATES[optimizer]
    optimizer: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    augment: str = "shift"
    label_smoothing: float = 0.0
    seed: int = 0
    val_split: float = 0.1  # fraction of the training set held back for validation
    patience: int | None = None  # stop after this many epochs without a better val loss

    def validate(self) -> None:
        """Raise ValueError naming the first field with a bad value.

        Fills in the optimiser's default ``lr``. NumPy numbers become Python
        ones, so the configuration stays JSON-able for the checkpoint.
        """
        self.epochs = _args.check_int(self.epochs, "epochs", minimum=1)
        self.batch_size = _args.check_int(self.batch_size, "batch_size", minimum=1)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr is None:
            self.lr = LEARNING_RATES[self.optimizer]
        self.lr = _args.check_real(self.lr, "lr", low=0, low_open=True, finite=True)
        self.weight_decay = _args.check_real(self.weight_decay, "weight_decay", low=0, finite=True)
        self.momentum = _args.check_real(self.momentum, "momentum", low=0, high=1, high_open=True)
        self.label_smoothing = _args.check_real(
            self.label_smoothing, "label_smoothing", low=0, high=1, high_open=True
        )
        self.val_split = _args.check_real(
            self.val_split, "val_split", low=0, high=1, high_open=True
        )
        if self.patience is not None:
            self.patience = _args.check_int(self.patience, "patience", minimum=1)
            if self.val_split == 0:
                raise ValueError("patience needs a validation set: val_split must be above 0")
        self.seed = _args.check_int(self.seed, "seed", minimum=0)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.model not in ALL_MODELS:
            raise ValueError(f"model must be one of {sorted(ALL_MODELS)}, got {self.model!r}")
        parts = {part.strip() for part in self.augment.split(",")}
        if not parts <= set(AUGMENTATIONS):
            raise ValueError(
                f"augment must be a comma-separated list of {AUGMENTATIONS}, got {self.augment!r}"
            )
        if self.model not in nn.MODELS and parts != {"none"}:
            raise ValueError(
                f"augment must be 'none' for {self.model}: the augmentations move or scale "
                f"images, not masks or signals; got {self.augment!r}"
            )


@dataclass
class EpochStats:
    """Metrics of one epoch; accuracies are fractions in [0, 1].

    ``train_*`` are means over the epoch's batches (in training mode, with
    augmentation); ``val_*`` are measured after the epoch on the validation
    set, None when the run has none (``val_split=0``).
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    images_per_second: float
    lr: float

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EpochStats:
        """Read a saved history entry; files before the validation split held test metrics."""
        values = dict(values)
        for old, new in (("test_loss", "val_loss"), ("test_accuracy", "val_accuracy")):
            if old in values:
                values[new] = values.pop(old)
        return cls(**values)


@dataclass
class Callbacks:
    """Hooks the loop calls; each may be None."""

    on_epoch_start: Callable[[int, int], None] | None = None  # (epoch, batches)
    # (batch index, loss, accuracy): running means over the epoch so far
    on_batch: Callable[[int, float, float], None] | None = None
    on_epoch_end: Callable[[EpochStats], None] | None = None


class Parallel(Protocol):
    """What :func:`fit` asks of data-parallel training (see :mod:`cnnarray.distributed`).

    Every rank runs :func:`fit` on its ``rank``-th shard of each global batch.
    """

    rank: int  # this process, 0 .. size - 1
    size: int  # number of processes

    def after_backward(self, samples: int, total: int) -> None:
        """Make each ``.grad`` the gradient of the whole batch (``samples`` of ``total`` here)."""

    def sum(self, values: list[float]) -> list[float]:
        """Return each value summed over the ranks."""

    def sync_buffers(self) -> None:
        """Give every rank the buffers (e.g. BatchNorm statistics) of rank 0."""


@dataclass
class TrainState:
    """A model with its optimiser, schedule and history: what a checkpoint holds."""

    model: nn.Module
    optimizer: optim.Optimizer
    scheduler: optim.LRScheduler | None
    config: TrainConfig
    spec: dict[str, Any]
    history: list[EpochStats] = field(default_factory=list)
    test: dict[str, Any] | None = None  # set by test(): the one evaluation on the test set

    @property
    def epoch(self) -> int:
        """Number of epochs done."""
        return len(self.history)

    @property
    def best(self) -> EpochStats | None:
        """The epoch with the lowest validation loss (the first of equals), or None."""
        scored = [h for h in self.history if h.val_loss is not None]
        return min(scored, key=lambda h: h.val_loss) if scored else None

    @property
    def stopped_early(self) -> bool:
        """Whether ``config.patience`` epochs have passed without a better validation loss."""
        best = self.best
        return (
            bool(self.config.patience)
            and best is not None
            and (self.epoch - best.epoch >= self.config.patience)
        )


def task(model: str) -> str:
    """What ``model`` does: ``"classify"`` images, ``"segment"`` them, or classify ``"signals"``."""
    if model in nn.SEGMENTATION_MODELS:
        return "segment"
    return "signals" if model in nn.SIGNAL_MODELS else "classify"


def check_task(model: str, data: Split) -> None:
    """Raise ValueError unless ``data`` is what ``model`` trains on (inputs and targets)."""
    kind = task(model)
    masks = data.y_train.ndim == 3 and data.y_train.shape[1:] == data.x_train.shape[2:]
    fits = {
        "classify": data.x_train.ndim == 4 and data.y_train.ndim == 1,
        "segment": data.x_train.ndim == 4 and masks,
        "signals": data.x_train.ndim == 3 and data.y_train.ndim == 1,
    }
    if not fits[kind]:
        needs = {
            "classify": "images (N, C, H, W) with one class label each",
            "segment": "images (N, C, H, W) with a class mask (N, H, W) each, e.g. 'shapes'",
            "signals": "1-D signals (N, C, L) with one class label each, e.g. 'signals'",
        }
        raise ValueError(
            f"model {model} needs {needs[kind]}; dataset {data.name} has inputs of shape "
            f"{tuple(data.x_train.shape)} and targets of shape {tuple(data.y_train.shape)}"
        )


def build_model(config: TrainConfig, data: Split, backend: Backend) -> tuple[nn.Module, dict]:
    """Build ``config.model`` for the data's input shape; return it and its file spec."""
    check_task(config.model, data)
    channels, height = data.input_shape[:2]
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
        "preprocess": describe_inputs(data.x_train) if data.x_train.ndim == 4 else None,
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


def build_augment(spec: str, input_shape: tuple[int, ...]) -> augment.Compose | None:
    """Turn ``"shift,flip"`` into a transform; shifts scale with the image (1 px per 8)."""
    if spec.strip() == "none":
        return None
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
    """Return mean loss, accuracy and the predicted classes of ``model`` on ``(x, y)``.

    For a segmentation model ``y`` and the predictions are masks (N, H, W), and
    loss and accuracy are means over the pixels.
    """
    model.eval()
    losses, predictions = [], []
    for xb, yb in DataLoader(x, y, batch_size=batch_size, backend=backend):
        logits = model(xb)
        losses.append(float(ops.cross_entropy(logits, yb, reduction="sum")))
        predictions.append(to_numpy(logits.argmax(axis=1)))
    pred = np.concatenate(predictions)
    return sum(losses) / y.size, float(np.mean(pred == y)), pred


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


def segmentation_scores(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int
) -> tuple[float, float]:
    """Return the mean intersection over union and the pixel accuracy of predicted masks.

    ``IoU_k = |true_k & pred_k| / |true_k | pred_k|`` for each class ``k``
    that occurs in ``y_true`` or ``y_pred`` (the others have no union and are
    left out of the mean); pixel accuracy is the fraction of pixels predicted
    right.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray, shape (N, H, W) or any equal shapes, integer
        True and predicted class of every pixel, each in ``0 .. num_classes - 1``.
    num_classes : int

    Examples
    --------
    >>> segmentation_scores(np.array([[0, 0, 1, 1]]), np.array([[0, 1, 1, 1]]), 2)
    (0.5833333333333333, 0.75)
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    _args.check_same_shape(y_pred, "y_pred", y_true, "y_true")
    counts = confusion_matrix(y_true.ravel(), y_pred.ravel(), num_classes)
    hits = np.diag(counts)
    union = counts.sum(axis=0) + counts.sum(axis=1) - hits
    present = union > 0
    return float(np.mean(hits[present] / union[present])), float(hits.sum() / counts.sum())


def split_validation(
    data: Split, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold back a seeded random ``fraction`` of the training set for validation.

    Parameters
    ----------
    data : Split
        The dataset; its test set is not touched.
    fraction : float in [0, 1)
        Share of the training samples to hold back (at least one when above 0).
    seed : int
        The run's seed: the same seed holds back the same samples.

    Returns
    -------
    x_train, y_train, x_val, y_val : numpy.ndarray
        The remaining training samples (in their order) and the held-back ones.
    """
    x, y = data.x_train, data.y_train
    if fraction == 0:
        return x, y, x[:0], y[:0]
    n = len(y)
    n_val = max(1, round(fraction * n))
    if n_val >= n:
        raise ValueError(f"val_split {fraction} of {n} training samples leaves none to train on")
    # A stream of its own (spawn key 1), apart from the loader's shuffling and augmentation.
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    held = np.zeros(n, dtype=bool)
    held[rng.permutation(n)[:n_val]] = True
    return x[~held], y[~held], x[held], y[held]


def fit(state: TrainState, data: Split, backend: Backend, callbacks: Callbacks | None = None,
        epochs: int | None = None, parallel: Parallel | None = None,
        ) -> list[EpochStats]:  # fmt: skip
    """Train ``state`` on ``data`` from its current epoch to ``config.epochs`` (or ``epochs``).

    Each epoch shuffles with a seed derived from ``config.seed`` and the epoch
    number, so a resumed run sees the same batches as an uninterrupted one.
    The history in ``state`` grows by one :class:`EpochStats` per epoch, so an
    interrupted run can be checkpointed between epochs. Training stops early
    once :attr:`TrainState.stopped_early` (``config.patience``) says so. The
    test set is not used; see :func:`test`.

    With ``parallel`` (data-parallel training), this process trains on its
    shard of every batch, ``parallel.after_backward`` runs between backward and
    the optimiser step (the gradient allreduce), and the epoch's numbers and
    the validation are summed over all ranks, so every rank records the same
    history. ``on_batch`` sees this rank's running means.
    """
    callbacks = callbacks or Callbacks()
    config, model = state.config, state.model
    x_train, y_train, x_val, y_val = split_validation(data, config.val_split, config.seed)
    shard = None if parallel is None else (parallel.rank, parallel.size)
    loader = DataLoader(x_train, y_train, batch_size=config.batch_size, shuffle=True,
                        seed=config.seed, backend=backend, shard=shard,
                        transform=build_augment(config.augment, data.input_shape))  # fmt: skip
    last = config.epochs if epochs is None else min(config.epochs, state.epoch + epochs)
    while state.epoch < last and not state.stopped_early:
        loader.epoch = state.epoch
        if callbacks.on_epoch_start:
            callbacks.on_epoch_start(state.epoch, len(loader))
        model.train()
        start = time.perf_counter()
        total_loss, correct, seen, targets = 0.0, 0, 0, 0  # targets: labels or mask pixels
        lr = state.optimizer.param_groups[0]["lr"]
        for i, (xb, yb) in enumerate(loader):
            state.optimizer.zero_grad()
            if len(yb):  # a shard of a short last batch may be empty
                logits = model(Tensor(xb))
                loss = ops.cross_entropy(logits, yb, label_smoothing=config.label_smoothing)
                loss.backward()
                total_loss += float(loss.data) * len(yb)
                correct += int((logits.data.argmax(axis=1) == yb).sum())
                seen += len(yb)
                targets += yb.size
            if parallel is not None:
                parallel.after_backward(len(yb), loader.batch_length(i))
            state.optimizer.step()
            if callbacks.on_batch and seen:
                callbacks.on_batch(i, total_loss / seen, correct / targets)
        backend.synchronize()
        seconds = time.perf_counter() - start
        if state.scheduler is not None:
            state.scheduler.step()
        if parallel is not None:
            total_loss, correct, seen, targets = parallel.sum([total_loss, correct, seen, targets])
            parallel.sync_buffers()
        val_loss = val_acc = None
        if len(y_val):
            val_loss, val_acc = _validate(model, x_val, y_val, backend, parallel)
        stats = EpochStats(state.epoch + 1, total_loss / seen, correct / targets, val_loss,
                           val_acc, seconds, seen / seconds, lr)  # fmt: skip
        state.history.append(stats)
        if callbacks.on_epoch_end:
            callbacks.on_epoch_end(stats)
    return state.history


def _validate(model: nn.Module, x: np.ndarray, y: np.ndarray, backend: Backend,
              parallel: Parallel | None) -> tuple[float, float]:  # fmt: skip
    """Mean loss and accuracy on ``(x, y)``; each rank evaluates its share, then summed."""
    if parallel is None:
        return evaluate(model, x, y, backend)[:2]
    part = shard_rows(len(y), parallel.rank, parallel.size)
    n, loss, accuracy = len(y[part]), 0.0, 0.0
    if n:
        loss, accuracy, _ = evaluate(model, x[part], y[part], backend)
    loss_sum, correct = parallel.sum([loss * n, accuracy * n])
    return loss_sum / len(y), correct / len(y)


def test(state: TrainState, data: Split, backend: Backend) -> dict[str, Any]:
    """Evaluate the model once on the test set; store and return loss, accuracy, samples.

    A segmentation model's accuracy is per pixel, and ``mean_iou`` is added
    (:func:`segmentation_scores`).
    """
    loss, accuracy, pred = evaluate(state.model, data.x_test, data.y_test, backend)
    state.test = {"epoch": state.epoch, "loss": loss, "accuracy": accuracy,
                  "samples": len(data.y_test)}  # fmt: skip
    if pred.ndim > 1:
        state.test["mean_iou"] = segmentation_scores(data.y_test, pred, data.num_classes)[0]
    return state.test


# -- checkpoints ---------------------------------------------------------------


def save(state: TrainState, path: str | Path) -> Path:
    """Write model, optimiser, history and RNG states to ``path`` atomically (safetensors)."""
    return save_checkpoint(path, *snapshot(state))


def snapshot(state: TrainState) -> tuple[dict[str, np.ndarray], dict, dict[str, Any]]:
    """Return the tensors, spec and metadata of a checkpoint of ``state``, as copies.

    The arguments of :func:`cnnarray.io.save_checkpoint`; the arrays are
    copied, so training on does not change them.
    """
    tensors = {f"model.{k}": np.array(to_numpy(v)) for k, v in state.model.state_dict().items()}
    opt = state.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in opt["state"].items():
        for name, value in entries.items():
            if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
                tensors[f"optim.{index}.{name}"] = np.array(to_numpy(value))
            else:
                scalars.setdefault(str(index), {})[name] = _plain(value)
    metadata = {
        "config": asdict(state.config),
        "epoch": state.epoch,
        "history": [asdict(h) for h in state.history],
        "optimizer": {"param_groups": _plain(opt["param_groups"]), "scalars": scalars},
        "scheduler": None if state.scheduler is None else _plain(state.scheduler.state_dict()),
        "rng": {"dropout": _dropout_states(state.model)},
    }
    if state.test is not None:
        metadata["test"] = dict(state.test)
    return tensors, state.spec, metadata


def _dropout_states(model: nn.Module) -> dict[str, Any]:
    """The mask generator state of each Dropout module that has one, by module name."""
    states = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout) and module.get_rng_state() is not None:
            states[name] = _plain(module.get_rng_state())
    return states


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
    """Rebuild the model in a checkpoint from the file alone; return it, spec and metadata.

    All checked first (:mod:`cnnarray._model_file`); a problem is a one-line CheckpointError.
    """
    tensors, spec, metadata = load_checkpoint(path)
    model, spec = _rebuild(path, tensors, spec, backend)
    return model, spec, check_metadata(path, metadata)


def _rebuild(path: str | Path, tensors: dict, spec: dict,
             backend: Backend) -> tuple[nn.Module, dict]:  # fmt: skip
    """The model of a loaded checkpoint, in eval mode, its ``model.*`` weights loaded; the spec."""
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    spec = check_model_spec(path, spec, state)  # before anything is allocated
    try:
        model = nn.from_spec(spec["model"], backend=backend)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model from its spec: {exc}") from exc
    try:
        model.load_state_dict(state)
    except ValueError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model: {exc}") from exc
    spec["classes"] = check_classes(path, spec, model)
    return model.eval(), spec


def read_config(path: str | Path) -> TrainConfig:
    """Return the training configuration saved in a checkpoint."""
    return _saved_config(path, load_checkpoint(path)[2])


def _saved_config(path: str | Path, metadata: Mapping[str, Any]) -> TrainConfig:
    saved = saved_config(path, metadata, [f.name for f in fields(TrainConfig)])
    config = TrainConfig(**saved)
    try:
        TrainConfig(**saved).validate()  # on a copy: validate fills in defaults
    except (TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: bad training configuration: {exc}") from None
    return config


class ResumeConflict(ValueError):
    """Options given for a resumed run that differ from the saved run.

    ``conflicts`` lists ``(field, given, saved)``.
    """

    def __init__(self, path: str | Path, conflicts: list[tuple[str, Any, Any]]) -> None:
        self.conflicts = conflicts
        listed = ", ".join(f"{f}={g!r} (saved: {s!r})" for f, g, s in conflicts)
        super().__init__(
            f"{path}: these settings differ from the saved run, which a resumed run keeps: "
            f"{listed}; leave them out, or start a new run"
        )


def resume(path: str | Path, data: Split, backend: Backend, epochs: int | None = None,
           changes: Mapping[str, Any] | None = None) -> TrainState:  # fmt: skip
    """Restore a training run from a checkpoint written by :func:`save`.

    Parameters
    ----------
    path : str or Path
        The checkpoint.
    data : Split
        The dataset it was trained on (its input shape is checked).
    backend : Backend
        Where the model goes.
    epochs : int, optional
        The new total number of epochs (default: as saved); not below the
        epochs already done. A cosine or step schedule then spans the new total.
    changes : mapping of str to value, optional
        :class:`TrainConfig` fields as given for the resumed run. Those in
        :data:`RESUME_CHANGES` are applied: ``dataset`` (e.g. a moved folder;
        the input shape must match), ``epochs`` as above, ``lr`` as the
        new initial rate of the schedule (the current epoch's rate follows from
        it), ``patience`` for early stopping. Any other field must equal the saved
        value, else :class:`ResumeConflict` names the ones that differ.
    """
    tensors, spec, metadata = load_checkpoint(path)  # read (and hash-checked) once
    model, spec = _rebuild(path, tensors, spec, backend)
    metadata = check_metadata(path, metadata)
    if list(data.input_shape) != spec["input_shape"]:
        raise CheckpointError(
            f"{path}: the model was trained on inputs of shape {spec.get('input_shape')}, "
            f"the dataset has {list(data.input_shape)}"
        )
    config = _saved_config(path, metadata)
    changes = dict(changes or {})
    if epochs is not None:
        changes["epochs"] = epochs
    conflicts = [(name, value, getattr(config, name)) for name, value in changes.items()
                 if name not in RESUME_CHANGES and value != getattr(config, name)]  # fmt: skip
    if conflicts:
        raise ResumeConflict(path, conflicts)
    done = metadata["epoch"]
    for name in RESUME_CHANGES:
        if changes.get(name) is not None:
            setattr(config, name, changes[name])
    config.validate()
    if config.epochs < done:
        raise ValueError(
            f"epochs must be at least the {done} epochs already done in {path}, got {config.epochs}"
        )
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    try:
        history = _restore(tensors, metadata, model, optimizer, scheduler)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: the saved training state is malformed ({exc!r})") from None
    if changes.get("lr") is not None:
        _restart_lr(optimizer, scheduler, config.lr)
    return TrainState(model, optimizer, scheduler, config, spec, history)


def _restore(tensors: dict, metadata: dict, model: nn.Module, optimizer: optim.Optimizer,
             scheduler: optim.LRScheduler | None) -> list[EpochStats]:  # fmt: skip
    """Load the optimiser, schedule and dropout states saved by :func:`snapshot`; return history."""
    saved = metadata["optimizer"]
    opt_state: dict[str, dict[str, Any]] = {k: dict(v) for k, v in saved["scalars"].items()}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            opt_state.setdefault(index, {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": saved["param_groups"]})
    if scheduler is not None and metadata.get("scheduler"):
        scheduler.load_state_dict(metadata["scheduler"])
    dropouts = {n: m for n, m in model.named_modules() if isinstance(m, nn.Dropout)}
    for name, rng_state in metadata.get("rng", {}).get("dropout", {}).items():
        if not isinstance(rng_state, dict):
            raise TypeError(f"dropout state of {name!r} must be an object")
        dropouts[name].set_rng_state(rng_state)
    return [EpochStats.from_dict(h) for h in metadata["history"]]


def _restart_lr(optimizer: optim.Optimizer, scheduler: optim.LRScheduler | None,
                lr: float) -> None:  # fmt: skip
    """Make ``lr`` the initial rate of every group; the schedule continues from it."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = lr
    if scheduler is not None:
        scheduler.load_state_dict({"last_epoch": scheduler.last_epoch,
                                   "base_lrs": [lr] * len(optimizer.param_groups)})  # fmt: skip
