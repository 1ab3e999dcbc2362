"""SAMM adapter on the real coding sheet (header on row 14) with a generated frame tree."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mefnet.datasets.clip_index import DatasetError, frame_path
from mefnet.datasets.samm import load_samm, read_samm_sheet
from tests.dataset_trees import SAMM_SHEET, build_samm_tree, edited_workbook

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def samm_root(annotations: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_samm_tree(tmp_path_factory.mktemp("samm"), annotations)


@pytest.fixture(scope="module")
def sheet(annotations: Path) -> Path:
    return annotations / SAMM_SHEET


def test_the_micro_sheet_has_159_clips_of_29_subjects_below_a_13_row_preamble(sheet):
    table = read_samm_sheet(sheet)
    assert len(table) == 159 and table["subject"].nunique() == 29
    assert table["excel_row"].iloc[0] == 15  # header on row 14
    assert Counter(table["emotion"]) == {
        "Anger": 57, "Other": 26, "Happiness": 26, "Surprise": 15, "Contempt": 12,
        "Disgust": 9, "Fear": 8, "Sadness": 6,
    }
    assert len(read_samm_sheet(sheet, header_row=14)) == 159


def test_megc2019_protocol_gives_the_official_133_samm_clips(samm_root, sheet):
    index = load_samm(samm_root, sheet)
    assert len(index) == 133 and len(index.subjects) == 28
    assert index.class_counts() == [92, 26, 15]
    assert index.skipped == []
    assert index[0].subject == "006" and index[0].clip == "006_1_2"


def test_five_class_protocol_gives_136_clips(samm_root, sheet):
    index = load_samm(samm_root, sheet, protocol="five_class")
    assert index.class_names == ["anger", "contempt", "happiness", "surprise", "other"]
    assert index.class_counts() == [57, 12, 26, 15, 26] and len(index) == 136


def test_all_and_objective_protocols_keep_all_159_clips(samm_root, sheet):
    assert len(load_samm(samm_root, sheet, protocol="all")) == 159
    objective = load_samm(samm_root, sheet, protocol="objective")
    assert objective.class_counts() == [24, 13, 20, 8, 3, 7, 84]


def test_frames_with_other_names_are_resolved_by_number(tmp_path, sheet):
    clip_dir = tmp_path / "SAMM" / "006" / "006_1_2"
    clip_dir.mkdir(parents=True)
    for n in range(5562, 5633):
        (clip_dir / f"img_{n}.jpg").write_bytes(b"")
    index = load_samm(tmp_path, sheet, check_frames=False)
    assert frame_path(index[0], 5588).name == "img_5588.jpg"


def test_missing_root_says_which_variable_to_set():
    with pytest.raises(DatasetError, match="MEFNET_SAMM_ROOT"):
        load_samm(None)


def test_missing_sheet_says_what_was_looked_for(tmp_path):
    with pytest.raises(DatasetError, match="SAMM_Micro_FACS_Codes_v2.xlsx"):
        load_samm(tmp_path)


def test_wrong_sheet_name_lists_the_sheets(samm_root, sheet):
    with pytest.raises(DatasetError, match=r"no sheet named 'MICRO'.*MICRO_ONLY"):
        load_samm(samm_root, sheet, sheet_name="MICRO")


def test_renamed_column_is_named(samm_root, sheet, tmp_path):
    bad = edited_workbook(sheet, tmp_path / "renamed.xlsx", {"J14": "Emotion guess"})
    with pytest.raises(DatasetError, match=r"renamed.xlsx.*no header row with the columns.*'Estimated Emotion'"):
        load_samm(samm_root, bad)
    with pytest.raises(DatasetError, match=r"row 14 \(header\): column\(s\) 'Estimated Emotion' not found"):
        load_samm(samm_root, bad, header_row=14)


def test_unknown_emotion_names_the_row(samm_root, sheet, tmp_path):
    bad = edited_workbook(sheet, tmp_path / "emotion.xlsx", {"J15": "Angry"})
    with pytest.raises(DatasetError, match=r"row 15 \(clip samm/006/006_1_2\): unknown emotion 'Angry'"):
        load_samm(samm_root, bad)


def test_missing_frames_are_named_and_skip_keeps_the_rest(samm_root, sheet):
    frames = sorted((samm_root / "SAMM" / "006" / "006_1_2").iterdir())
    moved = frames[-1].rename(frames[-1].with_suffix(".bak"))
    try:
        with pytest.raises(DatasetError, match=r"row 15 \(clip samm/006/006_1_2\): frames 5562..5632 .*missing \(5632\)"):
            load_samm(samm_root, sheet)
        with pytest.warns(UserWarning, match="006_1_2"):
            index = load_samm(samm_root, sheet, on_bad_clip="skip")
        assert len(index) == 132 and len(index.skipped) == 1
    finally:
        moved.rename(frames[-1])
