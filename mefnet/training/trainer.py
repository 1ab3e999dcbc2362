"""The one place that constructs a Lightning ``Trainer`` for fitting.

Every fit of the package goes through :func:`make_trainer`: a fold's fit under either
engine and the final model (through :func:`mefnet.experiment.fitting.build_trainer`, which
adds the configured callbacks and loggers) and the synthetic pretraining
(:mod:`mefnet.training.pretrain`). A setting every fit needs is added here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate


def make_trainer(trainer: Mapping[str, Any], root: str | Path, max_epochs: int, callbacks: list,
                 loggers: list | None = None, **settings) -> L.Trainer:
    """The configured trainer (``trainer``: the ``trainer`` config group's node, instantiated
    by its ``_target_``) writing under ``root``, for ``max_epochs`` epochs, with these
    callbacks and loggers (none: no logger); ``settings`` override the group's keys."""
    return instantiate(trainer, logger=loggers or False, callbacks=list(callbacks),
                       default_root_dir=str(root), max_epochs=int(max_epochs), **settings)
