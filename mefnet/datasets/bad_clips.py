"""What an adapter does with a clip it cannot trust: stop, or skip it loudly.

``on_bad_clip: error`` stops at the first bad clip with a :class:`DatasetError` naming
file, row or clip and what was expected. ``on_bad_clip: skip`` warns once per clip, warns
again at the end with the full list, and stores the list in ``ClipIndex.skipped``: a
dataset is never silently shrunk. Clips a protocol deliberately leaves out (an emotion
it drops, the MEGC2019 apex rule) are not bad clips; protocol-rule exclusions are still
listed in ``ClipIndex.skipped`` so the numbers can be traced.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from mefnet.datasets.clip_index import DatasetError, list_frames

ON_BAD_CLIP_CHOICES = ("error", "skip")


class BadClipWarning(UserWarning):
    """A clip was skipped (``on_bad_clip: skip``) or excluded by a protocol rule."""


class BadClipLog:
    """Collects bad clips of one adapter run and applies the ``on_bad_clip`` policy."""

    def __init__(self, dataset_title: str, on_bad_clip: str) -> None:
        if on_bad_clip not in ON_BAD_CLIP_CHOICES:
            raise DatasetError(
                f"on_bad_clip must be one of {ON_BAD_CLIP_CHOICES}, got '{on_bad_clip}'"
            )
        self.dataset_title = dataset_title
        self.on_bad_clip = on_bad_clip
        self.skipped: list[str] = []

    def bad(self, message: str) -> None:
        """Report one bad clip: raise under ``error``, warn and remember under ``skip``."""
        if self.on_bad_clip == "error":
            raise DatasetError(
                f"{message}. (Set on_bad_clip: skip to leave such clips out with a warning.)"
            )
        warnings.warn(f"{self.dataset_title}: skipping {message}", BadClipWarning, stacklevel=3)
        self.skipped.append(message)

    def excluded_by_rule(self, message: str) -> None:
        """Remember a clip a protocol rule leaves out (not an error under either policy)."""
        self.skipped.append(message)

    def finish(self) -> list[str]:
        """Warn once with every skipped clip, so a long run's log shows them together."""
        if self.skipped:
            listing = "\n  ".join(self.skipped)
            warnings.warn(
                f"{self.dataset_title}: {len(self.skipped)} clip(s) left out:\n  {listing}",
                BadClipWarning,
                stacklevel=3,
            )
        return list(self.skipped)


def compact_ranges(numbers: Iterable[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``1..3, 7``: short enough for an error message."""
    ordered = sorted(set(numbers))
    parts: list[str] = []
    start = prev = None
    for n in ordered:
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            parts.append(f"{start}..{prev}" if prev != start else f"{start}")
            start = prev = n
    if start is not None:
        parts.append(f"{start}..{prev}" if prev != start else f"{start}")
    if len(parts) > 8:
        parts = parts[:8] + ["..."]
    return ", ".join(parts)


def missing_frames_problem(
    frame_dir: Path, onset: int, offset: int
) -> str | None:
    """Why the frames onset..offset of a clip cannot all be read, or None when they can.

    Every frame of onset..offset is required, not just onset/apex/offset: temporal
    models and frame-interpolation read them all, and a truncated copy (CASME II
    ``sub16/EP01_08`` holds 73..96 of 73..110 in some copies) must be caught here, not
    as a crash in a training run hours later.
    """
    try:
        frames = list_frames(frame_dir)
    except DatasetError as e:
        return str(e)
    needed = range(onset, offset + 1)
    missing = [n for n in needed if n not in frames]
    if not missing:
        return None
    have = (
        f"the folder holds {len(frames)} numbered image(s), {compact_ranges(frames)}"
        if frames
        else "the folder holds no numbered images"
    )
    return (
        f"frames {onset}..{offset} ({len(needed)} frames) expected in {frame_dir}, "
        f"but {len(missing)} are missing ({compact_ranges(missing)}); {have}"
    )
