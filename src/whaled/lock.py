"""One whaled process per database: an exclusive ``flock`` on ``<database>.lock``, which contains the owner's PID.

The kernel drops the lock when its holder exits, even after ``SIGKILL``, so a stale lock file never blocks a
start: the file stays on disk and the next holder overwrites the PID in it. ``flock`` locks belong to the
open file, so a second :class:`InstanceLock` on the same path fails inside one process too.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from whaled.errors import WhaledError
from whaled.log import app_logger as logger

__all__ = ["InstanceLock", "InstanceLockedError", "lock_holder", "lock_path"]

_ATTEMPTS = 3
_RETRY_S = 0.02


class InstanceLockedError(WhaledError, RuntimeError):
    """Another process holds the database's lock. ``pid`` is its PID, or None when the file held none."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"process {pid}" if pid is not None else "another process (PID unknown)"
        super().__init__(
            f"database lock {str(path)!r} is held by {holder}, another whaled on the same database; "
            "stop it first (systemctl stop whaled), or point store.path at another database"
        )


def lock_path(database: Path) -> Path:
    """Return the lock file of ``database``: its real path (symbolic links resolved) with ``.lock`` appended.

    Resolving matters: two configs that reach one database through different links must meet at one lock.
    """
    real = database.resolve()
    return real.with_name(real.name + ".lock")


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else None


def _try_exclusive(fd: int) -> bool:
    # lock_holder() holds a shared lock for a few microseconds; a second try rules that probe out.
    for attempt in range(_ATTEMPTS):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if attempt + 1 < _ATTEMPTS:
                time.sleep(_RETRY_S)
            continue
        return True
    return False


class InstanceLock:
    """The exclusive lock on one database. :meth:`acquire`, later :meth:`release` (or ``with``)."""

    def __init__(self, database: Path) -> None:
        self.path = lock_path(database)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting and write this process's PID into the file.

        :raises InstanceLockedError: another process (or another lock object here) holds it.
        :raises WhaledError: the lock file cannot be created, with the reason and the path.
        """
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise WhaledError(
                f"cannot open lock file {str(self.path)!r}: {exc.strerror}; check that the folder exists and "
                "that this user may write to it"
            ) from exc
        if not _try_exclusive(fd):
            pid = _read_pid(fd)
            os.close(fd)
            raise InstanceLockedError(self.path, pid)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        logger.debug("Took the instance lock %s", self.path)

    def release(self) -> None:
        """Empty the file and drop the lock. Safe to call when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
        logger.debug("Released the instance lock %s", self.path)

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def lock_holder(database: Path) -> int | None:
    """Return the PID of the process that holds ``database``'s lock, or None when no process holds it.

    Returns 0 when the lock is held but the file names no PID (a holder between open and write).
    """
    path = lock_path(database)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            # A shared lock succeeds only when no process holds the exclusive one.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
