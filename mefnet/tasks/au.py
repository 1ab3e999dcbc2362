"""The action-unit task (``task=au``): multi-label AU recognition with the same backbones.

* **Targets**: each clip's normalised AUs (``Clip.aus``, parsed from the dataset's own
  notation by :mod:`mefnet.datasets.action_units`) as a multi-hot row over
  ``task.au_set``. A clip with no AU of the set is dropped (``no_au_clips: drop``, the
  default; every such clip is listed in ``ClipIndex.skipped`` and the log) or kept with
  an all-zero row (``keep``).
* **Clips without AU annotation** are left out of AU training and scoring (listed in
  ``ClipIndex.skipped`` and the log): a clip whose ``aus`` cell says ``?`` / ``NA``
  (``Clip.aus == NOT_ANNOTATED``), and every clip of a dataset in which no clip carries
  any AU (SMIC in a composite, a flow folder without an ``aus`` column). An index with
  no annotated clip at all is an error, never a run on empty targets.
* **Model**: the backbone with one output per AU (its head sized by the task), sigmoid.
* **Loss**: binary cross-entropy, with per-AU positive weights ``negatives / positives``
  counted on the training fold only (``pos_weight: true``; an AU with no positive
  training clip gets weight 1).
* **Thresholds**: ``threshold: fixed`` uses ``threshold_value`` (0.5) for every AU;
  ``inner_val`` picks, per AU, the threshold with the best F1 on the inner-validation
  subjects' predictions at the chosen epoch (training subjects only; needs
  ``selection=inner_val``).
* **Inner validation**: the same rule as the emotion task, on AU scores: ``uf1`` means
  the macro F1 over AUs, ``uar`` the average binary F1, ``accuracy`` the per-label
  accuracy, ``loss`` the plain binary cross-entropy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mefnet import schema
from mefnet.datasets.action_units import (
    au_names,
    au_vector,
    check_au_set,
    is_annotated,
    parse_normalised,
)
from mefnet.datasets.clip_index import ClipIndex, DatasetError
from mefnet.utils.metrics import f1_from_counts

log = logging.getLogger("mefnet")

THRESHOLD_GRID = tuple(round(t, 2) for t in np.arange(0.05, 0.951, 0.05))


@dataclass(frozen=True)
class AUTask:
    """The checked ``task=au`` settings: the AU set, what becomes of clips without AU, positive
    weights and the decision threshold."""

    name: ClassVar[str] = "au"
    au_set: tuple[int, ...]
    no_au_clips: str = "drop"
    pos_weight: bool = True
    threshold: str = "fixed"
    threshold_value: float = 0.5

    @classmethod
    def from_config(cls, task: Mapping[str, Any]) -> AUTask:
        """The settings of the ``task`` config block (``task=au``), checked."""
        checked = schema.Task(name="au", no_au_clips=task.get("no_au_clips", "drop"),
                              threshold=task.get("threshold", "fixed"),
                              threshold_value=task.get("threshold_value", 0.5))
        return cls(check_au_set(list(task.get("au_set") or [])), checked.no_au_clips,
                   bool(task.get("pos_weight", True)), checked.threshold, checked.threshold_value)

    @property
    def names(self) -> list[str]:
        return au_names(self.au_set)


def is_au(task: Mapping[str, Any] | None) -> bool:
    """Whether the ``task`` config block is the action-unit task (``name: au``); no block
    (None) means emotion."""
    return task is not None and str(task.get("name", "emotion")) == "au"


def coded_datasets(index: ClipIndex, task_name: str) -> set[str]:
    """The datasets of ``index`` in which some clip carries AU codes (a clip of another
    dataset has no AU annotation, whatever its cell says); an error naming ``task_name``
    when there is none."""
    coded = {c.dataset for c in index if c.aus and is_annotated(c.aus)}
    if not coded:
        raise DatasetError(
            f"task={task_name}: no action-unit annotation on any clip of {index.name or 'the index'} (dataset(s) "
            f"{index.datasets}; SMIC has none, and a flow folder or frames_csv needs an aus column: "
            "see docs/action_units.md, or fill it with mefnet-aus attach)"
        )
    return coded


def au_annotated(index: ClipIndex, task_name: str) -> list[bool]:
    """Per clip, whether it has an AU annotation (the rule of the module docstring: its
    dataset carries AU codes and its cell is not ``?`` / ``NA``)."""
    coded = coded_datasets(index, task_name)
    return [c.dataset in coded and is_annotated(c.aus) for c in index]


def prepare_index(index: ClipIndex, task: AUTask) -> ClipIndex:
    """The clips the AU task uses (see the module docstring); the others are listed."""
    coded = coded_datasets(index, "au")
    annotated, unannotated = [], []
    for c in index:
        (annotated if c.dataset in coded and is_annotated(c.aus) else unannotated).append(c)
    skipped = list(index.skipped)
    if unannotated:
        per_dataset = {d: sum(c.dataset == d for c in unannotated) for d in dict.fromkeys(c.dataset for c in unannotated)}
        log.warning("task=au: %d of %d clips have no action-unit annotation and are left out of AU training "
                    "and scoring (%s)", len(unannotated), len(index),
                    ", ".join(f"{d}: {n}" for d, n in per_dataset.items()))
        # A dataset without any AU code is one entry (SMIC would be 164 lines); a clip marked
        # not annotated in an annotated dataset is named.
        skipped += [f"{d}: all {n} clips: no action-unit annotation in the dataset (left out of the AU task)"
                    for d, n in per_dataset.items() if d not in coded]
        skipped += [f"{c.clip_key}: no action-unit annotation (left out of the AU task)"
                    for c in unannotated if c.dataset in coded]
    wanted = set(task.au_set)
    kept, dropped = [], []
    for c in annotated:
        (kept if task.no_au_clips == "keep" or set(parse_normalised(c.aus)) & wanted else dropped).append(c)
    if dropped:
        listing = ", ".join(f"{c.clip_key} ({c.aus or 'no AU'})" for c in dropped[:20])
        log.warning("task=au: %d of %d clips have no AU of %s and are left out (task.no_au_clips=drop): %s%s",
                    len(dropped), len(annotated), list(task.au_set), listing, " ..." if len(dropped) > 20 else "")
    skipped += [f"{c.clip_key}: no AU of the AU set (AUs: {c.aus or 'none'})" for c in dropped]
    if not kept:
        raise DatasetError(f"task=au: no clip of {index.name or 'the index'} has an AU of {list(task.au_set)}")
    out = index.with_clips(kept)
    out.skipped = skipped
    return out


def targets(index: ClipIndex, au_set: Sequence[int]) -> torch.Tensor:
    """(clips, AUs) float multi-hot targets."""
    return torch.tensor([au_vector(parse_normalised(c.aus), au_set) for c in index], dtype=torch.float32)


def positive_weights(train_targets: torch.Tensor) -> torch.Tensor:
    """negatives / positives per AU over the training fold (1 where an AU has no positive)."""
    pos = train_targets.sum(dim=0)
    neg = len(train_targets) - pos
    return torch.where(pos > 0, neg / pos.clamp(min=1), torch.ones_like(pos))


class AUBCELoss(nn.Module):
    """Binary cross-entropy over AUs, optionally with per-AU positive weights."""

    def __init__(self, pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("pos_weight", None if pos_weight is None else pos_weight.float())

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pw = None if self.pos_weight is None else self.pos_weight.to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), pos_weight=pw)


def au_scores(y_true, y_pred, names: list[str] | None = None) -> dict:
    """Pooled AU scores of (clips, AUs) 0/1 arrays (see the module docstring)."""
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    if t.shape != p.shape or t.ndim != 2:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must both be (clips, AUs)")
    if len(t) == 0:
        raise ValueError("no predictions to score")
    k = t.shape[1]
    names = list(names) if names else [str(i) for i in range(k)]
    tp = (t & p).sum(0).astype(float)
    fp = (~t & p).sum(0).astype(float)
    fn = (t & ~p).sum(0).astype(float)
    tn = (~t & ~p).sum(0).astype(float)
    f1 = f1_from_counts(tp, fp, fn).tolist()
    f1_neg = f1_from_counts(tn, fn, fp).tolist()
    present = [i for i in range(k) if t[:, i].any()]
    return {
        "n": int(len(t)),
        "au_names": names,
        "f1_per_au": {names[i]: (f1[i] if i in present else None) for i in range(k)},
        "support": {names[i]: int(t[:, i].sum()) for i in range(k)},
        "macro_f1": float(np.mean([f1[i] for i in present])) if present else float("nan"),
        "avg_binary_f1": float(np.mean([(f1[i] + f1_neg[i]) / 2 for i in present])) if present else float("nan"),
        "label_accuracy": float((t == p).mean()),
        "absent": [names[i] for i in range(k) if i not in present],
    }
