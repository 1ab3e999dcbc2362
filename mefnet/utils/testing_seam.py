"""The one test seam of mefnet's production code.

Tests need to stop a real process at a known point (to kill it there and check what a
resume does); nothing else in the package exists for tests. Every hook production code
calls for tests lives in this module, does nothing unless the test's environment variables
are set, and is listed here:

* :func:`pause_point` (``MEFNET_PAUSE_AT``, ``MEFNET_PAUSE_DIR``): called after a fold's
  record is written (``fold``, :mod:`mefnet.experiment.fold`) and after a flow-cache entry
  is written (``cache``, :mod:`mefnet.preprocessing.features`).
"""

from __future__ import annotations

import os
from pathlib import Path

_passes: dict[str, int] = {}


def pause_point(kind: str) -> None:
    """A place where a test may stop a process deterministically (to kill it there).

    With ``MEFNET_PAUSE_AT=<kind>:<n>`` and ``MEFNET_PAUSE_DIR`` set, the n-th time a
    process passes the point ``kind`` (``fold``: a fold's record was written; ``cache``:
    a cache entry was written) it creates ``<MEFNET_PAUSE_DIR>/<kind>-<pid>`` and sleeps
    until killed. Without the variables it does nothing.
    """
    wanted = os.environ.get("MEFNET_PAUSE_AT", "")
    if not wanted.startswith(kind + ":"):
        return
    _passes[kind] = _passes.get(kind, 0) + 1
    if str(_passes[kind]) != wanted.partition(":")[2]:
        return
    import time

    folder = Path(os.environ.get("MEFNET_PAUSE_DIR", "."))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{kind}-{os.getpid()}").write_text("paused\n")
    while True:
        time.sleep(60)
