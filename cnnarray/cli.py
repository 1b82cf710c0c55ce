"""The ``cnnarray`` command line.

Each command that computes takes ``--device/-d cpu|cuda|cuda:N|auto`` after
its name, e.g. ``cnnarray check --device cuda``.

Length: one Typer app, one function per command; each only parses, calls and
prints (the work is in train, callbacks, progress, bench, ...), and splitting
the commands over files would only scatter the options they share.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from . import __version__
from .backend import (
    Backend,
    BackendUnavailableError,
    available_backends,
    blas_info,
    cuda_unavailable_reason,
    describe_device,
    get_backend,
    parse_device,
)
from .bench.cases import cases_help
from .nn import MODELS, SEGMENTATION_MODELS, SIGNAL_MODELS

# Paths, file names, class names and dataset specs come from the user or from a
# checkpoint: printed as markup, "[/]" in one would crash and "[bold]" vanish. So
# both consoles print strings as they are; colour is set on Text objects instead.
console = Console(markup=False, emoji=False)
err_console = Console(stderr=True, markup=False, emoji=False)


class _Commands(TyperGroup):
    """The command group: an unexpected error ends in one line on stderr and exit status 1.

    ``cnnarray --debug COMMAND`` lets the exception through, with its traceback.
    """

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.exceptions.TyperException):
            raise  # usage errors and exits: click prints and exits as usual
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            message = " ".join(str(exc).split()) or "(no message)"
            err_console.print(f"error: {type(exc).__name__}: {message} "
                              "(cnnarray --debug ... shows the traceback)",
                              soft_wrap=True, markup=False)  # fmt: skip
            raise typer.Exit(1) from None


app = typer.Typer(
    name="cnnarray",
    cls=_Commands,
    help="Convolutional neural networks on NumPy (CPU) and CuPy (CUDA) from one code base.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _show_version(value: bool) -> None:
    if value:
        console.print(f"cnnarray {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an unexpected error.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True,
                     help="Print the version and exit."),
    ] = False,
) -> None:  # fmt: skip
    """Convolutional neural networks on NumPy (CPU) and CuPy (CUDA) from one code base."""


def _parse_device(value: str) -> str:
    """Validate the spelling of --device; availability is checked by :func:`_backend`."""
    try:
        parse_device(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value  # as typed: error messages quote the user's spelling


DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        "-d",
        help="Where to compute: cpu, cuda, cuda:N (GPU N) or auto (CUDA if usable, else CPU).",
        callback=_parse_device,
    ),
]


def _backend(device: str) -> Backend:
    """Return the backend for --device, or exit 1 with a one-line reason."""
    try:
        return get_backend(device)
    except BackendUnavailableError as exc:
        err_console.print(f"error: --device {device}: {exc}", soft_wrap=True, markup=False)
        raise typer.Exit(1) from None


@app.command()
def info() -> None:
    """Show versions, which backends are usable (and why not), the GPU and the BLAS."""
    import numpy as np
    import scipy

    table = Table(title=f"cnnarray {__version__}", show_header=False)
    table.add_row("python", f"{platform.python_version()} ({sys.executable})")
    table.add_row("platform", platform.platform())
    table.add_row("numpy", np.__version__)
    table.add_row("scipy", scipy.__version__)
    blas = blas_info()
    library = " ".join(str(v) for v in (blas["name"], blas["version"]) if v)
    table.add_row("BLAS", f"{library}, {blas['threads'] or 'unknown'} threads")
    table.add_row("CPU cores", str(os.cpu_count()))
    table.add_row("backend cpu", Text("usable", style="green"))
    reason = cuda_unavailable_reason()
    if reason is None:
        cupy = get_backend("cuda").xp
        usable = Text.assemble(("usable", "green"), f" (CuPy {cupy.__version__})")
        table.add_row("backend cuda", usable)
        for name in available_backends():
            if name.startswith("cuda:"):
                gpu = describe_device(name)
                table.add_row(name, f"{gpu['name']}, {gpu['memory_gib']:.1f} GiB")
    else:
        table.add_row("backend cuda", Text.assemble(("unavailable", "red"), f": {reason}"))
    table.add_row("auto", str(get_backend("auto")))
    from .distributed import communicator_summary

    table.add_row("distributed", communicator_summary())
    console.print(table)


@app.command()
def check(
    device: DeviceOption = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the random test inputs.")] = 0,
) -> None:
    """Check every operation, forward and backward, against the SciPy/float64 oracle.

    Prints one row per comparison and exits with status 1 on any mismatch.
    """
    from .check import run_checks

    backend = _backend(device)
    results = run_checks(backend, seed=seed)
    table = Table(title=f"cnnarray check on {backend}")
    for column in ("op", "case", "dtype", "max error", "tolerance", "ok"):
        table.add_column(
            column, justify="right" if column in ("max error", "tolerance") else "left"
        )
    for r in results:
        table.add_row(r.op, r.case, r.dtype, f"{r.error:.2e}", f"{r.tolerance:.0e}",
                      Text("ok", style="green") if r.ok else Text("FAIL", style="red"))  # fmt: skip
    console.print(table)
    failed = [r for r in results if not r.ok]
    if failed:
        err_console.print(f"{len(failed)} of {len(results)} checks FAILED on {backend}")
        raise typer.Exit(1)
    console.print(f"all {len(results)} checks passed on {backend}")


def _expand(path: Any) -> Any:
    """Expand ``~`` and ``$VARS`` in a path option (or a list of them), as a shell would.

    The shell leaves ``--out=~/m.safetensors`` and quoted paths alone, so the
    command line does it for every path it takes.
    """
    if path is None:
        return None
    if isinstance(path, list | tuple):
        return [_expand(p) for p in path]
    return Path(os.path.expandvars(os.path.expanduser(os.fspath(path))))


def _output_path(path: Path | None) -> Path | None:
    """Expand an output path option and check that it can be written, before any work."""
    path = _expand(path)
    if path is None:
        return None
    folder = path.parent
    if path.is_dir():
        problem = "it is a directory; expected a file name"
    elif not folder.exists():
        problem = f"folder {folder} does not exist"
    elif not folder.is_dir():
        problem = f"{folder} is not a folder"
    elif not os.access(folder, os.W_OK | os.X_OK):
        problem = f"no permission to write in {folder}"
    else:
        return path
    raise typer.BadParameter(f"cannot write {path}: {problem}")


def _figure_path(path: Path | None) -> Path | None:
    """:func:`_output_path` for a figure, whose suffix says its format (.png, .jpg, .pdf, ...)."""
    from .plots import figure_format

    path = _output_path(path)
    if path is not None:
        try:
            figure_format(path)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return path


def _figure_option(what: str) -> Any:
    """The ``typer.Option`` of a figure file: checked before any work, format by suffix."""
    suffixes = ".png, .jpg, .pdf, .svg, ...: the suffix picks the format"
    return typer.Option(callback=_figure_path, help=f"{what} ({suffixes}).")


def _dataset(spec: str, image_size=None):
    from .data import load_dataset

    try:
        return load_dataset(spec, image_size=image_size)
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc), param_hint="'--dataset'") from None


def _exit_with(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; return the Exit to raise."""
    err_console.print(f"error: {message}", soft_wrap=True, markup=False, highlight=False)
    return typer.Exit(code)


def _say(quiet: bool):
    """Return console.print, or with ``quiet`` a function that prints nothing."""
    return (lambda *args, **kwargs: None) if quiet else console.print


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@app.command()
def train(
    device: DeviceOption = "auto",
    dataset: Annotated[
        str | None,
        typer.Option(
            help="digits | mnist:DIR | fashion-mnist:DIR | cifar10:DIR | folder:DIR | "
            "shapes[:N] (masks, for unet_small) | signals[:N] (1-D, for cnn1d_small): N "
            "training samples (default: digits, or as saved with --resume)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help=" | ".join([*MODELS, *SEGMENTATION_MODELS, *SIGNAL_MODELS])
            + " (default: small_cnn)."
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Total epochs to train (default: 60, or as saved with --resume; "
            "more than saved continues, fewer is an error).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Samples per mini-batch (default: 16).")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            help="Initial learning rate, finite and > 0 (default: 0.05 for sgd, 0.002 "
            "for adam and adamw). With --resume: the schedule continues from it."
        ),
    ] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd | adam | adamw (default).")] = None,
    momentum: Annotated[
        float | None, typer.Option(help="Momentum of sgd, in [0, 1) (default: 0.9).")
    ] = None,
    schedule: Annotated[
        str | None, typer.Option(help="Learning rate per epoch: none | cosine (default) | step.")
    ] = None,
    augment: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: none, shift (default), crop, flip, noise; "
            "only none (the default) for segmentation and signal models."
        ),
    ] = None,
    weight_decay: Annotated[
        float | None,
        typer.Option(
            help="L2 (sgd, adam) or decoupled (adamw) weight decay, >= 0 (default: 0.0001)."
        ),
    ] = None,
    label_smoothing: Annotated[
        float | None,
        typer.Option(help="Share of each target spread over all classes, in [0, 1) (default: 0)."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Seed of initialisation, validation split, shuffling, augmentation (default: 0).",
        ),
    ] = None,
    val_split: Annotated[
        float | None,
        typer.Option(
            help="Share of the training set held back (seeded) for the per-epoch "
            "validation, --patience and --save-best; 0 for none (default: 0.1)."
        ),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Stop after this many epochs without a lower validation loss "
            "(default: train all epochs).",
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Height and width that the images of a folder:DIR dataset are resized to "
            "(default: 32; the other datasets keep their own size).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            callback=_expand,
            help="Checkpoint to write (safetensors; default: the "
            "--resume file, else model.safetensors).",
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            callback=_expand,
            help="Continue the run saved in this checkpoint "
            "(and write back to it unless --out is given).",
        ),
    ] = None,
    save_every: Annotated[
        int, typer.Option(min=1, help="Write the checkpoint every N epochs.")
    ] = 1,
    save_best: Annotated[
        bool,
        typer.Option(
            help="Also keep the epoch with the lowest validation loss, in the --out file with "
            "'.best' before the suffix."
        ),
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(callback=_expand, help="Write loss/accuracy curves as PNG.")
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", callback=_expand, help="Write the per-epoch history as JSON."),
    ] = None,
    log_dir: Annotated[
        Path | None,
        typer.Option(
            callback=_expand,
            help="Write TensorBoard event files in this folder "
            "(needs: pip install 'cnnarray\\[tensorboard]').",
        ),
    ] = None,
    log_every: Annotated[
        int,
        typer.Option(
            min=0,
            help="Also report the running loss and accuracy every N batches "
            "(plain lines and --log-dir; 0: per epoch only).",
        ),
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the final result and errors.")
    ] = False,
    distributed: Annotated[
        bool,
        typer.Option(
            help="Run as one rank of an MPI job (mpiexec -n N cnnarray train --distributed ...): "
            "each rank trains on its shard of every batch; rank 0 prints and saves.",
        ),
    ] = False,
    sync_batchnorm: Annotated[
        bool,
        typer.Option(
            help="With --distributed/--nproc: BatchNorm uses the statistics of the whole "
            "global batch (as one process would), not of each rank's shard.",
        ),
    ] = False,
    nproc: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Start N ranks on this machine through mpiexec, as --distributed "
            "(needs: pip install 'cnnarray\\[distributed]').",
        ),
    ] = None,
) -> None:
    """Train a CNN (default: small_cnn on the bundled 8x8 digits) and save a checkpoint.

    The checkpoint is written every epoch (see --save-every); Ctrl-C saves the
    last finished epoch and prints the command that continues the run.
    Per-epoch numbers come from a validation part of the training set (see
    --val-split); the test set is evaluated once, after training. With
    --distributed or --nproc, --batch-size is the global batch, split over the ranks.
    """
    from . import callbacks
    from . import train as training
    from .io import check_writable

    given = {"dataset": dataset, "model": model, "batch_size": batch_size, "lr": lr,
             "optimizer": optimizer, "momentum": momentum, "weight_decay": weight_decay,
             "schedule": schedule, "augment": augment, "label_smoothing": label_smoothing,
             "seed": seed, "val_split": val_split, "patience": patience}  # fmt: skip
    given = {name: value for name, value in given.items() if value is not None}
    if given.get("model") in {**SEGMENTATION_MODELS, **SIGNAL_MODELS} and augment is None:
        given["augment"] = "none"  # the image augmentations would move images but not masks
    try:
        # Every value as given, checked before any work (with --resume too).
        training.TrainConfig(**given).validate()
    except ValueError as exc:
        raise _exit_with(str(exc)) from None
    out = out or resume or Path("model.safetensors")
    best = callbacks.best_path(out) if save_best else None
    for option, path in (("--out", out), ("--out", best), ("--plot", plot), ("--json", json_path),
                         ("--log-dir", log_dir)):  # fmt: skip
        if path is not None:
            try:
                check_writable(path, folder=option == "--log-dir")
            except ValueError as exc:
                raise _exit_with(f"{option}: {exc}") from None
    if save_best and val_split == 0:
        raise _exit_with("--save-best needs a validation set: --val-split must be above 0")
    if nproc is not None:
        from .distributed import _launch

        args = _launch.strip_option(sys.argv[1:], "--nproc")
        try:
            code = _launch.launch(nproc, [a for a in args if a != "--distributed"])
        except FileNotFoundError as exc:
            raise _exit_with(f"--nproc: {exc}") from None
        if code not in (0, 130):
            err_console.print(f"error: the {nproc} ranks ended with status {code}; the failed "
                              "rank said why above", soft_wrap=True)  # fmt: skip
        raise typer.Exit(code)
    if distributed:
        device = _rank_device(device)
    try:
        started = _start_run(device, given, epochs, resume, save_best, image_size)
    except KeyboardInterrupt:
        raise _exit_with("interrupted before training started: nothing saved", 130) from None
    if started is not None:
        _run(*started, out=out, save_every=save_every, best=best, log_dir=log_dir,
             log_every=log_every, quiet=quiet, plot=plot, json_path=json_path,
             distributed=distributed, sync_batchnorm=sync_batchnorm)  # fmt: skip


def _rank_device(device: str) -> str:
    """This rank's device; a missing mpi4py is a one-line error, before any work."""
    try:
        from .distributed import _launch, load_mpi

        load_mpi()
        return _launch.rank_device(device)
    except ModuleNotFoundError as exc:
        raise _exit_with(f"--distributed: {exc}") from None


def _start_run(device: str, given: dict, epochs: int | None, resume: Path | None,
               save_best: bool, image_size: int | None = None):  # fmt: skip
    """Return backend, data and state of a new or resumed run; None when nothing is left."""
    from . import train as training
    from .io import CheckpointError

    backend = _backend(device)
    try:
        if resume is not None:
            saved = training.read_config(resume)
            data = _dataset(given.get("dataset", saved.dataset), image_size)
            state = training.resume(resume, data, backend, epochs=epochs, changes=given)
        else:
            data = _dataset(given.get("dataset", "digits"), image_size)
            config = training.TrainConfig(**given)
            config.epochs = epochs or config.epochs
            state = training.new_state(config, data, backend)
    except training.ResumeConflict as exc:
        names = ", ".join(f"--{f.replace('_', '-')} {g} (saved: {s})" for f, g, s in exc.conflicts)
        raise _exit_with(f"--resume {resume}: these options differ from the saved run: "
                         f"{names}; leave them out to continue it, or start a new run"
                         ) from None  # fmt: skip
    except (CheckpointError, FileNotFoundError) as exc:
        raise _exit_with(f"--resume: {exc}") from None
    except ValueError as exc:
        raise _exit_with(str(exc)) from None
    if save_best and state.config.val_split == 0:
        raise _exit_with(f"--save-best needs a validation set: {resume} was trained without one")
    if state.epoch >= state.config.epochs or state.stopped_early:
        why = "stopped early" if state.stopped_early else "done"
        console.print(f"{resume} is {why} at epoch {state.epoch} of {state.config.epochs}: "
                      "nothing to train (raise --epochs or --patience to continue)")  # fmt: skip
        return None
    return backend, data, state


def _run(backend: Backend, data, state, *, out: Path, save_every: int, best: Path | None,
         log_dir: Path | None, log_every: int, quiet: bool, plot: Path | None,
         json_path: Path | None, distributed: bool = False,
         sync_batchnorm: bool = False) -> None:  # fmt: skip
    """Train ``state`` with checkpoints, progress and logs; evaluate on the test set; report.

    ``distributed``: this is one rank of an MPI job; rank 0 alone prints and writes,
    and a failure on any rank ends them all.
    """
    import contextlib
    import functools

    from . import train as training

    parallel, together = None, contextlib.nullcontext
    if distributed:
        from . import distributed as dist

        together = functools.partial(dist.failing_together, let_through=(typer.Exit,))
        with together():
            parallel = dist.DataParallel(state.model, sync_batchnorm=sync_batchnorm)
        if parallel.rank:  # the others train in silence and write nothing
            with together():
                try:
                    training.fit(state, data, backend, training.Callbacks(), parallel=parallel)
                except KeyboardInterrupt:
                    raise typer.Exit(130) from None
            return
        _say(quiet)(f"data-parallel over {parallel.size} ranks, gradients by "
                    f"{parallel.comm.method}; global batch {state.config.batch_size}")  # fmt: skip
    with together():
        _lead(backend, data, state, parallel, out=out, save_every=save_every, best=best,
              log_dir=log_dir, log_every=log_every, quiet=quiet, plot=plot,
              json_path=json_path)  # fmt: skip


def _lead(backend: Backend, data, state, parallel, *, out: Path, save_every: int,
          best: Path | None, log_dir: Path | None, log_every: int, quiet: bool,
          plot: Path | None, json_path: Path | None) -> None:  # fmt: skip
    """The run as the one process (or rank 0) that prints and writes."""
    import shlex

    from . import callbacks, progress
    from . import train as training

    say = _say(quiet)
    logger = None
    if log_dir is not None:
        try:
            logger = callbacks.TensorBoardLog(log_dir)
        except ModuleNotFoundError as exc:
            raise _exit_with(f"--log-dir: {exc}") from None
        except OSError as exc:
            raise _exit_with(f"--log-dir: cannot write in {log_dir}: {exc.strerror}") from None
    checkpoints = callbacks.Checkpointing(state, out, every=save_every, best_path=best)
    config = state.config
    if state.epoch:
        say(f"resuming at epoch {state.epoch} of {config.epochs}, writing to {out}")
    _, y_train, _, y_val = training.split_validation(data, config.val_split, config.seed)
    what = "signals" if data.x_train.ndim == 3 else "images"
    say(
        f"training {config.model} on {data.name} on {backend}: {len(y_train)} training and "
        f"{len(y_val)} validation {what}; the {len(data.y_test)} test {what} wait for the end"
    )
    reporter = progress.TrainingProgress(console, state, log_every, logger, quiet)

    def epoch_end(stats) -> None:
        checkpoints.epoch_end(state)
        reporter.end(stats)

    hooks = training.Callbacks(reporter.start, reporter.batch, epoch_end)
    try:
        with reporter:
            training.fit(state, data, backend, hooks,
                         **({} if parallel is None else {"parallel": parallel}))  # fmt: skip
        test = training.test(state, data, backend)
        checkpoints.finish(state)
    except KeyboardInterrupt:
        epoch = checkpoints.interrupted()
        again = f"cnnarray train --resume {shlex.quote(str(out))}"
        raise _exit_with(f"interrupted: saved epoch {epoch} to {out}; continue with: {again}",
                         130) from None  # fmt: skip
    finally:
        if logger is not None:
            logger.close()
    try:
        _report(state, test, str(backend), out=out, best=best if checkpoints.best_epoch else None,
                plot=plot, json_path=json_path, quiet=quiet)  # fmt: skip
    except KeyboardInterrupt:
        raise _exit_with(f"interrupted: the trained model is saved in {out}", 130) from None


def _report(state, test: dict, device: str, *, out: Path, best: Path | None, plot: Path | None,
            json_path: Path | None, quiet: bool) -> None:  # fmt: skip
    """Print the table and the test result of a finished run; write its plot and JSON."""
    import json
    from dataclasses import asdict

    from . import plots, progress
    from .io import atomic_write_bytes

    say = _say(quiet)
    if not quiet:
        console.print(progress.history_table(state.history))
    if state.stopped_early:
        say(f"stopped early: no lower validation loss for {state.config.patience} epochs")
    total = sum(h.seconds for h in state.history)
    after = _plural(state.epoch, "epoch")
    score = f"test accuracy {100 * test['accuracy']:.2f}%"
    if "mean_iou" in test:
        score = (
            f"test mean IoU {test['mean_iou']:.4f}, pixel accuracy {100 * test['accuracy']:.2f}%"
        )
    what = "signals" if len(state.spec["input_shape"]) == 2 else "images"
    console.print(f"{score} (loss {test['loss']:.4f}) on the {test['samples']} test {what}, "
                  f"measured once after {after} ({total:.1f} s of training); "
                  f"saved {out}")  # fmt: skip
    if best is not None:
        say(f"best epoch {state.best.epoch} (val loss {state.best.val_loss:.4f}) saved to {best}")
    if plot is not None:
        atomic_write_bytes(plot, plots.png_bytes(plots.training_curves(state.history)))
        say(f"wrote {plot}")
    if json_path is not None:
        doc = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
               "test_samples": test["samples"], "epochs": state.epoch,
               "stopped_early": state.stopped_early,
               "best_epoch": None if state.best is None else state.best.epoch,
               "train_seconds": total, "device": device, "config": asdict(state.config),
               "history": [asdict(h) for h in state.history]}  # fmt: skip
        if "mean_iou" in test:
            doc["test_mean_iou"] = test["mean_iou"]
        atomic_write_bytes(json_path, json.dumps(doc, indent=2).encode())
        say(f"wrote {json_path}")


def _load_model(path: Path, backend: Backend):
    from . import train as training
    from .io import CheckpointError

    if path.is_dir():  # not "file not found": the user named something that is there
        raise typer.BadParameter(f"{path} is a directory; expected a checkpoint file "
                                 "(.safetensors)", param_hint="'MODEL'")  # fmt: skip
    try:
        return training.load_model(path, backend)
    except (CheckpointError, FileNotFoundError) as exc:
        raise _exit_with(f"MODEL: {exc}") from None


@app.command()
def evaluate(
    model_path: Annotated[
        Path, typer.Argument(callback=_expand, metavar="MODEL", help="Checkpoint file.")
    ],
    device: DeviceOption = "auto",
    dataset: Annotated[
        str | None, typer.Option(help="Dataset spec; default: the one it was trained on.")
    ] = None,
    plot: Annotated[Path | None, _figure_option("Write the confusion matrix as an image")] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", callback=_output_path,
                     help="Write accuracy, loss and the confusion matrix as JSON."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Images per forward pass (memory, not results).")
    ] = 256,
) -> None:  # fmt: skip
    """Report test accuracy and the confusion matrix of a saved model."""
    import json

    import numpy as np

    from . import plots
    from . import train as training
    from ._model_file import saved_dataset
    from .io import atomic_write_bytes

    backend = _backend(device)
    model, spec, metadata = _load_model(model_path, backend)
    # a checkpoint may say "digits" (bundled); any other data set is a path it may not choose
    spec_dataset = dataset or saved_dataset(spec, metadata)
    if spec_dataset is None:
        raise _exit_with(f"{model_path} was not trained on the bundled digits: pass --dataset "
                         f"to say which data set to evaluate it on")  # fmt: skip
    data = _dataset(
        spec_dataset, spec["input_shape"][1:] if len(spec["input_shape"]) == 3 else None
    )
    if list(data.input_shape) != spec["input_shape"]:
        raise typer.BadParameter(
            f"the model takes inputs of shape {spec['input_shape']}, "
            f"{spec_dataset} has {list(data.input_shape)}", param_hint="'--dataset'")  # fmt: skip
    loss, accuracy, pred = training.evaluate(model, data.x_test, data.y_test, backend,
                                             batch_size=batch_size)  # fmt: skip
    try:  # per pixel for segmentation masks
        confusion = training.confusion_matrix(
            data.y_test.ravel(), pred.ravel(), len(spec["classes"])
        )
    except ValueError as exc:
        raise _exit_with(f"{model_path} does not fit {spec_dataset}: {exc}") from None
    correct, total = int(np.trace(confusion)), int(pred.size)
    title = (f"{model_path.name} on {spec_dataset} (test set): accuracy {100 * accuracy:.2f}% "
             f"({correct}/{total})")  # fmt: skip
    table = Table(title=f"{title}\nconfusion matrix, rows: true, columns: predicted")
    table.add_column("")
    for name in spec["classes"]:
        table.add_column(str(name)[:6], justify="right")
    for name, row in zip(spec["classes"], confusion, strict=True):
        table.add_row(str(name), *[str(v) for v in row])
    console.print(table)
    mean_iou = None
    if pred.ndim > 1:
        mean_iou = training.segmentation_scores(data.y_test, pred, len(spec["classes"]))[0]
        console.print(f"test mean IoU {mean_iou:.4f}, pixel accuracy {100 * accuracy:.2f}% "
                      f"({correct}/{total} pixels), mean loss {loss:.4f}")  # fmt: skip
    else:
        console.print(f"test accuracy {100 * accuracy:.2f}% ({correct}/{total}), "
                      f"mean loss {loss:.4f}")  # fmt: skip
    if plot is not None:
        figure = plots.confusion_matrix(confusion, spec["classes"], title=title)
        atomic_write_bytes(plot, plots.figure_bytes(figure, plots.figure_format(plot)))
        console.print(f"wrote {plot}")
    if json_path is not None:
        doc = {"model": str(model_path), "dataset": spec_dataset, "split": "test",
               "test_accuracy": accuracy, "test_loss": loss, "correct": correct, "total": total,
               **({} if mean_iou is None else {"test_mean_iou": mean_iou}),
               "classes": [str(c) for c in spec["classes"]], "confusion": confusion.tolist(),
               "device": str(backend)}  # fmt: skip
        atomic_write_bytes(json_path, json.dumps(doc, indent=2).encode())
        console.print(f"wrote {json_path}")


def _refuse_non_classifier(model_path: Path, spec: dict, command: str) -> None:
    """One-line error unless the checkpoint holds an image classifier (not U-Net, not 1-D)."""
    name = spec.get("model_name")
    if name in SEGMENTATION_MODELS or name in SIGNAL_MODELS or len(spec["input_shape"]) != 3:
        raise _exit_with(f"{command} takes image classifiers; {model_path} holds {name} "
                         f"(inputs {spec['input_shape']}): use cnnarray evaluate")  # fmt: skip


def _load_images(paths: list[Path], input_shape: list[int]):
    """Read image files into (N, C, H, W) float32 in [0, 1] at the model's input size."""
    import numpy as np

    from .data import read_image

    channels, h, w = input_shape
    try:
        return np.stack([read_image(p, grayscale=channels == 1, size=(h, w)) for p in paths])
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="'IMAGE'") from None


@app.command()
def predict(
    model_path: Annotated[
        Path, typer.Argument(callback=_expand, metavar="MODEL", help="Checkpoint file.")
    ],
    images: Annotated[
        list[Path], typer.Argument(callback=_expand, metavar="IMAGE...", help="Image files.")
    ],
    device: DeviceOption = "auto",
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Classes to show.")] = 3,
    show_input: Annotated[
        Path | None,
        typer.Option(callback=_expand, help="Write the inputs the model saw as one PNG."),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", callback=_expand, help="Write the predictions as JSON."),
    ] = None,
    dask: Annotated[
        bool,
        typer.Option(
            help="Predict on Dask, in partitions (IMAGE... may be folders or quoted globs); "
            "writes --out. Needs: pip install 'cnnarray\\[dask]'.",
        ),
    ] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(help="With --dask: a Dask scheduler's address (default: a local "
                     "cluster on 127.0.0.1)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="With --dask: worker processes of the local cluster.")
    ] = 2,
    out: Annotated[
        Path,
        typer.Option(callback=_expand, help="With --dask: the CSV of predictions (and a "
                     ".parquet beside it when pyarrow is installed)."),
    ] = Path("predictions.csv"),
) -> None:  # fmt: skip
    """Print the top-k classes with their probabilities for each image file.

    Each image is made to look like the training data, as the checkpoint
    records them: for digits (light ink on black) inverted when dark on light,
    cropped to the ink, resized with the aspect kept, padded, centred by mass.
    A prediction is marked "unreliable" when its top probability is low or the
    image's intensities are unlike the training data's (noise, a photograph).
    """
    import json

    import numpy as np

    from . import train as training
    from .data import preprocess
    from .io import atomic_write_bytes

    for hint, path in (("--show-input", show_input), ("--json", json_path)):
        if path is not None and not path.parent.is_dir():
            raise typer.BadParameter(f"folder {path.parent} does not exist", param_hint=hint)
    if dask or scheduler is not None:
        return _predict_dask(model_path, images, device, top, scheduler, workers, out)
    backend = _backend(device)
    model, spec, _ = _load_model(model_path, backend)
    _refuse_non_classifier(model_path, spec, "predict")
    record = spec.get("preprocess")
    c, h, w = spec["input_shape"]
    if record is None:
        err_console.print(f"note: {model_path} has no preprocessing record (an older cnnarray): "
                          f"images are only resized to {h}x{w}", markup=False)  # fmt: skip
    try:
        loaded = [preprocess.load_for_model(p, spec["input_shape"], record) for p in images]
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="'IMAGE'") from None
    x = np.stack([xi for xi, _ in loaded])
    probs = training.predict_proba(model, x, backend)
    doc = [preprocess.prediction(str(path), xi, steps, p, spec["classes"], top, record)
           for path, xi, (_, steps), p in zip(images, x, loaded, probs, strict=True)]  # fmt: skip
    table = Table(title=f"predictions of {model_path.name}")
    table.add_column("image", overflow="fold")
    for rank in range(min(top, len(spec["classes"]))):
        table.add_column(f"#{rank + 1}")
    table.add_column("note", overflow="fold")
    for d in doc:
        notes = [s.split(":")[0] for s in d["preprocessing"] if s.startswith("inverted")]
        notes += ["unreliable: " + "; ".join(d["unreliable"])] if d["unreliable"] else []
        table.add_row(d["image"], *[f"{t['class']} ({t['probability']:.1%})"
                      for t in d["top"]], ", ".join(notes))  # fmt: skip
    console.print(table)
    if show_input is not None:
        atomic_write_bytes(show_input, preprocess.input_png(x))
        console.print(f"wrote {show_input} (the {c}x{h}x{w} inputs the model saw, enlarged)")
    if json_path is not None:
        text = json.dumps({"model": str(model_path), "predictions": doc}, indent=2)
        atomic_write_bytes(json_path, (text + "\n").encode())
        console.print(f"wrote {json_path}")


def _predict_dask(model_path: Path, images: list[Path], device: str, top: int,
                  scheduler: str | None, workers: int, out: Path) -> None:  # fmt: skip
    """``predict --dask``: the rows on a Dask cluster, a progress bar, a CSV; failures listed."""
    from rich.progress import Progress

    from .distributed import predict_dask, write_predictions

    _, spec, _ = _load_model(model_path, _backend(device))  # a bad checkpoint: one line, here
    _refuse_non_classifier(model_path, spec, "predict")
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("partitions", total=None)
            rows = predict_dask(model_path, images, scheduler=scheduler, workers=workers,
                                top=top, device=device,
                                progress=lambda done, total: bar.update(task, completed=done,
                                                                        total=total))  # fmt: skip
    except ModuleNotFoundError as exc:
        raise _exit_with(f"--dask: {exc}") from None
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="'IMAGE'") from None
    written = write_predictions(rows, out)
    failed = [r for r in rows if r["error"]]
    for r in failed:
        err_console.print(f"unreadable: {r['error']}", soft_wrap=True)
    console.print(f"predicted {len(rows) - len(failed)} of {len(rows)} images on Dask; wrote "
                  + ", ".join(str(p) for p in written))  # fmt: skip


@app.command()
def demo(
    image: Annotated[
        Path | None,
        typer.Argument(
            callback=_expand,
            metavar="IMAGE",
            help="Image file; default: a photograph matplotlib ships.",
        ),
    ] = None,
    device: DeviceOption = "auto",
    stride: Annotated[int, typer.Option(min=1, help="Stride of the convolution.")] = 1,
    pool: Annotated[int, typer.Option(min=1, help="Pooling window (and stride).")] = 2,
    out: Annotated[Path, _figure_option("Image of the maps to write")] = Path("demo.png"),
) -> None:
    """Walk through a CNN layer on a real 512x512 grayscale photograph.

    Applies edge detectors and random filters with the given stride, then ReLU,
    max and average pooling; prints each stage's shape and time and draws all
    maps, with their shapes, in one image. A filter whose responses are all
    negative (the second random one) leaves a black map after ReLU; its title
    says so.
    """
    from . import demo as walkthrough

    backend = _backend(device)
    try:
        gray = walkthrough.load_grayscale(image)
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="'IMAGE'") from None
    try:
        walkthrough.check_sizes(gray.shape, stride=stride, pool=pool)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--stride' / '--pool'") from None
    stages = walkthrough.run_demo(backend, gray, stride=stride, pool=pool)
    table = Table(title=f"demo on {backend}")
    for column in ("stage", "shape", "time (ms)"):
        table.add_column(column)
    for s in stages:
        table.add_row(s.name, str(tuple(s.output.shape)), f"{1e3 * s.seconds:.2f}")
    console.print(table)
    walkthrough.save_grid(stages, out)
    console.print(f"wrote {out}")


@app.command()
def visualize(
    model_path: Annotated[
        Path, typer.Argument(callback=_expand, metavar="MODEL", help="Checkpoint file.")
    ],
    image: Annotated[
        Path | None,
        typer.Argument(
            callback=_expand, metavar="IMAGE", help="Image file; default: the first test image."
        ),
    ] = None,
    device: DeviceOption = "auto",
    out: Annotated[Path, _figure_option("Image to write")] = Path("filters.png"),
) -> None:
    """Draw a trained model's first-layer filters and the activation maps of an image."""
    from . import visualize as vis
    from ._model_file import saved_dataset

    backend = _backend(device)
    model, spec, metadata = _load_model(model_path, backend)
    _refuse_non_classifier(model_path, spec, "visualize")
    if image is None:
        if saved_dataset(spec, metadata) != "digits":  # a path the checkpoint may not choose
            raise _exit_with(f"{model_path} was not trained on the bundled digits: give an IMAGE")
        data = _dataset("digits", spec["input_shape"][1:])
        x, title = data.x_test[:1], f"first test image of {data.name}"
    else:
        x, title = _load_images([image], spec["input_shape"]), str(image)
    try:
        vis.save_filters_and_maps(model, backend, x, out, title)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'MODEL'") from None
    console.print(f"wrote {out}")


@app.command(epilog=cases_help())
def bench(
    device: DeviceOption = "auto",
    cases: Annotated[
        str, typer.Option(help="Comma-separated cases (default: all; see below).")
    ] = "",
    compare: Annotated[
        str, typer.Option(help="Comma-separated peers to time beside cnnarray: torch,scipy,naive.")
    ] = "torch",
    repeat: Annotated[int, typer.Option(min=1, help="Timed calls after warm-up.")] = 7,
    rounds: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes per case for cnnarray and torch, interleaved; "
            "their timed calls are pooled.",
        ),
    ] = 3,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", callback=_output_path, help="Write machine-readable results here."),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(callback=_output_path, help="Write a bar chart (PNG, log scale)."),
    ] = None,
    slow_limit: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Skip scipy and naive where one call is estimated to take longer (seconds); "
            "the notes say which and the limit that times them.",
        ),
    ] = 3.0,
    budget: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Target seconds of the timed calls of one case, mode and peer: fewer "
            "than --repeat (but at least 3) where they would take longer.",
        ),
    ] = 3.0,
    seed: Annotated[
        int, typer.Option(min=0, help="Seed of the inputs, the same for every peer.")
    ] = 0,
    wide: Annotated[
        bool, typer.Option(help="All columns: min-max, vs torch, |diff|, notes.")
    ] = False,
    thread_timeout: Annotated[
        str,
        typer.Option(
            help="OPENBLAS_THREAD_TIMEOUT of the worker processes, 4 to 30 (OpenBLAS threads "
            "spin 2**N cycles after a call); 'none' keeps your environment.",
        ),
    ] = "4",
) -> None:
    """Time conv2d, max pooling and a GEMM against PyTorch, SciPy and the naive loop.

    Every (peer, case) runs in its own process after warm-up (cnnarray and torch
    in --rounds interleaved processes); medians of the repeats, with min and
    max, GFLOP/s, the fraction of the measured GEMM ceiling and the ratio to
    each peer measured in this same run.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from . import bench as harness

    backend = _backend(device)
    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                        console=console)  # fmt: skip
    task = progress.add_task("starting", total=None)

    def report(done: int, total: int, label: str) -> None:
        progress.update(task, completed=done, total=total, description=label)

    try:
        timeout = harness.thread_timeout(thread_timeout)
        with progress:
            results = harness.run_benchmarks(str(backend), cases or None,
                                             [p for p in compare.split(",") if p] or None,
                                             repeat, report, slow_limit_s=slow_limit,
                                             rounds=rounds, seed=seed, budget_s=budget,
                                             thread_timeout=timeout)  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(harness.render_table(results, wide=wide))
    if json_path is not None:
        harness.write_json(results, json_path)
        console.print(f"wrote {json_path}")
    if plot is not None:
        harness.plot(results, plot)
        console.print(f"wrote {plot}")


def main() -> None:
    """Entry point of the ``cnnarray`` console script."""
    app()


if __name__ == "__main__":
    main()
