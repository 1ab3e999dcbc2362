"""Evaluation protocols: which clips train and which are tested in each fold.

The ``protocol`` config group (``conf/protocol/``) chooses one:

``loso`` (default)
    leave one subject out: one fold per subject, key ``<dataset>/<subject>``.
``lodo``
    leave one dataset out: one fold per source dataset of a multi-dataset index
    (``dataset=megc2019``, ``dataset=composite``), trained on all the other datasets;
    key ``lodo/<dataset>``.
``holdout``
    hold-out-database: one fold, trained on the datasets in ``protocol.train`` and tested
    on those in ``protocol.test`` (``protocol.train=[casme2,smic] protocol.test=[samm]``);
    key ``holdout/<test datasets joined by +>``. Clips of other datasets are not used.

Every fold key has two parts, so a fold's files live in ``folds/<part>/<part>/`` for
every protocol, and resume, tables and the leak guard work the same way. Inner
validation (``selection=inner_val``) draws its subjects from the fold's training clips.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mefnet.datasets.clip_index import ClipIndex, DatasetError
from mefnet.schema import PROTOCOLS, choice  # the schema owns the list


@dataclass(frozen=True)
class Split:
    """One evaluation protocol over a clip index."""

    name: str = "loso"
    train: tuple[str, ...] = ()
    test: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, protocol: Mapping[str, Any] | None) -> Split:
        """From the ``protocol`` config block, a mapping (None or absent: ``loso``); the
        composed config's split is :func:`mefnet.experiment.plan.split_of`."""
        if protocol is None:
            return cls()
        name = choice("protocol", str(protocol.get("name", "loso")), PROTOCOLS)
        train = tuple(str(d) for d in (protocol.get("train") or ()))
        test = tuple(str(d) for d in (protocol.get("test") or ()))
        if name == "holdout":
            if not train or not test:
                raise ValueError(
                    "protocol=holdout needs protocol.train and protocol.test, e.g. "
                    "protocol.train=[casme2,smic] protocol.test=[samm]"
                )
            both = sorted(set(train) & set(test))
            if both:
                raise ValueError(f"protocol=holdout: {both} is both in protocol.train and protocol.test")
        return cls(name, train, test)

    # -- folds --------------------------------------------------------------------------
    def folds(self, index: ClipIndex) -> list[str]:
        if self.name == "loso":
            return index.subjects
        self._check_datasets(index)
        if self.name == "lodo":
            return [f"lodo/{d}" for d in index.datasets]
        return [f"holdout/{'+'.join(self.test)}"]

    def resolve(self, index: ClipIndex, fold: str) -> str:
        """A user's ``fold=`` value as a fold key (``casme2`` or ``lodo/casme2`` under lodo)."""
        if self.name == "loso":
            return index.resolve_subject(fold)
        keys = self.folds(index)
        for key in keys:
            if fold in (key, key.split("/", 1)[1]):
                return key
        raise DatasetError(f"fold '{fold}' is not a fold of protocol {self.name} (folds: {', '.join(keys)})")

    def indices(self, index: ClipIndex, fold: str) -> tuple[list[int], list[int]]:
        """(train, test) clip indices of ``fold``."""
        if self.name == "loso":
            return index.fold_indices(fold)
        key = self.resolve(index, fold)
        test_sets = set(fold_datasets(key))
        train_sets = set(index.datasets) - test_sets if self.name == "lodo" else set(self.train)
        train = [i for i, c in enumerate(index) if c.dataset in train_sets]
        test = [i for i, c in enumerate(index) if c.dataset in test_sets]
        if not train:
            raise DatasetError(f"fold {key}: no training clip (datasets {sorted(train_sets)})")
        return train, test

    def train_subjects(self, index: ClipIndex, fold: str) -> list[str]:
        train, _ = self.indices(index, fold)
        return list(dict.fromkeys(index[i].subject_key for i in train))

    def describe(self) -> str:
        if self.name == "loso":
            return "leave-one-subject-out"
        if self.name == "lodo":
            return "leave-one-dataset-out"
        return f"hold-out-database: trained on {', '.join(self.train)}, tested on {', '.join(self.test)}"

    def _check_datasets(self, index: ClipIndex) -> None:
        have = index.datasets
        if self.name == "lodo" and len(have) < 2:
            raise DatasetError(
                f"protocol=lodo needs several datasets, {index.name or 'the index'} holds only {have}; "
                "use dataset=composite (or megc2019)"
            )
        unknown = [d for d in (*self.train, *self.test) if d not in have]
        if unknown:
            raise DatasetError(
                f"protocol=holdout names dataset(s) {unknown} that {index.name or 'the index'} does not "
                f"hold (it holds {have})"
            )


def fold_datasets(fold_key: str) -> list[str]:
    """The datasets a fold tests: ``lodo/samm`` -> [samm], ``holdout/a+b`` -> [a, b],
    ``casme2/sub01`` -> [casme2]."""
    head, _, tail = str(fold_key).partition("/")
    if head in ("lodo", "holdout"):
        return tail.split("+")
    return [head]


def fold_contains(fold_key: str, dataset: str, subject: str) -> bool:
    """Whether a clip of ``dataset/subject`` belongs to the test clips of ``fold_key``."""
    head, _, tail = str(fold_key).partition("/")
    if head in ("lodo", "holdout"):
        return dataset in tail.split("+")
    return (dataset, subject) == (head, tail)

