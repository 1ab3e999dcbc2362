"""CAS(ME)^3 part A adapter: colour frames + the JpgIndex label sheet -> ClipIndex.

Expected layout under ``root``::

    cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx      (or give ``sheet``)
    spNO.1/b/color/175.jpg                          <subject>/<task>/color/<frame>.jpg

A subject may show several micro-expressions in one task recording (``spNO.1`` task
``e`` has two), so the clip id is ``<task>_<onset>`` (``e_62``), unique per subject.
Frames are 30 fps; numbers are the file names. Emotions are lower-cased (the sheet
writes ``others`` and ``Others``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mefnet.datasets.bad_clips import BadClipLog
from mefnet.datasets.clip_index import ClipIndex
from mefnet.datasets.protocols import get_protocol
from mefnet.datasets.sheet_clips import clips_from_sheet, finish_index
from mefnet.datasets.sheet_io import (
    SheetColumn,
    as_frame_number,
    find_sheet,
    read_sheet,
    require_root,
)

DEFAULT_SHEET = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
FRAME_SUBFOLDER = "color"

LABEL_COLUMNS = (
    SheetColumn("subject", ("Subject",)),
    SheetColumn("task", ("Filename",)),
    SheetColumn("onset", ("Onset",)),
    SheetColumn("apex", ("Apex",)),
    SheetColumn("offset", ("Offset",)),
    SheetColumn("emotion", ("emotion", "Estimated Emotion")),
    SheetColumn("aus", ("AU", "Action Units"), required=False),
    SheetColumn("objective", ("Objective class", "Objective Classes"), required=False),
)


def read_casme3_sheet(sheet: str | Path, sheet_name: str | None = None) -> pd.DataFrame:
    """The part A label sheet as a table (first sheet, ``label``, unless told)."""
    return read_sheet(Path(sheet), LABEL_COLUMNS, sheet_name=sheet_name)


def casme3_clip_id(row: pd.Series) -> str:
    """``<task>_<onset>``: the task letter alone is not unique within a subject."""
    onset = as_frame_number(row["onset"])
    return f"{row['task']}_{onset if onset is not None else row['onset']}"


def load_casme3(
    root: str | Path | None,
    sheet: str | Path | None = None,
    protocol: str = "all",
    on_bad_clip: str = "error",
    check_frames: bool = True,
    sheet_name: str | None = None,
    drop_clips_without_onset_apex_motion: bool | None = None,
    action_units: bool = False,
    au_uncertain: str = "exclude",
) -> ClipIndex:
    """Index the user's CAS(ME)^3 part A copy under a class protocol.

    The v2 sheet has 860 rows; four of them cannot be used as written (apex outside
    onset..offset, offset 0: spNO.149 d, spNO.216 d, spNO.40 e twice), so the default
    ``on_bad_clip: error`` stops on them and ``skip`` gives 856 clips.

    ``action_units`` (set by ``task=au``): every clip's action-unit cell must parse, or
    the row is a bad clip; ``au_uncertain`` (exclude | include) decides whether ``ref(X)``
    and ``X or Y`` AUs count (:mod:`mefnet.datasets.action_units`).
    """
    root_path = require_root(
        root, dataset_title="CAS(ME)^3", env_var="MEFNET_CASME3_ROOT",
        config_key="dataset.index.root",
    )
    sheet_path = find_sheet(
        sheet, search_dirs=[root_path, root_path.parent], default_names=(DEFAULT_SHEET,),
        dataset_title="CAS(ME)^3", config_key="dataset.index.sheet",
    )
    chosen = get_protocol("casme3", protocol)
    table = read_casme3_sheet(sheet_path, sheet_name=sheet_name)
    table["clip"] = table["task"]
    log = BadClipLog("CAS(ME)^3", on_bad_clip)
    clips = clips_from_sheet(
        table,
        dataset="casme3",
        protocol=chosen,
        log=log,
        frame_dir_of=lambda subject, clip, row: root_path / subject / str(row["task"]) / FRAME_SUBFOLDER,
        clip_id_of=casme3_clip_id,
        check_frames=check_frames,
        label_column="objective" if chosen.source == "objective" else "emotion",
        drop_clips_without_onset_apex_motion=drop_clips_without_onset_apex_motion,
        action_units=action_units,
        au_uncertain=au_uncertain,
    )
    return finish_index(clips, chosen, log, name=f"casme3-{chosen.name}", source=str(sheet_path))
