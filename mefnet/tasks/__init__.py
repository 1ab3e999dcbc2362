"""What a run learns (``task`` config group): emotion classes or action units.

``task=emotion`` (default): the dataset's class protocol, softmax and the ``loss`` group.
``task=au``: multi-label action units (:mod:`mefnet.tasks.au`).
``task=emotion_au``: both, one backbone and two heads (:mod:`mefnet.tasks.emotion_au`).

:func:`task_index` is the one place where the dataset's clip index becomes the index a
run uses (through :func:`mefnet.experiment.plan.load_index`, which the LOSO runner and the
sweeper both call), so the AU task's clip choice is the same everywhere; :func:`task_of`
turns the ``task`` config block into the task's checked settings. The task's training
parts (its module, loss and inner validation for one fold) are
:mod:`mefnet.training.task_runner`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mefnet.datasets.clip_index import ClipIndex
from mefnet.tasks.au import AUTask, is_au, prepare_index
from mefnet.tasks.emotion_au import EmotionAUTask, check_index, is_emotion_au


@dataclass(frozen=True)
class EmotionTask:
    """The default task (``task=emotion``): the dataset's emotion classes; no settings of its own."""

    name: ClassVar[str] = "emotion"


#: A task's checked settings; its ``name`` is the ``task`` config group's ``name``.
TaskSettings = EmotionTask | AUTask | EmotionAUTask


def task_of(task: Mapping[str, Any] | None) -> TaskSettings:
    """The checked settings of the ``task`` config block (None: no block, emotion)."""
    if is_au(task):
        return AUTask.from_config(task)
    if is_emotion_au(task):
        return EmotionAUTask.from_config(task)
    return EmotionTask()


def task_index(index: ClipIndex, task: TaskSettings) -> ClipIndex:
    """The clip index ``index`` (the dataset adapter's) as ``task`` uses it: the AU task's
    annotated clips (:func:`mefnet.tasks.au.prepare_index`), the multi-task option's
    index once checked, every clip for emotion."""
    if isinstance(task, AUTask):
        return prepare_index(index, task)
    if isinstance(task, EmotionAUTask):
        return check_index(index)
    return index
