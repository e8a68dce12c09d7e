"""An exclusive lock on a run directory, held by the trainer for its whole life.

``fcntl.flock`` on ``<run_dir>/.lock``: the kernel releases it when the process exits,
however it exits (``kill -9`` included), so a stale lock never blocks a restart. The
file holds the holder's pid, for the message a second trainer gets. Creating the run
directory and taking the lock is one step, so two simultaneous fresh starts cannot both
claim a name: the loser is told who holds it.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Optional

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another process holds the run directory's lock."""


class RunLock:
    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        """Create the run directory if needed and lock it, or raise RunLockedError / OSError."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLockedError(f"run directory {self.run_dir} is in use by another trainer "
                                     f"(pid {holder_pid(self.path) or 'unknown'}); wait for it to end "
                                     f"or choose another --name") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def held_by(run_dir: str | Path) -> Optional[str]:
    """The pid (as text, or "unknown") of the process holding ``run_dir``'s lock; None when free.

    Creates nothing: a folder without a lock file is free."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = holder_pid(path)
        return str(pid) if pid else "unknown"
    finally:
        os.close(fd)          # closing drops a lock we may have taken
    return None


def holder_pid(path: Path) -> Optional[int]:
    try:
        text = Path(path).read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
