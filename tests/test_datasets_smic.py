"""SMIC-HS adapter: class folders, MEGC2019 ids, and the three apex sources."""

from __future__ import annotations

import shutil
import warnings
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from mefnet.datasets.clip_index import DatasetError
from mefnet.datasets.smic import load_smic
from tests.dataset_trees import SMIC_APEX, build_smic_tree, write_frames

pytestmark = pytest.mark.realdata

MISSING_FROM_APEX_FILE = {
    "s01_ne_02", "s02_sur_05", "s03_ne_03", "s03_ne_20", "s04_ne_05", "s04_ne_06", "s09_sur_02",
}


def one_clip_per_class(hs: Path, skip: str) -> None:
    """Minimal clips of the classes a single-clip test does not use: every class needs one."""
    for name, short in (("negative", "ne"), ("positive", "po"), ("surprise", "sur")):
        if name != skip:
            write_frames(hs / "s99" / "micro" / name / f"s99_{short}_01", range(1, 4), "reg_image{}.bmp")


@pytest.fixture(scope="module")
def smic_root(annotations: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_smic_tree(tmp_path_factory.mktemp("smic"), annotations)


def test_micro_folders_give_164_clips_of_16_subjects_in_megc2019_ids(smic_root):
    index = load_smic(smic_root)
    assert len(index) == 164 and len(index.subjects) == 16
    assert index.class_counts() == [70, 51, 43]
    assert index[0].subject == "s01" and index[0].clip == "s01_ne_01"
    assert index[0].frame_dir.endswith("HS/s1/micro/negative/s1_ne_01")
    assert {c.apex_source for c in index} == {"midpoint"}
    assert all(c.apex == (c.onset + c.offset) // 2 for c in index)


def test_apex_file_maps_smic_e_frame_numbers_onto_clips(smic_root, annotations):
    with pytest.raises(DatasetError, match=r"clip smic/s01/s01_ne_02 .*not listed in the apex file"):
        load_smic(smic_root, apex="file", apex_file=annotations / SMIC_APEX)
    index = load_smic(smic_root, apex="file", apex_file=annotations / SMIC_APEX, apex_fallback="midpoint")
    by_clip = {c.clip: c for c in index}
    assert Counter(c.apex_source for c in index) == {"file": 157, "midpoint": 7}
    assert {k for k, c in by_clip.items() if c.apex_source == "midpoint"} == MISSING_FROM_APEX_FILE
    # s20_ne_01: onset 17581039, apex 17581046, offset 17581055 in the file
    assert (by_clip["s20_ne_01"].onset, by_clip["s20_ne_01"].apex) == (17581039, 17581046)


def test_apex_file_on_clips_numbered_from_one_keeps_the_offset_from_onset(tmp_path, annotations):
    write_frames(tmp_path / "HS" / "s20" / "micro" / "negative" / "s20_ne_01", range(1, 18), "image{:03d}.jpg")
    one_clip_per_class(tmp_path / "HS", skip="negative")
    index = load_smic(tmp_path, apex="file", apex_file=annotations / SMIC_APEX, apex_fallback="midpoint")
    clip = next(c for c in index if c.clip == "s20_ne_01")
    assert (clip.onset, clip.apex, clip.offset, clip.apex_source) == (1, 8, 17, "file")  # 17581046 - 17581039 + 1


def test_apex_file_that_does_not_fit_the_clip_is_named(tmp_path, annotations):
    write_frames(tmp_path / "HS" / "s20" / "micro" / "negative" / "s20_ne_01", range(1, 11), "image{}.jpg")
    one_clip_per_class(tmp_path / "HS", skip="negative")
    with pytest.raises(DatasetError, match=r"s20_ne_01.*apex file row 2 gives .*17 frames.*folder holds frames 1..10"):
        load_smic(tmp_path, apex="file", apex_file=annotations / SMIC_APEX)


def test_spotted_apex_is_the_frame_that_moved_most(tmp_path):
    folder = tmp_path / "HS" / "s3" / "micro" / "positive" / "s3_po_01"
    folder.mkdir(parents=True)
    for n in range(10, 21):
        image = np.full((32, 32), 100, np.uint8)
        image[8:24, 8:24] += np.uint8(10 * min(n - 10, 4) if n != 17 else 90)  # 17 moves most
        cv2.imwrite(str(folder / f"reg_image{n}.bmp"), image)
    one_clip_per_class(tmp_path / "HS", skip="positive")
    index = load_smic(tmp_path, apex="spotted", protocol="all")
    clip = next(c for c in index if c.clip == "s03_po_01")
    assert (clip.subject, clip.apex, clip.apex_source) == ("s03", 17, "spotted")


def test_missing_root_and_bad_apex_choice_are_explained(smic_root):
    with pytest.raises(DatasetError, match="MEFNET_SMIC_ROOT"):
        load_smic(None)
    with pytest.raises(DatasetError, match=r"apex must be one of \('midpoint', 'spotted', 'file'\)"):
        load_smic(smic_root, apex="peak")
    with pytest.raises(DatasetError, match="apex: file needs apex_file"):
        load_smic(smic_root, apex="file")
    with pytest.raises(DatasetError, match=r"apex file .*nothing.csv does not exist"):
        load_smic(smic_root, apex="file", apex_file=smic_root / "nothing.csv")


def test_apex_file_without_apex_column_is_named(smic_root, tmp_path):
    bad = tmp_path / "apex.csv"
    bad.write_text("clip,peak\ns1_ne_01,3\n")
    with pytest.raises(DatasetError, match=r"apex.csv, row 1 \(header\): column\(s\) \['apex_frame'\] not found"):
        load_smic(smic_root, apex="file", apex_file=bad)


def test_unknown_class_folder_is_an_error(tmp_path):
    write_frames(tmp_path / "HS" / "s1" / "micro" / "happy" / "s1_po_01", range(1, 5), "a{}.bmp")
    one_clip_per_class(tmp_path / "HS", skip="")
    with pytest.raises(DatasetError, match=r"class folder .*happy: unknown emotion 'happy'"):
        load_smic(tmp_path)


def test_gap_in_frames_and_duplicate_ids_are_bad_clips(tmp_path):
    hs = tmp_path / "HS"
    write_frames(hs / "s1" / "micro" / "negative" / "s1_ne_01", [1, 2, 3, 7, 8], "a{}.bmp")
    with pytest.raises(DatasetError, match=r"s01_ne_01 .*3 are missing \(4..6\)"):
        load_smic(tmp_path)
    write_frames(hs / "s1" / "micro" / "positive" / "s01_ne_01", [1, 2, 3], "a{}.bmp")
    write_frames(hs / "s1" / "micro" / "surprise" / "s1_sur_01", [1, 2, 3], "a{}.bmp")
    with pytest.raises(DatasetError, match=r"duplicate clip id"):
        load_smic(tmp_path, check_frames=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DatasetError, match=r"class\(es\) \['negative', 'positive'\] have no clip"):
            load_smic(tmp_path, on_bad_clip="skip")
    assert any("s01_ne_01" in str(w.message) for w in caught)


def test_empty_clip_folder_is_named(tmp_path, smic_root):
    root = tmp_path / "copy"
    shutil.copytree(smic_root / "SMIC_all_cropped" / "HS" / "s2", root / "HS" / "s2")
    empty = root / "HS" / "s2" / "micro" / "positive" / "s2_po_01"
    for f in empty.iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"s02_po_01 .*holds no numbered images"):
        load_smic(root)
