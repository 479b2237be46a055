"""One box at a time: `musicbox play` holds an exclusive ``flock`` on ``.musicbox.lock`` in its recordings
folder for as long as it runs (the kernel drops it when the process ends, however it ends), so a second
`play` with the same folder (the same box: its saves, its audio device) stops with
:class:`~musicbox.errors.AlreadyRunningError` (exit 75) instead of playing over the first."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

from musicbox.errors import AlreadyRunningError

LOCK_NAME = ".musicbox.lock"


def _open_lock(folder: Path) -> tuple[int, Path]:
    """Open (create) the lock file in the recordings folder, or in the runtime folder when the recordings
    folder cannot be written (a read-only disk: the box still plays, SAVE reports the problem)."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK_NAME
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644), path
    except OSError:
        runtime = os.environ.get("RUNTIME_DIRECTORY") or os.environ.get("XDG_RUNTIME_DIR")
        path = Path(runtime or tempfile.gettempdir()) / LOCK_NAME
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644), path


def hold_box_lock(folder: Path) -> int:
    """Take the lock for recordings folder ``folder``; returns the open descriptor (keep it open while
    playing). Raises AlreadyRunningError naming the pid that holds it."""
    fd, path = _open_lock(folder)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyRunningError(
            f"another musicbox is already playing (pid {holder}, lock {path}); stop it first "
            "(`sudo systemctl stop musicbox` for the service) or give this one another [recording] folder"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
