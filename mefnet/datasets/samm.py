"""SAMM adapter: the user's copy (raw greyscale frames + coding sheet) -> ClipIndex.

Expected layout under ``root``::

    SAMM_Micro_FACS_Codes_v2.xlsx      sheet MICRO_ONLY, header on row 14 (or give ``sheet``)
    SAMM/006/006_1_2/006_05562.jpg     (``root`` may also be the SAMM folder itself)

Frames are resolved by the number in their name (a few clips of some copies use other
file names). SAMM frames are the whole camera view: preprocessing must find and crop the
face (config ``face: landmarks``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mefnet.datasets.bad_clips import BadClipLog
from mefnet.datasets.clip_index import ClipIndex, DatasetError
from mefnet.datasets.protocols import get_protocol
from mefnet.datasets.sheet_clips import clips_from_sheet, finish_index
from mefnet.datasets.sheet_io import SheetColumn, find_sheet, read_sheet, require_root

DEFAULT_SHEET = "SAMM_Micro_FACS_Codes_v2.xlsx"
SHEET_NAME = "MICRO_ONLY"

CODING_COLUMNS = (
    SheetColumn("subject", ("Subject",)),
    SheetColumn("clip", ("Filename",)),
    SheetColumn("onset", ("Onset Frame", "OnsetFrame")),
    SheetColumn("apex", ("Apex Frame", "ApexFrame")),
    SheetColumn("offset", ("Offset Frame", "OffsetFrame")),
    SheetColumn("emotion", ("Estimated Emotion", "Emotion")),
    SheetColumn("aus", ("Action Units", "Action Unit"), required=False),
    SheetColumn("objective", ("Objective Classes", "Objective Class"), required=False),
)


def read_samm_sheet(
    sheet: str | Path, sheet_name: str | None = SHEET_NAME, header_row: int | None = None
) -> pd.DataFrame:
    """The MICRO_ONLY sheet as a table; the header row (14 in v2) is found when not given."""
    return read_sheet(Path(sheet), CODING_COLUMNS, sheet_name=sheet_name, header_row=header_row)


def load_samm(
    root: str | Path | None,
    sheet: str | Path | None = None,
    protocol: str = "megc2019",
    on_bad_clip: str = "error",
    check_frames: bool = True,
    sheet_name: str | None = SHEET_NAME,
    header_row: int | None = None,
    drop_clips_without_onset_apex_motion: bool | None = None,
    action_units: bool = False,
    au_uncertain: str = "exclude",
) -> ClipIndex:
    """Index the user's SAMM copy under a class protocol.

    ``header_row`` is the spreadsheet row of the header (14 in SAMM_Micro_FACS_Codes_v2);
    None finds it below the preamble. Protocol ``objective`` uses the sheet's
    ``Objective Classes`` column.

    ``action_units`` (set by ``task=au``): every clip's action-unit cell must parse, or
    the row is a bad clip; ``au_uncertain`` (exclude | include) decides whether ``ref(X)``
    and ``X or Y`` AUs count (:mod:`mefnet.datasets.action_units`).
    """
    root_path = require_root(
        root, dataset_title="SAMM", env_var="MEFNET_SAMM_ROOT", config_key="dataset.index.root"
    )
    sheet_path = find_sheet(
        sheet, search_dirs=[root_path, root_path.parent], default_names=(DEFAULT_SHEET,),
        dataset_title="SAMM", config_key="dataset.index.sheet",
    )
    chosen = get_protocol("samm", protocol)
    frames_root = root_path / "SAMM" if (root_path / "SAMM").is_dir() else root_path
    table = read_samm_sheet(sheet_path, sheet_name=sheet_name, header_row=header_row)
    if chosen.source == "objective" and table["objective"].isna().all():
        raise DatasetError(
            f"{table.attrs['source']}: protocol objective needs the 'Objective Classes' column, "
            "which this sheet does not have"
        )
    log = BadClipLog("SAMM", on_bad_clip)
    clips = clips_from_sheet(
        table,
        dataset="samm",
        protocol=chosen,
        log=log,
        frame_dir_of=lambda subject, clip, row: frames_root / subject / clip,
        check_frames=check_frames,
        label_column="objective" if chosen.source == "objective" else "emotion",
        drop_clips_without_onset_apex_motion=drop_clips_without_onset_apex_motion,
        action_units=action_units,
        au_uncertain=au_uncertain,
    )
    return finish_index(clips, chosen, log, name=f"samm-{chosen.name}", source=str(sheet_path))
