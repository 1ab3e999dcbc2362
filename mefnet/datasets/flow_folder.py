"""Precomputed flow folders: onset->apex flow maps that users already hold, as a dataset.

Layout (docs/datasets.md, "flow_folder")::

    <root>/labels.csv                       dataset,subject,clip,label
    <root>/<dataset>/<subject>/<clip>.png   R = u, G = v, B = optical strain (0..255 each)
    <root>/<dataset>/<subject>/<clip>.npy   or a float array of shape (3, H, W)

``labels.csv`` may start with that header line or not (the STSTNet/HTNet-derived
``megc2019_smic`` folder has one, the official MEGC2019 list has none). ``label`` is a
class index 0..K-1 or a class name of ``class_names``. Subject and clip ids are stored in
the index in the canonical spelling of :mod:`mefnet.datasets.subject_ids` (``samm,6``
becomes ``006``) so a flow folder lines up with frame-based indexes of the same clips;
files are looked up under the spelling ``labels.csv`` uses. When both ``.npy`` and
``.png`` exist, the ``.npy`` (unquantized) is used.

Action units (``task=au``, docs/action_units.md): a ``labels.csv`` with a header may
have an ``aus`` column, written as ``clips.csv`` writes them (``4+12``; ``R12``, ``7B``,
``ref(6)`` are parsed as in the coding sheets). An empty cell means "coded, no AU"; ``?``
or ``NA`` means "not annotated" (the AU task leaves such clips out). Without the column
no clip is annotated. ``mefnet-aus attach`` fills the column from the official sheets.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mefnet.datasets.action_units import aus_column_value, check_uncertain
from mefnet.datasets.bad_clips import BadClipLog
from mefnet.datasets.clip_index import Clip, ClipIndex, DatasetError
from mefnet.datasets.protocols import check_no_empty_class
from mefnet.datasets.sheet_io import not_utf8, require_root
from mefnet.datasets.subject_ids import canonical_clip, canonical_subject, ids_problem

LABEL_FILE = "labels.csv"
HEADER = ("dataset", "subject", "clip", "label")
AU_COLUMN = "aus"
FLOW_SUFFIXES = (".npy", ".png")


def read_flow_map(path: str | Path) -> np.ndarray:
    """A flow map as float32 (3, H, W): channels u, v, optical strain.

    PNG: channels come back in R, G, B order (OpenCV reads B, G, R and is reordered here)
    and are scaled to 0..1 (by 255, or 65535 for 16-bit files); an alpha channel is
    dropped. NPY: the stored values, unscaled, as float32.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"flow map {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DatasetError(f"flow map {path} cannot be read as a .npy array ({e})") from None
        if array.ndim != 3 or array.shape[0] != 3:
            raise DatasetError(
                f"flow map {path} has shape {array.shape}; expected (3, H, W) with channels u, v, strain"
            )
        if array.size == 0:  # accepted here, it failed later inside OpenCV's resize
            raise DatasetError(
                f"flow map {path} has shape {array.shape}: it is empty; expected (3, H, W) with H and W at least 1"
            )
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise DatasetError(f"flow map {path} holds {array.dtype} values; expected real numbers")
        array = np.asarray(array, dtype=np.float32)
        if not np.all(np.isfinite(array)):
            bad = int((~np.isfinite(array)).sum())
            raise DatasetError(
                f"flow map {path} holds {bad} NaN or infinite value(s); a map with holes cannot be "
                "normalized (it would become a silently zeroed channel): fix or remove the file"
            )
        return array
    if suffix == ".png":
        import cv2

        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise DatasetError(f"flow map {path} cannot be read as an image")
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise DatasetError(
                f"flow map {path} has shape {image.shape}; expected a 3-channel colour image "
                "(R = u, G = v, B = strain)"
            )
        scale = 65535.0 if image.dtype == np.uint16 else 255.0
        rgb = image[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
        return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(scale)
    raise DatasetError(f"flow map {path}: unsupported file type '{path.suffix}'; expected .png or .npy")


def _label_rows(path: Path) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """The header of labels.csv (lower case; None without one) and (line number, cells) of
    its clip rows."""
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first cell;
    # newline="": the csv module takes CRLF and LF line ends alike.
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(f), start=1) if any(row)]
    except UnicodeDecodeError as e:
        raise not_utf8(path, e) from None
    if not rows:
        raise DatasetError(f"{path} is empty; expected one row per clip: {','.join(HEADER)}")
    header = None
    if [c.lower() for c in rows[0][1][:4]] == list(HEADER):
        header = [c.lower() for c in rows[0][1]]
        rows = rows[1:]
    if not rows:
        raise DatasetError(f"{path} has a header but no clips; expected one row per clip: {','.join(HEADER)}")
    return header, rows


def has_au_column(root: str | Path) -> bool:
    """Whether the flow folder's labels.csv has a header with an ``aus`` column (False when
    it has no labels.csv or no header): what ``task=au`` needs to find any clip's AUs."""
    path = Path(root) / LABEL_FILE
    if not path.is_file():
        return False
    header, _ = _label_rows(path)
    return bool(header) and AU_COLUMN in header


def _class_of(value: str, class_names: Sequence[str]) -> int | None:
    # isdecimal() and ASCII: "²" or "٣" pass isdigit() but are not class indices.
    if value.isascii() and value.isdecimal() and int(value) < len(class_names):
        return int(value)
    lowered = [c.lower() for c in class_names]
    return lowered.index(value.lower()) if value.lower() in lowered else None


def load_flow_folder(
    root: str | Path | None,
    class_names: Sequence[str] = ("negative", "positive", "surprise"),
    on_bad_clip: str = "error",
    name: str = "",
    action_units: bool = False,
    au_uncertain: str = "exclude",
) -> ClipIndex:
    """Index a flow folder; each clip's ``flow_path`` is its map (onset/apex/offset 0).

    The ``aus`` column (module docstring) is read into ``Clip.aus``. With ``action_units``
    (set by ``task=au``) a cell that does not parse makes its row a bad clip; without it
    such a clip counts as not annotated, since the emotion task does not use AUs.
    ``au_uncertain`` (exclude | include) decides whether ``ref(X)`` / ``X or Y`` AUs count.
    """
    root_path = require_root(
        root, dataset_title="flow folder", env_var="MEFNET_FLOW_ROOT", config_key="dataset.index.root"
    )
    class_names = [str(c) for c in class_names]
    check_uncertain(au_uncertain, "dataset.index.au_uncertain")
    labels_path = root_path / LABEL_FILE
    if not labels_path.is_file():
        raise DatasetError(
            f"{labels_path} does not exist; a flow folder needs labels.csv with columns "
            f"{','.join(HEADER)} beside the <dataset>/<subject>/<clip>.png files"
        )
    log = BadClipLog(f"flow folder {root_path}", on_bad_clip)
    sizes: dict[tuple, list[str]] = {}
    clips: list[Clip] = []
    seen: dict[str, int] = {}
    header, rows = _label_rows(labels_path)
    au_at = header.index(AU_COLUMN) if header and AU_COLUMN in header else None
    for row_no, cells in rows:
        where = f"{labels_path}, row {row_no}"
        if len(cells) < 4 or not all(cells[:4]):
            log.bad(f"{where}: expected 4 values {','.join(HEADER)}, got {cells}")
            continue
        dataset, subject, clip, label_text = cells[:4]
        bad_id = ids_problem(where, dataset=dataset, subject=subject, clip=clip)
        if bad_id:
            log.bad(bad_id)
            continue
        try:
            subject_id = canonical_subject(dataset, subject)
            clip_id = canonical_clip(dataset, clip)
        except DatasetError as e:
            log.bad(f"{where}: {e}")
            continue
        key = f"{dataset}/{subject_id}/{clip_id}"
        where = f"{where} (clip {key})"
        if key in seen:
            log.bad(f"{where}: duplicate clip id, already in row {seen[key]}; expected each clip once")
            continue
        seen[key] = row_no
        label = _class_of(label_text, class_names)
        if label is None:
            log.bad(
                f"{where}: unknown label '{label_text}'; expected 0..{len(class_names) - 1} or one of "
                f"{class_names} (config key dataset.index.class_names)"
            )
            continue
        try:  # no column: "" for every clip, and a dataset without any AU counts as not annotated
            aus = "" if au_at is None else aus_column_value(
                cells[au_at] if au_at < len(cells) else "", au_uncertain, strict=action_units)
        except ValueError as e:
            log.bad(f"{where}: {e}")
            continue
        stem = root_path / dataset / subject / clip
        found = [stem.with_name(stem.name + s) for s in FLOW_SUFFIXES if stem.with_name(stem.name + s).is_file()]
        if not found:
            log.bad(f"{where}: flow map {stem}.png (or .npy) does not exist")
            continue
        try:
            shape = read_flow_map(found[0]).shape[1:]
        except DatasetError as e:  # unreadable, malformed or non-finite: a bad clip
            log.bad(f"{where}: {e}")
            continue
        sizes.setdefault(shape, []).append(str(found[0]))
        clips.append(
            Clip(
                dataset=dataset, subject=subject_id, clip=clip_id, label=label,
                label_name=class_names[label], onset=0, apex=0, offset=0,
                frame_dir="", flow_path=str(found[0]), aus=aus,
            )
        )
    check_no_empty_class(class_names, [c.label for c in clips], where=str(labels_path))
    if len(sizes) > 1:  # resized to preprocessing.size like the others, but say so
        usual = max(sizes, key=lambda k: len(sizes[k]))
        for shape, files in sizes.items():
            if shape != usual:
                warnings.warn(
                    f"flow folder {root_path}: {len(files)} flow map(s) are {shape[1]}x{shape[0]} while "
                    f"{len(sizes[usual])} are {usual[1]}x{usual[0]}: {', '.join(files[:5])}"
                    f"{' ...' if len(files) > 5 else ''}; they are resized to the same input size, "
                    "which distorts their motion if they were cropped differently",
                    UserWarning, stacklevel=2,
                )
    skipped = log.finish()
    return ClipIndex(clips, class_names, name=name or root_path.name, skipped=skipped)

