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

from typing import Any

from mefnet.runs.splits import Split


def split_of(cfg: Any) -> Split:
    """The configured protocol's split (``protocol`` config group; LOSO without one)."""
    return Split.from_config(cfg.get("protocol") if cfg is not None else None)
