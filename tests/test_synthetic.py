"""The built-in synthetic dataset: deterministic, imbalanced like MEGC2019, real files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from mefnet.datasets.clip_index import DatasetError
from mefnet.datasets.synthetic import (
    SyntheticSpec,
    class_counts_for,
    generate,
    load_synthetic,
    read_synthetic,
)

SMALL = dict(num_subjects=4, num_clips=20, frame_size=48, frames_per_clip=(5, 6))


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_the_same_bytes(tmp_path):
    spec = SyntheticSpec(seed=3, **SMALL)
    a, b = generate(spec, tmp_path / "a"), generate(spec, tmp_path / "b")
    assert _digest(a) == _digest(b)
    c = generate(SyntheticSpec(seed=4, **SMALL), tmp_path / "c")
    assert _digest(a) != _digest(c)


def test_class_proportions_follow_the_megc2019_composite():
    spec = SyntheticSpec()  # the defaults: 200 clips
    counts = class_counts_for(spec)
    assert sum(counts) == 200
    assert counts == [114, 50, 36]
    share = np.array(counts) / 200
    np.testing.assert_allclose(share, [0.57, 0.25, 0.18], atol=0.005)


def test_generated_index_has_every_subject_real_frames_and_exact_counts(tmp_path):
    index = load_synthetic(data_dir=tmp_path, seed=1, **SMALL)
    assert len(index) == 20 and len(index.subjects) == 4
    assert index.class_counts() == class_counts_for(SyntheticSpec(seed=1, **SMALL))
    clip = index[0]
    img = cv2.imread(str(Path(clip.frame_dir) / f"img{clip.apex}.png"))
    assert img.shape == (48, 48, 3)
    assert clip.onset < clip.apex < clip.offset


def test_the_apex_moves_the_face_and_the_onset_is_the_neutral_face(tmp_path):
    index = load_synthetic(data_dir=tmp_path, seed=2, difficulty=0.0, **{**SMALL, "frame_size": 96})
    clip = index[0]
    d = Path(clip.frame_dir)
    onset = cv2.imread(str(d / f"img{clip.onset}.png"), 0).astype(float)
    apex = cv2.imread(str(d / f"img{clip.apex}.png"), 0).astype(float)
    assert np.abs(apex - onset).mean() > 0.3  # motion is there ...
    assert np.abs(apex - onset).mean() < 10  # ... and it is subtle


def test_parameters_key_the_folder_and_an_existing_folder_is_never_overwritten(tmp_path):
    a = SyntheticSpec(seed=0, **SMALL)
    generate(a, tmp_path / "ds")
    with pytest.raises(DatasetError, match="generated with other parameters"):
        generate(SyntheticSpec(seed=9, **SMALL), tmp_path / "ds")
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="is not a synthetic dataset; refusing"):
        generate(a, other)
    assert (other / "notes.txt").read_text() == "keep me"


def test_an_empty_data_directory_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"data directory .*empty.* is empty or missing"):
        read_synthetic(tmp_path / "empty")


def test_a_missing_frame_file_names_the_clip_and_frame(tmp_path):
    root = generate(SyntheticSpec(seed=0, **SMALL), tmp_path / "ds")
    index = read_synthetic(root)
    clip = index[0]
    (Path(clip.frame_dir) / f"img{clip.apex}.png").unlink()
    with pytest.raises(DatasetError, match=rf"clip {clip.subject}/{clip.clip}\): frame {clip.apex} is missing"):
        read_synthetic(root)


def test_invalid_settings_are_named():
    with pytest.raises(DatasetError, match="num_clips .* must be at least num_subjects"):
        SyntheticSpec(num_subjects=10, num_clips=5)
    with pytest.raises(DatasetError, match="classes must be among"):
        SyntheticSpec(class_names=("negative", "anger", "surprise"))
