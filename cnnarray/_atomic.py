"""Atomic writes, and the temporary files that crashed ones leave behind.

Every file cnnarray writes (checkpoints, figures, JSON) goes through
:func:`atomic_write_bytes`: the bytes go to ``.NAME.PID-RANDOM.tmp`` in the
target's folder (PID: the writing process), are flushed to disk, then renamed
over the target, so a reader sees the old file or the new one, never half of
one. A process killed mid-write (kill -9) cannot remove its temporary file;
the next write of the same target does (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

__all__ = ["atomic_write_bytes", "check_writable", "remove_stale_temps"]

#: Temporary files of a save older than this (seconds) are stale if their writer has gone...
STALE_TEMP_AGE = 60.0
#: ... and older than this whoever wrote them.
ABANDONED_TEMP_AGE = 3600.0


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix.

    The bytes go to ``.NAME.PID-RANDOM.tmp`` in the same folder, are flushed
    to disk, then renamed over ``path``. Stale temporary files of the same
    target from crashed runs are removed first (see :func:`remove_stale_temps`).
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    remove_stale_temps(path)
    # NamedTemporaryFile creates the file with mode 0o600; give the result the
    # permissions of the file it replaces, or the usual ones for a new file.
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_current_umask()
    tmp = tempfile.NamedTemporaryFile(
        mode="wb", delete=False, dir=folder, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp"
    )
    try:
        with tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, mode)
        os.replace(tmp.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    # Persist the rename itself; not possible on every platform (e.g. Windows).
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (True when that cannot be told)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):
        return True  # another user's process, or a platform without signal 0
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove what crashed saves of ``path`` left behind; return the files removed.

    A temporary file ``.NAME.PID-RANDOM.tmp`` (or ``.NAME.RANDOM.tmp``, as
    older versions named them) of the target ``NAME`` is stale when it was
    last written over :data:`STALE_TEMP_AGE` seconds ago and process PID is
    not running (or the name has no PID), or over :data:`ABANDONED_TEMP_AGE`
    seconds ago in any case: a save in progress writes its file within
    seconds, so it is never removed. Only regular files are removed; errors
    (a read-only folder) are ignored, as the save itself will report them.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)-)?[a-z0-9_]+\.tmp")
    removed = []
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match is None:
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if not entry.is_file(follow_symlinks=False):
                    continue
                age = now - info.st_mtime
                pid = match.group(1)
                gone = pid is None or not _running(int(pid))
                if (gone and age > STALE_TEMP_AGE) or age > ABANDONED_TEMP_AGE:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def check_writable(path: str | os.PathLike, *, folder: bool = False) -> Path:
    """Raise ValueError in one line unless ``path`` can be written; return it as a Path.

    For a file: its folder exists and may be written in, and the path is not a
    folder. With ``folder=True`` (a folder created on demand): the path is a
    writable folder, or the nearest folder above it that exists is writable.
    Meant to run before long work whose result goes to ``path``.
    """
    path = Path(path)
    if folder:
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ValueError(f"cannot write in {path}: {existing} is not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"cannot write in {path}: no permission to write in {existing}")
        return path
    parent = path.parent
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder")
    if not parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: no permission to write in folder {parent}")
    return path
