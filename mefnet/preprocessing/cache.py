"""On-disk cache of per-clip input maps.

One ``.npy`` file per clip under a key that covers everything the maps depend on: the
clip's identity, the frame files used (name, size, modification time), every
preprocessing parameter and the OpenCV version. Change any of them and the key
changes, so a stale entry can never be read.

Writes go to a temporary file in the same folder and are renamed into place, which is
atomic on POSIX: a killed run leaves no half-written entry (at most an orphaned
``.*.tmp`` file, never read, removed by :meth:`FlowCache.remove_stale_temporaries`), and
two processes filling the same cache at once at worst both compute an entry and the last
rename wins (with identical bytes).

Each entry is an ordinary ``.npy`` file followed by a trailer holding the sha256 of its
key and the ``.npy`` bytes (``np.load`` ignores it, so entries stay readable by any numpy). An entry
that is truncated, overwritten, bit-flipped, copied onto another clip's key or of the
wrong shape fails the check on read,
is removed, and is recomputed by the caller.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mefnet.utils.files import atomic_write

# 2: entries carry a sha256 trailer. 3: the trailer covers the entry's key as well.
CACHE_FORMAT = 3
_TRAILER_TAG = b"MEFNETSHA256"
_TRAILER_SIZE = len(_TRAILER_TAG) + 32


class DamagedEntryError(ValueError):
    """A cache file that is not a complete, intact entry."""


def _digest(key: str, body: bytes) -> bytes:
    return hashlib.sha256(key.encode() + b"\0" + body).digest()


def encode_entry(arr: np.ndarray, key: str) -> bytes:
    """The bytes of one entry: ``.npy`` bytes, then the tag and the sha256 of key and bytes.

    The checksum binds the entry to its key: a file copied or renamed onto another clip's
    key fails the check and is recomputed, instead of feeding one clip's maps to another.
    """
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    body = buf.getvalue()
    return body + _TRAILER_TAG + _digest(key, body)


def decode_entry(data: bytes, key: str) -> np.ndarray:
    """The array of an entry's bytes; :class:`DamagedEntryError` if they are not intact
    or belong to another key."""
    if len(data) < _TRAILER_SIZE or data[-_TRAILER_SIZE:-32] != _TRAILER_TAG:
        raise DamagedEntryError("no checksum trailer (truncated or not a mefnet cache entry)")
    body, digest = data[:-_TRAILER_SIZE], data[-32:]
    if _digest(key, body) != digest:
        raise DamagedEntryError("checksum mismatch (the file was altered, or belongs to another key)")
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DamagedEntryError(f"not a .npy array ({err})") from None


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
        arr, _ = self.check(key, shape)
        return arr

    def check(self, key: str, shape: tuple[int, ...] | None = None) -> tuple[np.ndarray | None, str]:
        """``(array, "")`` for an intact entry, ``(None, "absent")``, or ``(None, reason)``
        for a damaged entry, which is removed so that it gets recomputed."""
        p = self.path(key)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return None, "absent"
        try:
            arr = decode_entry(data, key)
            if shape is not None and arr.shape != tuple(shape):
                raise DamagedEntryError(f"shape {arr.shape}, expected {tuple(shape)}")
            if not np.all(np.isfinite(arr)):
                raise DamagedEntryError("non-finite values")
        except DamagedEntryError as err:
            p.unlink(missing_ok=True)
            return None, f"damaged: {err}"
        return arr, ""

    def save(self, key: str, arr: np.ndarray) -> Path:
        """Write an entry atomically: a temporary file in the same folder, then a rename."""
        # No fsync: after a power cut an entry may be empty or torn, but the checksum
        # catches that on read and the entry is recomputed; a killed process loses
        # nothing the kernel already has.
        return atomic_write(self.path(key), encode_entry(arr, key))

    def remove_stale_temporaries(self, older_than_s: float = 600.0) -> int:
        """Remove temporary files left by killed writers; returns how many.

        Only files older than ``older_than_s`` go: a writer holds its temporary file for
        milliseconds, so a younger one may belong to a process filling the cache now.
        """
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for tmp in self.root.glob("??/.*.tmp"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed
