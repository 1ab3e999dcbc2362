"""Apex choice for clips without an apex annotation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mefnet.datasets.apex import midpoint_apex, motion_from_onset, read_apex_file, spot_apex
from mefnet.datasets.clip_index import DatasetError, list_frames


def moving_clip(folder: Path, strengths: dict[int, int]) -> dict[int, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n, strength in strengths.items():
        image = np.full((40, 40), 90, np.uint8) + rng.integers(0, 3, (40, 40), dtype=np.uint8)
        image[10:30, 10:30] += np.uint8(strength)
        cv2.imwrite(str(folder / f"img{n}.jpg"), image)
    return list_frames(folder)


def test_midpoint_is_the_middle_frame_rounded_down():
    assert midpoint_apex(10, 20) == 15 and midpoint_apex(10, 21) == 15 and midpoint_apex(5, 5) == 5
    with pytest.raises(DatasetError, match="onset 9 is after offset 3"):
        midpoint_apex(9, 3)


def test_spotting_finds_the_frame_furthest_from_the_onset(tmp_path):
    frames = moving_clip(tmp_path, {1: 0, 2: 10, 3: 25, 4: 60, 5: 30, 6: 5})
    assert spot_apex(frames, 1, 6) == 4
    assert spot_apex(frames, 1, 6, stride=2) == 5  # examines 3, 5 and the offset 6
    assert set(motion_from_onset(frames, 1, 6, stride=2)) == {3, 5, 6}


def test_a_clip_without_motion_gets_its_midpoint(tmp_path):
    frames = moving_clip(tmp_path, {n: 0 for n in range(1, 8)})
    for n in range(2, 8):  # identical copies of the onset frame
        frames[n].write_bytes(frames[1].read_bytes())
    assert spot_apex(frames, 1, 7) == 4


def test_spotting_names_missing_frames(tmp_path):
    frames = moving_clip(tmp_path, {1: 0, 2: 10, 4: 30})
    with pytest.raises(DatasetError, match=r"frame\(s\) 3 missing"):
        spot_apex(frames, 1, 4)


@pytest.mark.realdata
def test_spotting_on_real_casme2_frames_stays_inside_the_clip(realdata):
    frames = list_frames(realdata / "frames" / "casme2_sequence")
    motion = motion_from_onset(frames, 1, 10)
    assert spot_apex(frames, 1, 10) == max(motion, key=motion.get)
    assert 2 <= spot_apex(frames, 1, 10) <= 10


@pytest.mark.realdata
def test_the_published_smic_apex_file_has_157_rows_on_smic_e_frame_numbers(annotations):
    records = read_apex_file(annotations / "smic_apex_frames.csv")
    assert len(records) == 157
    first = records[0]
    assert (first.clip, first.subject, first.onset, first.apex, first.offset, first.row) == (
        "s20_ne_01", "20", 17581039, 17581046, 17581055, 2,
    )
    assert all(r.onset <= r.apex <= r.offset for r in records)


def test_apex_file_errors_name_file_and_row(tmp_path):
    bad = tmp_path / "apex.csv"
    bad.write_text("clip,apex_frame\ns1_ne_01,12\ns1_ne_02,twelve\n")
    with pytest.raises(DatasetError, match=r"apex.csv, row 3: apex_frame 'twelve' is not a frame number"):
        read_apex_file(bad)
    bad.write_text("clip,apex_frame\ns1_ne_01,12\ns1_ne_01,13\n")
    with pytest.raises(DatasetError, match=r"row 3: clip s1_ne_01 is listed twice \(rows 2 and 3\)"):
        read_apex_file(bad)
