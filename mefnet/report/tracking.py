"""Weights & Biases tracking, offline by default (no account, no network needed).

With ``logger=wandb`` every fold is one wandb run with its training curves
(``train/*``, and ``val/*`` under ``selection=inner_val``); all folds of one experiment
and seed share a group (``<experiment_name>/seed_<seed>``), so the dashboard shows the
sweep as one group. When the experiment's last fold is done, one more run of the group
(``job_type=summary``) logs the pooled table, the per-class scores and the confusion
matrix.

Runs are written under each fold's directory (``wandb/offline-run-*``) and the summary
under the experiment directory; upload them later with ``wandb sync`` (see README).
``WANDB_MODE=online`` in the environment logs live instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mefnet.report.metrics import confusion_matrix
from mefnet.runs.store import read_experiment, read_run


def _offline_by_default() -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_DISABLE_GIT", "true")


def group_name(experiment_name: str, seed: int) -> str:
    """The wandb group of a run, its experiment and seed, which holds the runs of its folds."""
    return f"{experiment_name}/seed_{seed}"


@dataclass(frozen=True)
class Tracking:
    """An experiment's wandb summary run: the group of its folds' runs, the wandb logger's
    settings (``logger=wandb``) and the resolved config it logs. Built from the config by
    :func:`mefnet.experiment.plan.tracking_of` (None without a wandb logger)."""

    group: str
    project: str = "mefnet"
    offline: bool = True  # the logger's ``offline``; ``WANDB_MODE=online`` overrides it
    config: dict = field(default_factory=dict)


def wandb_run_settings(group: str, subject_key: str, phase: str | None = None) -> dict:
    """Extra ``WandbLogger`` arguments of one fold's run in ``group`` (:func:`group_name`):
    name, group, job type.

    (The run's config is logged with ``log_hyperparams`` once the logger exists.)
    """
    _offline_by_default()
    return {
        "name": f"{subject_key}" + (f" ({phase})" if phase else ""),
        "group": group,
        "job_type": "fold" if not phase else f"fold-{phase}",
    }


def _pooled_predictions(exp_dir: Path) -> tuple[list[int], list[int]]:
    rows = read_run(exp_dir).predictions
    return [r["true"] for r in rows], [r["pred"] for r in rows]


def log_experiment_to_wandb(tracking: Tracking, exp_dir: str | Path, rows: list[dict]) -> Path:
    """Log the finished experiment's table and confusion matrix as the group's summary run.

    Returns the run's local directory.
    """
    import wandb

    _offline_by_default()
    exp_dir = Path(exp_dir)
    record = read_experiment(exp_dir)
    names = record["class_names"]
    run = wandb.init(
        project=tracking.project, group=tracking.group, name="table", job_type="summary",
        dir=str(exp_dir), config=tracking.config, reinit="finish_previous",
        mode="offline" if tracking.offline and os.environ.get("WANDB_MODE") != "online" else "online",
    )
    columns = ["experiment", "part", "uf1", "uar", "accuracy", "clips", "folds"]
    run.log({"results": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])})
    y_true, y_pred = _pooled_predictions(exp_dir)
    cm = confusion_matrix(y_true, y_pred, len(names))
    run.log({"confusion_matrix": wandb.Table(columns=["true", *names],
                                             data=[[names[i], *map(int, cm[i])] for i in range(len(names))])})
    run.log({"confusion_matrix_plot": wandb.plot.confusion_matrix(y_true=y_true, preds=y_pred, class_names=names)})
    for r in rows:
        prefix = "" if r["part"] == "all" else f"{r['part']}/"
        for k in ("uf1", "uar", "accuracy"):
            run.summary[f"{prefix}{k}"] = r[k]
    run.summary["selection"] = record.get("selection", "")
    run_dir = Path(run.dir).parent
    run.finish()
    return run_dir
