"""The normalized clip index: folds by subject, frames by number, clear errors."""

from __future__ import annotations

import pytest

from mefnet.datasets.clip_index import Clip, ClipIndex, DatasetError, frame_path, list_frames

NAMES = ["negative", "positive", "surprise"]


def _index() -> ClipIndex:
    clips = [
        Clip("casme2", "sub01", "EP01", 0, "negative", 1, 3, 5),
        Clip("casme2", "sub01", "EP02", 1, "positive", 1, 3, 5),
        Clip("casme2", "sub02", "EP01", 2, "surprise", 1, 3, 5),
        Clip("samm", "006", "006_1_2", 0, "negative", 10, 12, 20),
        Clip("smic", "sub01", "s1_ne_01", 0, "negative", 1, 2, 3),
    ]
    return ClipIndex(clips, NAMES, name="toy")


def test_fold_leaves_exactly_one_subject_out():
    index = _index()
    train, test = index.fold_indices("casme2/sub01")
    assert test == [0, 1] and train == [2, 3, 4]
    assert index.fold_indices("006") == ([0, 1, 2, 4], [3])


def test_an_unknown_fold_subject_is_named_with_the_known_ones():
    with pytest.raises(DatasetError, match=r"fold 'sub99' is not a subject of toy \(4 subjects: casme2/sub01"):
        _index().resolve_subject("sub99")


def test_an_ambiguous_bare_subject_asks_for_dataset_slash_subject():
    with pytest.raises(DatasetError, match="'sub01' is ambiguous .* casme2/sub01, smic/sub01"):
        _index().resolve_subject("sub01")


def test_duplicate_clips_and_bad_labels_are_rejected():
    c = Clip("casme2", "sub01", "EP01", 0, "negative", 1, 3, 5)
    with pytest.raises(DatasetError, match="duplicate clip casme2/sub01/EP01"):
        ClipIndex([c, c], NAMES)
    with pytest.raises(DatasetError, match="expected onset <= apex <= offset"):
        ClipIndex([Clip("casme2", "sub01", "EP01", 0, "negative", 5, 3, 9)], NAMES)


def test_frames_are_found_by_number_not_by_exact_name(tmp_path):
    for name in ("reg_img46.jpg", "reg_img47.jpg", "006_05562.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    frames = list_frames(tmp_path)
    assert sorted(frames) == [46, 47, 5562]
    clip = Clip("casme2", "sub01", "EP01", 0, "negative", 46, 47, 48, frame_dir=str(tmp_path))
    assert frame_path(clip, 47, frames).name == "reg_img47.jpg"
    with pytest.raises(DatasetError, match=r"clip casme2/sub01/EP01: frame 48 not found in .* holds 46..5562"):
        frame_path(clip, 48, frames)


def test_csv_round_trip(tmp_path):
    index = _index()
    index.to_csv(tmp_path / "index.csv")
    again = ClipIndex.from_csv(tmp_path / "index.csv", NAMES)
    assert again.clips == index.clips
