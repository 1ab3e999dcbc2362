"""Clips to predict: an onset/apex image pair, a frame folder or a video, and batch lists.

A :class:`ClipSpec` says where a clip's frames are; :func:`prepare_clip` turns it into
the network input with the model's stored preprocessing (:func:`pair_maps`, the same
function training uses). Anything wrong with one clip raises :class:`ClipError` with a
message that names the clip and the file, so a batch can report it and go on.

Batch lists are CSV files with a header::

    clip,onset,apex,frames,offset
    s03_po_11,pairs/s03_po_11_onset.png,pairs/s03_po_11_apex.png,,
    sub01_clip003,117,,recordings/sub01/clip003,
    interview,40,52,videos/interview.mp4,90

With ``frames`` (a folder of numbered frames, a video file, an animated GIF, or an image
list: a ``.txt`` file naming one image per line) ``onset``, ``apex`` and ``offset`` are
frame numbers (videos, GIFs and lists number their frames from 0, and their onset
defaults to 0, so a two-frame GIF or a two-line list is an onset/apex pair); ``apex`` may be blank (it is then spotted between onset and
offset, as in preprocessing) and ``offset`` defaults to the last frame. Without
``frames``, ``onset`` and ``apex`` are image files. Relative paths are relative to the
CSV file's folder. ``clip`` names the clip in the output (default: ``row <n>``).
"""

from __future__ import annotations

import csv
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mefnet.datasets.apex import spot_apex
from mefnet.datasets.clip_index import IMAGE_SUFFIXES, DatasetError, list_frames
from mefnet.preprocessing.features import PairMaps, Preprocessing, pair_maps, read_image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv")
GIF_SUFFIXES = (".gif",)
LIST_SUFFIXES = (".txt", ".lst")
"""An image list: one image path per line (relative to the list), frames numbered from 0."""
LIST_COLUMNS = ("clip", "onset", "apex", "frames", "offset")


class ClipError(ValueError):
    """One clip cannot be predicted; the message says which clip and why."""


@dataclass(frozen=True)
class ClipSpec:
    """Where one clip's frames are (see the module docstring)."""

    name: str
    onset: str
    apex: str = ""
    frames: str = ""
    offset: str = ""
    where: str = ""
    """Where the clip was listed (``row 3 of clips.csv``), for error messages."""
    images: tuple[str, ...] = ()
    """Image files in order (onset first), numbered from 0: two are onset and apex; with
    more, the apex is ``apex`` (a number) or spotted."""

    @property
    def label(self) -> str:
        return f"clip {self.name} ({self.where})" if self.where else f"clip {self.name}"


@dataclass(frozen=True)
class PreparedClip:
    """A clip ready for the network: every preprocessing stage, and which frames were used."""

    spec: ClipSpec
    pair: PairMaps
    onset_file: str
    apex_file: str
    onset_frame: int | None = None
    apex_frame: int | None = None
    apex_source: str = "given"
    """``given`` (by the user) or ``spotted`` (:func:`mefnet.datasets.apex.spot_apex`)."""

    def describe(self) -> dict:
        out: dict = {"clip": self.spec.name}
        if self.spec.images:
            out.update(images=list(self.spec.images), onset=self.onset_frame, apex=self.apex_frame,
                       apex_source=self.apex_source)
        elif self.spec.frames:
            out.update(frames=self.spec.frames, onset=self.onset_frame, apex=self.apex_frame,
                       apex_source=self.apex_source)
        else:
            out.update(onset=self.onset_file, apex=self.apex_file, apex_source=self.apex_source)
        out["face_crop"] = list(self.pair.apex.shape[:2])
        return out


def _frame_number(text: str, what: str, name: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise ClipError(f"{name}: {what} '{text}' is not a frame number") from None
    if not value.is_integer() or value < 0:
        raise ClipError(f"{name}: {what} '{text}' is not a frame number (a whole number >= 0)")
    return int(value)


# Below this many pixels a side no flow method can run (OpenCV asserts inside its resize).
MIN_SIDE = 2


def _read(path: Path, what: str, name: str) -> np.ndarray:
    try:
        image = read_image(path)
    except DatasetError as e:
        raise ClipError(f"{name}: {what} frame: {e}") from None
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ClipError(f"{name}: {what} frame {path} is {width}x{height} pixels, too small to crop or compute "
                        f"optical flow on; expected an image of a face (at least {MIN_SIDE}x{MIN_SIDE} pixels)")
    return image


@contextmanager
def _video_frames(path: Path, first: int, last: int | None, name: str):
    """Frames ``first..last`` (0-based; ``last`` None = to the end) of a video, written as
    lossless PNG files into a temporary folder, as ``{number: file}``."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ClipError(f"{name}: cannot open video {path} (missing, unreadable or an unsupported codec)")
    with tempfile.TemporaryDirectory(prefix="mefnet-video-") as tmp:
        frames: dict[int, Path] = {}
        number = 0
        try:
            while last is None or number <= last:
                ok, frame = capture.read()
                if not ok:
                    break
                if number >= first:
                    file = Path(tmp) / f"frame{number:06d}.png"
                    cv2.imwrite(str(file), frame, [cv2.IMWRITE_PNG_COMPRESSION, 1])
                    frames[number] = file
                number += 1
        finally:
            capture.release()
        if number == 0:
            raise ClipError(f"{name}: video {path} has no readable frames")
        yield frames, number


@contextmanager
def _gif_frames(path: Path, name: str):
    """Every frame of an animated GIF as RGB PNG files in a temporary folder, numbered from 0."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        image = Image.open(path)
    except (OSError, UnidentifiedImageError) as e:
        raise ClipError(f"{name}: cannot read GIF {path} ({e})") from None
    with image, tempfile.TemporaryDirectory(prefix="mefnet-gif-") as tmp:
        frames: dict[int, Path] = {}
        for number, frame in enumerate(ImageSequence.Iterator(image)):
            file = Path(tmp) / f"frame{number:06d}.png"
            frame.convert("RGB").save(file)
            frames[number] = file
        if not frames:
            raise ClipError(f"{name}: GIF {path} has no frames")
        yield frames, len(frames)


def _listed_images(path: Path, name: str) -> dict[int, Path]:
    """The images of an image list (one path per line, ``#`` comments), numbered from 0."""
    frames: dict[int, Path] = {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        file = Path(text) if Path(text).is_absolute() else path.parent / text
        if not file.is_file():
            raise ClipError(f"{name}: {path}, line {line_no}: image {file} does not exist")
        frames[len(frames)] = file
    if len(frames) < 2:
        raise ClipError(f"{name}: image list {path} names {len(frames)} image(s); expected at least "
                        "two (onset, then apex)")
    return frames


def _check_range(name: str, source: Path, onset: int, apex: int | None, offset: int,
                 have: str, frames: dict[int, Path]) -> None:
    if onset not in frames:
        raise ClipError(f"{name}: onset frame {onset} is not in {source} ({have})")
    if offset not in frames:
        raise ClipError(f"{name}: offset frame {offset} is not in {source} ({have})")
    if offset < onset:
        raise ClipError(f"{name}: offset {offset} comes before onset {onset}")
    if apex is not None:
        if apex not in frames:
            raise ClipError(f"{name}: apex frame {apex} is not in {source} ({have})")
        if not onset <= apex <= offset:
            raise ClipError(f"{name}: expected onset <= apex <= offset, got {onset}, {apex}, {offset}")


def _from_frames(spec: ClipSpec, prep: Preprocessing, spot_stride: int) -> PreparedClip:
    name = spec.label
    source = Path(spec.frames) if spec.frames else Path(spec.images[0])
    numbered_from_0 = bool(spec.images) or source.suffix.lower() in GIF_SUFFIXES + LIST_SUFFIXES
    onset = _frame_number(spec.onset, "onset", name) if spec.onset else (0 if numbered_from_0 else None)
    if onset is None:
        raise ClipError(f"{name}: an onset frame number is needed with frames {source}")
    apex = _frame_number(spec.apex, "apex", name) if spec.apex else None
    offset = _frame_number(spec.offset, "offset", name) if spec.offset else None
    if apex is not None and apex == onset:
        raise ClipError(f"{name}: onset and apex are the same frame ({onset}); no motion to measure")

    def finish(frames: dict[int, Path], have: str) -> PreparedClip:
        last = offset if offset is not None else (max(frames) if frames else onset)
        _check_range(name, source, onset, apex, last, have, frames)
        chosen, how = apex, "given"
        if chosen is None:
            try:
                chosen = spot_apex(frames, onset, last, spot_stride)
            except DatasetError as e:
                raise ClipError(f"{name}: {e}") from None
            how = "spotted"
            if chosen == onset:
                raise ClipError(
                    f"{name}: onset and apex are the same frame ({onset}): the clip {onset}..{last} "
                    "has no later frame to use as the apex"
                )
        pair = _pair(_read(frames[onset], "onset", name), _read(frames[chosen], "apex", name), prep, name)
        return PreparedClip(spec, pair, str(frames[onset]), str(frames[chosen]), onset, chosen, how)

    if spec.images:
        missing = [p for p in spec.images if not Path(p).is_file()]
        if missing:
            raise ClipError(f"{name}: image {missing[0]} does not exist")
        if len(spec.images) < 2:
            raise ClipError(f"{name}: give at least two images (onset, then apex)")
        frames = {i: Path(p) for i, p in enumerate(spec.images)}
        return finish(frames, f"{len(frames)} images, numbered from 0")
    if source.is_file() and source.suffix.lower() in GIF_SUFFIXES:
        with _gif_frames(source, name) as (frames, count):
            return finish(frames, f"a GIF of {count} frames, numbered from 0")
    if source.is_file() and source.suffix.lower() in LIST_SUFFIXES:
        frames = _listed_images(source, name)
        return finish(frames, f"an image list of {len(frames)} images, numbered from 0")
    if source.is_dir():
        try:
            frames = list_frames(source)
        except DatasetError as e:
            raise ClipError(f"{name}: {e}") from None
        if not frames:
            raise ClipError(
                f"{name}: {source} holds no numbered frames ({', '.join(IMAGE_SUFFIXES)} files whose "
                "names end in the frame number)"
            )
        return finish(frames, f"frames {min(frames)}..{max(frames)}")
    if source.is_file():
        if source.suffix.lower() not in VIDEO_SUFFIXES:
            raise ClipError(
                f"{name}: frames {source} is neither a folder of frames, a video "
                f"({', '.join(VIDEO_SUFFIXES)}), a GIF nor an image list (.txt)"
            )
        with _video_frames(source, onset, offset, name) as (frames, count):
            return finish(frames, f"a video of {count} frames, numbered from 0")
    raise ClipError(f"{name}: frames {source} does not exist")


def _pair(onset: np.ndarray, apex: np.ndarray, prep: Preprocessing, name: str) -> PairMaps:
    if onset.shape != apex.shape:
        raise ClipError(f"{name}: onset {onset.shape} and apex {apex.shape} frames differ in size")
    if np.array_equal(onset, apex):
        raise ClipError(f"{name}: the onset and apex frames are identical; no motion to measure")
    try:
        return pair_maps(onset, apex, prep, name)
    except DatasetError as e:  # includes FaceNotFoundError
        raise ClipError(str(e)) from None


def prepare_clip(spec: ClipSpec, prep: Preprocessing, spot_stride: int = 1) -> PreparedClip:
    """The network input of one clip, computed with ``prep`` (the model's preprocessing)."""
    if spec.frames or spec.images:
        return _from_frames(spec, prep, spot_stride)
    name = spec.label
    if not spec.onset or not spec.apex:
        raise ClipError(f"{name}: give both an onset and an apex image (or frames and an onset frame number)")
    onset_path, apex_path = Path(spec.onset), Path(spec.apex)
    if onset_path.exists() and apex_path.exists() and onset_path.resolve() == apex_path.resolve():
        raise ClipError(f"{name}: onset and apex are the same file ({onset_path}); no motion to measure")
    pair = _pair(_read(onset_path, "onset", name), _read(apex_path, "apex", name), prep, name)
    return PreparedClip(spec, pair, str(onset_path), str(apex_path))


class ClipListError(ValueError):
    """A batch list cannot be read at all (missing file, bad header)."""


def read_clip_list(path: str | Path) -> list[ClipSpec]:
    """The clips of a batch CSV (see the module docstring); paths resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ClipListError(f"clip list {path} does not exist")
    base = path.resolve().parent

    def resolve(text: str) -> str:
        return str(base / text) if text and not Path(text).is_absolute() else text

    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        unknown = [h for h in header if h not in LIST_COLUMNS]
        if "onset" not in header or unknown:
            raise ClipListError(
                f"{path}, row 1 (header): expected columns {', '.join(LIST_COLUMNS)} "
                f"(onset required), got {', '.join(header) or 'nothing'}"
            )
        specs = []
        for row_no, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            if not any(row.values()):
                continue
            frames = resolve(row.get("frames", ""))
            onset, apex = row.get("onset", ""), row.get("apex", "")
            if not frames:
                onset, apex = resolve(onset), resolve(apex)
            specs.append(ClipSpec(name=row.get("clip") or f"row {row_no}", onset=onset, apex=apex,
                                  frames=frames, offset=row.get("offset", ""),
                                  where=f"row {row_no} of {path}"))
    if not specs:
        raise ClipListError(f"{path} lists no clips")
    return specs
