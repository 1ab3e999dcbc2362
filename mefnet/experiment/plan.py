"""The run plan: the composed config turned into the objects the layers below take.

The config (``conf/`` plus the command line) is read here, in the experiment layer, and
nowhere below it: the packages below ``mefnet.experiment`` (training, runs, data, report,
inference, preprocessing, tasks, datasets, models, losses) receive plain values and
small objects built by this module (the fold split, the task's settings, the pretraining
spec, the tracking spec, factories of the configured model parts), never the config
itself. The exceptions are listed in ``docs/architecture.md`` ("Config below
experiment/") and checked by ``tests/test_plan.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mefnet.config import instantiate_option
from mefnet.datasets.clip_index import ClipIndex
from mefnet.report.tracking import Tracking, group_name
from mefnet.runs.splits import Split
from mefnet.tasks import TaskSettings, task_index
from mefnet.tasks import task_of as _task_of
from mefnet.tasks.au import is_au
from mefnet.tasks.emotion_au import NAME as EMOTION_AU
from mefnet.tasks.emotion_au import is_emotion_au
from mefnet.training.pretrain import SHAPING_KEYS, PretrainSpec, check_pretrain_config
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


def task_name(cfg: DictConfig) -> str:
    """The configured task's name (``emotion``, ``au``, ``emotion_au``), without checking
    its settings (:func:`task_of` does)."""
    task = cfg.get("task")
    return "au" if is_au(task) else EMOTION_AU if is_emotion_au(task) else "emotion"


def _value(cfg: DictConfig, dotted: str) -> Any:
    node = OmegaConf.select(cfg, dotted, default=None)  # None where a key is absent
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def pretrain_spec(cfg: DictConfig) -> PretrainSpec | None:
    """The configured synthetic pretraining (``pretrain`` group), checked; None without one
    (``pretrain`` null or ``pretrain=none``)."""
    pretrain = cfg.get("pretrain")
    if not pretrain:
        return None
    check_pretrain_config(pretrain, task_name(cfg))
    return PretrainSpec(
        pretrain=OmegaConf.to_container(pretrain, resolve=True),
        seed=int(cfg.seed),
        threads=int(cfg.get("threads_per_fold", 1)),
        shaping={k: _value(cfg, k) for k in SHAPING_KEYS},
        cache_dir=str(cfg.paths.cache_dir),
        preprocessing=OmegaConf.to_container(cfg.preprocessing, resolve=True),
        batch_size=int(cfg.data.batch_size),
        backbone=functools.partial(instantiate_option, cfg.backbone),
        loss=loss_factory(cfg),
        optimizer=functools.partial(instantiate, cfg.optimizer),
        augment=functools.partial(instantiate, cfg.augment) if cfg.get("augment") else None,
        trainer=cfg.trainer,
        model_name=str(cfg.backbone.get("name", "the model")),
    )


def tracking_of(cfg: DictConfig) -> Tracking | None:
    """The experiment's wandb summary run (:mod:`mefnet.report.tracking`); None without a
    wandb logger (``logger=wandb``)."""
    wandb = next((lg for lg in (cfg.get("logger") or {}).values()
                  if lg and "Wandb" in str(lg.get("_target_", ""))), None)
    if wandb is None:
        return None
    return Tracking(group=group_name(cfg.experiment_name, cfg.seed), project=wandb.get("project", "mefnet"),
                    offline=bool(wandb.get("offline", True)), config=OmegaConf.to_container(cfg, resolve=True))
