"""CASME II adapter: the user's copy (raw or cropped frames + coding sheet) -> ClipIndex.

Expected layout under ``root`` (see docs/datasets.md)::

    CASME2-coding-20140508.xlsx                 (or give ``sheet``)
    CASME2-ObjectiveClasses.xlsx                (only for protocol: objective)
    CASME2_RAW_selected/sub01/EP02_01f/img46.jpg          variant: raw
    Cropped/sub01/EP02_01f/reg_img46.jpg                  variant: cropped
    Cropped-updated/Cropped/sub01/EP02_01f/reg_img46.jpg  (also accepted)

Frames are found by the number in their name, so ``img46.jpg`` and ``reg_img46.jpg``
both are frame 46, the number the sheet uses.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mefnet.datasets.bad_clips import BadClipLog
from mefnet.datasets.clip_index import ClipIndex, DatasetError
from mefnet.datasets.protocols import get_protocol
from mefnet.datasets.sheet_clips import clips_from_sheet, finish_index
from mefnet.datasets.sheet_io import SheetColumn, find_sheet, read_sheet, require_root
from mefnet.datasets.subject_ids import canonical_subject

DEFAULT_SHEET = "CASME2-coding-20140508.xlsx"
OTHER_SHEET_VERSIONS = ("CASME2-coding-20190701.xlsx", "CASME2-coding-updated.xlsx")
OBJECTIVE_SHEET = "CASME2-ObjectiveClasses.xlsx"
FRAME_FOLDERS = {
    "cropped": ("Cropped", "Cropped-updated/Cropped"),
    "raw": ("CASME2_RAW_selected", "CASME2_RAW"),
}

CODING_COLUMNS = (
    SheetColumn("subject", ("Subject",)),
    SheetColumn("clip", ("Filename",)),
    SheetColumn("onset", ("OnsetFrame", "Onset Frame")),
    SheetColumn("apex", ("ApexFrame", "Apex Frame")),
    SheetColumn("offset", ("OffsetFrame", "Offset Frame")),
    SheetColumn("emotion", ("Estimated Emotion", "Emotion")),
    SheetColumn("aus", ("Action Units", "Action Unit"), required=False),
)
OBJECTIVE_COLUMNS = (
    SheetColumn("subject", ("Subject",)),
    SheetColumn("clip", ("Filename",)),
    SheetColumn("objective", ("Objective Class", "Objective Classes")),
)


def read_casme2_sheet(sheet: str | Path) -> pd.DataFrame:
    """The coding sheet as a table (subject, clip, onset, apex, offset, emotion, excel_row)."""
    return read_sheet(Path(sheet), CODING_COLUMNS)


def casme2_frames_root(root: Path, variant: str, *, must_exist: bool = True) -> Path:
    """The folder holding ``subNN/<clip>/`` for ``variant`` (cropped or raw)."""
    if variant not in FRAME_FOLDERS:
        raise DatasetError(
            f"CASME II variant must be one of {sorted(FRAME_FOLDERS)}, got '{variant}'"
        )
    candidates = [root / name for name in FRAME_FOLDERS[variant]]
    for folder in candidates:
        if folder.is_dir():
            return folder
    if any(p.is_dir() and p.name.startswith("sub") for p in root.iterdir()):
        return root  # root already is the folder of subject folders
    if not must_exist:
        return candidates[0]
    raise DatasetError(
        f"CASME II {variant} frames not found under {root}: expected one of "
        f"{', '.join(str(c) for c in candidates)} holding sub01/EP02_01f/... "
        f"(or set variant: {'raw' if variant == 'cropped' else 'cropped'} if that is what you have)"
    )


def load_casme2(
    root: str | Path | None,
    sheet: str | Path | None = None,
    variant: str = "cropped",
    protocol: str = "megc2019",
    on_bad_clip: str = "error",
    check_frames: bool = True,
    objective_sheet: str | Path | None = None,
    drop_clips_without_onset_apex_motion: bool | None = None,
    action_units: bool = False,
    au_uncertain: str = "exclude",
) -> ClipIndex:
    """Index the user's CASME II copy under a class protocol.

    ``sheet`` defaults to ``CASME2-coding-20140508.xlsx`` in ``root`` (other versions
    are accepted by path). ``check_frames`` requires every frame onset..offset on disk.
    Under protocol ``megc2019`` clips without onset->apex motion (apex "/" or apex ==
    onset) are left out as the official list does and listed in ``ClipIndex.skipped``;
    ``drop_clips_without_onset_apex_motion`` overrides that for any protocol (False turns
    a missing apex into a bad clip).

    ``action_units`` (set by ``task=au``): every clip's action-unit cell must parse, or
    the row is a bad clip; ``au_uncertain`` (exclude | include) decides whether ``ref(X)``
    and ``X or Y`` AUs count (:mod:`mefnet.datasets.action_units`).
    """
    root_path = require_root(
        root, dataset_title="CASME II", env_var="MEFNET_CASME2_ROOT",
        config_key="dataset.index.root",
    )
    sheet_path = find_sheet(
        sheet, search_dirs=[root_path], default_names=(DEFAULT_SHEET, *OTHER_SHEET_VERSIONS),
        dataset_title="CASME II", config_key="dataset.index.sheet",
    )
    chosen = get_protocol("casme2", protocol)
    frames_root = casme2_frames_root(root_path, variant, must_exist=check_frames)
    table = read_casme2_sheet(sheet_path)
    label_column = "emotion"
    if chosen.source == "objective":
        table = _with_objective_classes(table, root_path, sheet_path, objective_sheet)
        label_column = "objective"

    log = BadClipLog("CASME II", on_bad_clip)
    clips = clips_from_sheet(
        table,
        dataset="casme2",
        protocol=chosen,
        log=log,
        frame_dir_of=lambda subject, clip, row: frames_root / subject / clip,
        check_frames=check_frames,
        label_column=label_column,
        drop_clips_without_onset_apex_motion=drop_clips_without_onset_apex_motion,
        action_units=action_units,
        au_uncertain=au_uncertain,
    )
    return finish_index(clips, chosen, log, name=f"casme2-{chosen.name}", source=str(sheet_path))


def _with_objective_classes(
    table: pd.DataFrame, root: Path, coding_sheet: Path, objective_sheet: str | Path | None
) -> pd.DataFrame:
    """Attach the objective class of each clip from CASME2-ObjectiveClasses.xlsx."""
    path = find_sheet(
        objective_sheet, search_dirs=[root, coding_sheet.parent], default_names=(OBJECTIVE_SHEET,),
        dataset_title="CASME II objective-class", config_key="dataset.index.objective_sheet",
    )
    objective = read_sheet(path, OBJECTIVE_COLUMNS)
    by_clip: dict[tuple[str, str], object] = {}
    for _, row in objective.iterrows():
        try:
            by_clip[(canonical_subject("casme2", row["subject"]), str(row["clip"]))] = row["objective"]
        except DatasetError as e:
            raise DatasetError(f"{path}, row {row['excel_row']}: {e}") from None

    def lookup(row: pd.Series) -> object:
        try:
            return by_clip.get((canonical_subject("casme2", row["subject"]), str(row["clip"])))
        except DatasetError:
            return None

    table = table.copy()
    table["objective"] = [lookup(row) for _, row in table.iterrows()]
    # A clip missing from the objective sheet gets a blank class, reported per row as an
    # unknown objective class by the row checks (naming the coding-sheet row).
    return table
