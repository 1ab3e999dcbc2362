"""One spelling per subject and clip id, whatever source a clip comes from.

The same SAMM subject is ``6`` in its coding sheet (read as a number), ``006`` on disk and
``6`` again in the official MEGC2019 list; a SMIC subject is ``s1`` on disk and ``s01``
in MEGC2019. Joining a frame-based index with a flow folder or with the official list
only works when every source is brought to one spelling, so every adapter passes its ids
through :func:`canonical_subject` and :func:`canonical_clip`.

Canonical forms (the ones the datasets' own folders or the MEGC2019 list use):

=========  ======================  ======================  ==========================
dataset    subject                 clip                    accepted inputs
=========  ======================  ======================  ==========================
casme2     ``sub01``               ``EP02_01f``            ``1``, ``01``, ``sub1``
samm       ``006``                 ``006_1_2``             ``6``, ``06``, ``006``
smic       ``s01``                 ``s01_ne_01``           ``1``, ``s1``; ``s1_ne_01``
other      as written              as written
=========  ======================  ======================  ==========================

The official MEGC2019 list writes SAMM subjects unpadded (``samm,6,006_1_2,0``); the
index writes ``006``, like the SAMM folders and the clip names themselves.
"""

from __future__ import annotations

import re

from mefnet.datasets.clip_index import DatasetError

_DIGITS = re.compile(r"^(?:sub|s)?0*(\d+)$", re.IGNORECASE)
_SMIC_CLIP = re.compile(r"^s0*(\d+)_(.+)$", re.IGNORECASE)


def _subject_number(dataset: str, subject: object) -> int:
    text = str(subject).strip()
    if isinstance(subject, float) and subject.is_integer():
        text = str(int(subject))
    m = _DIGITS.match(text)
    if not m:
        raise DatasetError(
            f"{dataset}: subject '{subject}' is not a subject number "
            f"(expected e.g. {_EXAMPLES.get(dataset, '1')})"
        )
    return int(m.group(1))


_EXAMPLES = {"casme2": "'01' or 'sub01'", "samm": "'6' or '006'", "smic": "'1', 's1' or 's01'"}


def canonical_subject(dataset: str, subject: object) -> str:
    """The index's spelling of ``subject`` (see the module table)."""
    if dataset == "casme2":
        return f"sub{_subject_number(dataset, subject):02d}"
    if dataset == "samm":
        return f"{_subject_number(dataset, subject):03d}"
    if dataset == "smic":
        return f"s{_subject_number(dataset, subject):02d}"
    return str(subject).strip()


def canonical_clip(dataset: str, clip: str) -> str:
    """The index's spelling of ``clip``; only SMIC clip names change (``s1_ne_01`` -> ``s01_ne_01``)."""
    clip = str(clip).strip()
    if dataset == "smic":
        m = _SMIC_CLIP.match(clip)
        if m:
            return f"s{int(m.group(1)):02d}_{m.group(2)}"
    return clip


# Ids become folder and file names (``folds/<dataset>/<subject>/``, ``<clip>.png``), so an id
# read from a data file must be a plain name: anything else could place a file outside the
# experiment folder, or make a fold whose folder never matches its key.
MAX_ID_LENGTH = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def id_problem(text: str) -> str | None:
    """Why ``text`` cannot be a dataset, subject or clip id (None: it can): ids are used as
    folder and file names, so they must be non-empty, without path separators or control
    characters, not ``.``/``..`` nor hidden (a leading ``.``), at most ``MAX_ID_LENGTH``
    characters."""
    if not text:
        return "is empty"
    if "/" in text or "\\" in text:
        return "contains a path separator ('/' or '\\')"
    if text.startswith("."):
        return "starts with '.' ('.', '..' or a hidden name)"
    if _CONTROL.search(text):
        return "contains a control character"
    if len(text) > MAX_ID_LENGTH:
        return f"is {len(text)} characters long (at most {MAX_ID_LENGTH})"
    return None


def ids_problem(where: str, **cells: str) -> str | None:
    """The message for the first of ``cells`` (column name -> cell text) that is not a
    usable id (:func:`id_problem`), naming ``where`` (file and row) and the column; None when
    every cell is usable. The one check every adapter reading ids from a file applies."""
    for column, value in cells.items():
        problem = id_problem(value)
        if problem:
            return (f"{where}: {column} {value!r} {problem}; expected a plain name (it becomes a "
                    f"folder or file name): letters, digits, '_', '-', ... up to {MAX_ID_LENGTH} characters")
    return None
