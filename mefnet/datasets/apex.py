"""Choosing the apex frame of a clip that has no apex annotation (SMIC), or reading one.

Three sources, recorded per clip as ``apex_source``:

``midpoint``
    ``(onset + offset) // 2``. Needs no pixels; a fair guess for the short SMIC clips,
    whose annotated apexes (where a third party published them) sit at 0.51 of the clip
    on average.
``spotted``
    :func:`spot_apex`: the frame that differs most from the onset frame. Motion is the
    mean absolute difference of greyscale intensities after a light Gaussian blur
    (5x5, sigma 1). The blur removes sensor noise and JPEG block edges, which otherwise
    dominate the tiny differences of a micro-expression; a plain intensity difference
    (rather than optical flow) keeps spotting cheap enough to run on every clip and has
    no parameters to tune. Frames are compared with the onset, not with their
    neighbours, because the apex is the frame furthest from the neutral face.
``file``
    an apex list from elsewhere (:func:`read_apex_file`), mapped onto the clip's frame
    numbers by the adapter.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mefnet.datasets.clip_index import DatasetError

SPOT_BLUR_KERNEL = (5, 5)
SPOT_BLUR_SIGMA = 1.0


def midpoint_apex(onset: int, offset: int) -> int:
    """The middle frame of onset..offset (rounded down), for clips without an apex."""
    if onset > offset:
        raise DatasetError(f"cannot take the midpoint: onset {onset} is after offset {offset}")
    return (onset + offset) // 2


def _grey(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DatasetError(f"cannot read image {path} (missing, empty or not an image)")
    image = image.astype(np.float32)
    return cv2.GaussianBlur(image, SPOT_BLUR_KERNEL, SPOT_BLUR_SIGMA)


def motion_from_onset(
    frames: dict[int, Path], onset: int, offset: int, stride: int = 1
) -> dict[int, float]:
    """Mean absolute blurred-greyscale difference from the onset, for every ``stride``-th frame.

    The offset frame is always included so that a stride never skips the clip's end.
    """
    if stride < 1:
        raise DatasetError(f"spot_stride must be a positive whole number, got {stride}")
    if onset > offset:
        raise DatasetError(f"cannot spot an apex: onset {onset} is after offset {offset}")
    candidates = list(range(onset + stride, offset + 1, stride))
    if offset > onset and (not candidates or candidates[-1] != offset):
        candidates.append(offset)
    missing = [n for n in [onset, *candidates] if n not in frames]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise DatasetError(
            f"cannot spot an apex in onset..offset {onset}..{offset}: frame(s) {shown} missing"
        )
    reference = _grey(frames[onset])
    motion: dict[int, float] = {}
    for n in candidates:
        image = _grey(frames[n])
        if image.shape != reference.shape:
            raise DatasetError(
                f"frame {frames[n]} is {image.shape[1]}x{image.shape[0]} but the onset frame "
                f"{frames[onset]} is {reference.shape[1]}x{reference.shape[0]}; a clip's frames "
                "must share one size"
            )
        motion[n] = float(np.abs(image - reference).mean())
    return motion


def spot_apex(frames: dict[int, Path], onset: int, offset: int, stride: int = 1) -> int:
    """The frame of largest motion relative to the onset (see the module docstring).

    ``frames`` maps frame number -> image file (as :func:`list_frames` returns it).
    ``stride`` > 1 examines every stride-th frame (plus the offset) to save time on long
    clips. Ties go to the earliest frame; a clip with no motion at all (or a single frame)
    gets its midpoint, because an apex on the onset would make the onset->apex flow empty.
    """
    motion = motion_from_onset(frames, onset, offset, stride)
    if not motion or max(motion.values()) <= 0.0:
        return midpoint_apex(onset, offset)
    best = max(motion.values())
    return min(n for n, m in motion.items() if m == best)


@dataclass(frozen=True)
class ApexRecord:
    """One row of an apex file."""

    clip: str
    apex: int
    subject: str = ""
    dataset: str = ""
    onset: int | None = None
    offset: int | None = None
    row: int = 0  # line number in the file, header = 1


APEX_FILE_COLUMNS = {
    "clip": ("clip", "filename", "video"),
    "apex": ("apex_frame", "apex", "apexframe"),
    "subject": ("subject",),
    "dataset": ("dataset", "data"),
    "onset": ("onset_frame", "onset", "onsetframe"),
    "offset": ("offset_frame", "offset", "offsetframe"),
}


def read_apex_file(path: str | Path) -> list[ApexRecord]:
    """Rows of an apex list (CSV with a header; needs ``clip`` and ``apex_frame`` columns).

    Optional columns ``subject``, ``dataset`` (or ``data``), ``onset_frame`` and
    ``offset_frame`` are kept: with onset and offset an adapter can check that the file
    numbers frames the way the user's copy does. Frame numbers are as the file writes
    them (e.g. SMIC-E absolute frame numbers); mapping them to a clip is the adapter's job.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"apex file {path} does not exist; set apex_file to a CSV with columns "
            "clip, apex_frame (optionally subject, onset_frame, offset_frame)"
        )
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = {h.strip().lower(): h for h in (reader.fieldnames or []) if h}
        column = {
            key: next((header[name] for name in names if name in header), None)
            for key, names in APEX_FILE_COLUMNS.items()
        }
        absent = [APEX_FILE_COLUMNS[k][0] for k in ("clip", "apex") if column[k] is None]
        if absent:
            raise DatasetError(
                f"{path}, row 1 (header): column(s) {absent} not found; the header is "
                f"{reader.fieldnames}; expected at least clip and apex_frame"
            )
        records: list[ApexRecord] = []
        seen: dict[tuple[str, str, str], int] = {}
        for row_no, row in enumerate(reader, start=2):

            def number(key: str, *, required: bool, row: dict = row, row_no: int = row_no) -> int | None:
                name = column[key]
                text = (row.get(name) or "").strip() if name else ""
                if not text:
                    if required:
                        raise DatasetError(f"{path}, row {row_no}: {name} is blank; expected a frame number")
                    return None
                try:
                    return int(float(text)) if float(text).is_integer() else int(text)
                except ValueError:
                    raise DatasetError(
                        f"{path}, row {row_no}: {name} '{text}' is not a frame number"
                    ) from None

            clip = (row.get(column["clip"]) or "").strip()
            if not clip:
                raise DatasetError(f"{path}, row {row_no}: the clip cell is blank")
            record = ApexRecord(
                clip=clip,
                apex=number("apex", required=True),
                subject=(row.get(column["subject"]) or "").strip() if column["subject"] else "",
                dataset=(row.get(column["dataset"]) or "").strip() if column["dataset"] else "",
                onset=number("onset", required=False),
                offset=number("offset", required=False),
                row=row_no,
            )
            key = (record.dataset, record.subject, record.clip)
            if key in seen:
                raise DatasetError(
                    f"{path}, row {row_no}: clip {clip} is listed twice (rows {seen[key]} and "
                    f"{row_no}); expected one apex per clip"
                )
            seen[key] = row_no
            records.append(record)
    return records
