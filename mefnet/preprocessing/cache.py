"""On-disk cache of per-clip input maps.

One ``.npy`` file per clip under a key that covers everything the maps depend on: the
clip's identity, the frame files used (name, size, modification time), every
preprocessing parameter and the OpenCV version. Change any of them and the key
changes, so a stale entry can never be read.

Writes go to a temporary file in the same folder and are renamed into place, which is
atomic on POSIX: a killed run leaves no half-written entry, and two processes filling
the same cache at once at worst both compute an entry and the last rename wins (with
identical bytes). An entry that cannot be read back as the expected array is treated
as absent and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

CACHE_FORMAT = 1


def file_fingerprint(path: str | Path) -> list:
    """What identifies a file's content cheaply: resolved name, size and mtime."""
    p = Path(path)
    st = p.stat()
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def cache_key(identity: dict[str, Any], files: list[str | Path], params: dict[str, Any]) -> str:
    """sha256 over identity, input files, parameters, OpenCV version and cache format."""
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "opencv": cv2.__version__,
            "identity": identity,
            "files": [file_fingerprint(f) for f in files],
            "params": params,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class FlowCache:
    """A folder of ``<key>.npy`` arrays, sharded by the key's first two characters."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def load(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        """The cached array, or None if absent or damaged (a damaged file is removed)."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            arr = np.load(p, allow_pickle=False)
            if shape is not None and arr.shape != tuple(shape):
                raise ValueError(f"shape {arr.shape}, expected {tuple(shape)}")
            if not np.all(np.isfinite(arr)):
                raise ValueError("non-finite values")
        except (ValueError, OSError, EOFError):
            p.unlink(missing_ok=True)
            return None
        return arr

    def save(self, key: str, arr: np.ndarray) -> Path:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return p
