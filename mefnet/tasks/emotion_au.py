"""The multi-task option (``task=emotion_au``): emotion classes and action units learnt
together by one backbone.

* **Emotion**: exactly as ``task=emotion``: the dataset's class protocol, the ``loss``
  group on the backbone's own logits, the same inner validation (emotion scores), the
  same ``predictions.csv`` and table. Every clip of the emotion index is used.
* **Action units**: a second, linear head on the backbone's penultimate features (the
  input of its last ``nn.Linear``, :mod:`mefnet.training.multitask`), one sigmoid output
  per AU of ``task.au_set``; binary cross-entropy with per-AU positive weights
  (``negatives / positives`` over the training fold's annotated clips), times
  ``task.au_weight``, added to the emotion loss.
* **Clips without AU annotation** (a ``?`` / ``NA`` cell, or every clip of a dataset in
  which no clip carries AU codes: SMIC in the MEGC2019 composite) are *masked*: they
  train the emotion head and the backbone through the emotion loss only and contribute
  no AU loss and no AU gradient (:class:`EmotionAULoss`). An annotated clip with no AU of
  the set is a negative for every AU (an all-zero row), never dropped: it is still an
  emotion clip.
* **Targets** travel as one float row per clip (:func:`packed_targets`): the class label,
  the annotation mask, then the multi-hot AU row, so the DataModule, its loaders and
  ``shuffle_train_labels`` (which moves whole rows) need nothing task-specific.
* **AU outputs**: each fold also writes ``au_predictions.csv`` (the AU task's format) for
  its annotated test clips, AUs cut at ``task.threshold_value``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mefnet import schema
from mefnet.datasets.action_units import au_names, au_vector, check_au_set, parse_normalised
from mefnet.datasets.clip_index import ClipIndex
from mefnet.tasks.au import au_annotated

log = logging.getLogger("mefnet")

NAME = "emotion_au"
# Columns of a packed target row before the AU columns: the class label, the AU mask.
LABEL, MASK, FIRST_AU = 0, 1, 2


@dataclass(frozen=True)
class EmotionAUTask:
    """The checked ``task=emotion_au`` settings."""

    name: ClassVar[str] = NAME
    au_set: tuple[int, ...]
    au_weight: float = 1.0
    pos_weight: bool = True
    threshold_value: float = 0.5

    @classmethod
    def from_config(cls, task: Mapping[str, Any]) -> EmotionAUTask:
        """The settings of the ``task`` config block (``task=emotion_au``), checked."""
        checked = schema.Task(name=NAME, au_weight=task.get("au_weight", 1.0),
                              threshold_value=task.get("threshold_value", 0.5))
        return cls(check_au_set(list(task.get("au_set") or [])), checked.au_weight,
                   bool(task.get("pos_weight", True)), checked.threshold_value)

    @property
    def names(self) -> list[str]:
        return au_names(self.au_set)


def is_emotion_au(task: Mapping[str, Any] | None) -> bool:
    """Whether the ``task`` config block is the multi-task option (``name: emotion_au``);
    no block (None) means emotion."""
    return task is not None and str(task.get("name", "emotion")) == NAME


def check_index(index: ClipIndex) -> ClipIndex:
    """``index`` unchanged (every emotion clip is used), once checked to hold AU annotation;
    says how many clips, of which datasets, train the emotion head only."""
    mask = au_annotated(index, NAME)
    masked = [c for c, m in zip(index, mask, strict=True) if not m]
    if masked:
        per_dataset = {d: sum(c.dataset == d for c in masked) for d in dict.fromkeys(c.dataset for c in masked)}
        log.info("task=emotion_au: %d of %d clips have no action-unit annotation; they train the emotion head "
                 "only, with no AU loss (%s)", len(masked), len(index),
                 ", ".join(f"{d}: {n}" for d, n in per_dataset.items()))
    return index


def packed_targets(index: ClipIndex, au_set: Sequence[int]) -> torch.Tensor:
    """(clips, 2 + AUs) float rows: class label, 1 if the clip has AU annotation else 0,
    then its multi-hot AUs (zeros for a clip without annotation). An index without any
    AU annotation is an error (:func:`mefnet.tasks.au.coded_datasets`)."""
    mask = au_annotated(index, NAME)
    rows = [[float(c.label), float(m), *(au_vector(parse_normalised(c.aus), au_set) if m else [0] * len(au_set))]
            for c, m in zip(index, mask, strict=True)]
    return torch.tensor(rows, dtype=torch.float32)


def unpack(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(labels, mask, AU targets) of a batch of packed rows."""
    return y[:, LABEL].long(), y[:, MASK], y[:, FIRST_AU:]


def au_positive_weights(packed: torch.Tensor) -> torch.Tensor:
    """negatives / positives per AU over the annotated rows of ``packed`` (1 where an AU
    has no positive), as ``task=au`` counts them."""
    _, mask, aus = unpack(packed)
    aus = aus[mask > 0]
    pos = aus.sum(dim=0)
    neg = len(aus) - pos
    return torch.where(pos > 0, neg / pos.clamp(min=1), torch.ones_like(pos))


class EmotionAULoss(nn.Module):
    """The emotion loss plus ``au_weight`` times the AU binary cross-entropy, the latter
    averaged over the annotated clips of the batch only (and over AUs): a clip whose mask
    is 0 adds nothing to it and gets no gradient from it; a batch without an annotated
    clip has an AU loss of 0.

    Args:
        emotion_loss: the built ``loss`` group, called ``emotion_loss(logits, labels)``.
        au_weight: the AU loss's weight (0: the AU head learns nothing, emotion as alone).
        pos_weight: per-AU positive weights of the BCE (None: 1).
    """

    def __init__(self, emotion_loss: nn.Module, au_weight: float = 1.0, pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.emotion_loss = emotion_loss
        self.au_weight = float(au_weight)
        self.register_buffer("pos_weight", None if pos_weight is None else pos_weight.float())

    def parts(self, emotion_logits: torch.Tensor, au_logits: torch.Tensor,
              y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(emotion loss, masked AU loss) of a batch of packed target rows."""
        labels, mask, aus = unpack(y)
        emotion = self.emotion_loss(emotion_logits, labels)
        keep = mask > 0
        if not keep.any():
            return emotion, au_logits.new_zeros(())
        pw = None if self.pos_weight is None else self.pos_weight.to(au_logits.dtype)
        # The annotated rows only (an index, not a product with the mask): a masked clip is
        # out of the graph, so not even a non-finite AU logit of it can reach the gradient.
        au = F.binary_cross_entropy_with_logits(au_logits[keep], aus[keep].to(au_logits.dtype), pos_weight=pw)
        return emotion, au

    def forward(self, emotion_logits: torch.Tensor, au_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emotion, au = self.parts(emotion_logits, au_logits, y)
        return emotion + self.au_weight * au
