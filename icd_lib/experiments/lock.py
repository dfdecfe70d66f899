"""One process per run: an exclusive lock on the run's checkpoint folder.

The lock is ``fcntl.flock`` on ``<checkpoint folder>/.lock``: the operating system releases it
when the process ends, however it ends (SIGKILL included), so a killed run never leaves a stale
lock behind. The file holds the owner's pid, host and start time, for the message a second
process gets.

A run that fails before writing anything leaves nothing behind: its holder removes the lock
file, and the folders it created for it, while still holding the lock. A process that opened
the file before it was removed finds, once it gets the lock, that its file is no longer the
lock file, and reports the run busy (the plan runner tries it again later).
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from icd_lib.errors import EXIT_BUSY, UserError


class RunBusy(UserError, RuntimeError):
    """Another process holds the run's lock (the plan runner retries such runs)."""

    exit_code = EXIT_BUSY


class RunLock:
    """``with RunLock(folder):`` holds the lock of the run whose checkpoints live in ``folder``.

    ``wait``: block until the lock is free (printing nothing); otherwise raise ``RunBusy`` at once.
    """

    def __init__(self, folder: str | Path, wait: bool = False) -> None:
        self.path = Path(folder) / ".lock"
        self.wait = wait
        self._file = None
        self._created: list[Path] = []  # the folders this lock created, deepest first

    def __enter__(self) -> "RunLock":
        self._created = missing_folders(self.path.parent)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except PermissionError:
            raise PermissionError(
                f"cannot write to {self.path.parent}: the output folder is read-only for this user; "
                "choose a writable --out"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except OSError as err:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise RunBusy(f"{self.path.parent.name} is being trained by {owner}; wait for it to finish or stop it") from None
            raise
        if not self.path.exists() or os.stat(self.path).st_ino != os.fstat(handle.fileno()).st_ino:
            handle.close()  # its holder removed it (a failed run): the lock file is gone or a new one
            raise RunBusy(f"{self.path.parent.name} was just released by a run that failed; start it again")
        handle.seek(0)
        handle.truncate()
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        handle.write(f"process {os.getpid()} on {socket.gethostname()} (since {started})\n")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._file is None:
            return
        if exc_type is not None and self.path.parent in self._created and os.listdir(self.path.parent) == [".lock"]:
            self.path.unlink()  # still locked: nobody else can be using it
            remove_empty_folders(self._created)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


def remove_empty_folders(folders: list[Path]) -> None:
    """``rmdir`` each of ``folders`` (deepest first) until one is not empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def is_locked(folder: str | Path) -> bool:
    """Whether some process holds the lock of the run in ``folder`` right now."""
    path = Path(folder) / ".lock"
    if not path.is_file():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False

