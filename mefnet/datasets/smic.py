"""SMIC-HS adapter: class folders of cropped clips -> ClipIndex, with a chosen apex.

Expected layout under ``root``::

    SMIC_all_cropped/HS/s1/micro/negative/s1_ne_01/reg_image<N>.bmp
                          s1/non_micro/...      (not used)

``root`` may also be the ``HS`` folder itself. The class is the folder name (negative,
positive, surprise). Subject and clip ids in the index are the MEGC2019 spellings ``s01``
and ``s01_ne_01`` (the disk has ``s1`` and ``s1_ne_01``). Onset is the first frame of the
folder and offset the last (frames sorted by the number in their name).

SMIC has no apex annotation; ``apex`` chooses it:

``midpoint``  the middle frame, ``spotted`` the frame of largest motion relative to onset
(:func:`mefnet.datasets.apex.spot_apex`, every ``spot_stride``-th frame), or ``file``,
an apex list (``apex_file``).

How an apex file maps to clips (``smic_apex_frames.csv``, published with
davidnvq/me_recognition, is the example): each row names a clip of the *long* SMIC-E
recordings (``subject`` 1, ``clip`` s1_ne_01, written unpadded) and gives
``onset_frame``, ``apex_frame``, ``offset_frame`` as absolute frame numbers of the
recording (``image<N>.jpg``). Those onset/offset are the SMIC-E ``OnsetF``/``OffsetF``
of ``SMIC-HS-E_annotation.xlsx``, i.e. the span that the short SMIC-HS clip holds. Rows
are matched to clips by the canonical clip id (``s1_ne_01`` -> ``s01_ne_01``); then:

1. the clip's frames carry the same absolute numbers (its first frame is the file's
   onset): the apex frame number is used as it is;
2. the clip is numbered otherwise (e.g. from 1) but spans as many frames as the file's
   onset..offset: the apex keeps its offset from onset
   (``apex = first + apex_frame - onset_frame``);
3. otherwise the file and the clip disagree and the clip is bad (error or skip).

Without onset/offset columns an apex file's numbers must be frame numbers of the clip.
The published file lists 157 of the 164 MEGC2019 SMIC clips (missing: s01_ne_02,
s02_sur_05, s03_ne_03, s03_ne_20, s04_ne_05, s04_ne_06, s09_sur_02): a clip the file does
not list is a bad clip unless ``apex_fallback`` (``midpoint`` or ``spotted``) fills it in,
recorded as that ``apex_source``. The file's ``label`` column is not used (the class is
the folder's; the file labels s18_sur_03 negative where the folder says surprise).
"""

from __future__ import annotations

import re
from pathlib import Path

from mefnet.datasets.apex import ApexRecord, midpoint_apex, read_apex_file, spot_apex
from mefnet.datasets.bad_clips import BadClipLog, compact_ranges
from mefnet.datasets.clip_index import Clip, ClipIndex, DatasetError, list_frames
from mefnet.datasets.protocols import Protocol, get_protocol
from mefnet.datasets.sheet_clips import finish_index
from mefnet.datasets.sheet_io import require_root
from mefnet.datasets.subject_ids import canonical_clip, canonical_subject

APEX_CHOICES = ("midpoint", "spotted", "file")
HS_FOLDERS = ("SMIC_all_cropped/HS", "HS")
_SUBJECT_FOLDER = re.compile(r"^s\d+$", re.IGNORECASE)


def smic_hs_folder(root: Path) -> Path:
    """The folder holding the ``s1``, ``s2`` ... subject folders."""
    for name in HS_FOLDERS:
        if (root / name).is_dir():
            return root / name
    if any(p.is_dir() and _SUBJECT_FOLDER.match(p.name) for p in root.iterdir()):
        return root
    raise DatasetError(
        f"SMIC-HS clips not found under {root}: expected {root}/SMIC_all_cropped/HS/s1/micro/"
        "negative/s1_ne_01/ (or root set to the HS folder itself)"
    )


def _apex_records_by_clip(path: str | Path) -> dict[str, ApexRecord]:
    records = read_apex_file(path)
    by_clip: dict[str, ApexRecord] = {}
    for rec in records:
        clip = canonical_clip("smic", rec.clip)
        if clip in by_clip:
            raise DatasetError(
                f"{path}, row {rec.row}: clip {rec.clip} is also in row {by_clip[clip].row} "
                f"(both are {clip}); expected one apex per clip"
            )
        by_clip[clip] = rec
    return by_clip


def apex_from_record(rec: ApexRecord, frames: dict[int, Path], onset: int, offset: int) -> int | str:
    """Map an apex-file row onto a clip's frame numbers (rules in the module docstring).

    Returns the apex frame number, or a sentence saying why the row does not fit.
    """
    if rec.onset is not None and rec.offset is not None:
        if rec.onset <= rec.apex <= rec.offset and onset <= rec.apex <= offset:
            return rec.apex  # same (absolute) numbering
        if rec.offset - rec.onset == offset - onset and rec.onset <= rec.apex <= rec.offset:
            return onset + (rec.apex - rec.onset)  # same span, numbered from elsewhere
        return (
            f"apex file row {rec.row} gives onset..apex..offset {rec.onset}..{rec.apex}.."
            f"{rec.offset} ({rec.offset - rec.onset + 1} frames) but the folder holds frames "
            f"{onset}..{offset} ({offset - onset + 1} frames); the two cannot be matched"
        )
    if onset <= rec.apex <= offset:
        return rec.apex
    return (
        f"apex file row {rec.row} gives apex {rec.apex}, outside the folder's frames "
        f"{onset}..{offset}"
    )


def load_smic(
    root: str | Path | None,
    protocol: str = "megc2019",
    apex: str = "midpoint",
    apex_file: str | Path | None = None,
    apex_fallback: str | None = None,
    spot_stride: int = 1,
    on_bad_clip: str = "error",
    check_frames: bool = True,
) -> ClipIndex:
    """Index the user's SMIC-HS copy (micro clips only) with the chosen apex source.

    ``check_frames`` requires each clip's frames to be numbered without gaps (a gap means
    frames were lost in the copy). ``apex_fallback`` fills in clips an apex file lacks.
    """
    root_path = require_root(
        root, dataset_title="SMIC-HS", env_var="MEFNET_SMIC_ROOT", config_key="dataset.index.root"
    )
    if apex not in APEX_CHOICES:
        raise DatasetError(f"SMIC apex must be one of {APEX_CHOICES}, got '{apex}' (config key dataset.index.apex)")
    if apex_fallback not in (None, "midpoint", "spotted"):
        raise DatasetError(f"SMIC apex_fallback must be null, midpoint or spotted, got '{apex_fallback}'")
    records: dict[str, ApexRecord] = {}
    if apex == "file":
        if apex_file is None:
            raise DatasetError(
                "SMIC apex: file needs apex_file (config key dataset.index.apex_file), a CSV "
                "with columns clip, apex_frame (optionally subject, onset_frame, offset_frame)"
            )
        records = _apex_records_by_clip(apex_file)
    chosen = get_protocol("smic", protocol)
    hs = smic_hs_folder(root_path)
    log = BadClipLog("SMIC-HS", on_bad_clip)
    clips: list[Clip] = []
    seen: dict[str, Path] = {}

    subject_dirs = [p for p in hs.iterdir() if p.is_dir() and _SUBJECT_FOLDER.match(p.name)]
    for subject_dir in sorted(subject_dirs, key=lambda p: int(p.name[1:])):
        subject = canonical_subject("smic", subject_dir.name)
        micro = subject_dir / "micro"
        if not micro.is_dir():
            log.bad(f"subject folder {subject_dir} has no micro/ folder; expected {micro}/<class>/<clip>/")
            continue
        for class_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
            try:
                class_name = chosen.class_of(class_dir.name, where=f"class folder {class_dir}")
            except DatasetError as e:
                log.bad(str(e))
                continue
            if class_name is None:
                continue
            for clip_dir in sorted(p for p in class_dir.iterdir() if p.is_dir()):
                clip = canonical_clip("smic", clip_dir.name)
                where = f"clip smic/{subject}/{clip} ({clip_dir})"
                if clip in seen:
                    log.bad(
                        f"{where}: duplicate clip id, {seen[clip]} is the same clip "
                        f"{clip}; expected each clip in one folder"
                    )
                    continue
                seen[clip] = clip_dir
                built = _smic_clip(
                    clip_dir, subject, clip, class_name, chosen,
                    apex, records, apex_fallback, spot_stride, check_frames,
                )
                if isinstance(built, str):
                    log.bad(f"{where}: {built}")
                else:
                    clips.append(built)
    return finish_index(clips, chosen, log, name=f"smic-{chosen.name}", source=str(hs))


def _smic_clip(
    clip_dir: Path,
    subject: str,
    clip: str,
    class_name: str,
    protocol: Protocol,
    apex: str,
    records: dict[str, ApexRecord],
    apex_fallback: str | None,
    spot_stride: int,
    check_frames: bool,
) -> Clip | str:
    """One SMIC clip, or the reason it is bad."""
    try:
        frames = list_frames(clip_dir)
    except DatasetError as e:
        return str(e)
    if not frames:
        return "the folder holds no numbered images; expected frames such as reg_image<N>.bmp"
    onset, offset = min(frames), max(frames)
    if check_frames:
        gaps = [n for n in range(onset, offset + 1) if n not in frames]
        if gaps:
            return (
                f"frames {onset}..{offset} expected without gaps, but {len(gaps)} are missing "
                f"({compact_ranges(gaps)})"
            )
    source = apex
    if apex == "file":
        rec = records.get(clip)
        if rec is None:
            if apex_fallback is None:
                return (
                    "not listed in the apex file; add it, or set apex_fallback: midpoint or "
                    "spotted"
                )
            source = apex_fallback
        else:
            mapped = apex_from_record(rec, frames, onset, offset)
            if isinstance(mapped, str):
                return mapped
            apex_frame = mapped
    try:
        if source == "midpoint":
            apex_frame = midpoint_apex(onset, offset)
        elif source == "spotted":
            apex_frame = spot_apex(frames, onset, offset, stride=spot_stride)
    except DatasetError as e:
        return str(e)
    return Clip(
        dataset="smic",
        subject=subject,
        clip=clip,
        label=protocol.label_of(class_name),
        label_name=class_name,
        onset=onset,
        apex=apex_frame,
        offset=offset,
        frame_dir=str(clip_dir),
        apex_source=source,
    )
