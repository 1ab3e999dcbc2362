"""Offline face detection, alignment and cropping of onset/apex frame pairs.

Optical flow between onset and apex is only meaningful if the two frames are cropped
*identically*: a crop box re-detected on the apex frame jitters by a pixel or two, and
that jitter is as large as the micro-expression itself. :class:`FaceCropper` therefore
locates the face on the **onset** frame only, derives one geometry (rotation + square
box) from it, and applies exactly that geometry to both frames.

Methods (``FaceCropper.method``):

``landmarks``
    dlib's HOG face detector plus its 68-point shape predictor (the ``face`` extra:
    ``pip install 'mefnet[face]'``). The box is the square around the landmarks plus
    ``margin``; ``align`` levels the eye centres (points 36-41 and 42-47).
``haar``
    OpenCV's frontal-face Haar cascade, shipped with opencv itself, so it needs no extra
    install. The box is the square around the detected face rectangle plus ``margin``.
    ``align`` uses OpenCV's eye cascade inside the upper half of the face; where it does
    not find exactly one eye in each half of the face, the crop stays unrotated (the
    choice is deterministic per onset frame, and is logged). ``mask_eyes`` is not
    available: without landmarks the eye regions are not known precisely enough.
``none``
    Frames are returned unchanged: for datasets shipped as cropped faces (CASME II
    ``Cropped``, SMIC ``cropped``).

Model files are read from disk only (never downloaded at run time) and loaded once per
process. The ``face_recognition_models`` package is located with
:func:`importlib.util.find_spec` and never imported, because importing it imports the
removed ``pkg_resources``.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import asdict, dataclass, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from mefnet.datasets.clip_index import DatasetError

log = logging.getLogger(__name__)

FaceMethod = Literal["none", "landmarks", "haar"]
METHODS: tuple[str, ...] = ("none", "landmarks", "haar")

#: Bumped whenever the crop geometry changes, so that caches keyed on
#: :meth:`FaceCropper.describe` are invalidated.
FACE_CROP_VERSION = 1

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
HAAR_FACE_CASCADE = "haarcascade_frontalface_default.xml"
HAAR_EYE_CASCADE = "haarcascade_eye.xml"

# 68-point (iBUG 300-W) indices of the eyes. 36-41 is the eye on the image's left
# (the subject's right eye), 42-47 the eye on the image's right.
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)

_INSTALL_HINT = (
    "install the face extra: pip install 'mefnet[face]' (dlib-bin, face-recognition-models)"
)


class FaceNotFoundError(DatasetError):
    """No face could be located on a clip's onset frame."""


class FaceModelsMissingError(ImportError):
    """dlib or its landmark model file is not installed."""


# --------------------------------------------------------------------------- models


def landmark_model_path() -> Path:
    """Path of dlib's 68-point landmark model inside the installed face_recognition_models.

    The package is found without importing it (its ``__init__`` imports ``pkg_resources``).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        raise FaceModelsMissingError(
            f"the package face_recognition_models is not installed; {_INSTALL_HINT}"
        )
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        candidate = Path(root) / "models" / LANDMARK_MODEL
        if candidate.is_file():
            return candidate
    raise FaceModelsMissingError(
        f"{LANDMARK_MODEL} not found under {', '.join(roots) or 'face_recognition_models'}; "
        f"the installation looks incomplete, reinstall it: {_INSTALL_HINT}"
    )


@lru_cache(maxsize=1)
def _dlib_models() -> tuple[Any, Any]:
    """dlib's face detector and landmark predictor, loaded once per process."""
    try:
        import dlib
    except ImportError as err:
        raise FaceModelsMissingError(
            f"face method 'landmarks' needs dlib; {_INSTALL_HINT}"
        ) from err
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(landmark_model_path()))


@cache
def _haar_cascade(name: str) -> cv2.CascadeClassifier:
    """An OpenCV Haar cascade shipped in ``cv2.data``, loaded once per process."""
    path = Path(cv2.data.haarcascades) / name
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise FaceModelsMissingError(
            f"OpenCV Haar cascade {path} could not be loaded; reinstall opencv-contrib-python"
        )
    return cascade


# ----------------------------------------------------------------------- detection


def _to_grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def detect_landmarks(image: np.ndarray, upsample: int = 1) -> np.ndarray | None:
    """The 68 landmarks (x, y) of the largest face in a grey or BGR uint8 image, or None.

    ``upsample`` is dlib's number of image doublings before detection: 1 finds faces down
    to about 40 px, 0 is four times faster and enough for faces over about 80 px.
    """
    detector, predictor = _dlib_models()
    grey = _to_grey(image)
    faces = detector(grey, upsample)
    if len(faces) == 0:
        return None
    face = max(faces, key=lambda r: r.width() * r.height())
    shape = predictor(grey, face)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def detect_face_haar(image: np.ndarray, min_size: int = 30) -> tuple[int, int, int, int] | None:
    """The largest frontal face (x, y, w, h) found by OpenCV's Haar cascade, or None."""
    faces = _haar_cascade(HAAR_FACE_CASCADE).detectMultiScale(
        _to_grey(image), scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size)
    )
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
    return int(x), int(y), int(w), int(h)


def _haar_eye_centres(
    grey: np.ndarray, face: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Centres of the two eyes inside a Haar face box, or None if not exactly one per side."""
    x, y, w, h = face
    upper = grey[y : y + h // 2, x : x + w]
    eyes = _haar_cascade(HAAR_EYE_CASCADE).detectMultiScale(
        upper, scaleFactor=1.1, minNeighbors=5, minSize=(max(w // 10, 5),) * 2
    )
    left = [e for e in eyes if e[0] + e[2] / 2 < w / 2]
    right = [e for e in eyes if e[0] + e[2] / 2 >= w / 2]
    if len(left) != 1 or len(right) != 1:
        return None
    (lx, ly, lw, lh), (rx, ry, rw, rh) = left[0], right[0]
    return (
        np.array([x + lx + lw / 2, y + ly + lh / 2]),
        np.array([x + rx + rw / 2, y + ry + rh / 2]),
    )


# ------------------------------------------------------------------------ geometry


def square_box(x0: float, y0: float, x1: float, y1: float, margin: float) -> tuple[int, int, int]:
    """The integer square (left, top, side) centred on a rectangle, grown by ``margin``.

    ``margin`` is a fraction of the rectangle's longer side added on *each* side, so 0.1
    gives a square 1.2 times the longer side. Integer corners keep an unrotated crop an
    exact pixel copy (no interpolation).
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    side = max(1, int(round(max(x1 - x0, y1 - y0) * (1 + 2 * margin))))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop_box_from_landmarks(landmarks: np.ndarray, margin: float) -> tuple[int, int, int]:
    """The square crop (left, top, side) around a set of (x, y) landmarks plus ``margin``."""
    pts = np.asarray(landmarks, dtype=np.float64)
    return square_box(*pts.min(axis=0), *pts.max(axis=0), margin)


def eye_level_angle(landmarks: np.ndarray) -> float:
    """The rotation (degrees, OpenCV convention) that makes the 68-point eye centres level."""
    left = landmarks[LEFT_EYE].mean(axis=0)
    right = landmarks[RIGHT_EYE].mean(axis=0)
    return _angle_between(left, right)


def _angle_between(left: np.ndarray, right: np.ndarray) -> float:
    dx, dy = right - left
    return float(math.degrees(math.atan2(dy, dx)))


def _transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


@dataclass(frozen=True)
class CropGeometry:
    """One onset-derived crop, applied unchanged to every frame of the clip.

    ``matrix`` maps source pixel coordinates to crop coordinates (rotation, then the
    shift of the box's corner to the origin); the crop is ``side`` x ``side`` source
    pixels, resized to ``output_size`` when that differs.
    """

    matrix: np.ndarray
    side: int
    output_size: int
    angle: float
    box: tuple[int, int, int]
    """(left, top, side) in the rotated source frame; in the image itself when angle == 0."""
    landmarks: np.ndarray | None = None
    """Onset landmarks in crop coordinates (None for the haar method)."""

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Crop one frame; outside the image the border is replicated rather than failing."""
        if self.angle == 0.0:
            left, top, side = self.box
            crop = _padded_slice(image, left, top, side)
        else:
            crop = cv2.warpAffine(
                image,
                self.matrix,
                (self.side, self.side),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
        if self.output_size != self.side:
            interp = cv2.INTER_AREA if self.output_size < self.side else cv2.INTER_LINEAR
            crop = cv2.resize(crop, (self.output_size, self.output_size), interpolation=interp)
        return crop

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Source (x, y) points in output-crop coordinates."""
        return _transform(points, self.matrix) * (self.output_size / self.side)


def _padded_slice(image: np.ndarray, left: int, top: int, side: int) -> np.ndarray:
    """An exact pixel copy of a square, replicating the border where it leaves the image."""
    h, w = image.shape[:2]
    pad_top, pad_left = max(0, -top), max(0, -left)
    pad_bottom, pad_right = max(0, top + side - h), max(0, left + side - w)
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(h, top + side), min(w, left + side)
    if y1 <= y0 or x1 <= x0:
        raise DatasetError(f"crop box {(left, top, side)} lies entirely outside the {w}x{h} image")
    crop = image[y0:y1, x0:x1]
    if pad_top or pad_left or pad_bottom or pad_right:
        crop = cv2.copyMakeBorder(
            crop, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE
        )
    return np.ascontiguousarray(crop)


def _geometry(
    angle: float,
    centre: np.ndarray,
    box_of: Any,
    output_size: int | None,
    landmarks: np.ndarray | None,
) -> CropGeometry:
    """Assemble the geometry: rotate about ``centre``, then box the rotated points."""
    rotation = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)
    left, top, side = box_of(rotation)
    matrix = rotation.copy()
    matrix[:, 2] -= (left, top)
    geometry = CropGeometry(
        matrix=matrix,
        side=side,
        output_size=output_size or side,
        angle=angle,
        box=(left, top, side),
    )
    if landmarks is not None:
        geometry = replace(geometry, landmarks=geometry.to_crop(landmarks))
    return geometry


# ------------------------------------------------------------------------- cropper


@dataclass(frozen=True)
class FaceCropper:
    """Crops an onset/apex pair with one geometry located on the onset frame.

    The instance holds only plain parameters (models live in a per-process cache), so it
    pickles cheaply into data-loader workers, and :meth:`describe` can key a cache.
    """

    method: FaceMethod = "landmarks"
    margin: float = 0.1
    """Fraction of the face box's longer side added on each side of the square crop."""
    align: bool = True
    """Rotate so the eyes are level (see the module docstring for the haar method)."""
    mask_eyes: bool = False
    """Fill both eye regions with one neutral value on both frames (blinks are motion
    unrelated to the expression). Landmarks method only."""
    eye_mask_pad: float = 0.25
    """Padding around each eye's landmark box, as a fraction of that eye's width. 0.25
    covers the lids of a blink but stops short of the brows, which carry AU1/2/4."""
    eye_fill: float | None = None
    """Grey level of the eye mask; None uses the mean of the onset crop, which is neutral
    for the flow and for intensity normalisation alike."""
    upsample: int = 1
    """dlib detector upsampling: 1 finds faces from about 40 px, 0 is 4x faster."""
    output_size: int | None = None
    """Resize the square crop to this many pixels; None keeps the native resolution."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"face method must be one of {', '.join(METHODS)}, got {self.method!r}"
            )
        if self.margin < 0:
            raise ValueError(f"face margin must be >= 0, got {self.margin}")
        if self.mask_eyes and self.method != "landmarks":
            raise ValueError(
                f"mask_eyes needs eye landmarks, which face method {self.method!r} does not provide; "
                "use method='landmarks' or set mask_eyes=false"
            )
        if self.eye_mask_pad < 0:
            raise ValueError(f"eye_mask_pad must be >= 0, got {self.eye_mask_pad}")
        if int(self.upsample) != self.upsample or self.upsample < 0:
            raise ValueError(f"upsample must be a non-negative integer, got {self.upsample}")
        if self.output_size is not None and self.output_size < 1:
            raise ValueError(f"output_size must be positive or None, got {self.output_size}")

    def describe(self) -> dict[str, Any]:
        """Every parameter that changes the output, plus the algorithm version (a cache key)."""
        return {**asdict(self), "version": FACE_CROP_VERSION}

    # -------------------------------------------------------------- locate

    def locate(self, onset: np.ndarray, clip_key: str = "") -> CropGeometry | None:
        """The crop geometry of a clip, from its onset frame (None for method 'none')."""
        _check_image(onset, "onset", clip_key)
        if self.method == "none":
            return None
        if self.method == "landmarks":
            return self._locate_landmarks(onset, clip_key)
        return self._locate_haar(onset, clip_key)

    def _not_found(self, image: np.ndarray, clip_key: str) -> FaceNotFoundError:
        where = f"clip {clip_key}" if clip_key else "the given frame"
        h, w = image.shape[:2]
        hints = {  # config keys of mefnet-train (per source dataset in a composite: preprocessing.face.<dataset>)
            "landmarks": "try preprocessing.face_options.upsample=2 for small faces, preprocessing.face=haar, "
            "or preprocessing.face=none if the dataset is already cropped",
            "haar": "try preprocessing.face=landmarks, or preprocessing.face=none if the dataset is already cropped",
        }
        return FaceNotFoundError(
            f"no face found on the onset frame ({w}x{h}) of {where} with face method "
            f"{self.method!r}; {hints[self.method]}"
        )

    def _locate_landmarks(self, onset: np.ndarray, clip_key: str) -> CropGeometry:
        landmarks = detect_landmarks(onset, self.upsample)
        if landmarks is None:
            raise self._not_found(onset, clip_key)
        angle = eye_level_angle(landmarks) if self.align else 0.0
        centre = (landmarks[LEFT_EYE].mean(axis=0) + landmarks[RIGHT_EYE].mean(axis=0)) / 2

        def box_of(rotation: np.ndarray) -> tuple[int, int, int]:
            return crop_box_from_landmarks(_transform(landmarks, rotation), self.margin)

        return _geometry(angle, centre, box_of, self.output_size, landmarks)

    def _locate_haar(self, onset: np.ndarray, clip_key: str) -> CropGeometry:
        face = detect_face_haar(onset)
        if face is None:
            raise self._not_found(onset, clip_key)
        x, y, w, h = face
        angle = 0.0
        if self.align:
            eyes = _haar_eye_centres(_to_grey(onset), face)
            if eyes is None:
                log.info(
                    "face crop of %s: eyes not found by the Haar eye cascade, crop left unrotated",
                    clip_key,
                )
            else:
                angle = _angle_between(*eyes)
        # Rotating about the box centre leaves the (square) box where it is.
        centre = np.array([x + w / 2, y + h / 2])
        box = square_box(x, y, x + w, y + h, self.margin)
        return _geometry(angle, centre, lambda _rotation: box, self.output_size, None)

    # ---------------------------------------------------------------- crop

    def crop_pair(
        self, onset: np.ndarray, apex: np.ndarray, clip_key: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        """Crop onset and apex with the geometry found on the onset frame.

        Both frames get the same rotation and box, so the crop adds no motion of its own.
        Grey (H, W) or BGR (H, W, 3) uint8 in, the same kind out; method 'none' returns
        the inputs unchanged.
        """
        _check_image(apex, "apex", clip_key)
        if onset.shape != apex.shape:
            raise DatasetError(
                f"clip {clip_key or '?'}: onset frame {onset.shape} and apex frame {apex.shape} differ in shape"
            )
        geometry = self.locate(onset, clip_key)
        if geometry is None:
            return onset, apex
        onset_crop, apex_crop = geometry.apply(onset), geometry.apply(apex)
        if self.mask_eyes:
            onset_crop, apex_crop = self._mask_eyes(onset_crop, apex_crop, geometry)
        return onset_crop, apex_crop

    def eye_boxes(self, geometry: CropGeometry) -> list[tuple[int, int, int, int]]:
        """The masked eye rectangles (x0, y0, x1, y1, exclusive ends) in crop coordinates."""
        if geometry.landmarks is None:
            raise ValueError("eye boxes need landmarks (face method 'landmarks')")
        boxes = []
        for eye in (LEFT_EYE, RIGHT_EYE):
            pts = geometry.landmarks[eye]
            (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
            pad = self.eye_mask_pad * (x1 - x0)
            size = geometry.output_size
            boxes.append(
                (
                    max(0, int(math.floor(x0 - pad))),
                    max(0, int(math.floor(y0 - pad))),
                    min(size, int(math.ceil(x1 + pad)) + 1),
                    min(size, int(math.ceil(y1 + pad)) + 1),
                )
            )
        return boxes

    def _mask_eyes(
        self, onset: np.ndarray, apex: np.ndarray, geometry: CropGeometry
    ) -> tuple[np.ndarray, np.ndarray]:
        fill = self.eye_fill
        value: Any = onset.reshape(-1, *onset.shape[2:]).mean(axis=0) if fill is None else fill
        value = np.clip(np.round(value), 0, 255).astype(onset.dtype)
        onset, apex = onset.copy(), apex.copy()
        for x0, y0, x1, y1 in self.eye_boxes(geometry):
            onset[y0:y1, x0:x1] = value
            apex[y0:y1, x0:x1] = value
        return onset, apex


def _check_image(image: np.ndarray, name: str, clip_key: str) -> None:
    where = f"clip {clip_key}" if clip_key else "face crop"
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = getattr(image, "dtype", type(image).__name__)
        raise DatasetError(f"{where}: the {name} frame must be a uint8 numpy array, got {kind}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise DatasetError(
            f"{where}: the {name} frame must be grey (H, W) or BGR (H, W, 3), got shape {image.shape}"
        )
