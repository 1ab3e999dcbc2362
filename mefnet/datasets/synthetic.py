"""A built-in synthetic micro-expression dataset, drawn procedurally and written as frames.

It exists so that the whole pipeline (frames -> face -> flow -> strain -> network -> LOSO
-> table) runs on a machine with no licensed data, with a task that is learnable but not
trivial. It is *not* a stand-in for real data when reporting results.

How a clip is made
------------------
* Each subject gets its own face, drawn from a subject seed: head ellipse, skin tone,
  multi-scale skin texture (flow needs texture to latch on to), eyes, brows, nose,
  mouth and cheeks at jittered positions, and an intensity multiplier (some people
  move more than others).
* Each clip is a short onset -> apex -> offset sequence. The apex deformation is a
  smooth displacement field: a sum of Gaussian bumps centred on facial landmarks, each
  moving its region the way a facial action unit (AU) does, with a peak of about 0.5 to
  3 px at the default 128 px frame size (scaled with the frame size):

  ========  =================================================================
  class     action units
  ========  =================================================================
  negative  AU4 (inner brows lowered and drawn together) plus AU15 (lip corners
            depressed) or AU9 (nose wrinkle, upper lip raised)
  positive  AU12 (lip corners pulled up and out) plus AU6 (cheeks raised)
  surprise  AU1+2 (inner and outer brows raised) plus AU26 (jaw drop)
  ========  =================================================================

  Frames are made by warping the neutral face with ``intensity(t) * field`` (a smooth
  rise to the apex and fall to the offset), so the true motion is known exactly.
* Nuisances, scaled by ``difficulty`` (0 = clean, 1 = hard): a small head translation
  and in-plane rotation drifting over the clip, illumination gain/offset drift, sensor
  noise, blinks and a random off-class facial twitch, and a per-clip intensity spread
  that makes some clips nearly invisible.
* Every clip's action units are written to the sheet (``Action Units``, e.g. ``4+15``,
  ``1+2+26``): the class's AUs, plus with probability ``extra_au_rate`` one more AU
  outside the class (drawn from its own random stream, so ``extra_au_rate: 0`` leaves
  the frames exactly as before). Blinks and twitches are nuisances, not AUs.
* Labels follow the MEGC2019 composite's imbalance (57 / 25 / 18 %) exactly over the
  dataset, and clips are spread unevenly over subjects (some subjects have one clip).

On disk (``root``)::

    annotations.csv                      Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Emotion,
                                         Action Units
    generator.json                       every generation parameter and the format version
    sub01/clip003/img117.png ...         frames, numbered like the real datasets (not from 0)

The folder is generated into a temporary sibling and renamed into place, so an
interrupted generation leaves nothing half-written; ``root`` is normally keyed by the
hash of the parameters, so changing any of them generates a new folder and never
overwrites an old one.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mefnet.datasets.action_units import parse_au_cell
from mefnet.datasets.clip_index import Clip, ClipIndex, DatasetError, list_frames
from mefnet.utils.cli import cli
from mefnet.utils.locks import exclusive

FORMAT_VERSION = 2  # 2: the sheet lists each clip's action units
CLASS_NAMES = ("negative", "positive", "surprise")
SHEET = "annotations.csv"
MANIFEST = "generator.json"
log = logging.getLogger("mefnet")
# Seconds to draw and write one clip of 9 frames at 128 px (2000 clips took 82 s on the
# 2-core development machine); scaled by frames and pixels for an estimate shown up front.
_SECONDS_PER_CLIP = 0.041
# A progress line at most this often while clips are written.
_PROGRESS_EVERY_S = 10.0
SHEET_COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Emotion")
AU_COLUMN = "Action Units"
# Extra (off-class) AUs a clip may get with extra_au_rate, and their FACS numbers.
_EXTRA_AUS = ("AU1+2", "AU4", "AU6", "AU9", "AU12", "AU15", "AU26")
_AU_NUMBERS = {"AU1+2": (1, 2), "AU4": (4,), "AU6": (6,), "AU9": (9,), "AU12": (12,), "AU15": (15,),
               "AU26": (26,)}


@dataclass(frozen=True)
class SyntheticSpec:
    """Every parameter of the generator; two equal specs give byte-identical datasets."""

    seed: int = 0
    num_subjects: int = 16
    num_clips: int = 200
    frame_size: int = 128
    frames_per_clip: tuple[int, int] = (7, 11)
    amplitude_px: tuple[float, float] = (0.5, 3.0)
    difficulty: float = 0.5
    class_proportions: tuple[float, ...] = (0.57, 0.25, 0.18)
    color: bool = True
    class_names: tuple[str, ...] = field(default=CLASS_NAMES)
    extra_au_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.num_subjects < 2:
            raise DatasetError("synthetic: num_subjects must be at least 2 (LOSO needs two)")
        if self.num_clips < self.num_subjects:
            raise DatasetError(
                f"synthetic: num_clips ({self.num_clips}) must be at least num_subjects "
                f"({self.num_subjects}): every subject needs a clip"
            )
        if self.frame_size < 32:
            raise DatasetError(f"synthetic: frame_size must be at least 32, got {self.frame_size}")
        lo, hi = self.frames_per_clip
        if not 3 <= lo <= hi:
            raise DatasetError(
                f"synthetic: frames_per_clip must be (min, max) with 3 <= min <= max, got {self.frames_per_clip}"
            )
        if len(self.class_proportions) != len(self.class_names):
            raise DatasetError(
                f"synthetic: {len(self.class_proportions)} class_proportions for "
                f"{len(self.class_names)} classes {list(self.class_names)}"
            )
        if set(self.class_names) - set(CLASS_NAMES):
            raise DatasetError(
                f"synthetic: classes must be among {list(CLASS_NAMES)} (the generator knows "
                f"their action units), got {list(self.class_names)}"
            )
        if not 0.0 <= self.extra_au_rate <= 1.0:
            raise DatasetError(f"synthetic: extra_au_rate must be in 0..1, got {self.extra_au_rate}")
        if not 0.0 <= self.difficulty <= 2.0:
            raise DatasetError(f"synthetic: difficulty must be in 0..2, got {self.difficulty}")

    def key(self) -> str:
        params = asdict(self)
        if not self.extra_au_rate:
            params.pop("extra_au_rate")  # added later; absent = 0 keeps earlier keys
        blob = json.dumps({"format": FORMAT_VERSION, **params}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# -- class counts and subject assignment -------------------------------------------------
def class_counts_for(spec: SyntheticSpec) -> list[int]:
    """Exact per-class counts: largest-remainder rounding of the proportions."""
    p = np.asarray(spec.class_proportions, dtype=float)
    p = p / p.sum()
    raw = p * spec.num_clips
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[: spec.num_clips - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _clips_per_subject(spec: SyntheticSpec, rng: np.random.Generator) -> list[int]:
    """Uneven clip counts per subject (at least one each), like the real datasets."""
    weights = rng.gamma(shape=1.2, scale=1.0, size=spec.num_subjects) + 0.05
    extra = spec.num_clips - spec.num_subjects
    counts = np.ones(spec.num_subjects, dtype=int)
    counts += rng.multinomial(extra, weights / weights.sum())
    return counts.tolist()


# -- face drawing ----------------------------------------------------------------------
@dataclass
class _Face:
    image: np.ndarray  # float32 HxWx3, 0..255, BGR
    landmarks: dict[str, tuple[float, float]]  # name -> (x, y) in pixels
    intensity: float
    scale: float  # pixels per unit face width


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    noise = rng.standard_normal((size, size)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    return noise / (noise.std() + 1e-6)


def _draw_face(rng: np.random.Generator, size: int) -> _Face:
    s = float(size)
    cx = s * (0.5 + rng.uniform(-0.03, 0.03))
    cy = s * (0.52 + rng.uniform(-0.03, 0.03))
    half_w = s * rng.uniform(0.30, 0.36)
    half_h = half_w * rng.uniform(1.18, 1.32)

    bg = np.array(rng.uniform(60, 200, 3), dtype=np.float32)
    img = np.empty((size, size, 3), np.float32)
    img[:] = bg
    img += (8 * _smooth_noise(rng, size, s / 10))[..., None]

    red = rng.uniform(150, 235)
    green = red * rng.uniform(0.68, 0.85)
    skin = np.array([green * rng.uniform(0.72, 0.92), green, red], np.float32)  # BGR
    face_mask = np.zeros((size, size), np.float32)
    cv2.ellipse(face_mask, (round(cx), round(cy)), (round(half_w), round(half_h)), 0, 0, 360, 1.0, -1)
    face_mask = cv2.GaussianBlur(face_mask, (0, 0), 1.0)[..., None]
    texture = (
        10 * _smooth_noise(rng, size, s / 40)
        + 7 * _smooth_noise(rng, size, s / 90)
        + 4 * _smooth_noise(rng, size, 0.7)
    )[..., None]
    shading = (1.0 - 0.25 * ((np.arange(size, dtype=np.float32)[None, :, None] - cx) / half_w) ** 2)
    img = img * (1 - face_mask) + face_mask * (skin * shading + texture)

    u = half_w  # one "unit" of facial geometry
    eye_dx = u * rng.uniform(0.36, 0.46)
    eye_y = cy - half_h * rng.uniform(0.14, 0.24)
    brow_y = eye_y - u * rng.uniform(0.22, 0.32)
    nose_y = cy + half_h * rng.uniform(0.12, 0.20)
    mouth_y = cy + half_h * rng.uniform(0.40, 0.50)
    mouth_w = u * rng.uniform(0.36, 0.48)
    chin_y = cy + half_h * 0.82
    dark = skin * rng.uniform(0.25, 0.45)
    lip = np.array([skin[0] * 0.6, skin[1] * 0.55, skin[2] * 0.85], np.float32)

    def pt(x: float, y: float) -> tuple[int, int]:
        return (round(x), round(y))

    for side in (-1, 1):
        ex = cx + side * eye_dx
        ew, eh = u * rng.uniform(0.15, 0.19), u * rng.uniform(0.07, 0.10)
        cv2.ellipse(img, pt(ex, eye_y), (round(ew), max(1, round(eh))), 0, 0, 360, (235, 235, 235), -1)
        cv2.circle(img, pt(ex + rng.uniform(-1, 1), eye_y), max(1, round(eh * 0.9)), tuple(float(v) for v in dark * 0.6), -1)
        brow = np.array(
            [
                pt(ex - side * ew * 1.1, brow_y + u * 0.03),
                pt(ex, brow_y - u * 0.04),
                pt(ex + side * ew * 1.2, brow_y + u * 0.02),
            ],
            np.int32,
        )
        cv2.polylines(img, [brow], False, tuple(float(v) for v in dark), max(1, round(u * 0.07)))
        # cheek: a soft blush gives AU6 texture to move
        cheek = np.zeros((size, size), np.float32)
        cv2.circle(cheek, pt(cx + side * u * 0.55, nose_y), round(u * 0.2), 1.0, -1)
        cheek = cv2.GaussianBlur(cheek, (0, 0), u * 0.08)[..., None]
        img = img * (1 - 0.25 * cheek) + 0.25 * cheek * lip
    nose = np.array([pt(cx, eye_y + u * 0.1), pt(cx - u * 0.04, nose_y), pt(cx + u * 0.08, nose_y)], np.int32)
    cv2.polylines(img, [nose], False, tuple(float(v) for v in dark * 1.3), max(1, round(u * 0.03)))
    for side in (-1, 1):
        cv2.circle(img, pt(cx + side * u * 0.09, nose_y + u * 0.02), max(1, round(u * 0.03)), tuple(float(v) for v in dark), -1)
    smile = rng.uniform(-0.04, 0.06) * u
    mouth = np.array(
        [pt(cx - mouth_w / 2, mouth_y - smile), pt(cx, mouth_y + smile), pt(cx + mouth_w / 2, mouth_y - smile)],
        np.int32,
    )
    cv2.polylines(img, [mouth], False, tuple(float(v) for v in lip), max(1, round(u * 0.08)))
    cv2.polylines(img, [mouth], False, tuple(float(v) for v in dark), max(1, round(u * 0.025)))
    img = cv2.GaussianBlur(img, (0, 0), 0.6)

    landmarks = {
        "brow_inner_l": (cx - eye_dx * 0.55, brow_y),
        "brow_inner_r": (cx + eye_dx * 0.55, brow_y),
        "brow_outer_l": (cx - eye_dx * 1.45, brow_y),
        "brow_outer_r": (cx + eye_dx * 1.45, brow_y),
        "eye_l": (cx - eye_dx, eye_y),
        "eye_r": (cx + eye_dx, eye_y),
        "cheek_l": (cx - u * 0.55, nose_y - u * 0.05),
        "cheek_r": (cx + u * 0.55, nose_y - u * 0.05),
        "nose": (cx, nose_y - u * 0.15),
        "upper_lip": (cx, mouth_y - u * 0.1),
        "lip_corner_l": (cx - mouth_w / 2, mouth_y),
        "lip_corner_r": (cx + mouth_w / 2, mouth_y),
        "lower_lip": (cx, mouth_y + u * 0.12),
        "chin": (cx, chin_y),
        "center": (cx, cy),
    }
    return _Face(img, landmarks, intensity=float(rng.uniform(0.6, 1.4)), scale=u)


# -- action units as displacement bumps --------------------------------------------------
# (landmark, dx, dy, radius) with displacements in units of the clip amplitude and radius
# in units of the face half-width. Signs follow image coordinates (y grows downwards).
_AU: dict[str, list[tuple[str, float, float, float]]] = {
    "AU1+2": [("brow_inner_l", 0, -1.0, 0.16), ("brow_inner_r", 0, -1.0, 0.16),
              ("brow_outer_l", 0, -0.8, 0.16), ("brow_outer_r", 0, -0.8, 0.16)],
    "AU4": [("brow_inner_l", 0.6, 0.8, 0.15), ("brow_inner_r", -0.6, 0.8, 0.15)],
    "AU6": [("cheek_l", 0, -0.6, 0.2), ("cheek_r", 0, -0.6, 0.2)],
    "AU9": [("nose", 0, -0.7, 0.14), ("upper_lip", 0, -0.5, 0.14)],
    "AU12": [("lip_corner_l", -0.6, -0.8, 0.13), ("lip_corner_r", 0.6, -0.8, 0.13)],
    "AU15": [("lip_corner_l", 0, 0.9, 0.13), ("lip_corner_r", 0, 0.9, 0.13)],
    "AU26": [("lower_lip", 0, 0.9, 0.2), ("chin", 0, 1.0, 0.26)],
    "blink": [("eye_l", 0, 0.5, 0.09), ("eye_r", 0, 0.5, 0.09)],
}


def _class_aus(label_name: str, rng: np.random.Generator) -> list[tuple[str, float]]:
    """(action unit, relative strength) for one clip of a class."""
    if label_name == "positive":
        return [("AU12", 1.0), ("AU6", rng.uniform(0.4, 0.9))]
    if label_name == "negative":
        second = "AU15" if rng.random() < 0.5 else "AU9"
        return [("AU4", 1.0), (second, rng.uniform(0.5, 1.0))]
    if label_name == "surprise":
        return [("AU1+2", 1.0), ("AU26", rng.uniform(0.4, 1.0))]
    raise DatasetError(f"synthetic: no action units defined for class '{label_name}'")


def _displacement(face: _Face, aus: list[tuple[str, float]], amplitude: float, size: int) -> np.ndarray:
    """Dense displacement field (H, W, 2), in pixels, of the listed action units."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    field_ = np.zeros((size, size, 2), np.float32)
    for au, strength in aus:
        for name, dx, dy, radius in _AU[au]:
            lx, ly = face.landmarks[name]
            r = radius * face.scale
            bump = np.exp(-((xx - lx) ** 2 + (yy - ly) ** 2) / (2 * r * r))
            field_[..., 0] += bump * dx * strength * amplitude
            field_[..., 1] += bump * dy * strength * amplitude
    return field_


def _twitch(face: _Face, rng: np.random.Generator, amplitude: float, size: int) -> np.ndarray:
    """A random off-class motion somewhere on the face: a distractor, not a class cue."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = face.landmarks["center"]
    x = cx + rng.uniform(-0.7, 0.7) * face.scale
    y = cy + rng.uniform(-0.9, 0.9) * face.scale
    r = rng.uniform(0.1, 0.25) * face.scale
    angle = rng.uniform(0, 2 * math.pi)
    bump = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * r * r)) * amplitude
    return np.stack([bump * math.cos(angle), bump * math.sin(angle)], axis=-1)


def _warp(image: np.ndarray, disp: np.ndarray, shift: tuple[float, float], angle_deg: float) -> np.ndarray:
    """Move image content by ``disp`` (forward displacement), then a rigid head motion."""
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Backward map: a pixel now at x came from x - d(x) (accurate for smooth, small d).
    moved = cv2.remap(image, xx - disp[..., 0], yy - disp[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    rot = cv2.getRotationMatrix2D((size / 2, size / 2), angle_deg, 1.0)
    rot[:, 2] += shift
    return cv2.warpAffine(moved, rot, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def _intensity_profile(n: int, apex: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float32)
    rise = np.sin(0.5 * math.pi * np.clip(t / max(apex, 1), 0, 1)) ** 2
    fall = np.cos(0.5 * math.pi * np.clip((t - apex) / max(n - 1 - apex, 1), 0, 1)) ** 2
    return np.where(t <= apex, rise, fall)


# -- generation ----------------------------------------------------------------------------
def generate(spec: SyntheticSpec, root: str | Path) -> Path:
    """Write the dataset described by ``spec`` to ``root`` (atomically) and return it.

    An existing complete dataset with the same spec is reused; a folder that holds
    something else is never overwritten.
    """
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    # Two processes generating the same set at once (two first runs): the second waits for
    # the first and then finds its manifest.
    with exclusive(root.parent / f".{root.name}.lock"):
        return _generate_unlocked(spec, root)


def _generate_unlocked(spec: SyntheticSpec, root: Path) -> Path:
    manifest = root / MANIFEST
    if manifest.is_file():
        found = json.loads(manifest.read_text())
        if found.get("key") != spec.key():
            raise DatasetError(
                f"{root} already holds a synthetic dataset generated with other parameters "
                f"(key {found.get('key')}, wanted {spec.key()}); choose another root"
            )
        return root
    if root.exists() and any(root.iterdir()):
        raise DatasetError(f"{root} exists and is not a synthetic dataset; refusing to write into it")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        _write(spec, tmp)
        if root.exists():
            root.rmdir()  # empty, checked above
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def generation_seconds(spec: SyntheticSpec) -> float:
    """About how long generating ``spec``'s clips takes (an estimate for the log, not a promise)."""
    frames = sum(spec.frames_per_clip) / 2
    return spec.num_clips * _SECONDS_PER_CLIP * (frames / 9) * (spec.frame_size / 128) ** 2


def _write(spec: SyntheticSpec, out: Path) -> None:
    start = last = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    size = spec.frame_size
    px = size / 128.0  # displacements are specified at 128 px and scale with the frame
    per_subject = _clips_per_subject(spec, rng)
    counts = class_counts_for(spec)
    labels = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(labels)
    d = spec.difficulty
    rows = []
    k = 0
    for s, n_clips in enumerate(per_subject, start=1):
        subject = f"sub{s:02d}"
        face = _draw_face(np.random.default_rng([spec.seed, s]), size)
        for c in range(n_clips):
            crng = np.random.default_rng([spec.seed, s, c, 1])
            label_name = spec.class_names[labels[k]]
            k += 1
            n = int(crng.integers(spec.frames_per_clip[0], spec.frames_per_clip[1] + 1))
            apex = int(crng.integers(max(1, round(n * 0.3)), max(2, round(n * 0.7)) + 1))
            apex = min(apex, n - 2)
            # Some clips are barely visible: the spread grows with difficulty.
            clip_strength = crng.uniform(max(0.15, 1 - 0.85 * d), 1.0)
            amplitude = crng.uniform(*spec.amplitude_px) * px * face.intensity * clip_strength
            aus = _class_aus(label_name, crng)
            xrng = np.random.default_rng([spec.seed, s, c, 2])  # extra AUs: their own stream
            if spec.extra_au_rate and xrng.random() < spec.extra_au_rate:
                others = [a for a in _EXTRA_AUS if a not in {name for name, _ in aus}]
                aus = [*aus, (others[int(xrng.integers(len(others)))], float(xrng.uniform(0.5, 1.0)))]
            field_ = _displacement(face, aus, amplitude, size)
            if crng.random() < 0.35 * d:
                field_ += _displacement(face, [("blink", 1.0)], crng.uniform(0.5, 2.0) * px, size)
            if crng.random() < 0.6 * d:
                field_ += _twitch(face, crng, crng.uniform(0.3, 1.5) * d * px, size)
            drift = crng.normal(0, 0.6 * d * px, 2)
            rot = crng.normal(0, 0.5 * d)
            gain = crng.normal(0, 0.04 * d)
            noise_sigma = 1.0 + 3.0 * d
            profile = _intensity_profile(n, apex)
            first = int(crng.integers(1, 300))
            clip = f"clip{c + 1:03d}"
            folder = out / subject / clip
            folder.mkdir(parents=True)
            for t in range(n):
                frac = t / (n - 1)
                frame = _warp(face.image, field_ * profile[t], tuple(drift * frac), float(rot * frac))
                frame = frame * (1 + gain * frac) + crng.normal(0, noise_sigma, frame.shape)
                frame = np.clip(frame, 0, 255).astype(np.uint8)
                if not spec.color:
                    frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                cv2.imwrite(str(folder / f"img{first + t}.png"), frame)
            au_text = "+".join(str(n) for n in sorted({n for name, _ in aus for n in _AU_NUMBERS[name]}))
            rows.append((subject, clip, first, first + apex, first + n - 1, label_name, au_text))
            now = time.perf_counter()
            if now - last >= _PROGRESS_EVERY_S:  # a long generation is never silent
                last = now
                left = (now - start) / k * (spec.num_clips - k)
                log.info("synthetic clips: %d/%d written (%d%%), about %.0f s left", k, spec.num_clips,
                         100 * k // spec.num_clips, left)
    with (out / SHEET).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow((*SHEET_COLUMNS, AU_COLUMN))
        w.writerows(rows)
    (out / MANIFEST).write_text(
        json.dumps({"key": spec.key(), "format": FORMAT_VERSION, "spec": asdict(spec)}, indent=2)
    )


# -- the adapter ---------------------------------------------------------------------------
def read_synthetic(root: str | Path, class_names: tuple[str, ...] = CLASS_NAMES,
                   dataset: str = "synthetic") -> ClipIndex:
    """Read a generated synthetic dataset (its sheet and frame folders) into a ClipIndex.

    ``dataset`` is the clips' dataset name (several synthetic datasets in one composite need
    different names).
    """
    root = Path(root)
    sheet = root / SHEET
    if not root.is_dir() or not any(root.iterdir()):
        raise DatasetError(
            f"data directory {root} is empty or missing: expected {SHEET} and subject folders "
            f"(generate one with `mefnet-synth --root {root}` or leave dataset.index.root unset)"
        )
    if not sheet.is_file():
        raise DatasetError(f"{root}: no {SHEET} found; expected columns {','.join(SHEET_COLUMNS)}")
    clips = []
    with sheet.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in SHEET_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{sheet}: missing column(s) {missing}; expected {list(SHEET_COLUMNS)}")
        for row_no, row in enumerate(reader, start=2):
            name = row["Emotion"]  # the class name (the dataset's name is ``dataset``)
            if name not in class_names:
                raise DatasetError(f"{sheet}, row {row_no}: emotion '{name}' is not one of {list(class_names)}")
            folder = root / row["Subject"] / row["Filename"]
            try:
                onset, apex, offset = (int(row[k]) for k in ("OnsetFrame", "ApexFrame", "OffsetFrame"))
            except ValueError:
                raise DatasetError(f"{sheet}, row {row_no}: onset/apex/offset must be frame numbers") from None
            frames = list_frames(folder)
            for number in (onset, apex, offset):
                if number not in frames:
                    raise DatasetError(
                        f"{sheet}, row {row_no} (clip {row['Subject']}/{row['Filename']}): frame "
                        f"{number} is missing from {folder}"
                    )
            parsed = parse_au_cell(row.get(AU_COLUMN))
            if parsed.problem:
                raise DatasetError(f"{sheet}, row {row_no}: action units: {parsed.problem}")
            clips.append(
                Clip(dataset, row["Subject"], row["Filename"], class_names.index(name), name,
                     onset, apex, offset, frame_dir=str(folder), aus=parsed.normalised)
            )
    if not clips:
        raise DatasetError(f"{sheet} lists no clips")
    return ClipIndex(clips, list(class_names), name=dataset)


def load_synthetic(root: str | Path | None = None, data_dir: str | Path = "data", name: str = "synthetic",
                   **spec_kwargs) -> ClipIndex:
    """The ``dataset=synthetic`` adapter: generate (once) and read the synthetic dataset.

    With ``root`` unset the data goes to ``<data_dir>/synthetic/<parameter hash>``, so each
    parameter set has its own folder. With ``root`` set, that folder is read if it holds
    a dataset and generated into if it is absent.
    """
    spec, target = synthetic_folder(root, data_dir, **spec_kwargs)
    if not is_generated(target):
        generate(spec, target)
    return read_synthetic(target, spec.class_names, dataset=name)


def synthetic_folder(root: str | Path | None = None, data_dir: str | Path = "data",
                     **spec_kwargs) -> tuple[SyntheticSpec, Path]:
    """The spec that :func:`load_synthetic`'s arguments describe, and the folder it uses."""
    spec_kwargs.pop("name", None)
    for key in ("frames_per_clip", "amplitude_px", "class_proportions", "class_names"):
        if key in spec_kwargs and spec_kwargs[key] is not None:
            spec_kwargs[key] = tuple(spec_kwargs[key])
    spec = SyntheticSpec(**spec_kwargs)
    return spec, (Path(root) if root else Path(data_dir) / "synthetic" / spec.key())


def is_generated(target: str | Path) -> bool:
    """Whether ``target`` holds a generated set (or anything: it is then never written into)."""
    target = Path(target)
    return (target / MANIFEST).is_file() or (target.exists() and any(target.iterdir()))


def main(argv: list[str] | None = None) -> None:
    """``mefnet-synth``: generate the synthetic dataset into a folder and print a summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  mefnet-synth --root /tmp/my_synthetic --seed 1")
    ap.add_argument("--root", required=True, help="folder to create (must be absent or empty)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-subjects", type=int, default=16)
    ap.add_argument("--num-clips", type=int, default=200)
    ap.add_argument("--frame-size", type=int, default=128)
    ap.add_argument("--difficulty", type=float, default=0.5)
    a = ap.parse_args(argv)

    def make() -> None:
        spec = SyntheticSpec(seed=a.seed, num_subjects=a.num_subjects, num_clips=a.num_clips,
                             frame_size=a.frame_size, difficulty=a.difficulty)
        generate(spec, a.root)
        print(read_synthetic(a.root, spec.class_names).summary())


    cli("mefnet-synth", make, argv_debug=False)
