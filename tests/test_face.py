"""Face cropping: one geometry from the onset frame, applied unchanged to the apex frame.

Real-data tests use the three two-frame GIFs (SAMM, SMIC, CASME II faces on a light
canvas) in ../shared/realdata and skip where it or dlib is absent; the geometry tests
use synthetic landmarks and run everywhere.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mefnet.datasets.clip_index import DatasetError
from mefnet.preprocessing import face
from mefnet.preprocessing.face import (
    LEFT_EYE,
    RIGHT_EYE,
    FaceCropper,
    FaceModelsMissingError,
    FaceNotFoundError,
    detect_face_haar,
)
from tests.conftest import missing_realdata

CANVAS = 240  # grey level of the light canvas the GIF faces sit on


# ----------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def gif_pairs(realdata: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Real onset/apex pairs as grey uint8 arrays, keyed by GIF name."""
    folder = realdata / "frames" / "onset_apex_pairs"
    paths = sorted(folder.glob("*.gif"))
    if not paths:
        missing_realdata(f"no onset/apex GIFs in {folder}")
    pairs = {}
    for path in paths:
        with Image.open(path) as gif:
            frames = []
            for i in range(2):
                gif.seek(i)
                frames.append(np.asarray(gif.convert("L")).copy())
        pairs[path.stem] = (frames[0], frames[1])
    return pairs


@pytest.fixture(scope="session")
def dlib_models() -> None:
    """Skips where the face extra (dlib + its landmark model) is not installed."""
    pytest.importorskip("dlib", reason="dlib not installed: pip install 'mefnet[face]'")
    try:
        face.landmark_model_path()
    except FaceModelsMissingError as err:
        pytest.skip(str(err))


def photo_region(image: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the pixels that are not the flat light canvas."""
    ys, xs = np.nonzero(np.abs(image.astype(int) - CANVAS) > 3)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def overlap_fraction(box: tuple[int, int, int], region: tuple[int, int, int, int]) -> float:
    """Fraction of the square box (left, top, side) that lies inside region."""
    left, top, side = box
    w = max(0, min(left + side, region[2]) - max(left, region[0]))
    h = max(0, min(top + side, region[3]) - max(top, region[1]))
    return w * h / side**2


def synthetic_landmarks(cx: float = 100, cy: float = 110, size: float = 80, tilt_deg: float = 0.0):
    """68 plausible landmarks: a face of ``size`` px centred at (cx, cy), tilted by tilt_deg."""
    rng = np.random.default_rng(0)
    pts = np.empty((68, 2))
    pts[:] = rng.uniform(-0.5, 0.5, (68, 2)) * size
    pts[0], pts[16] = (-0.5 * size, -0.2 * size), (0.5 * size, -0.2 * size)  # jaw ends
    pts[8] = (0, 0.5 * size)  # chin
    hexagon = np.array([(-1, 0), (-0.5, -0.4), (0.5, -0.4), (1, 0), (0.5, 0.4), (-0.5, 0.4)])
    pts[LEFT_EYE] = (-0.22 * size, -0.15 * size) + hexagon * 0.1 * size
    pts[RIGHT_EYE] = (0.22 * size, -0.15 * size) + hexagon * 0.1 * size
    t = np.radians(tilt_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return pts @ rot.T + (cx, cy)


@pytest.fixture
def fake_landmarks(monkeypatch: pytest.MonkeyPatch):
    """Replace dlib by fixed landmarks, so geometry tests need no model files."""

    def install(landmarks: np.ndarray | None) -> None:
        monkeypatch.setattr(face, "detect_landmarks", lambda image, upsample=1: landmarks)

    return install


def noise_image(h: int = 220, w: int = 200, colour: bool = False, seed: int = 1) -> np.ndarray:
    shape = (h, w, 3) if colour else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# --------------------------------------------------------- real onset/apex pairs


@pytest.mark.usefixtures("dlib_models")
def test_landmarks_found_on_both_frames_of_every_real_pair(gif_pairs):
    for name, (onset, apex) in gif_pairs.items():
        on, ap = face.detect_landmarks(onset), face.detect_landmarks(apex)
        assert on is not None and ap is not None, f"{name}: no face found"
        assert on.shape == (68, 2)
        # A micro-expression moves landmarks by a few pixels at most.
        assert np.abs(on - ap).mean() < 3.0, name


@pytest.mark.usefixtures("dlib_models")
def test_haar_finds_the_same_face_as_the_landmarks(gif_pairs):
    for name, (onset, apex) in gif_pairs.items():
        landmarks = face.detect_landmarks(onset)
        lx0, ly0 = landmarks.min(axis=0)
        lx1, ly1 = landmarks.max(axis=0)
        for frame in (onset, apex):
            x, y, w, h = detect_face_haar(frame)
            # Haar's box reaches higher (forehead) but is centred on the same face.
            assert abs((x + w / 2) - (lx0 + lx1) / 2) < 0.1 * w, name
            assert abs((y + h / 2) - (ly0 + ly1) / 2) < 0.25 * h, name
            assert 0.7 < w / (lx1 - lx0) < 1.4, name


@pytest.mark.usefixtures("dlib_models")
@pytest.mark.parametrize("method", ["landmarks", "haar"])
def test_crop_lies_on_the_face_of_every_real_pair(gif_pairs, method):
    # The GIF photos are cut tight around the face (cheeks and chin partly cut off), so a
    # face crop with margin covers the whole photo and some canvas around it.
    cropper = FaceCropper(method=method, margin=0.1, align=False)
    for name, (onset, apex) in gif_pairs.items():
        x0, y0, x1, y1 = region = photo_region(onset)
        geometry = cropper.locate(onset, name)
        left, top, side = geometry.box
        h, w = onset.shape
        assert 0.45 * h < side < 0.9 * h, f"{name}: implausible face size {side} in a {w}x{h} image"
        # Centred on the photo (central half of it), covering nearly all of it, and mostly
        # photo rather than canvas.
        cx, cy = left + side / 2, top + side / 2
        assert abs(cx - (x0 + x1) / 2) < (x1 - x0) / 4 and abs(cy - (y0 + y1) / 2) < (y1 - y0) / 4
        photo_area = (x1 - x0) * (y1 - y0)
        assert overlap_fraction(geometry.box, region) * side**2 > 0.9 * photo_area, name
        assert overlap_fraction(geometry.box, region) > 0.5, f"{name}: {geometry.box} vs {region}"
        for crop in cropper.crop_pair(onset, apex, name):
            assert crop.shape == (side, side)
            assert crop.mean() < CANVAS - 40 and crop.std() > 25, name
        if method == "landmarks":
            assert (geometry.landmarks >= 0).all() and (geometry.landmarks < side).all(), name
            # Eyes, nose and mouth lie well inside the photo (jaw line and brow tips may
            # be extrapolated past its cut edge).
            inner = face.detect_landmarks(onset)[27:]
            assert ((inner >= (x0 + 5, y0 + 5)) & (inner < (x1 - 5, y1 - 5))).all(), name


@pytest.mark.usefixtures("dlib_models")
def test_apex_is_cropped_with_the_onset_geometry_not_its_own(gif_pairs):
    cropper = FaceCropper()
    for name, (onset, apex) in gif_pairs.items():
        geometry = cropper.locate(onset, name)
        _, apex_crop = cropper.crop_pair(onset, apex, name)
        np.testing.assert_array_equal(apex_crop, geometry.apply(apex))


@pytest.mark.usefixtures("dlib_models")
@pytest.mark.parametrize("method", ["landmarks", "haar"])
def test_crop_adds_no_motion_to_a_translated_face(gif_pairs, method):
    onset, _ = next(iter(gif_pairs.values()))
    shift = np.float32([[1, 0, 7], [0, 1, -5]])
    moved = cv2.warpAffine(onset, shift, onset.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
    # The same (translated) image as onset and apex: the crops must be identical.
    a, b = FaceCropper(method=method, align=True).crop_pair(moved, moved.copy(), "moved")
    np.testing.assert_array_equal(a, b)
    # Apex = onset shifted by (3, 2) px: the crops differ by exactly that shift, no more.
    apex = np.roll(onset, (2, 3), axis=(0, 1))
    a, b = FaceCropper(method=method, align=False).crop_pair(onset, apex, "shifted")
    np.testing.assert_array_equal(b[2:, 3:], a[:-2, :-3])


@pytest.mark.usefixtures("dlib_models")
def test_real_bgr_pair_comes_back_bgr_and_eyes_level(gif_pairs):
    onset, apex = next(iter(gif_pairs.values()))
    bgr = [cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) for f in (onset, apex)]
    cropper = FaceCropper(align=True, output_size=112)
    a, b = cropper.crop_pair(*bgr, "bgr")
    assert a.shape == b.shape == (112, 112, 3) and a.dtype == np.uint8
    landmarks = cropper.locate(bgr[0]).landmarks
    left, right = landmarks[LEFT_EYE].mean(axis=0), landmarks[RIGHT_EYE].mean(axis=0)
    assert abs(left[1] - right[1]) < 1e-6


@pytest.mark.usefixtures("dlib_models")
def test_blank_frame_raises_face_not_found_naming_clip_and_method():
    blank = np.full((240, 320), 128, np.uint8)
    with pytest.raises(FaceNotFoundError, match=r"casme2/sub01/EP02_01f.*'landmarks'.*haar"):
        FaceCropper(method="landmarks").crop_pair(blank, blank, "casme2/sub01/EP02_01f")


# ------------------------------------------------------- geometry, no model files


def test_blank_frame_raises_face_not_found_with_haar():
    blank = np.full((240, 320, 3), 128, np.uint8)
    with pytest.raises(FaceNotFoundError, match=r"samm/006/006_1_2.*'haar'.*none") as err:
        FaceCropper(method="haar").crop_pair(blank, blank, "samm/006/006_1_2")
    assert isinstance(err.value, DatasetError)


@pytest.mark.parametrize("colour", [False, True])
def test_method_none_is_the_identity(colour):
    onset, apex = noise_image(colour=colour), noise_image(colour=colour, seed=2)
    a, b = FaceCropper(method="none").crop_pair(onset, apex, "x")
    assert a is onset and b is apex


@pytest.mark.parametrize("colour", [False, True])
def test_unrotated_crop_is_an_exact_pixel_copy_of_the_box(fake_landmarks, colour):
    image = noise_image(colour=colour)
    fake_landmarks(synthetic_landmarks())
    cropper = FaceCropper(align=False, margin=0.1)
    left, top, side = cropper.locate(image).box
    a, b = cropper.crop_pair(image, image, "x")
    assert a.shape == ((side, side, 3) if colour else (side, side))
    np.testing.assert_array_equal(a, image[top : top + side, left : left + side])
    np.testing.assert_array_equal(a, b)


def test_align_levels_the_eyes_of_a_tilted_face(fake_landmarks):
    fake_landmarks(synthetic_landmarks(tilt_deg=12.0))
    geometry = FaceCropper(align=True).locate(noise_image())
    assert geometry.angle == pytest.approx(12.0)
    left = geometry.landmarks[LEFT_EYE].mean(axis=0)
    right = geometry.landmarks[RIGHT_EYE].mean(axis=0)
    assert left[1] == pytest.approx(right[1])
    assert left[0] < right[0]


def test_box_beyond_the_image_is_padded_not_refused(fake_landmarks):
    image = noise_image()
    fake_landmarks(synthetic_landmarks(cx=10, cy=200))  # face half outside, bottom-left
    cropper = FaceCropper(align=False, margin=0.2)
    left, top, side = cropper.locate(image).box
    assert left < 0 and top + side > image.shape[0]
    a, _ = cropper.crop_pair(image, image, "edge")
    assert a.shape == (side, side)
    # Replicated border: the padded columns repeat the image's first column.
    np.testing.assert_array_equal(a[: image.shape[0] - top, 0], image[top:, 0])
    np.testing.assert_array_equal(a[: image.shape[0] - top, -left - 1], image[top:, 0])


@pytest.mark.parametrize("colour", [False, True])
def test_mask_eyes_changes_the_eye_regions_only_on_both_frames(fake_landmarks, colour):
    onset, apex = noise_image(colour=colour), noise_image(colour=colour, seed=2)
    fake_landmarks(synthetic_landmarks(tilt_deg=5.0))
    plain = FaceCropper(align=True)
    masked = FaceCropper(align=True, mask_eyes=True)
    geometry = masked.locate(onset)
    inside = np.zeros(onset.shape[:2], bool)[: geometry.side, : geometry.side]
    boxes = masked.eye_boxes(geometry)
    for x0, y0, x1, y1 in boxes:
        inside[y0:y1, x0:x1] = True
    assert 0 < inside.mean() < 0.25
    for before, after in zip(
        plain.crop_pair(onset, apex), masked.crop_pair(onset, apex), strict=True
    ):
        np.testing.assert_array_equal(after[~inside], before[~inside])
        assert (after[inside] != before[inside]).any()
    masked_onset, masked_apex = masked.crop_pair(onset, apex)
    # One neutral fill on both frames: the eyes contribute no flow at all.
    np.testing.assert_array_equal(masked_onset[inside], masked_apex[inside])
    assert len(np.unique(masked_onset[inside].reshape(-1, 3 if colour else 1), axis=0)) == 1
    # The masked eyes are the eye landmarks' surroundings, not far away.
    for (x0, y0, x1, y1), eye in zip(boxes, (LEFT_EYE, RIGHT_EYE), strict=True):
        cx, cy = geometry.landmarks[eye].mean(axis=0)
        assert x0 < cx < x1 and y0 < cy < y1


def test_mask_eyes_without_landmarks_is_a_clear_error():
    with pytest.raises(ValueError, match="mask_eyes.*'haar'"):
        FaceCropper(method="haar", mask_eyes=True)


@pytest.mark.parametrize(
    "kwargs", [{"method": "mtcnn"}, {"margin": -0.1}, {"upsample": -1}, {"output_size": 0}]
)
def test_bad_options_are_refused(kwargs):
    with pytest.raises(ValueError):
        FaceCropper(**kwargs)


def test_frames_of_different_shape_or_dtype_are_refused():
    with pytest.raises(DatasetError, match="clip c1.*differ"):
        FaceCropper(method="none").crop_pair(noise_image(), noise_image(h=100), "c1")
    with pytest.raises(DatasetError, match="clip c2.*uint8"):
        FaceCropper(method="none").crop_pair(noise_image().astype(float), noise_image(), "c2")


def test_describe_names_every_parameter_and_is_json():
    cropper = FaceCropper(method="haar", margin=0.2, align=False, output_size=128)
    described = cropper.describe()
    assert json.loads(json.dumps(described)) == described
    assert {"method", "margin", "align", "mask_eyes", "upsample", "output_size", "version"} <= set(
        described
    )
    assert described != FaceCropper().describe()
    # Plain parameters only, so it travels to data-loader workers.
    assert pickle.loads(pickle.dumps(cropper)) == cropper


def test_missing_face_extra_tells_how_to_install(monkeypatch):
    monkeypatch.setattr(face.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FaceModelsMissingError, match=r"mefnet\[face\]"):
        face.landmark_model_path()


def test_locating_the_model_files_does_not_import_pkg_resources():
    code = (
        "import sys\n"
        "import mefnet.preprocessing.face as f\n"
        "try:\n"
        "    f.landmark_model_path()\n"
        "except f.FaceModelsMissingError:\n"
        "    pass\n"
        "assert 'pkg_resources' not in sys.modules, 'pkg_resources was imported'\n"
        "assert 'face_recognition_models' not in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
