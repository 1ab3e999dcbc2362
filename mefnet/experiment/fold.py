"""``engine: per_fold``: one fold of an experiment, its one model fitted on its own.

:class:`PerFold` is the :class:`~mefnet.experiment.engine.Engine` that fits one member
(K=1) with Lightning; selection and the end of the fold are
:func:`mefnet.experiment.engine.run_folds`. :func:`run_fold` is the unit of work that
:mod:`mefnet.experiment.train` schedules (in turn, in processes, or as one job of a Hydra
sweep); what it writes, and where, is defined by :mod:`mefnet.runs.store`.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from mefnet.data.datamodule import MERDataModule
from mefnet.datasets.clip_index import ClipIndex
from mefnet.experiment.engine import run_folds
from mefnet.experiment.fitting import close_loggers, fit_model
from mefnet.experiment.plan import task_runner
from mefnet.runs.store import claim_fold, fold_dir
from mefnet.training.module import MERModule
from mefnet.training.selection import InnerValidation


class PerFold:
    """The engine of one fold: each :meth:`fit` builds and trains one model with its own
    Lightning Trainer (:func:`mefnet.experiment.fitting.fit_model`)."""

    def __init__(self, cfg: DictConfig, index: ClipIndex, subject_key: str) -> None:
        self.cfg, self.index, self.subject_key = cfg, index, subject_key
        self.out = fold_dir(cfg.experiment_dir, subject_key)
        self.task = task_runner(cfg, index)
        self.members: list[MERModule] = []
        self.trainer: L.Trainer | None = None

    def tracker_options(self, k: int) -> dict:
        return {}

    def fit(self, dms: Sequence[MERDataModule], epochs: Sequence[int],
            trackers: Sequence[InnerValidation] | None, log_name: str | None) -> None:
        self.close()
        (dm,), (n,) = dms, epochs
        module, self.trainer = fit_model(self.cfg, self.index, dm, self.out, self.subject_key, int(n),
                                         trackers[0] if trackers else None, log_name=log_name, task=self.task)
        self.members = [module]

    def predict(self, dms: Sequence[MERDataModule]) -> list[torch.Tensor]:
        (dm,) = dms
        return [torch.cat(self.trainer.predict(self.members[0], datamodule=dm)).float()]

    def epochs_trained(self, k: int) -> int:
        return int(self.trainer.current_epoch)

    @property
    def loggers(self) -> list:
        return self.trainer.loggers if self.trainer is not None else []

    def close(self) -> None:
        if self.trainer is not None:
            close_loggers(self.trainer)
            self.trainer = None


def run_fold(cfg: DictConfig, index: ClipIndex, features: torch.Tensor, subject_key: str) -> dict:
    """Train on every subject but ``subject_key``, predict ``subject_key`` once, store it."""
    (record,) = run_folds(PerFold(cfg, index, subject_key), [(cfg, subject_key)], index, features)
    return record


def run_fold_locked(cfg: DictConfig, index: ClipIndex, features: torch.Tensor, subject_key: str) -> dict | None:
    """:func:`run_fold` under the fold's lock. None when another process holds the fold (it
    is computing it: skipped, said so) or finished it meanwhile (left untouched)."""
    with claim_fold(cfg.experiment_dir, subject_key) as claimed:
        return run_fold(cfg, index, features, subject_key) if claimed else None


def _run_fold_job(cfg_container: dict, index: ClipIndex, features: torch.Tensor, subject_key: str) -> dict | None:
    return run_fold_locked(OmegaConf.create(cfg_container), index, features, subject_key)
