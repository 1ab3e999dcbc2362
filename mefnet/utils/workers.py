"""Worker processes that end with the process that started them.

joblib's loky workers outlive a parent killed with SIGKILL (no handler runs there): a
worker in the middle of a fold goes on training for minutes, holding the fold's lock
and a CPU. Each job sent to a worker is wrapped in :class:`WithParent`, which starts a
watcher in the worker that ends it as soon as its parent is gone (re-parented).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

# Seconds between two looks at the parent: the worker ends within this after a SIGKILL.
POLL_S = 0.5

_watching: set[int] = set()
_lock = threading.Lock()


def exit_with_parent(parent: int) -> None:
    """In a worker process, end it (``os._exit``) when ``parent``, the pid of the process
    that submitted its jobs, is no longer its parent. Does nothing in ``parent`` itself
    (a threading backend) or where the worker is not ``parent``'s direct child (another
    backend's layout: nothing to watch); starts at most one watcher per process."""
    if os.getpid() == parent or os.getppid() != parent:
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
