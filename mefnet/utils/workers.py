"""Worker processes that end with the process that started them.

joblib's loky workers outlive a parent killed with SIGKILL (no handler runs there): a
worker in the middle of a fold goes on training for minutes, holding the fold's lock
and a CPU. Each job sent to a worker is wrapped in :class:`WithParent`, which starts a
watcher in the worker that ends it as soon as its parent is gone (re-parented).

Hydra's joblib launcher (``mefnet-train -m hydra/launcher=joblib``) starts its jobs in
loky workers too, out of mefnet's reach: ``mefnet-train`` names itself in the
environment its workers inherit (:func:`launcher_parent`) and each job starts the
same watcher first (:func:`exit_with_launcher_parent`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

# "<host> <pid>" of the mefnet-train process whose launcher starts the jobs (inherited by
# them; a job on another host, a cluster launcher's, has nothing to watch).
LAUNCHER_PARENT_ENV = "MEFNET_LAUNCHER_PARENT"

# Seconds between two looks at the parent: the worker ends within this after a SIGKILL.
POLL_S = 0.5

_watching: set[int] = set()
_lock = threading.Lock()


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not yet reaped counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def exit_with_parent(parent: int) -> None:
    """In a worker process, end it (``os._exit``) when ``parent``, the pid of the process
    that submitted its jobs, is no longer its parent, or at once when ``parent`` died
    before this job started (the worker was re-parented meanwhile). Does nothing in
    ``parent`` itself (a threading backend) or where the worker is not the living
    ``parent``'s direct child (another backend's layout: nothing to watch); starts at most
    one watcher per process."""
    if os.getpid() == parent:
        return
    if os.getppid() != parent:
        if _gone(parent):
            os._exit(1)  # the job came after its parent's death: its results have nowhere to go
        return
    with _lock:
        if parent in _watching:
            return
        _watching.add(parent)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        os._exit(1)  # the parent is gone: its results have nowhere to go

    threading.Thread(target=watch, name="mefnet-parent-watch", daemon=True).start()


class WithParent:
    """``fn`` as a joblib job that ends its worker when the submitting process dies
    (``delayed(WithParent(fn))(...)``); picklable wherever ``fn`` is."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.parent = os.getpid()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        exit_with_parent(self.parent)
        return self.fn(*args, **kwargs)


@contextlib.contextmanager
def launcher_parent() -> Iterator[None]:
    """This process named, for the block, as the parent of the jobs its Hydra launcher
    starts; the environment is restored after it (a caller in the same process, a test or a
    notebook, is not left marked)."""
    before = os.environ.get(LAUNCHER_PARENT_ENV)
    os.environ[LAUNCHER_PARENT_ENV] = f"{socket.gethostname()} {os.getpid()}"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(LAUNCHER_PARENT_ENV, None)
        else:
            os.environ[LAUNCHER_PARENT_ENV] = before


def exit_with_launcher_parent() -> None:
    """In a job of a Hydra launcher's worker, end the worker when the ``mefnet-train``
    that started it dies (:func:`exit_with_parent`). A no-op in ``mefnet-train`` itself and
    wherever the job is not that process's direct child (a cluster launcher's job on
    another host, or one on this host whose mefnet-train is alive)."""
    host, _, parent = os.environ.get(LAUNCHER_PARENT_ENV, "").rpartition(" ")
    if host == socket.gethostname() and parent.isdigit():
        exit_with_parent(int(parent))
