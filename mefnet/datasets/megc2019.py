"""The MEGC2019 composite (CDE): CASME II + SAMM + SMIC-HS in three classes, 442 clips.

Built from each dataset's own sheet and folders with the official mapping
(:mod:`mefnet.datasets.protocols`, protocol ``megc2019``), never from a copied list, so a
user's copy is checked clip by clip. On the reference sheets this yields exactly the
official list (``megc2019_combined_3class_gt.csv``):

==========  =====  ========  ====  =====
class       SMIC   CASME II  SAMM  total
==========  =====  ========  ====  =====
negative    70     88        92    250
positive    51     32        26    109
surprise    43     25        15    83
subjects    16     24        28    68
==========  =====  ========  ====  =====

The CASME II sheet has 90 negatives; the official list drops ``sub04/EP12_01f`` (apex
"/") and ``sub05/EP09_05f`` (apex == onset). The rule that reproduces this is "a clip
needs onset->apex motion: an annotated apex after the onset" (clips with apex == offset,
``sub12/EP09_06`` and ``sub25/EP18_04f``, stay). The two appear in ``ClipIndex.skipped``.

Ids: every clip's ``dataset`` is its source (``casme2``, ``samm``, ``smic``), so subject
keys ``dataset/subject`` never collide. The official CSV writes SAMM subjects unpadded
(``samm,6,006_1_2,0``); the index writes ``006`` (see
:mod:`mefnet.datasets.subject_ids`); :func:`read_megc2019_ground_truth` reads the official
list in the index's spelling so the two compare directly.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections import Counter
from pathlib import Path

from mefnet.datasets.casme2 import load_casme2
from mefnet.datasets.clip_index import ClipIndex, DatasetError
from mefnet.datasets.protocols import MEGC2019_CLASSES
from mefnet.datasets.samm import load_samm
from mefnet.datasets.sheet_io import require_root
from mefnet.datasets.smic import load_smic
from mefnet.datasets.subject_ids import canonical_clip, canonical_subject

OFFICIAL_COUNTS: dict[str, tuple[int, int, int]] = {
    "casme2": (88, 32, 25),
    "smic": (70, 51, 43),
    "samm": (92, 26, 15),
}
OFFICIAL_TOTAL = 442
OFFICIAL_SUBJECTS = 68


def _part(dataset: str, load):
    """One source dataset's index; its messages name the composite's config keys
    (``dataset.index.casme2_sheet``), not the single-dataset ones (``dataset.index.sheet``)."""
    try:
        return load()
    except DatasetError as e:
        text = re.sub(r"dataset\.index\.(sheet|root)\b", lambda m: f"dataset.index.{dataset}_{m.group(1)}", str(e))
        raise DatasetError(text) from None


def load_megc2019(
    casme2_root: str | Path | None,
    samm_root: str | Path | None,
    smic_root: str | Path | None,
    casme2_sheet: str | Path | None = None,
    samm_sheet: str | Path | None = None,
    casme2_variant: str = "cropped",
    smic_apex: str = "midpoint",
    smic_apex_file: str | Path | None = None,
    smic_apex_fallback: str | None = None,
    smic_spot_stride: int = 1,
    on_bad_clip: str = "error",
    check_frames: bool = True,
) -> ClipIndex:
    """The MEGC2019 composite from the user's three copies (order: CASME II, SMIC, SAMM,
    as in the official list). Warns when the result differs from the official counts."""
    for root, title, env, key in (
        (casme2_root, "CASME II", "MEFNET_CASME2_ROOT", "dataset.index.casme2_root"),
        (samm_root, "SAMM", "MEFNET_SAMM_ROOT", "dataset.index.samm_root"),
        (smic_root, "SMIC-HS", "MEFNET_SMIC_ROOT", "dataset.index.smic_root"),
    ):
        require_root(root, dataset_title=title, env_var=env, config_key=key)
    parts = [
        _part("casme2", lambda: load_casme2(
            casme2_root, sheet=casme2_sheet, variant=casme2_variant, protocol="megc2019",
            on_bad_clip=on_bad_clip, check_frames=check_frames,
        )),
        _part("smic", lambda: load_smic(
            smic_root, protocol="megc2019", apex=smic_apex, apex_file=smic_apex_file,
            apex_fallback=smic_apex_fallback, spot_stride=smic_spot_stride,
            on_bad_clip=on_bad_clip, check_frames=check_frames,
        )),
        _part("samm", lambda: load_samm(
            samm_root, sheet=samm_sheet, protocol="megc2019", on_bad_clip=on_bad_clip,
            check_frames=check_frames,
        )),
    ]
    for part in parts:
        if part.class_names != list(MEGC2019_CLASSES):
            raise DatasetError(f"{part.name}: class order {part.class_names} is not {MEGC2019_CLASSES}")
    index = ClipIndex(
        [c for part in parts for c in part.clips],
        list(MEGC2019_CLASSES),
        name="megc2019",
        skipped=[s for part in parts for s in part.skipped],
    )
    differences = official_count_differences(index)
    if differences:
        warnings.warn(
            "MEGC2019 composite differs from the official 442-clip list: "
            + "; ".join(differences)
            + ". Results will not be comparable with published MEGC2019 numbers.",
            UserWarning,
            stacklevel=2,
        )
    return index


def official_count_differences(index: ClipIndex) -> list[str]:
    """Where per-dataset class counts differ from the official table (empty when equal)."""
    differences = []
    for dataset, expected in OFFICIAL_COUNTS.items():
        got = Counter(c.label for c in index if c.dataset == dataset)
        got_counts = tuple(got.get(k, 0) for k in range(len(MEGC2019_CLASSES)))
        if got_counts != expected:
            differences.append(f"{dataset} has {got_counts} clips per class, official {expected}")
    if len(index.subjects) != OFFICIAL_SUBJECTS:
        differences.append(f"{len(index.subjects)} subjects, official {OFFICIAL_SUBJECTS}")
    return differences


def read_megc2019_ground_truth(path: str | Path) -> list[tuple[str, str, str, int]]:
    """The official list as (dataset, subject, clip, label) in the index's id spelling.

    The file has no header (``dataset,subject,clip,label``, label 0/1/2); a header line,
    if present, is skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"MEGC2019 ground-truth file {path} does not exist")
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        for row_no, row in enumerate(csv.reader(f), start=1):
            if not row or (row_no == 1 and row[0].strip().lower() == "dataset"):
                continue
            if len(row) < 4:
                raise DatasetError(f"{path}, row {row_no}: expected dataset,subject,clip,label, got {row}")
            dataset, subject, clip, label = (v.strip() for v in row[:4])
            try:
                rows.append(
                    (dataset, canonical_subject(dataset, subject), canonical_clip(dataset, clip), int(label))
                )
            except ValueError as e:
                raise DatasetError(f"{path}, row {row_no}: {e}") from None
    return rows
