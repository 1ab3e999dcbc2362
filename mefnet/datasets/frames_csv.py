"""Any dataset as frames (or videos) plus one CSV: ``dataset=frames_csv``.

For data no dedicated adapter reads (MMEW, 4DME, CASME I, CAS(ME)^3 part C, a lab's own
recordings). Layout under ``root`` (details in ``docs/datasets.md``)::

    clips.csv                          subject,clip,onset,apex,offset,label[,path]
    <subject>/<clip>/<any name><N>.jpg  a folder of numbered frames (found by number), or
    <subject>/<clip>.mp4               a video (frames numbered from 0)

Columns (header names are matched case-insensitively; the aliases in :data:`COLUMNS`
let the CASME-style ``Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Emotion`` work
as it is):

* ``subject``, ``clip``: ids; the pair must be unique. They become folder names of the
  LOSO folds, so they may not contain ``/`` or ``\\`` or start with ``.``.
* ``onset``, ``offset``: frame numbers (the numbers in the frame file names, or 0-based
  indices into a video).
* ``apex``: a frame number in onset..offset. The column is optional, and a blank cell
  is filled by ``apex_fallback``: ``spotted`` (the frame that moves most from the onset,
  :func:`mefnet.datasets.apex.spot_apex`), ``midpoint``, or null (a bad clip).
* ``label``: a class name, mapped through ``class_map`` (a name -> class, or null to
  leave the clip out on purpose). With ``class_names`` given, the label must be one of
  them (or its index); without, the classes are the labels found, sorted.
* ``path`` (optional): the clip's frame folder or video, relative to ``root``. Without
  it, ``<subject>/<clip>/`` is used, else ``<subject>/<clip>.<video suffix>``.
* ``aus`` (optional; also ``Action Units`` or ``AU``): the clip's action units for
  ``task=au``, as ``clips.csv`` writes them (``4+12``; sheet spellings such as ``R12``,
  ``7B``, ``ref(6)`` parse too). An empty cell means "coded, no AU"; ``?`` or ``NA`` means
  "not annotated" (the AU task leaves such clips out); without the column no clip is
  annotated (docs/action_units.md).

A video clip's frames onset..offset are decoded once into ``video_frames_dir`` (a folder
per video, keyed by its path, size and modification time, written atomically), so the
flow cache and ``mefnet-pictures`` see ordinary numbered frames.

Bad input follows :mod:`mefnet.datasets.bad_clips`: ``on_bad_clip: error`` stops at the
first bad row with the file, the row and what was expected; ``skip`` leaves it out with a
warning and lists it in ``ClipIndex.skipped``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2

from mefnet.datasets.action_units import aus_column_value, check_uncertain
from mefnet.datasets.apex import midpoint_apex, spot_apex
from mefnet.datasets.bad_clips import BadClipLog, missing_frames_problem
from mefnet.datasets.clip_index import Clip, ClipIndex, DatasetError, list_frames
from mefnet.datasets.protocols import check_no_empty_class
from mefnet.datasets.sheet_io import not_utf8, require_root
from mefnet.datasets.subject_ids import id_problem, ids_problem

DEFAULT_CSV = "clips.csv"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
APEX_FALLBACKS = (None, "spotted", "midpoint")

# canonical column -> accepted header spellings (compared lower-case, spaces/underscores removed)
COLUMNS: dict[str, tuple[str, ...]] = {
    "subject": ("subject", "subjectid", "participant"),
    "clip": ("clip", "filename", "clipid", "video", "sequence"),
    "onset": ("onset", "onsetframe", "onsetf"),
    "apex": ("apex", "apexframe", "apexf"),
    "offset": ("offset", "offsetframe", "offsetf"),
    "label": ("label", "emotion", "estimatedemotion", "class"),
    "path": ("path", "frames", "folder", "framedir"),
    "aus": ("aus", "actionunits", "actionunit", "au"),
}
REQUIRED = ("subject", "clip", "onset", "offset", "label")


def _key(header: str) -> str:
    return "".join(ch for ch in header.lower() if ch not in " _-")


def _header_map(path: Path, header: Sequence[str] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in header or []:
        if name is None:
            continue
        for canonical, aliases in COLUMNS.items():
            if _key(name) in aliases and canonical not in found:
                found[canonical] = name
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise DatasetError(
            f"{path}, row 1 (header): column(s) {missing} not found in {list(header or [])}; "
            f"expected {','.join(REQUIRED[:4])},apex,offset,label (apex and path optional)"
        )
    return found


def _frame_number(text: str) -> int | None:
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and value >= 0 else None


def _clip_source(root: Path, subject: str, clip: str, path_text: str) -> Path | str:
    """The clip's frame folder or video, or a sentence saying what was looked for."""
    if path_text:
        source = Path(path_text).expanduser()
        source = source if source.is_absolute() else root / source
        if source.is_dir() or source.is_file():
            return source
        return f"path {path_text!r} ({source}) is neither a frame folder nor a video file"
    folder = root / subject / clip
    if folder.is_dir():
        return folder
    for suffix in VIDEO_SUFFIXES:
        for candidate in (folder.with_name(clip + suffix), folder.with_name(clip + suffix.upper())):
            if candidate.is_file():
                return candidate
    return (
        f"no frames found: expected a folder {folder}/ of numbered frames or a video "
        f"{folder}.mp4 (or .avi, .mov ...), or a path column"
    )


def video_frames(video: Path, first: int, last: int, out_root: Path) -> Path | str:
    """Frames ``first..last`` (0-based) of ``video`` as ``frame<N>.png`` in a folder of their own.

    The folder is keyed by the video's absolute path, size and modification time and the
    range, and written atomically, so a second load (or a parallel one) reuses it. Returns
    the folder, or a sentence saying why the frames cannot be read.
    """
    stat = video.stat()
    ident = f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{first}|{last}"
    target = out_root / f"{video.stem}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"
    if (target / ".complete").is_file():
        return target
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        return f"cannot open video {video} (unreadable or an unsupported codec)"
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=out_root))
    try:
        n = 0
        while n <= last:
            ok, frame = cap.read()
            if not ok:
                break
            if n >= first:
                cv2.imwrite(str(tmp / f"frame{n}.png"), frame)
            n += 1
        if n <= last:
            return (
                f"video {video} has {n} readable frames (0..{n - 1}); expected frames "
                f"{first}..{last}"
            )
        (tmp / ".complete").write_text(ident)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same folder first
            if not (target / ".complete").is_file():
                raise
        return target
    finally:
        cap.release()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_frames_csv(
    root: str | Path | None,
    csv_file: str | Path | None = None,
    dataset_name: str = "frames_csv",
    class_names: Sequence[str] | None = None,
    class_map: Mapping[str, str | None] | None = None,
    apex_fallback: str | None = "spotted",
    spot_stride: int = 1,
    video_frames_dir: str | Path | None = None,
    on_bad_clip: str = "error",
    check_frames: bool = True,
    action_units: bool = False,
    au_uncertain: str = "exclude",
) -> ClipIndex:
    """Index a folder of frame sequences or videos described by one CSV (module docstring).

    With ``action_units`` (set by ``task=au``) an ``aus`` cell that does not parse makes its
    row a bad clip; without it such a clip counts as not annotated. ``au_uncertain``
    (exclude | include) decides whether ``ref(X)`` / ``X or Y`` AUs count.
    """
    root_path = require_root(
        root, dataset_title="frames_csv", env_var="MEFNET_FRAMES_ROOT", config_key="dataset.index.root"
    )
    if apex_fallback not in APEX_FALLBACKS:
        raise DatasetError(
            f"frames_csv apex_fallback must be null, spotted or midpoint, got '{apex_fallback}' "
            "(config key dataset.index.apex_fallback)"
        )
    check_uncertain(au_uncertain, "dataset.index.au_uncertain")
    name_problem = id_problem(str(dataset_name))
    if name_problem:
        raise DatasetError(f"frames_csv dataset_name {dataset_name!r} {name_problem}; expected a plain name "
                           "(config key dataset.index.dataset_name)")
    table = Path(csv_file).expanduser() if csv_file else root_path / DEFAULT_CSV
    if not table.is_absolute() and not table.is_file():
        table = root_path / table
    if not table.is_file():
        raise DatasetError(
            f"frames_csv: clip list {table} does not exist; write a CSV with columns "
            "subject,clip,onset,apex,offset,label there, or set dataset.index.csv_file"
        )
    mapping = {str(k).strip().lower(): (None if v is None else str(v)) for k, v in (class_map or {}).items()}
    fixed = [str(c) for c in class_names] if class_names else None
    frames_out = Path(video_frames_dir) if video_frames_dir else root_path / ".mefnet_frames"
    log = BadClipLog(f"frames_csv ({table})", on_bad_clip)

    rows: list[tuple[int, dict[str, str]]] = []
    try:
        with table.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            column = _header_map(table, reader.fieldnames)
            for row_no, row in enumerate(reader, start=2):
                cells = {k: (row.get(name) or "").strip() for k, name in column.items()}
                if not any(cells.values()):
                    continue  # a blank line
                rows.append((row_no, cells))
    except UnicodeDecodeError as e:
        raise not_utf8(table, e) from None

    seen: dict[tuple[str, str], int] = {}
    accepted: list[tuple[str, dict]] = []
    for row_no, cells in rows:
        at = f"{table}, row {row_no}"
        subject, clip = cells["subject"], cells["clip"]
        bad_id = ids_problem(at, subject=subject, clip=clip)
        if bad_id:
            log.bad(bad_id)
            continue
        where = f"{at} (clip {dataset_name}/{subject}/{clip})"
        if (subject, clip) in seen:
            log.bad(f"{where}: duplicate clip id, also in row {seen[(subject, clip)]}; expected each clip once")
            continue
        seen[(subject, clip)] = row_no
        label_text = cells["label"]
        class_name: str | None = label_text
        if label_text.lower() in mapping:
            class_name = mapping[label_text.lower()]
            if class_name is None:
                log.excluded_by_rule(f"{where}: label {label_text!r} left out by class_map")
                continue
        if fixed is not None:
            resolved = _resolve_class(class_name, fixed)
            if resolved is None:
                log.bad(f"{where}: label {label_text!r} is not one of the classes {fixed} "
                        "(set dataset.index.class_map to map it, or to null to leave such clips out)")
                continue
            class_name = resolved
        elif not class_name:
            log.bad(f"{where}: the label cell is blank; expected a class name")
            continue
        onset, offset = _frame_number(cells["onset"]), _frame_number(cells["offset"])
        if onset is None or offset is None:
            log.bad(f"{where}: onset {cells['onset']!r} / offset {cells['offset']!r} are not "
                    "frame numbers; expected whole numbers >= 0")
            continue
        if onset > offset:
            log.bad(f"{where}: onset {onset} is after offset {offset}; expected onset <= offset")
            continue
        apex_text = cells.get("apex", "")
        apex = _frame_number(apex_text) if apex_text else None
        if apex_text and apex is None:
            log.bad(f"{where}: apex {apex_text!r} is not a frame number; expected a whole number "
                    f"in onset..offset ({onset}..{offset}) or a blank cell")
            continue
        if apex is not None and not onset <= apex <= offset:
            log.bad(f"{where}: apex {apex} is outside onset..offset ({onset}..{offset}); "
                    "expected onset <= apex <= offset")
            continue
        if apex is None and apex_fallback is None:
            log.bad(f"{where}: no apex given and apex_fallback is null; give the apex or set "
                    "dataset.index.apex_fallback: spotted or midpoint")
            continue
        try:  # no column: "" for every clip, and a dataset without any AU counts as not annotated
            aus = aus_column_value(cells["aus"], au_uncertain, strict=action_units) if "aus" in cells else ""
        except ValueError as e:
            log.bad(f"{where}: {e}")
            continue
        source = _clip_source(root_path, subject, clip, cells.get("path", ""))
        if isinstance(source, str):
            log.bad(f"{where}: {source}")
            continue
        if source.is_file():
            if source.suffix.lower() not in VIDEO_SUFFIXES:
                log.bad(f"{where}: {source} is a file but not a video ({', '.join(VIDEO_SUFFIXES)})")
                continue
            extracted = video_frames(source, onset, offset, frames_out)
            if isinstance(extracted, str):
                log.bad(f"{where}: {extracted}")
                continue
            source = extracted
        if check_frames or apex is None:
            problem = missing_frames_problem(source, onset, offset)
            if problem:
                log.bad(f"{where}: {problem}")
                continue
        apex_source = "annotated"
        if apex is None:
            apex_source = apex_fallback
            try:
                apex = (midpoint_apex(onset, offset) if apex_fallback == "midpoint"
                        else spot_apex(list_frames(source), onset, offset, stride=spot_stride))
            except DatasetError as e:
                log.bad(f"{where}: {e}")
                continue
        accepted.append((class_name, dict(subject=subject, clip=clip, onset=onset, apex=apex,
                                          offset=offset, frame_dir=str(source), apex_source=apex_source,
                                          aus=aus)))

    names = fixed if fixed is not None else sorted({name for name, _ in accepted})
    if not names:
        skipped = log.finish()
        raise DatasetError(f"{table}: no usable clip ({len(skipped)} left out)")
    clips = [
        Clip(dataset=str(dataset_name), label=names.index(name), label_name=name, **kw)
        for name, kw in accepted
    ]
    check_no_empty_class(names, [c.label for c in clips], where=f"{table}")
    return ClipIndex(clips, list(names), name=str(dataset_name), skipped=log.finish())


def _resolve_class(value: str | None, names: list[str]) -> str | None:
    if value is None:
        return None
    lowered = [n.lower() for n in names]
    if value.lower() in lowered:
        return names[lowered.index(value.lower())]
    if value.isdigit() and int(value) < len(names):
        return names[int(value)]
    return None
