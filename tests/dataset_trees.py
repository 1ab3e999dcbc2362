"""Generated frame trees laid out like users' copies, beside the real annotation sheets.

The sheets are the real ones (read from ../shared/realdata/annotations through the
``annotations`` fixture); the frames are tiny 8x8 JPEGs with the right names, written
only for onset..offset so building a whole dataset takes a second or two.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import openpyxl

from mefnet.datasets.casme2 import read_casme2_sheet
from mefnet.datasets.casme3 import read_casme3_sheet
from mefnet.datasets.samm import read_samm_sheet
from mefnet.datasets.sheet_io import as_frame_number
from mefnet.datasets.subject_ids import canonical_subject

_OK, _JPEG = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))
TINY_JPEG = _JPEG.tobytes()

CASME2_SHEET = "CASME2-coding-20140508.xlsx"
SAMM_SHEET = "SAMM_Micro_FACS_Codes_v2.xlsx"
CASME3_SHEET = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
MEGC2019_GT = "megc2019_combined_3class_gt.csv"
SMIC_APEX = "smic_apex_frames.csv"
SMIC_CLASS_FOLDERS = ("negative", "positive", "surprise")


def write_frames(folder: Path, numbers: Iterable[int], name: str) -> None:
    """Tiny frames ``name.format(n)`` for each number (e.g. ``reg_img{}.jpg``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        (folder / name.format(n)).write_bytes(TINY_JPEG)


def _span(onset: object, offset: object) -> range:
    a, b = as_frame_number(onset), as_frame_number(offset)
    return range(a, b + 1) if a is not None and b is not None and a <= b else range(0)


def build_casme2_tree(root: Path, annotations: Path, frames_folder: str = "Cropped") -> Path:
    """root/<frames_folder>/subNN/<clip>/reg_img<N>.jpg for every sheet row."""
    for _, row in read_casme2_sheet(annotations / CASME2_SHEET).iterrows():
        folder = root / frames_folder / canonical_subject("casme2", row["subject"]) / row["clip"]
        write_frames(folder, _span(row["onset"], row["offset"]), "reg_img{}.jpg")
    return root


def build_samm_tree(root: Path, annotations: Path) -> Path:
    """root/SAMM/006/006_1_2/006_05562.jpg for every sheet row."""
    for _, row in read_samm_sheet(annotations / SAMM_SHEET).iterrows():
        subject = canonical_subject("samm", row["subject"])
        write_frames(root / "SAMM" / subject / row["clip"], _span(row["onset"], row["offset"]),
                     subject + "_{:05d}.jpg")
    return root


def build_casme3_tree(root: Path, annotations: Path) -> Path:
    """root/spNO.1/b/color/175.jpg for every usable sheet row."""
    for _, row in read_casme3_sheet(annotations / CASME3_SHEET).iterrows():
        write_frames(root / row["subject"] / row["task"] / "color", _span(row["onset"], row["offset"]), "{}.jpg")
    return root


def smic_official_clips(annotations: Path) -> list[tuple[str, str, int]]:
    """(subject, clip, label) of the 164 SMIC clips of the official MEGC2019 list."""
    with (annotations / MEGC2019_GT).open() as f:
        return [(s, c, int(lab)) for d, s, c, lab in csv.reader(f) if d == "smic"]


def smic_apex_spans(annotations: Path) -> dict[str, tuple[int, int]]:
    """Disk clip name (``s1_ne_01``) -> SMIC-E onset..offset from the published apex file."""
    with (annotations / SMIC_APEX).open() as f:
        return {r["clip"]: (int(r["onset_frame"]), int(r["offset_frame"])) for r in csv.DictReader(f)}


def build_smic_tree(root: Path, annotations: Path) -> Path:
    """root/SMIC_all_cropped/HS/s1/micro/<class>/s1_ne_01/reg_image<N>.bmp for the 164 clips.

    SMIC-HS has no sheet, so the clips are those of the official list, on disk with the
    unpadded names SMIC uses. Frames carry the SMIC-E absolute numbers where the published
    apex file gives them (as in real copies), else 1..20.
    """
    spans = smic_apex_spans(annotations)
    hs = root / "SMIC_all_cropped" / "HS"
    for subject, clip, label in smic_official_clips(annotations):
        disk_subject = f"s{int(subject[1:])}"
        disk_clip = disk_subject + clip[len(subject):]
        onset, offset = spans.get(disk_clip, (1, 20))
        folder = hs / disk_subject / "micro" / SMIC_CLASS_FOLDERS[label] / disk_clip
        write_frames(folder, range(onset, offset + 1), "reg_image{}.bmp")
    (hs / "s1" / "non_micro" / "negative" / "s1_ne_99").mkdir(parents=True, exist_ok=True)
    return root


def edited_workbook(source: Path, target: Path, edits: dict[str, object], sheet: str | None = None) -> Path:
    """A copy of a real sheet with some cells changed (``{"E31": 400}``), for bad-input tests."""
    book = openpyxl.load_workbook(source)
    ws = book[sheet] if sheet else book.worksheets[0]
    for cell, value in edits.items():
        ws[cell] = value
    book.save(target)
    return target


def copy_rows_appended(source: Path, target: Path, row: int, sheet: str | None = None) -> Path:
    """A copy of a real sheet with row ``row`` repeated at the end (a duplicate clip id)."""
    book = openpyxl.load_workbook(source)
    ws = book[sheet] if sheet else book.worksheets[0]
    ws.append([c.value for c in ws[row]])
    book.save(target)
    return target
