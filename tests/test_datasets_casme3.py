"""CAS(ME)^3 part A adapter on the real label sheet with a generated frame tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from mefnet.datasets.casme3 import load_casme3, read_casme3_sheet
from mefnet.datasets.clip_index import DatasetError
from tests.dataset_trees import CASME3_SHEET, build_casme3_tree

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def casme3_root(annotations: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_casme3_tree(tmp_path_factory.mktemp("casme3"), annotations)


@pytest.fixture(scope="module")
def sheet(annotations: Path) -> Path:
    return annotations / CASME3_SHEET


def test_the_label_sheet_has_860_rows_of_94_subjects(sheet):
    table = read_casme3_sheet(sheet)
    assert len(table) == 860 and table["subject"].nunique() == 94


def test_the_four_unusable_rows_stop_the_default_load_with_their_row(casme3_root, sheet):
    with pytest.raises(DatasetError, match=r"row 130 \(clip casme3/spNO.149/d_112\): apex 83 is outside onset..offset \(112..358\)"):
        load_casme3(casme3_root, sheet)


def test_skip_indexes_856_clips_and_lists_the_four_bad_rows(casme3_root, sheet):
    with pytest.warns(UserWarning, match="4 clip"):
        index = load_casme3(casme3_root, sheet, on_bad_clip="skip")
    assert len(index) == 856 and len(index.subjects) == 94
    assert index.class_names == ["anger", "disgust", "fear", "happy", "others", "sad", "surprise"]
    assert index.class_counts() == [64, 250, 85, 55, 158, 57, 187]  # 'Others' x3 folded into others
    assert [s.split(", row ")[1].split(" ")[0] for s in index.skipped] == ["130", "751", "798", "800"]
    first = index[0]
    assert (first.clip_key, first.onset, first.apex, first.offset) == ("casme3/spNO.1/a_355", 355, 359, 360)
    assert first.frame_dir.endswith("spNO.1/a/color")


def test_missing_root_says_which_variable_to_set():
    with pytest.raises(DatasetError, match="MEFNET_CASME3_ROOT"):
        load_casme3(None)
