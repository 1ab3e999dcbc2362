"""Class protocols: which emotions of which dataset become which class index.

A protocol is chosen by name per dataset (``protocol: megc2019`` in a dataset config).
Class order is fixed here, once, because it is what label indices, confusion matrices and
saved predictions mean:

``megc2019`` (casme2, samm, smic; casme3 as an extension)
    0 negative, 1 positive, 2 surprise. The official MEGC2019 composite mapping:
    CASME II disgust + repression -> negative, happiness -> positive, surprise ->
    surprise (others, fear, sadness dropped); SAMM anger + contempt + disgust + fear +
    sadness -> negative, happiness -> positive, surprise -> surprise (other dropped);
    SMIC its own three classes. CAS(ME)^3 (not part of MEGC2019): anger + disgust + fear +
    sad -> negative, happy -> positive, surprise -> surprise, others dropped.
    The protocol also drops clips without onset->apex motion (apex missing or equal to
    the onset): see :data:`MEGC2019_APEX_RULE`.
``five_class`` (casme2, samm)
    CASME II: 0 happiness, 1 disgust, 2 repression, 3 surprise, 4 others
    (fear, sadness dropped; 246 rows of the 20140508 sheet).
    SAMM: 0 anger, 1 contempt, 2 happiness, 3 surprise, 4 other
    (disgust, fear, sadness dropped; 136 rows).
``all`` (every dataset)
    every estimated emotion the dataset uses, in alphabetical order.
``objective`` (casme2, samm, casme3)
    the objective (action-unit based) classes I..VII in that order (0..6); CASME II and
    SAMM write them 1..7, CAS(ME)^3 as Roman numerals.

An emotion a protocol drops is not an error; an emotion string the dataset's vocabulary
does not know is (a typo or another sheet version), so it can never vanish silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mefnet.datasets.clip_index import DatasetError

MEGC2019_CLASSES = ("negative", "positive", "surprise")
OBJECTIVE_CLASSES = ("I", "II", "III", "IV", "V", "VI", "VII")

# The official MEGC2019 list drops CASME II sub04/EP12_01f (apex "/") and sub05/EP09_05f
# (apex == onset) but keeps sub12/EP09_06 and sub25/EP18_04f (apex == offset): the rule that
# reproduces it is "onset->apex motion must exist", i.e. apex annotated and after onset.
MEGC2019_APEX_RULE = "no onset->apex motion (apex missing or equal to onset)"

# Every emotion each dataset's sheets use (lower case). Anything else is an unknown
# emotion, reported with its row.
EMOTIONS: dict[str, tuple[str, ...]] = {
    "casme2": ("disgust", "fear", "happiness", "others", "repression", "sadness", "surprise"),
    "samm": ("anger", "contempt", "disgust", "fear", "happiness", "other", "sadness", "surprise"),
    "smic": ("negative", "positive", "surprise"),
    "casme3": ("anger", "disgust", "fear", "happy", "others", "sad", "surprise"),
}

_MEGC2019_MAPPING: dict[str, dict[str, str | None]] = {
    "casme2": {
        "disgust": "negative", "repression": "negative", "happiness": "positive",
        "surprise": "surprise", "others": None, "fear": None, "sadness": None,
    },
    "samm": {
        "anger": "negative", "contempt": "negative", "disgust": "negative",
        "fear": "negative", "sadness": "negative", "happiness": "positive",
        "surprise": "surprise", "other": None,
    },
    "smic": {"negative": "negative", "positive": "positive", "surprise": "surprise"},
    "casme3": {
        "anger": "negative", "disgust": "negative", "fear": "negative", "sad": "negative",
        "happy": "positive", "surprise": "surprise", "others": None,
    },
}

_FIVE_CLASS: dict[str, tuple[str, ...]] = {
    "casme2": ("happiness", "disgust", "repression", "surprise", "others"),
    "samm": ("anger", "contempt", "happiness", "surprise", "other"),
}

_ROMAN = {str(i + 1): name for i, name in enumerate(OBJECTIVE_CLASSES)}


@dataclass(frozen=True)
class Protocol:
    """How one dataset's annotations become class labels."""

    name: str
    dataset: str
    class_names: tuple[str, ...]
    # source value (lower-case emotion, or objective class) -> class name; None = dropped
    mapping: dict[str, str | None] = field(default_factory=dict)
    source: str = "emotion"  # "emotion" or "objective"
    drop_clips_without_onset_apex_motion: bool = False

    def class_of(self, value: object, *, where: str) -> str | None:
        """The class name for a sheet value, None when the protocol drops it.

        Raises :class:`DatasetError` (naming ``where``) for a value outside the dataset's
        vocabulary.
        """
        key = normalize_label_value(value, self.source)
        if key in self.mapping:
            return self.mapping[key]
        known = ", ".join(sorted(self.mapping))
        what = "emotion" if self.source == "emotion" else "objective class"
        if key == "":
            raise DatasetError(
                f"{where}: the {what} is blank; expected one of {known}"
            )
        raise DatasetError(
            f"{where}: unknown {what} '{value}' for {self.dataset} (protocol {self.name} knows "
            f"{known}); fix the sheet cell or use a protocol that covers it"
        )

    def label_of(self, class_name: str) -> int:
        return self.class_names.index(class_name)


def normalize_label_value(value: object, source: str) -> str:
    """Sheet spelling -> vocabulary key: emotions lower case, objective classes as I..VII."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if source == "objective":
        return _ROMAN.get(text, text.upper())
    return text.lower()


def protocol_names(dataset: str) -> list[str]:
    """The protocols that exist for ``dataset`` (the choices :func:`get_protocol`'s error lists)."""
    names = []
    if dataset in _MEGC2019_MAPPING:
        names.append("megc2019")
    if dataset in _FIVE_CLASS:
        names.append("five_class")
    names.append("all")
    if dataset in ("casme2", "samm", "casme3"):
        names.append("objective")
    return names


def get_protocol(dataset: str, name: str) -> Protocol:
    """The protocol ``name`` for ``dataset``; the error lists the protocols that exist."""
    if dataset not in EMOTIONS:
        raise DatasetError(f"no class protocols for dataset '{dataset}' (known: {sorted(EMOTIONS)})")
    name = str(name).strip().lower()
    if name == "megc2019" and dataset in _MEGC2019_MAPPING:
        return Protocol(
            "megc2019", dataset, MEGC2019_CLASSES, dict(_MEGC2019_MAPPING[dataset]),
            drop_clips_without_onset_apex_motion=True,
        )
    if name == "five_class" and dataset in _FIVE_CLASS:
        classes = _FIVE_CLASS[dataset]
        mapping = {e: (e if e in classes else None) for e in EMOTIONS[dataset]}
        return Protocol("five_class", dataset, classes, mapping)
    if name == "all":
        classes = tuple(sorted(EMOTIONS[dataset]))
        return Protocol("all", dataset, classes, {e: e for e in classes})
    if name == "objective" and dataset in ("casme2", "samm", "casme3"):
        return Protocol(
            "objective", dataset, OBJECTIVE_CLASSES, {c: c for c in OBJECTIVE_CLASSES},
            source="objective",
        )
    raise DatasetError(
        f"unknown protocol '{name}' for {dataset}; choose one of {protocol_names(dataset)}"
    )


def check_no_empty_class(class_names: tuple[str, ...] | list[str], labels: list[int], *, where: str) -> None:
    """Stop when a class ended up with no clip: LOSO metrics would be undefined for it."""
    empty = [c for k, c in enumerate(class_names) if k not in set(labels)]
    if empty:
        raise DatasetError(
            f"{where}: class(es) {empty} have no clip after mapping emotions to classes; "
            "check the emotion column of the sheet, the protocol, and skipped clips"
        )
