"""Turning the rows of a coding sheet into checked :class:`Clip` records.

CASME II, SAMM and CAS(ME)^3 all annotate clips the same way (subject, clip, onset, apex,
offset, emotion) and fail the same ways, so the row checks live here once; each adapter
only says where its columns and frames are.

Order of checks for a row (the first failure is the one reported): subject id, duplicate
clip id, class (an unknown emotion is bad, a dropped one is simply left out), frame
numbers (onset/offset present, onset <= offset, apex present and inside onset..offset),
the protocol's apex rule, and finally the frames on disk.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mefnet.datasets.action_units import parse_au_cell
from mefnet.datasets.bad_clips import BadClipLog, missing_frames_problem
from mefnet.datasets.clip_index import Clip, ClipIndex, DatasetError
from mefnet.datasets.protocols import MEGC2019_APEX_RULE, Protocol, check_no_empty_class
from mefnet.datasets.sheet_io import as_frame_number, describe_cell
from mefnet.datasets.subject_ids import canonical_clip, canonical_subject, ids_problem

# Sheet table keys every adapter maps its headers to.
REQUIRED_KEYS = ("subject", "clip", "onset", "apex", "offset")


def clips_from_sheet(
    table: pd.DataFrame,
    *,
    dataset: str,
    protocol: Protocol,
    log: BadClipLog,
    frame_dir_of: Callable[[str, str, pd.Series], Path],
    clip_id_of: Callable[[pd.Series], str] | None = None,
    check_frames: bool = True,
    label_column: str = "emotion",
    drop_clips_without_onset_apex_motion: bool | None = None,
    action_units: bool = False,
    au_uncertain: str = "exclude",
) -> list[Clip]:
    """Checked clips of every row of ``table`` (from :func:`sheet_io.read_sheet`).

    ``frame_dir_of(subject, clip, row)`` gives the clip's frame folder. ``clip_id_of``
    builds the clip id from a row when the sheet's clip column alone is not unique
    (CAS(ME)^3). ``drop_clips_without_onset_apex_motion`` None follows the protocol.

    The action units of a table with an ``aus`` column are recorded in normalised form
    (:mod:`mefnet.datasets.action_units`). With ``action_units`` (the AU task) a cell that
    does not parse makes the row a bad clip (reported by row); without it such a clip's
    AUs are left empty, since the emotion task does not use them.
    """
    source = table.attrs.get("source", "annotation sheet")
    drop_motionless = (
        protocol.drop_clips_without_onset_apex_motion
        if drop_clips_without_onset_apex_motion is None
        else drop_clips_without_onset_apex_motion
    )

    ids: list[tuple[str, str] | None] = []
    rows_of: dict[tuple[str, str], list[int]] = defaultdict(list)
    for _, row in table.iterrows():
        try:
            subject = canonical_subject(dataset, row["subject"])
        except DatasetError:
            ids.append(None)
            continue
        raw_clip = clip_id_of(row) if clip_id_of else row["clip"]
        clip = canonical_clip(dataset, "" if raw_clip is None else str(raw_clip))
        ids.append((subject, clip))
        rows_of[(subject, clip)].append(int(row["excel_row"]))

    clips: list[Clip] = []
    for (_, row), key in zip(table.iterrows(), ids, strict=True):
        excel_row = int(row["excel_row"])
        at_row = f"{source}, row {excel_row}"
        if key is None:
            log.bad(
                f"{at_row}: subject {describe_cell(row['subject'])} is not a subject id of "
                f"{dataset} (expected a subject number such as 1 or {canonical_subject(dataset, 1)})"
            )
            continue
        subject, clip = key
        where = f"{at_row} (clip {dataset}/{subject}/{clip})"
        if not clip:
            log.bad(f"{at_row}: the clip name cell is blank; expected the clip folder name")
            continue
        bad_id = ids_problem(at_row, clip=clip)
        if bad_id:
            log.bad(bad_id)
            continue
        if len(rows_of[key]) > 1:
            log.bad(
                f"{where}: duplicate clip id, the sheet lists {dataset}/{subject}/{clip} in rows "
                f"{', '.join(map(str, rows_of[key]))}; expected each clip once (remove the "
                "repeated row)"
            )
            continue
        try:
            class_name = protocol.class_of(row[label_column], where=where)
        except DatasetError as e:
            log.bad(str(e))
            continue
        if class_name is None:
            continue  # the protocol drops this emotion on purpose

        onset, apex, offset = (as_frame_number(row[k]) for k in ("onset", "apex", "offset"))
        if onset is None or offset is None:
            log.bad(
                f"{where}: onset {describe_cell(row['onset'])} / offset "
                f"{describe_cell(row['offset'])} are not frame numbers; expected whole numbers"
            )
            continue
        if onset > offset:
            log.bad(f"{where}: onset {onset} is after offset {offset}; expected onset <= offset")
            continue
        if apex is None:
            message = (
                f"{where}: apex {describe_cell(row['apex'])} is missing or not a frame number; "
                f"expected a frame number in onset..offset ({onset}..{offset})"
            )
            if drop_motionless:
                log.excluded_by_rule(f"{message} -- excluded by protocol {protocol.name}: {MEGC2019_APEX_RULE}")
            else:
                log.bad(message)
            continue
        if not onset <= apex <= offset:
            log.bad(
                f"{where}: apex {apex} is outside onset..offset ({onset}..{offset}); "
                "expected onset <= apex <= offset"
            )
            continue
        if drop_motionless and apex == onset:
            log.excluded_by_rule(
                f"{where}: apex {apex} equals onset -- excluded by protocol "
                f"{protocol.name}: {MEGC2019_APEX_RULE}"
            )
            continue

        aus = ""
        if "aus" in table.attrs.get("columns_found", table.columns):
            parsed = parse_au_cell(row["aus"], au_uncertain)
            if parsed.problem is not None and action_units:
                log.bad(f"{where}: action units {describe_cell(row['aus'])} do not parse: {parsed.problem}")
                continue
            aus = parsed.normalised if parsed.problem is None else ""
        elif action_units:
            raise DatasetError(
                f"{source}: no action-unit column (Action Units / AU), so the AU task cannot use {dataset}"
            )

        frame_dir = frame_dir_of(subject, clip, row)
        if check_frames:
            problem = missing_frames_problem(frame_dir, onset, offset)
            if problem:
                log.bad(f"{where}: {problem}")
                continue
        clips.append(
            Clip(
                dataset=dataset,
                subject=subject,
                clip=clip,
                label=protocol.label_of(class_name),
                label_name=class_name,
                onset=onset,
                apex=apex,
                offset=offset,
                frame_dir=str(frame_dir),
                apex_source="annotated",
                aus=aus,
            )
        )
    return clips


def finish_index(
    clips: list[Clip], protocol: Protocol, log: BadClipLog, *, name: str, source: str
) -> ClipIndex:
    """The ClipIndex of an adapter run, after the checks that concern the whole dataset."""
    check_no_empty_class(
        protocol.class_names,
        [c.label for c in clips],
        where=f"{source} under protocol {protocol.name}",
    )
    skipped = log.finish()
    return ClipIndex(clips, list(protocol.class_names), name=name, skipped=skipped)
