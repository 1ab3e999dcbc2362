"""The run plan: the composed config turned into the objects the layers below take.

The config (``conf/`` plus the command line) is read here, in the experiment layer, and
nowhere below it: the packages under ``mefnet.experiment`` (training, runs, data, report,
inference, preprocessing, tasks, datasets, models, losses) receive plain values and
small objects built by this module (the fold split, the task's settings, the pretraining
spec, the tracking spec, factories of the configured model parts), never the config
itself. The exceptions are listed in ``docs/architecture.md`` ("Config below
experiment/") and checked by ``tests/test_layers_config.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from mefnet.config import instantiate_option
from mefnet.datasets.clip_index import ClipIndex
from mefnet.runs.splits import Split
from mefnet.tasks import TaskSettings, task_index
from mefnet.tasks import task_of as _task_of
from mefnet.training.task_runner import LossFactory, TaskRunner
from mefnet.training.task_runner import task_runner as _task_runner


def split_of(cfg: DictConfig | None) -> Split:
    """The configured protocol's split (``protocol`` config group; LOSO without one)."""
    return Split.from_config(cfg.get("protocol") if cfg is not None else None)


def task_of(cfg: DictConfig) -> TaskSettings:
    """The configured task's checked settings (``task`` config group; emotion without one)."""
    return _task_of(cfg.get("task"))


def load_index(cfg: DictConfig) -> ClipIndex:
    """The configured dataset's clip index (``dataset.index``), as the configured task uses it."""
    index: ClipIndex = instantiate(cfg.dataset.index)
    return task_index(index, task_of(cfg))


def _loss(node: Mapping[str, Any], class_counts: Sequence[int]) -> nn.Module:
    return instantiate_option(node)(class_counts=class_counts)


def loss_factory(cfg: DictConfig) -> LossFactory:
    """The configured loss (``loss`` group) as a function of the training fold's class
    counts; built when called, so that it draws nothing from the random streams before."""
    return functools.partial(_loss, cfg.get("loss"))


def task_runner(cfg: DictConfig, index: ClipIndex) -> TaskRunner:
    """The configured task's runner for ``index`` (:func:`mefnet.training.task_runner.task_runner`)."""
    return _task_runner(task_of(cfg), index, loss_factory(cfg), cfg.get("selection"))
