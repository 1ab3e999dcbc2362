"""Exclusive locks between processes (the kernel's ``flock``), naming their holder.

Kept hand-written rather than :mod:`filelock`: the lock file itself names the holder
(PID, host, since when) for the message of a process that finds it taken, and filelock
truncates the file when it opens it, which would erase the holder's name before the
waiting process could read it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


class LockBusyError(RuntimeError):
    """Another process holds the lock (``exclusive(..., wait=False)``)."""


@contextlib.contextmanager
def exclusive(path: str | Path, wait: bool = True, what: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the block.

    The lock is the kernel's (``flock``): it goes with the process, so a run that was killed
    leaves no lock behind (the file stays, unlocked, and the next run takes it). The file
    names the holder (PID, host, since when) for the message of one that has to wait or
    skip. ``wait=False``: raise :class:`LockBusyError` instead of waiting.
    """
    import fcntl
    import socket
    import time

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise LockBusyError(f"{what or path} is held by {holder} (lock {path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
