"""A progress bar for training, on a terminal only.

Someone watching ``mefnet-train`` on a terminal sees each fit's epochs and steps advance
(Lightning's rich progress bar, one fit per fold, or one for the folds the batched engine
trains together); between fits, mefnet's own log line says which fold finished, how many
are done and about how long is left. Anywhere else (a log file, CI, a fold worker process
of ``n_jobs`` or a Hydra launcher, whose bars would overwrite each other) there is no bar:
only those log lines.

The bar only reads the trainer's counters: it draws no random numbers and changes no
prediction.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

from lightning.pytorch.callbacks import RichProgressBar

#: Set to ``0`` to never draw the bar (``1``: draw it even where the checks below say no).
ENV = "MEFNET_PROGRESS_BAR"


def on_terminal() -> bool:
    """Whether training should draw a progress bar: stdout is a terminal, not under CI, in
    the main process (not a fold worker); ``MEFNET_PROGRESS_BAR=0|1`` decides instead."""
    forced = os.environ.get(ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false"):
        return False
    if multiprocessing.parent_process() is not None:
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


def progress_bar() -> RichProgressBar | None:
    """The progress-bar callback for a training fit, or None where :func:`on_terminal` says no."""
    return RichProgressBar(leave=False) if on_terminal() else None
