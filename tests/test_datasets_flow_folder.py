"""Precomputed flow folders: the real megc2019_smic set and every way one can be wrong."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mefnet.datasets.clip_index import DatasetError
from mefnet.datasets.flow_folder import load_flow_folder, read_flow_map
from tests.conftest import missing_realdata


@pytest.fixture(scope="module")
def smic_flows(realdata: Path) -> Path:
    path = realdata / "flows" / "megc2019_smic"
    if not path.is_dir():
        missing_realdata(f"{path} is absent")
    return path


@pytest.mark.realdata
def test_the_smic_flow_folder_has_164_clips_of_16_subjects(smic_flows):
    index = load_flow_folder(smic_flows)
    assert len(index) == 164 and len(index.subjects) == 16
    assert index.class_counts() == [70, 51, 43]
    first = index[0]
    assert (first.subject, first.clip, first.onset, first.apex, first.offset, first.frame_dir) == (
        "s01", "s01_ne_01", 0, 0, 0, "",
    )
    assert first.flow_path.endswith("smic/s01/s01_ne_01.png")


@pytest.mark.realdata
def test_png_channels_are_u_v_strain_in_rgb_order_scaled_to_one(smic_flows):
    path = smic_flows / "smic" / "s01" / "s01_ne_01.png"
    flow = read_flow_map(path)
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    assert flow.dtype == np.float32 and flow.shape == (3, 28, 28)
    assert np.array_equal(flow[0], rgb[..., 0]) and np.array_equal(flow[2], rgb[..., 2])
    assert flow.min() == 0.0 and flow.max() == 1.0


def make_folder(root: Path, lines: list[str], files: dict[str, object]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, np.ndarray) and rel.endswith(".npy"):
            np.save(path, content)
        else:
            Image.fromarray(content).save(path)
    return root


RGB = np.zeros((4, 4, 3), np.uint8)
RGB[..., 0] = 255  # pure u


def three_classes(prefix: str = "") -> list[str]:
    return [f"{prefix}samm,6,006_1_{k},{k}" for k in range(3)]


def test_labels_without_header_and_class_names_are_accepted(tmp_path):
    files = {f"samm/6/006_1_{k}.png": RGB for k in range(3)}
    root = make_folder(tmp_path, ["samm,6,006_1_0,negative", "samm,6,006_1_1,1", "samm,6,006_1_2,Surprise"], files)
    index = load_flow_folder(root)
    assert [c.label for c in index] == [0, 1, 2]
    assert index[0].subject == "006"  # canonical SAMM spelling, files found under '6'
    assert read_flow_map(index[0].flow_path)[0].min() == 1.0


def test_npy_maps_are_returned_as_stored(tmp_path):
    data = np.random.default_rng(0).normal(size=(3, 5, 6)).astype(np.float32)
    root = make_folder(tmp_path, ["dataset,subject,clip,label", *three_classes()],
                       {f"samm/6/006_1_{k}.npy": data for k in range(3)})
    index = load_flow_folder(root)
    assert np.array_equal(read_flow_map(index[2].flow_path), data)


def test_wrong_npy_shape_is_an_error(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((5, 6, 3), np.float32))
    with pytest.raises(DatasetError, match=r"bad.npy has shape \(5, 6, 3\); expected \(3, H, W\)"):
        read_flow_map(tmp_path / "bad.npy")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(DatasetError, match=r"grey.png has shape \(4, 4\); expected a 3-channel"):
        read_flow_map(tmp_path / "grey.png")
    with pytest.raises(DatasetError, match=r"absent.png does not exist"):
        read_flow_map(tmp_path / "absent.png")


def test_missing_flow_file_and_unknown_label_name_the_row(tmp_path):
    root = make_folder(tmp_path / "a", three_classes(), {"samm/6/006_1_0.png": RGB, "samm/6/006_1_1.png": RGB})
    with pytest.raises(DatasetError, match=r"labels.csv, row 3 \(clip samm/006/006_1_2\): flow map .*006_1_2.png \(or .npy\) does not exist"):
        load_flow_folder(root)
    files = {f"samm/6/006_1_{k}.png": RGB for k in range(3)}
    root = make_folder(tmp_path / "b", [*three_classes(), "samm,6,006_1_0b,happy"], files | {"samm/6/006_1_0b.png": RGB})
    with pytest.raises(DatasetError, match=r"row 4 \(clip samm/006/006_1_0b\): unknown label 'happy'"):
        load_flow_folder(root)
    with pytest.warns(UserWarning, match="happy"):
        assert len(load_flow_folder(root, on_bad_clip="skip")) == 3


def test_missing_labels_and_root_are_explained(tmp_path):
    with pytest.raises(DatasetError, match="MEFNET_FLOW_ROOT"):
        load_flow_folder(None)
    with pytest.raises(DatasetError, match=r"labels.csv does not exist"):
        load_flow_folder(tmp_path)


def test_labels_with_a_byte_order_mark_and_crlf_line_ends_are_read(tmp_path):
    files = {f"samm/6/006_1_{k}.png": RGB for k in range(3)}
    root = make_folder(tmp_path, [], files)
    (root / "labels.csv").write_bytes(b"\xef\xbb\xbfdataset,subject,clip,label\r\n"
                                      + "\r\n".join(three_classes()).encode() + b"\r\n")
    index = load_flow_folder(root)
    assert [c.clip for c in index] == ["006_1_0", "006_1_1", "006_1_2"] and [c.label for c in index] == [0, 1, 2]


def test_an_empty_labels_file_says_it_is_empty(tmp_path):
    root = make_folder(tmp_path / "a", [], {})
    (root / "labels.csv").write_text("")
    with pytest.raises(DatasetError, match=r"labels.csv is empty; expected one row per clip"):
        load_flow_folder(root)
    root = make_folder(tmp_path / "b", ["dataset,subject,clip,label"], {})
    with pytest.raises(DatasetError, match=r"labels.csv has a header but no clips"):
        load_flow_folder(root)


def test_a_non_finite_or_unreadable_map_names_its_file_and_is_skipped_under_skip(tmp_path):
    holes = np.zeros((3, 4, 4), np.float32)
    holes[1, 2, 2] = np.nan
    files = {f"samm/6/006_1_{k}.png": RGB for k in range(3)}
    files |= {"samm/6/006_1_3.npy": holes}
    root = make_folder(tmp_path, [*three_classes(), "samm,6,006_1_3,0", "samm,6,006_1_4,0"], files)
    (root / "samm" / "6" / "006_1_4.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"row 4 \(clip samm/006/006_1_3\): flow map .*006_1_3.npy holds 1 NaN"):
        load_flow_folder(root)
    with pytest.raises(DatasetError, match=r"006_1_3.npy holds 1 NaN or infinite value"):
        read_flow_map(root / "samm" / "6" / "006_1_3.npy")
    with pytest.warns(UserWarning) as caught:
        index = load_flow_folder(root, on_bad_clip="skip")
    assert [c.clip for c in index] == ["006_1_0", "006_1_1", "006_1_2"]
    text = " ".join(str(w.message) for w in caught)
    assert "006_1_3.npy holds 1 NaN" in text and "006_1_4.png cannot be read as an image" in text


def test_a_map_of_another_size_is_a_warning_naming_it(tmp_path):
    big = np.zeros((8, 8, 3), np.uint8)
    files = {f"samm/6/006_1_{k}.png": RGB for k in range(3)} | {"samm/6/006_1_3.png": big}
    root = make_folder(tmp_path, [*three_classes(), "samm,6,006_1_3,1"], files)
    with pytest.warns(UserWarning, match=r"1 flow map\(s\) are 8x8 while 3 are 4x4: .*006_1_3.png"):
        assert len(load_flow_folder(root)) == 4


BAD_IDS = [  # (dataset, subject, clip) cells, the column named, what is wrong
    ("samm", "../../../../../X", "c", "subject", "path separator"),
    ("samm", "/tmp/abs", "c", "subject", "path separator"),
    ("samm", "..", "c", "subject", "starts with '.'"),
    ("..", "6", "c", "dataset", "starts with '.'"),
    ("samm", "6", "a\\b", "clip", "path separator"),
    ("samm", "6", "c\x01d", "clip", "control character"),
    ("data\x7fset", "6", "c", "dataset", "control character"),
    ("samm", "6", "c" * 129, "clip", "129 characters long"),
]


@pytest.mark.parametrize("dataset,subject,clip,column,problem", BAD_IDS)
def test_an_id_that_is_not_a_plain_name_is_refused_naming_file_row_and_cell(tmp_path, dataset, subject, clip,
                                                                           column, problem):
    files = {f"samm/6/006_1_{k}.png": RGB for k in range(3)}
    root = make_folder(tmp_path / "f", [*three_classes(), f"{dataset},{subject},{clip},0"], files)
    with pytest.raises(DatasetError, match=rf"labels.csv, row 4: {column} .*{re.escape(problem)}"):
        load_flow_folder(root)
    with pytest.warns(UserWarning, match=column):
        assert len(load_flow_folder(root, on_bad_clip="skip")) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # nothing was written beside it


def test_an_empty_id_cell_is_refused(tmp_path):
    files = {f"samm/6/006_1_{k}.png": RGB for k in range(3)}
    root = make_folder(tmp_path, [*three_classes(), "samm, ,c,0"], files)
    with pytest.raises(DatasetError, match=r"labels.csv, row 4: expected 4 values"):
        load_flow_folder(root)
