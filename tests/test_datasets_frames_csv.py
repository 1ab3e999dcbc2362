"""dataset=frames_csv: a generated frame tree (and a video) plus a CSV, every bad input, a LOSO."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from mefnet.config import compose
from mefnet.datasets.bad_clips import BadClipWarning
from mefnet.datasets.clip_index import DatasetError
from mefnet.datasets.frames_csv import load_frames_csv
from tests.dataset_trees import write_frames

HEADER = "subject,clip,onset,apex,offset,label"


def make_tree(root: Path, lines: list[str], header: str = HEADER,
              frames: dict[str, range] | None = None) -> Path:
    """root/clips.csv and root/<subject>/<clip>/img<N>.jpg for each (subject/clip: range)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "clips.csv").write_text("\n".join([header, *lines]) + "\n")
    for rel, numbers in (frames or {}).items():
        write_frames(root / rel, numbers, "img{}.jpg")
    return root


GOOD = ["p1,c1,10,12,14,happy", "p1,c2,1,2,3,sad", "p2,c1,5,6,8,happy"]
GOOD_FRAMES = {"p1/c1": range(10, 15), "p1/c2": range(1, 4), "p2/c1": range(5, 9)}


def test_a_frame_tree_and_csv_load_into_the_clip_index(tmp_path):
    index = load_frames_csv(make_tree(tmp_path / "d", GOOD, frames=GOOD_FRAMES))
    assert index.class_names == ["happy", "sad"] and len(index) == 3
    assert index.subjects == ["frames_csv/p1", "frames_csv/p2"]
    c = index[0]
    assert (c.subject, c.clip, c.onset, c.apex, c.offset, c.label_name, c.apex_source) == (
        "p1", "c1", 10, 12, 14, "happy", "annotated")
    assert c.frame_dir == str(tmp_path / "d" / "p1" / "c1")


def test_casme_style_headers_class_order_and_class_map(tmp_path):
    root = make_tree(tmp_path / "d", ["1,EP01,10,12,14,Disgust", "2,EP02,1,2,3,happiness",
                                      "2,EP03,1,2,3,others"],
                     header="Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Estimated Emotion",
                     frames={"1/EP01": range(10, 15), "2/EP02": range(1, 4), "2/EP03": range(1, 4)})
    index = load_frames_csv(root, class_names=["negative", "positive"], dataset_name="mine",
                            class_map={"disgust": "negative", "happiness": "positive", "others": None})
    assert [c.label_name for c in index] == ["negative", "positive"]
    assert index.subjects == ["mine/1", "mine/2"]
    assert any("others" in s and "class_map" in s for s in index.skipped)


def test_a_blank_apex_is_spotted_or_the_midpoint(tmp_path):
    root = make_tree(tmp_path / "d", ["p1,c1,0,,4,a", "p2,c1,0,,4,b"])
    for subject, peak in (("p1", 3), ("p2", 1)):
        folder = root / subject / "c1"
        folder.mkdir(parents=True)
        for n in range(5):
            img = np.full((16, 16), 100, np.uint8)
            if n >= peak:
                img[4:12, 4:12] = 100 + (60 if n == peak else 20)
            cv2.imwrite(str(folder / f"f{n}.png"), img)
    spotted = load_frames_csv(root)
    assert [(c.apex, c.apex_source) for c in spotted] == [(3, "spotted"), (1, "spotted")]
    assert [c.apex for c in load_frames_csv(root, apex_fallback="midpoint")] == [2, 2]
    with pytest.raises(DatasetError, match=r"row 2 .*no apex given"):
        load_frames_csv(root, apex_fallback=None)


def test_a_video_clip_is_decoded_once_into_numbered_frames(tmp_path):
    root = make_tree(tmp_path / "d", ["p1,talk,2,4,6,a", "p2,c1,1,2,3,b"],
                     frames={"p2/c1": range(1, 4)})
    (root / "p1").mkdir()
    writer = cv2.VideoWriter(str(root / "p1" / "talk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 32))
    for n in range(9):
        writer.write(np.full((32, 32, 3), 20 * n, np.uint8))
    writer.release()
    out = tmp_path / "decoded"
    index = load_frames_csv(root, video_frames_dir=out)
    folder = Path(index[0].frame_dir)
    assert folder.parent == out and sorted(p.name for p in folder.glob("*.png")) == [
        f"frame{n}.png" for n in range(2, 7)]
    stamp = (folder / "frame4.png").stat().st_mtime_ns
    assert Path(load_frames_csv(root, video_frames_dir=out)[0].frame_dir) == folder
    assert (folder / "frame4.png").stat().st_mtime_ns == stamp  # reused, not decoded again
    (root / "clips.csv").write_text(HEADER + "\np1,talk,2,4,60,a\np2,c1,1,2,3,b\n")
    with pytest.raises(DatasetError, match=r"row 2 .*has 9 readable frames .*2\.\.60"):
        load_frames_csv(root, video_frames_dir=out)


BAD_ROWS = [
    ("p3,c3,10,20,14,happy", r"apex 20 is outside onset\.\.offset \(10\.\.14\)"),
    ("p3,c3,14,12,10,happy", r"onset 14 is after offset 10"),
    ("p3,c3,ten,12,14,happy", r"onset 'ten' / offset '14' are not frame numbers"),
    ("p3,c3,10,x,14,happy", r"apex 'x' is not a frame number"),
    ("p3,c3,10,12,16,happy", r"2 are missing \(15\.\.16\)"),
    ("p3,nofolder,10,12,14,happy", r"no frames found: expected a folder .*nofolder"),
    ("p3,../c3,10,12,14,happy", r"clip '\.\./c3' contains a path separator"),
    ("/abs/p3,c3,10,12,14,happy", r"subject '/abs/p3' contains a path separator"),
    ("..,c3,10,12,14,happy", r"subject '\.\.' starts with '\.'"),
    ("p3,c\\3,10,12,14,happy", r"clip 'c\\\\3' contains a path separator"),
    (",c3,10,12,14,happy", r"subject '' is empty"),
    ("p3,c\x013,10,12,14,happy", r"clip 'c\\x013' contains a control character"),
    ("p3," + "c" * 200 + ",10,12,14,happy", r"is 200 characters long \(at most 128\)"),
    ("p3,c3,10,12,14,", r"the label cell is blank"),
]


@pytest.mark.parametrize("row,message", BAD_ROWS)
def test_a_bad_row_is_an_error_naming_file_and_row_or_skipped_with_a_warning(tmp_path, row, message):
    root = make_tree(tmp_path / "d", [*GOOD, row], frames={**GOOD_FRAMES, "p3/c3": range(10, 15)})
    with pytest.raises(DatasetError, match=r"clips\.csv, row 5.*" + message):
        load_frames_csv(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = load_frames_csv(root, on_bad_clip="skip")
    assert len(index) == 3 and len(index.skipped) == 1
    assert any(issubclass(w.category, BadClipWarning) for w in caught)


def test_duplicates_unknown_classes_and_missing_columns_are_named(tmp_path):
    root = make_tree(tmp_path / "d", [*GOOD, "p1,c1,10,12,14,happy"], frames=GOOD_FRAMES)
    with pytest.raises(DatasetError, match=r"row 5 .*duplicate clip id, also in row 2"):
        load_frames_csv(root)
    root = make_tree(tmp_path / "e", [*GOOD, "p2,c2,5,6,8,angry"], frames={**GOOD_FRAMES, "p2/c2": range(5, 9)})
    with pytest.raises(DatasetError, match=r"row 5 .*label 'angry' is not one of the classes"):
        load_frames_csv(root, class_names=["happy", "sad"])
    with pytest.raises(DatasetError, match=r"class\(es\) \['surprise'\] have no clip"):
        load_frames_csv(make_tree(tmp_path / "f", GOOD, frames=GOOD_FRAMES), class_names=["happy", "sad", "surprise"])
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "clips.csv").write_text("subject,clip,onset,label\np1,c1,1,a\n")
    with pytest.raises(DatasetError, match=r"row 1 \(header\): column\(s\) \['offset'\] not found"):
        load_frames_csv(tmp_path / "g")
    with pytest.raises(DatasetError, match=r"clip list .*missing\.csv does not exist"):
        load_frames_csv(tmp_path / "g", csv_file="missing.csv")


def test_a_loso_run_on_a_generated_frame_tree_end_to_end(tmp_path):
    """mefnet-synth frames + its CASME-style annotations.csv, read as frames_csv, trained LOSO."""
    from mefnet.datasets.synthetic import SyntheticSpec, generate
    from mefnet.experiment.train import run

    root = generate(SyntheticSpec(seed=3, num_subjects=3, num_clips=15, frame_size=48,
                                  frames_per_clip=(5, 6)), tmp_path / "frames")
    # One clip loses its apex: it is spotted.
    table = list(csv.DictReader((root / "annotations.csv").open()))
    table[0]["ApexFrame"] = ""
    with (root / "my_clips.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    cfg = compose([
        "dataset=frames_csv", f"dataset.index.root={root}", "dataset.index.csv_file=my_clips.csv",
        "trainer.max_epochs=2", "preprocessing.n_jobs=1", "logger=none", "save_checkpoint=false",
        "save_model=false", f"paths.output_dir={tmp_path / 'outputs'}", f"paths.data_dir={tmp_path / 'data'}",
        "experiment_name=frames-csv-tiny",
    ])
    rows = run(cfg)
    exp = Path(cfg.experiment_dir)
    folds = sorted(p.parent.name for p in exp.glob("folds/frames_csv/*/fold.json"))
    assert folds == ["sub01", "sub02", "sub03"]
    predicted = []
    for path in exp.glob("folds/frames_csv/*/predictions.csv"):
        predicted += list(csv.DictReader(path.open()))
    assert len(predicted) == 15 and rows
    clips = list(csv.DictReader((exp / "clips.csv").open()))
    assert clips[0]["apex_source"] == "spotted"
    assert json.loads((exp / "experiment.json").read_text())["class_names"] == ["negative", "positive", "surprise"]


def test_a_clip_list_that_is_not_utf8_is_named_with_what_to_do(tmp_path):
    root = make_tree(tmp_path / "d", GOOD, frames=GOOD_FRAMES)
    (root / "clips.csv").write_bytes((root / "clips.csv").read_bytes().replace(b"happy", "héppy".encode("latin-1")))
    with pytest.raises(DatasetError, match=r"clips\.csv is not UTF-8 text \(byte 0xe9 .*save it as UTF-8"):
        load_frames_csv(root)
