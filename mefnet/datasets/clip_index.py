"""The normalized clip index: the one table every dataset adapter produces.

Everything downstream of the adapters (preprocessing, data modules, LOSO runner,
reports) reads only this table, so a new dataset needs nothing but an adapter that
returns a :class:`ClipIndex`.

One row per clip:

============  ===========================================================================
column        meaning
============  ===========================================================================
dataset       short dataset name (``casme2``, ``samm``, ``smic``, ``synthetic`` ...)
subject       subject id *within* its dataset, as the dataset writes it (``sub01``, ``006``)
clip          clip id within the subject (``EP02_01f``, ``006_1_2``)
label         class index, 0..num_classes-1, in the order of ``ClipIndex.class_names``
label_name    class name (``negative`` ...)
onset         onset frame number (as the dataset numbers its frames)
apex          apex frame number
offset        offset frame number
frame_dir     folder holding the clip's frames; frames are found *by number* (the last
              integer in the file name), never by a guessed exact name
apex_source   how the apex was chosen: ``annotated``, ``midpoint``, ``spotted``, ``file``
flow_path     optional: a precomputed flow map for the clip (flow-folder datasets);
              empty when flows are computed from frames
aus           the clip's action units in normalised form (``4+12``; empty for no AU, and
              for every clip of a dataset without AU codes; ``?`` when the clip was not
              coded), see :mod:`mefnet.datasets.action_units`
============  ===========================================================================

A fold of leave-one-subject-out is one *subject key* ``<dataset>/<subject>``: subjects of
different datasets never collide.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_LAST_INT = re.compile(r"(\d+)(?!.*\d)")


class DatasetError(ValueError):
    """A user's dataset does not look as expected; the message names file, row or clip."""


@dataclass(frozen=True)
class Clip:
    """One micro-expression clip, as every adapter describes it."""

    dataset: str
    subject: str
    clip: str
    label: int
    label_name: str
    onset: int
    apex: int
    offset: int
    frame_dir: str = ""
    apex_source: str = "annotated"
    flow_path: str = ""
    aus: str = ""

    @property
    def subject_key(self) -> str:
        """Globally unique subject id, ``<dataset>/<subject>``: one LOSO fold."""
        return f"{self.dataset}/{self.subject}"

    @property
    def clip_key(self) -> str:
        """Globally unique clip id, ``<dataset>/<subject>/<clip>``."""
        return f"{self.dataset}/{self.subject}/{self.clip}"


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Clip))
_INT_COLUMNS = {"label", "onset", "apex", "offset"}


def frame_number(name: str) -> int | None:
    """The frame number of a file name: its last integer (``reg_img46.jpg`` -> 46)."""
    m = _LAST_INT.search(Path(name).stem)
    return int(m.group(1)) if m else None


def list_frames(frame_dir: str | Path) -> dict[int, Path]:
    """Map frame number -> image file for every image in ``frame_dir``.

    Raises :class:`DatasetError` when the folder is missing or two files carry the same
    number (which would make "frame 46" ambiguous).
    """
    folder = Path(frame_dir)
    if not folder.is_dir():
        raise DatasetError(f"frame folder {folder} does not exist")
    frames: dict[int, Path] = {}
    for p in folder.iterdir():
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        n = frame_number(p.name)
        if n is None:
            continue
        if n in frames:
            raise DatasetError(
                f"frame folder {folder} holds two files numbered {n}: "
                f"{frames[n].name} and {p.name}"
            )
        frames[n] = p
    return dict(sorted(frames.items()))


def frame_path(clip: Clip, number: int, frames: dict[int, Path] | None = None) -> Path:
    """The image file of frame ``number`` of ``clip``, with a clear error if it is absent."""
    frames = list_frames(clip.frame_dir) if frames is None else frames
    if number not in frames:
        have = f"{min(frames)}..{max(frames)} ({len(frames)} files)" if frames else "no frames"
        raise DatasetError(
            f"clip {clip.clip_key}: frame {number} not found in {clip.frame_dir} "
            f"(the folder holds {have}; expected onset {clip.onset}, apex {clip.apex}, "
            f"offset {clip.offset})"
        )
    return frames[number]


@dataclass
class ClipIndex:
    """An ordered collection of :class:`Clip` with the class names they index into."""

    clips: list[Clip]
    class_names: list[str]
    name: str = ""
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    # -- container protocol ---------------------------------------------------------
    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[Clip]:
        return iter(self.clips)

    def __getitem__(self, i: int) -> Clip:
        return self.clips[i]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # -- views ------------------------------------------------------------------------
    @property
    def subjects(self) -> list[str]:
        """Subject keys (``dataset/subject``) in order of first appearance."""
        return list(dict.fromkeys(c.subject_key for c in self.clips))

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(c.dataset for c in self.clips))

    def class_counts(self, indices: Iterable[int] | None = None) -> list[int]:
        """Clips per class over ``indices`` (all clips when None)."""
        chosen = self.clips if indices is None else [self.clips[i] for i in indices]
        counts = Counter(c.label for c in chosen)
        return [counts.get(k, 0) for k in range(self.num_classes)]

    def resolve_subject(self, fold: str) -> str:
        """Turn a user's fold name into a subject key.

        Accepts ``dataset/subject`` or, when unambiguous, the bare ``subject``.
        """
        fold = str(fold)
        keys = self.subjects
        if fold in keys:
            return fold
        matches = [k for k in keys if k.split("/", 1)[1] == fold]
        if len(matches) == 1:
            return matches[0]
        shown = ", ".join(keys[:12]) + (" ..." if len(keys) > 12 else "")
        if len(matches) > 1:
            raise DatasetError(
                f"fold '{fold}' is ambiguous in {self.name or 'this dataset'}: it matches "
                f"{', '.join(matches)}; write it as dataset/subject"
            )
        raise DatasetError(
            f"fold '{fold}' is not a subject of {self.name or 'this dataset'} "
            f"({len(keys)} subjects: {shown})"
        )

    def fold_indices(self, fold: str) -> tuple[list[int], list[int]]:
        """(train, test) clip indices for leaving out subject ``fold``."""
        key = self.resolve_subject(fold)
        test = [i for i, c in enumerate(self.clips) if c.subject_key == key]
        train = [i for i, c in enumerate(self.clips) if c.subject_key != key]
        return train, test

    def select(self, indices: Sequence[int]) -> ClipIndex:
        return ClipIndex([self.clips[i] for i in indices], list(self.class_names), self.name)

    # -- checks -----------------------------------------------------------------------
    def validate(self) -> None:
        """Invariants every adapter must satisfy; violations name the clip."""
        if not self.class_names:
            raise DatasetError(f"{self.name or 'clip index'}: no class names given")
        twice = [n for i, n in enumerate(self.class_names) if n in self.class_names[:i]]
        if twice:
            raise DatasetError(
                f"{self.name or 'clip index'}: class names must be unique: '{twice[0]}' is given twice "
                f"in {list(self.class_names)} (config key dataset.index.class_names, or the protocol's classes)"
            )
        seen: set[str] = set()
        for c in self.clips:
            if c.clip_key in seen:
                raise DatasetError(f"{self.name or 'clip index'}: duplicate clip {c.clip_key}")
            seen.add(c.clip_key)
            if not 0 <= c.label < self.num_classes:
                raise DatasetError(
                    f"clip {c.clip_key}: label {c.label} outside 0..{self.num_classes - 1}"
                )
            if c.label_name != self.class_names[c.label]:
                raise DatasetError(
                    f"clip {c.clip_key}: label {c.label} is '{self.class_names[c.label]}' "
                    f"but label_name says '{c.label_name}'"
                )
            if not c.flow_path and not (c.onset <= c.apex <= c.offset):
                raise DatasetError(
                    f"clip {c.clip_key}: expected onset <= apex <= offset, got "
                    f"onset {c.onset}, apex {c.apex}, offset {c.offset}"
                )

    # -- table I/O --------------------------------------------------------------------
    def to_records(self) -> list[dict]:
        return [asdict(c) for c in self.clips]

    def to_csv(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(COLUMNS))
            w.writeheader()
            w.writerows(self.to_records())

    @classmethod
    def from_csv(cls, path: str | Path, class_names: Sequence[str], name: str = "") -> ClipIndex:
        path = Path(path)
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("dataset", "subject", "clip", "label") if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {missing}; expected {list(COLUMNS)}")
            clips = []
            for row_no, row in enumerate(reader, start=2):
                kw = {}
                for col in COLUMNS:
                    if col not in row or row[col] in (None, ""):
                        continue
                    kw[col] = row[col]
                try:
                    for col in _INT_COLUMNS & kw.keys():
                        kw[col] = int(kw[col])
                except ValueError as e:
                    raise DatasetError(f"{path}, row {row_no}: {e}") from None
                kw.setdefault("label_name", class_names[kw["label"]])
                for col in ("onset", "apex", "offset"):
                    kw.setdefault(col, 0)
                clips.append(Clip(**kw))
        return cls(clips, list(class_names), name or path.stem)

    def summary(self) -> str:
        counts = self.class_counts()
        per_class = ", ".join(f"{n} {c}" for n, c in zip(counts, self.class_names, strict=True))
        return (
            f"{self.name or 'dataset'}: {len(self)} clips, {len(self.subjects)} subjects "
            f"({per_class})"
        )

    def with_clips(self, clips: list[Clip]) -> ClipIndex:
        return replace(self, clips=clips)
