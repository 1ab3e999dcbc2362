"""A fold's heartbeat file: ``<fold folder>/running.json``, rewritten after every epoch.

Written by the training callbacks (:mod:`mefnet.training.heartbeat`) while a fold trains;
read by ``mefnet-progress`` (:mod:`mefnet.report.progress`) to show the folds running now,
from any machine that sees the output folder.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

RUNNING = "running.json"


def run_label(experiment_dir: str | Path) -> str:
    """``<experiment>/seed_<n>``: how a heartbeat names its run."""
    exp = Path(experiment_dir)
    return f"{exp.parent.name}/{exp.name}"


def write_running(fold_folder: str | Path, state: dict) -> Path:
    """Replace ``fold_folder``'s heartbeat with ``state`` (NaN as null); returns the file."""
    path = Path(fold_folder) / RUNNING
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RUNNING}.{os.getpid()}")
    tmp.write_text(json.dumps(_finite(state)))
    os.replace(tmp, path)
    return path


def _finite(x):
    """NaN (no loss yet, no validation this epoch) as null: the file stays strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return x


def read_running(fold_folder: str | Path) -> dict | None:
    """The last heartbeat of a fold (None when it has none or it is unreadable)."""
    try:
        return json.loads((Path(fold_folder) / RUNNING).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
