"""Facial action units (AUs) as the datasets write them, in one normalised form.

Every coding sheet spells AUs its own way:

* CASME II ``Action Units``: ``4``, ``4+7``, ``L12``, ``R14``, ``L1+L2``, ``?``;
* SAMM ``Action Units``: ``7B``, ``A1+A2``, ``R14A``, ``ref(7B)+43``, ``10A/B``,
  ``(R6 or R12)+R15``, ``R14+17+soft focus``;
* CAS(ME)^3 part A ``AU``: ``2+1``, ``9+4``, ``R2+R1``, ``T18``, ``B28``.

One AU token is ``[position] number [intensity]``:

* position (prefix): ``L`` / ``R`` (left / right side), ``A`` (asymmetric), ``T`` / ``B``
  (top / bottom lip), ``U`` (unilateral), or two of them as ``A/L``;
* number: the FACS action unit (1..99);
* intensity (suffix): a FACS grade ``A``..``E``, or two grades as ``A/B``.

Position and intensity are dropped: the normalised form of a cell is its AU numbers,
sorted and unique, joined with ``+`` (``R14A+17`` -> ``14+17``; an empty or ``/`` cell ->
``""``). Tokens are separated by ``+`` or ``,``.

Two notations mark an AU the coder was not sure of:

* ``ref(X)`` (SAMM): X is referenced but not scored;
* ``X or Y`` (SAMM): one of the two, which one is not said.

``uncertain="exclude"`` (the default) leaves such AUs out of the clip's AUs;
``"include"`` counts them as present (for ``X or Y``: both). Either way they are listed
in :attr:`ParsedAUs.uncertain`, so nothing is dropped silently.

Anything else (``?``, ``soft focus``) does not parse: :func:`parse_au_cell` returns the
reason in :attr:`ParsedAUs.problem`, and the adapters report the row.

"No AU" and "not annotated" are different things. In the ``aus`` column that a user
writes into a flow folder's ``labels.csv`` or a ``frames_csv`` CSV
(:func:`parse_aus_column_cell`), an empty cell means the clip was coded and shows no AU,
while ``?`` or ``NA`` means nobody coded it; such a clip's ``Clip.aus`` is
:data:`NOT_ANNOTATED` and the AU task leaves it out of training and scoring
(:mod:`mefnet.tasks.au`). A dataset in which no clip carries any AU counts as not
annotated as a whole (SMIC, a flow folder without an ``aus`` column).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# The AU set of the field's cross-dataset AU protocol (Varanka et al.): the AUs common
# enough in CASME II, SAMM and CAS(ME)^3 to be learnt across datasets.
DEFAULT_AU_SET: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17)

UNCERTAIN_CHOICES = ("exclude", "include")

_POSITION = r"(?:[LRATBU](?:/[LRATBU])?)?"
_INTENSITY = r"(?:[A-E](?:/[A-E])?)?"
_TOKEN = re.compile(rf"^{_POSITION}(\d{{1,2}}){_INTENSITY}$")
_REF = re.compile(r"^ref\((.*)\)$", re.IGNORECASE)
_EMPTY = ("", "/", "-", "none", "nan")

# Clip.aus of a clip nobody coded for AUs (written in clips.csv as it is).
NOT_ANNOTATED = "?"
# The cells of an ``aus`` column that mean "not annotated" (compared lower-case).
NOT_ANNOTATED_CELLS = ("?", "na", "n/a")


@dataclass(frozen=True)
class ParsedAUs:
    """One AU cell, parsed.

    ``aus``: the AUs counted as present (after the ``uncertain`` policy), sorted.
    ``uncertain``: the AUs written as ``ref(X)`` or ``X or Y``, sorted.
    ``problem``: why the cell does not parse (None when it does).
    """

    aus: tuple[int, ...]
    uncertain: tuple[int, ...] = ()
    problem: str | None = None
    annotated: bool = True

    @property
    def normalised(self) -> str:
        """The form recorded in ``Clip.aus``: ``4+12``, ``""`` (no AU) or :data:`NOT_ANNOTATED`."""
        return normalise(self.aus) if self.annotated else NOT_ANNOTATED


def normalise(aus: Iterable[int]) -> str:
    """``[12, 4, 4]`` -> ``"4+12"``: the form recorded in ``clips.csv``."""
    return "+".join(str(a) for a in sorted(set(int(a) for a in aus)))


def parse_normalised(text: str | None) -> tuple[int, ...]:
    """The AUs of a normalised string (``"4+12"`` -> ``(4, 12)``; ``""`` -> ``()``)."""
    text = "" if text is None else str(text).strip()
    if not text:
        return ()
    try:
        return tuple(sorted({int(t) for t in text.split("+")}))
    except ValueError:
        raise ValueError(f"'{text}' is not a normalised AU list such as 4+12") from None


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN: an empty pandas cell
            return ""
        if value.is_integer():
            return str(int(value))
    return str(value).strip()


def _token_au(token: str) -> int | None:
    m = _TOKEN.match(token.replace(" ", ""))
    if not m:
        return None
    au = int(m.group(1))
    return au if 1 <= au <= 99 else None


def parse_au_cell(value: object, uncertain: str = "exclude") -> ParsedAUs:
    """Parse one sheet cell (see the module docstring for the notation)."""
    if uncertain not in UNCERTAIN_CHOICES:
        raise ValueError(f"uncertain AUs: '{uncertain}' is not one of {', '.join(UNCERTAIN_CHOICES)}")
    text = _cell_text(value)
    if text.lower() in _EMPTY:
        return ParsedAUs(())
    sure: set[int] = set()
    unsure: set[int] = set()
    # Parentheses group alternatives, e.g. "(R6 or R12)+R15": split on + and , outside them.
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch in "+," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    if depth != 0:
        return ParsedAUs((), problem=f"unbalanced parentheses in '{text}'")
    for raw in parts:
        part = raw.strip()
        if not part:
            return ParsedAUs((), problem=f"empty AU between separators in '{text}'")
        ref = _REF.match(part)
        if ref:
            inner = ref.group(1).strip()
            au = _token_au(inner)
            if au is None:
                return ParsedAUs((), problem=f"'{inner}' in '{part}' is not an action unit")
            unsure.add(au)
            continue
        if part.startswith("(") and part.endswith(")"):
            part = part[1:-1].strip()
        alternatives = [a.strip() for a in re.split(r"\s+or\s+", part, flags=re.IGNORECASE)]
        aus = [_token_au(a) for a in alternatives]
        bad = [a for a, au in zip(alternatives, aus, strict=True) if au is None]
        if bad:
            return ParsedAUs(
                (), problem=f"'{bad[0]}' is not an action unit (expected e.g. 12, R12, 7B, A1, ref(7))"
            )
        if len(aus) > 1:
            unsure.update(aus)
        else:
            sure.add(aus[0])
    counted = sure | unsure if uncertain == "include" else sure
    return ParsedAUs(tuple(sorted(counted)), tuple(sorted(unsure - sure)))


def parse_aus_column_cell(value: object, uncertain: str = "exclude") -> ParsedAUs:
    """One cell of the ``aus`` column of a flow folder's ``labels.csv`` or a ``frames_csv``
    CSV: ``?`` / ``NA`` / ``n/a`` -> not annotated; anything else as :func:`parse_au_cell`
    (an empty cell -> no AU; ``ref(X)`` and ``X or Y`` follow ``uncertain``)."""
    if _cell_text(value).lower() in NOT_ANNOTATED_CELLS:
        return ParsedAUs((), annotated=False)
    return parse_au_cell(value, uncertain)


def aus_column_value(value: object, uncertain: str = "exclude", strict: bool = False) -> str:
    """``Clip.aus`` of one ``aus`` column cell (:func:`parse_aus_column_cell`).

    A cell that does not parse raises ValueError saying what was expected when ``strict``
    (the AU task: the row is a bad clip); otherwise the clip counts as not annotated, since
    the emotion task does not use AUs.
    """
    parsed = parse_aus_column_cell(value, uncertain)
    if parsed.problem is None:
        return parsed.normalised
    if strict:
        raise ValueError(
            f"action units '{_cell_text(value)}' do not parse: {parsed.problem}; expected AU numbers "
            "joined by + (4+12), an empty cell (no AU) or ? (not annotated)"
        )
    return NOT_ANNOTATED


def check_uncertain(uncertain: str, config_key: str = "task.uncertain") -> str:
    """The uncertain-AU policy, or a clear error naming the config key."""
    if uncertain not in UNCERTAIN_CHOICES:
        raise ValueError(f"{config_key}: '{uncertain}' is not one of {', '.join(UNCERTAIN_CHOICES)}")
    return uncertain


def is_annotated(aus: str) -> bool:
    """Whether a clip's ``Clip.aus`` says it was coded for AUs (``""``, no AU, counts)."""
    return aus != NOT_ANNOTATED


def au_names(au_set: Sequence[int]) -> list[str]:
    """The column names of an AU set: ``[1, 12]`` -> ``["AU1", "AU12"]``."""
    return [f"AU{int(a)}" for a in au_set]


def check_au_set(au_set: Sequence[int] | None) -> tuple[int, ...]:
    """The configured AU set as sorted unique ints; a clear error for anything else."""
    if au_set is None or len(au_set) == 0:
        raise ValueError("task.au_set is empty: list the action units to recognise, e.g. [1, 2, 4, 12]")
    out = []
    for a in au_set:
        try:
            out.append(int(str(a).upper().removeprefix("AU")))
        except ValueError:
            raise ValueError(f"task.au_set: '{a}' is not an action unit number (e.g. 12 or AU12)") from None
    if len(set(out)) != len(out):
        raise ValueError(f"task.au_set lists an AU twice: {list(au_set)}")
    return tuple(out)


def au_vector(aus: Iterable[int], au_set: Sequence[int]) -> list[int]:
    """Multi-hot target of one clip over ``au_set`` (in the set's order)."""
    have = set(aus)
    return [int(a in have) for a in au_set]


def au_counts(cells: Iterable[object], au_set: Sequence[int] | None = None,
              uncertain: str = "exclude") -> Counter:
    """Clips per AU over parseable cells (every AU when ``au_set`` is None)."""
    counts: Counter = Counter()
    for v in cells:
        p = parse_au_cell(v, uncertain)
        if p.problem is None:
            counts.update(a for a in p.aus if au_set is None or a in au_set)
    return counts
