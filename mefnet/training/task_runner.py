"""The task-specific parts of one fold (``task`` config group): outputs, targets, loss,
LightningModule. :func:`task_runner` picks the emotion or the action-unit runner
(:mod:`mefnet.tasks`, :mod:`mefnet.tasks.au`)."""

from __future__ import annotations

import torch

from mefnet.config import instantiate_option
from mefnet.datasets.clip_index import ClipIndex
from mefnet.schema import uses_inner_val
from mefnet.tasks.au import AUBCELoss, AUTask, is_au, positive_weights, targets
from mefnet.training.au import AUModule
from mefnet.training.module import MERModule


class TaskRunner:
    """The task-specific parts of one fold: outputs, targets, loss, module, inner validation."""

    name = "emotion"

    def __init__(self, cfg, index: ClipIndex) -> None:
        self.cfg, self.index = cfg, index

    @property
    def num_outputs(self) -> int:
        return self.index.num_classes

    @property
    def output_names(self) -> list[str]:
        return list(self.index.class_names)

    def targets(self) -> torch.Tensor | None:
        return None  # the class labels

    def loss(self, dm):
        return instantiate_option(self.cfg.loss)(class_counts=dm.train_class_counts())

    def module_class(self):
        return MERModule

    def record(self) -> dict:
        return {"task": self.name}


class AUTaskRunner(TaskRunner):
    """The ``task=au`` parts of a fold: one output and one 0/1 target per AU, the AU loss
    (:class:`~mefnet.tasks.au.AUBCELoss`) and :class:`~mefnet.training.au.AUModule`."""

    name = "au"

    def __init__(self, cfg, index: ClipIndex) -> None:
        super().__init__(cfg, index)
        self.task = AUTask.from_config(cfg.task)
        if self.task.threshold == "inner_val" and not uses_inner_val(cfg.selection):
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

    def module_class(self):
        return AUModule

    def record(self) -> dict:
        return {"task": self.name, "au_set": list(self.task.au_set), "au_names": self.task.names}


def task_runner(cfg, index: ClipIndex) -> TaskRunner:
    """The runner of the configured task: action units for ``task=au``, else emotion classes."""
    return AUTaskRunner(cfg, index) if is_au(cfg) else TaskRunner(cfg, index)
