"""The task-specific parts of one fold (``task`` config group): outputs, targets, loss,
and what the task gives the LightningModule beyond :class:`~mefnet.training.module.MERModule`'s
arguments (the module itself is the ``model`` group's, which each task's config
chooses: conf/task/*.yaml). :func:`task_runner` picks the emotion, the action-unit or the multi-task
runner (:mod:`mefnet.tasks`, :mod:`mefnet.tasks.au`, :mod:`mefnet.tasks.emotion_au`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from mefnet.datasets.clip_index import ClipIndex
from mefnet.runs.store import AU_PREDICTIONS, write_au_predictions
from mefnet.schema import uses_inner_val
from mefnet.tasks import TaskSettings
from mefnet.tasks.au import AUBCELoss, AUTask, positive_weights, targets
from mefnet.tasks.emotion_au import NAME as EMOTION_AU
from mefnet.tasks.emotion_au import (
    EmotionAULoss,
    EmotionAUTask,
    au_positive_weights,
    packed_targets,
    unpack,
)

#: The configured emotion loss for the training fold's class counts (the ``loss`` group;
#: :func:`mefnet.experiment.plan.loss_factory`).
LossFactory = Callable[[Sequence[int]], nn.Module]


class TaskRunner:
    """The task-specific parts of one fold: outputs, targets, loss, module options, inner validation."""

    name = "emotion"
    # The module's arguments this task gives beyond MODULE_ARGS (mefnet.training.module):
    # the class of model._target_ must take them.
    module_args: tuple[str, ...] = ()

    def __init__(self, task: TaskSettings, index: ClipIndex, loss: LossFactory) -> None:
        self.task, self.index, self._loss = task, index, loss

    @property
    def num_outputs(self) -> int:
        return self.index.num_classes

    @property
    def output_names(self) -> list[str]:
        return list(self.index.class_names)

    def targets(self) -> torch.Tensor | None:
        return None  # the class labels

    def loss(self, dm):
        return self._loss(dm.train_class_counts())

    def module_options(self) -> dict:
        """The task's own arguments of the module (:attr:`module_args`), by keyword."""
        return {}

    def record(self) -> dict:
        return {"task": self.name}

    def emotion_probabilities(self, out: Path, dm, probs: torch.Tensor) -> torch.Tensor:
        """The emotion class probabilities of a fold's predictions ``probs`` (all of them
        here), after writing any other output of the task into the fold folder ``out``."""
        return probs


class AUTaskRunner(TaskRunner):
    """The ``task=au`` parts of a fold: one output and one 0/1 target per AU, the AU loss
    (:class:`~mefnet.tasks.au.AUBCELoss`); conf/task/au.yaml chooses ``model: au``
    (:class:`~mefnet.training.au.AUModule`)."""

    name = "au"

    task: AUTask

    def __init__(self, task: AUTask, index: ClipIndex, loss: LossFactory, selection: str | None) -> None:
        super().__init__(task, index, loss)
        if self.task.threshold == "inner_val" and not uses_inner_val(selection):
            raise ValueError("task.threshold=inner_val needs selection=inner_val (thresholds come from the "
                             "inner validation subjects)")
        self._targets = targets(index, self.task.au_set)

    @property
    def num_outputs(self) -> int:
        return len(self.task.au_set)

    @property
    def output_names(self) -> list[str]:
        return self.task.names

    def targets(self) -> torch.Tensor:
        return self._targets

    def loss(self, dm):
        if not self.task.pos_weight:
            return AUBCELoss()
        return AUBCELoss(positive_weights(self._targets[dm.train_idx]))  # training fold only

    def record(self) -> dict:
        return {"task": self.name, "au_set": list(self.task.au_set), "au_names": self.task.names}


class EmotionAUTaskRunner(TaskRunner):
    """The ``task=emotion_au`` parts of a fold: the emotion outputs, loss and inner
    validation of ``task=emotion``, plus the masked AU loss and head
    (:class:`~mefnet.tasks.emotion_au.EmotionAULoss`; ``model: emotion_au``,
    :class:`~mefnet.training.multitask.EmotionAUModule`, gets the AU head's size and names)
    and the fold's ``au_predictions.csv``."""

    name = EMOTION_AU
    module_args = ("num_aus", "au_names")

    task: EmotionAUTask

    def __init__(self, task: EmotionAUTask, index: ClipIndex, loss: LossFactory) -> None:
        super().__init__(task, index, loss)
        self._targets = packed_targets(index, self.task.au_set)

    def targets(self) -> torch.Tensor:
        return self._targets

    def loss(self, dm):
        pw = au_positive_weights(self._targets[dm.train_idx]) if self.task.pos_weight else None  # training fold only
        return EmotionAULoss(super().loss(dm), self.task.au_weight, pw)

    def module_options(self) -> dict:
        return {"num_aus": len(self.task.au_set), "au_names": self.task.names}

    def record(self) -> dict:
        return {"task": self.name, "au_set": list(self.task.au_set), "au_weight": self.task.au_weight}

    def emotion_probabilities(self, out: Path, dm, probs: torch.Tensor) -> torch.Tensor:
        """Writes ``au_predictions.csv`` (the AU task's format; the annotated test clips
        only, AUs cut at ``task.threshold_value``) and returns the emotion columns."""
        k = self.index.num_classes
        emotion, au = probs[:, :k], probs[:, k:]
        _, mask, aus = unpack(self._targets[dm.test_idx])
        rows = [j for j in range(len(dm.test_idx)) if mask[j] > 0]
        thresholds = [self.task.threshold_value] * len(self.task.au_set)
        # AU labels are read only now, after prediction, for the file.
        write_au_predictions(out / AU_PREDICTIONS,
                             [(self.index[dm.test_idx[j]].dataset, self.index[dm.test_idx[j]].subject,
                               self.index[dm.test_idx[j]].clip) for j in rows],
                             self.task.names, aus[rows].int().tolist(),
                             (au[rows] >= self.task.threshold_value).int().tolist(), au[rows].tolist(), thresholds)
        return emotion


# Every task's runner, by task name (the schema's TASKS).
RUNNERS: dict[str, type[TaskRunner]] = {r.name: r for r in (TaskRunner, AUTaskRunner, EmotionAUTaskRunner)}


def task_runner(task: TaskSettings, index: ClipIndex, loss: LossFactory, selection: str | None = None) -> TaskRunner:
    """The runner of ``task`` (:func:`mefnet.tasks.task_of`): action units for ``task=au``,
    both for ``task=emotion_au``, else emotion classes. ``loss``: the configured emotion
    loss; ``selection``: the selection rule's name (the AU task's ``threshold=inner_val``
    needs a rule that holds out inner-validation subjects)."""
    if isinstance(task, AUTask):
        return AUTaskRunner(task, index, loss, selection)
    if isinstance(task, EmotionAUTask):
        return EmotionAUTaskRunner(task, index, loss)
    return TaskRunner(task, index, loss)
