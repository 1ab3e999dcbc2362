"""CASME II adapter on the real coding sheet with a generated frame tree."""

from __future__ import annotations

import shutil
import warnings
from collections import Counter
from pathlib import Path

import pytest

from mefnet.datasets.casme2 import load_casme2, read_casme2_sheet
from mefnet.datasets.clip_index import DatasetError, frame_path
from tests.dataset_trees import CASME2_SHEET, build_casme2_tree, copy_rows_appended, edited_workbook

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def casme2_root(annotations: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_casme2_tree(tmp_path_factory.mktemp("casme2"), annotations)


@pytest.fixture(scope="module")
def sheet(annotations: Path) -> Path:
    return annotations / CASME2_SHEET


def test_the_coding_sheet_has_255_clips_of_26_subjects_with_the_documented_emotions(sheet):
    table = read_casme2_sheet(sheet)
    assert len(table) == 255
    assert table["subject"].nunique() == 26
    assert Counter(e.lower() for e in table["emotion"]) == {
        "others": 99, "disgust": 63, "happiness": 32, "repression": 27,
        "surprise": 25, "sadness": 7, "fear": 2,
    }
    assert table["excel_row"].tolist() == list(range(2, 257))  # row numbers as Excel shows them


def test_all_emotions_index_every_clip_but_the_one_without_apex(casme2_root, sheet):
    with pytest.warns(UserWarning, match=r"row 31 \(clip casme2/sub04/EP12_01f\): apex '/'"):
        index = load_casme2(casme2_root, sheet, protocol="all", on_bad_clip="skip")
    assert len(index) == 254 and len(index.subjects) == 26
    assert len(index.skipped) == 1 and "sub04/EP12_01f" in index.skipped[0]
    assert index.class_names == ["disgust", "fear", "happiness", "others", "repression", "sadness", "surprise"]


def test_megc2019_protocol_gives_the_official_145_casme2_clips(casme2_root, sheet):
    with pytest.warns(UserWarning, match="2 clip"):
        index = load_casme2(casme2_root, sheet, protocol="megc2019")
    assert len(index) == 145 and len(index.subjects) == 24
    assert index.class_names == ["negative", "positive", "surprise"]
    assert index.class_counts() == [88, 32, 25]
    dropped = " ".join(index.skipped)
    assert "sub04/EP12_01f" in dropped and "sub05/EP09_05f" in dropped
    kept = {c.clip_key for c in index}
    assert {"casme2/sub12/EP09_06", "casme2/sub25/EP18_04f"} <= kept  # apex == offset stays


def test_five_class_counts_of_this_sheet(casme2_root, sheet):
    # 246 sheet rows are happiness/disgust/repression/surprise/others; both apex defects
    # are disgust: 245 when only the missing apex is skipped, 244 with the MEGC2019 apex rule.
    with pytest.warns(UserWarning):
        skipped = load_casme2(casme2_root, sheet, protocol="five_class", on_bad_clip="skip")
    assert skipped.class_names == ["happiness", "disgust", "repression", "surprise", "others"]
    assert skipped.class_counts() == [32, 62, 27, 25, 99] and len(skipped) == 245
    with pytest.warns(UserWarning):
        ruled = load_casme2(casme2_root, sheet, protocol="five_class",
                            drop_clips_without_onset_apex_motion=True)
    assert ruled.class_counts() == [32, 61, 27, 25, 99] and len(ruled) == 244


def test_objective_classes_come_from_the_objective_sheet(casme2_root, sheet):
    with pytest.warns(UserWarning):
        index = load_casme2(casme2_root, sheet, protocol="objective", on_bad_clip="skip")
    assert index.class_names == ["I", "II", "III", "IV", "V", "VI", "VII"]
    # the sheet's 1..7 counts (25, 15, 99, 26, 20, 1, 69) less sub04/EP12_01f (class 3)
    assert index.class_counts() == [25, 15, 98, 26, 20, 1, 69]


def test_frames_are_found_by_number_in_raw_and_nested_cropped_copies(annotations, tmp_path, sheet):
    for folder, variant in (("CASME2_RAW_selected", "raw"), ("Cropped-updated/Cropped", "cropped")):
        root = tmp_path / variant
        clip_dir = root / folder / "sub01" / "EP02_01f"
        clip_dir.mkdir(parents=True)
        for n in range(46, 87):
            (clip_dir / f"img{n}.jpg").write_bytes(b"")
        with pytest.warns(UserWarning, match="left out"):
            index = load_casme2(root, sheet, variant=variant, check_frames=False)
        first = index[0]
        assert (first.clip_key, first.onset, first.apex, first.offset) == ("casme2/sub01/EP02_01f", 46, 59, 86)
        assert frame_path(first, 59).name == "img59.jpg"


# ---- bad input -----------------------------------------------------------------------

def test_missing_root_says_which_variable_to_set():
    with pytest.raises(DatasetError, match="MEFNET_CASME2_ROOT.*dataset.index.root"):
        load_casme2(None)


def test_root_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(DatasetError, match=r"CASME II root folder .*nowhere does not exist"):
        load_casme2(tmp_path / "nowhere")


def test_missing_sheet_says_what_was_looked_for(tmp_path):
    with pytest.raises(DatasetError, match=r"CASME2-coding-20140508.xlsx.*dataset.index.sheet"):
        load_casme2(tmp_path)
    with pytest.raises(DatasetError, match=r"sheet .*gone.xlsx does not exist"):
        load_casme2(tmp_path, tmp_path / "gone.xlsx")


def test_renamed_column_names_the_file_and_the_column(casme2_root, sheet, tmp_path):
    renamed = edited_workbook(sheet, tmp_path / "renamed.xlsx", {"E1": "Apex"})
    with pytest.raises(DatasetError, match=r"renamed.xlsx.*'ApexFrame'.*renamed"):
        load_casme2(casme2_root, renamed)


def test_clip_with_fewer_frames_than_the_sheet_says_is_named(casme2_root, sheet, tmp_path):
    root = tmp_path / "copy"
    (root / "Cropped").mkdir(parents=True)
    for subject in (casme2_root / "Cropped").iterdir():  # link the intact subjects, copy sub16
        if subject.name == "sub16":
            shutil.copytree(subject, root / "Cropped" / "sub16")
        else:
            (root / "Cropped" / subject.name).symlink_to(subject)
    for n in range(97, 111):  # the truncated copies of sub16/EP01_08 hold only 73..96
        (root / "Cropped" / "sub16" / "EP01_08" / f"reg_img{n}.jpg").unlink()
    with pytest.raises(DatasetError, match=r"row 138 \(clip casme2/sub16/EP01_08\): frames 73..110 .*14 are missing \(97..110\)"):
        load_casme2(root, sheet)
    with pytest.warns(UserWarning) as caught:
        index = load_casme2(root, sheet, on_bad_clip="skip")
    assert len(index) == 144
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("CASME II: skipping") and "sub16/EP01_08" in m for m in messages)
    assert any("3 clip(s) left out" in m for m in messages)  # summary: 2 apex-rule + 1 bad


def test_missing_clip_folder_is_named(tmp_path, sheet):
    (tmp_path / "Cropped" / "sub01").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"row 2 \(clip casme2/sub01/EP02_01f\): frame folder .* does not exist"):
        load_casme2(tmp_path, sheet)


def test_missing_apex_is_a_bad_clip_outside_megc2019(casme2_root, sheet):
    with pytest.raises(DatasetError, match=r"row 31 \(clip casme2/sub04/EP12_01f\): apex '/' is missing.*261..321"):
        load_casme2(casme2_root, sheet, protocol="all")


def test_apex_outside_the_clip_is_named(casme2_root, sheet, tmp_path):
    bad = edited_workbook(sheet, tmp_path / "apex.xlsx", {"E2": 200})
    with pytest.raises(DatasetError, match=r"row 2 \(clip casme2/sub01/EP02_01f\): apex 200 is outside onset..offset \(46..86\)"):
        load_casme2(casme2_root, bad)


def test_onset_after_offset_is_named(casme2_root, sheet, tmp_path):
    bad = edited_workbook(sheet, tmp_path / "order.xlsx", {"D2": 90})
    with pytest.raises(DatasetError, match=r"row 2 .*onset 90 is after offset 86"):
        load_casme2(casme2_root, bad)


def test_duplicate_clip_ids_name_both_rows(casme2_root, sheet, tmp_path):
    bad = copy_rows_appended(sheet, tmp_path / "dup.xlsx", 2)
    with pytest.raises(DatasetError, match=r"duplicate clip id.*sub01/EP02_01f in rows 2, 257"):
        load_casme2(casme2_root, bad)


def test_unknown_emotion_is_an_error_but_a_dropped_one_is_not(casme2_root, sheet, tmp_path):
    bad = edited_workbook(sheet, tmp_path / "emotion.xlsx", {"I2": "happyness"})
    with pytest.raises(DatasetError, match=r"row 2 \(clip casme2/sub01/EP02_01f\): unknown emotion 'happyness'"):
        load_casme2(casme2_root, bad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = load_casme2(casme2_root, sheet)  # 'others' rows: dropped by megc2019, no error
    assert all(c.label_name != "others" for c in index)


def test_a_class_left_empty_is_an_error(casme2_root, sheet, tmp_path):
    table = read_casme2_sheet(sheet)
    edits = {f"I{r}": "others" for r, e in zip(table["excel_row"], table["emotion"], strict=True) if e == "surprise"}
    bad = edited_workbook(sheet, tmp_path / "nosurprise.xlsx", edits)
    with pytest.raises(DatasetError, match=r"class\(es\) \['surprise'\] have no clip"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_casme2(casme2_root, bad)


def test_unknown_protocol_and_variant_list_the_choices(casme2_root, sheet):
    with pytest.raises(DatasetError, match=r"unknown protocol 'seven'.*megc2019"):
        load_casme2(casme2_root, sheet, protocol="seven")
    with pytest.raises(DatasetError, match=r"variant must be one of \['cropped', 'raw'\]"):
        load_casme2(casme2_root, sheet, variant="aligned")
    with pytest.raises(DatasetError, match=r"on_bad_clip must be one of"):
        load_casme2(casme2_root, sheet, on_bad_clip="ignore")
