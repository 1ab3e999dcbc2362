"""The fold-engine contract: how a fold is selected and how it ends, written once.

An *engine* only fits and predicts: "fit these K members for these epochs (validating on
these trackers' subjects) / predict these clips". :class:`Engine` is that protocol;
:class:`mefnet.experiment.fold.PerFold` fits one member at a time (K=1),
:class:`mefnet.experiment.batched.Batched` fits K members in one vectorised fit.

Everything else is here, above the engines, so both run it unchanged:

* :func:`run_folds`: the selection protocol: the folds' rule
  (:mod:`mefnet.selection_rules`: ``fixed_epochs``, ``inner_val`` with refit or keep
  best, or a user's) fits them from the building blocks offered here (data modules, the
  inner-validation subjects drawn per fold among its training subjects, trackers, fits,
  per-AU thresholds chosen on the inner-validation subjects);
* :func:`finish_folds`: the end of a fold (the one look at the test subjects, the
  finite checks and the check that every test clip was predicted, each with its error
  text, then :func:`write_fold` for each: predictions, checkpoint, model file, pictures
  and ``fold.json`` last).

What a fold writes, and where, is :mod:`mefnet.runs.store`; what a fit is built from
(model, DataModule, loggers, Trainer) is :mod:`mefnet.experiment.fitting`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from mefnet.data.datamodule import MERDataModule
from mefnet.datasets.clip_index import ClipIndex
from mefnet.experiment.fitting import datamodule, inner_tracker, quiet_lightning, versions
from mefnet.experiment.plan import split_of, task_runner
from mefnet.inference.checkpoint import MODEL_FILE, save_model
from mefnet.inference.pictures import fold_pictures
from mefnet.runs.store import (
    CHECKPOINT,
    FOLD_DONE,
    PREDICTIONS,
    fold_dir,
    write_au_predictions,
    write_checkpoint,
    write_predictions,
)
from mefnet.selection_rules import rule_of
from mefnet.training.divergence import (
    check_finite_probabilities,
    check_finite_weights,
    training_warnings,
)
from mefnet.training.module import MERModule
from mefnet.training.selection import InnerValidation, choose_val_subjects
from mefnet.training.task_runner import TaskRunner
from mefnet.utils.files import write_json
from mefnet.utils.testing_seam import pause_point

Job = tuple[DictConfig, str]  # a fold to compute: its config and its test subject (fold key)


class Engine(Protocol):
    """Fits and predicts the K members of one call (member k: ``jobs[k]`` of
    :func:`run_folds`). Selection and the end of a fold are not its business."""

    members: list[MERModule]  # the fitted members, after :meth:`fit`

    def tracker_options(self, k: int) -> dict:
        """Extra arguments of member ``k``'s :class:`InnerValidation` (how it finds its
        member's scores and weights in the fit)."""
        ...

    def fit(self, dms: Sequence[MERDataModule], epochs: Sequence[int],
            trackers: Sequence[InnerValidation] | None, log_name: str | None) -> None:
        """Fit a fresh model per member on ``dms[k]`` for ``epochs[k]`` epochs (validating
        with ``trackers[k]`` when given; ``log_name``: the log folder of an inner run
        before a refit). A previous fit of this engine is closed first."""
        ...

    def predict(self, dms: Sequence[MERDataModule]) -> list[torch.Tensor]:
        """Each member's probabilities for its test clips (``dms[k]``), as float."""
        ...

    def epochs_trained(self, k: int) -> int:
        """The epochs member ``k``'s last fit ran."""
        ...

    @property
    def loggers(self) -> list:
        """The loggers of the last fit (the fold pictures go to wandb through them)."""
        ...

    def close(self) -> None:
        """Finish the last fit's logs and loggers."""
        ...


def selection_rule(cfg: DictConfig) -> str:
    """The selection rule of ``cfg`` in words (stored with the experiment), as its rule
    object says it. The rule's name and its ``inner_val`` block were checked by the schema
    (:mod:`mefnet.schema`) before the run started, which is the one place an unknown rule
    is refused."""
    return rule_of(cfg.selection).describe(int(cfg.trainer.max_epochs), cfg.get("inner_val"))


class _FoldRun:
    """The :class:`mefnet.selection_rules.FoldRun` of one :func:`run_folds` call: the
    building blocks a selection rule fits its folds with."""

    def __init__(self, engine: Engine, jobs: Sequence[Job], index: ClipIndex, features: torch.Tensor,
                 tasks: Sequence[TaskRunner]) -> None:
        self.engine, self.jobs, self.index, self.features, self.tasks = engine, jobs, index, features, tasks
        cfg0 = jobs[0][0]
        self.max_epochs = int(cfg0.trainer.max_epochs)
        self.options = cfg0.get("inner_val")
        self.dms: list[MERDataModule] = []
        self.selections: list[dict] = [{"rule": cfg.selection} for cfg, _ in jobs]
        self.thresholds: list[list[float] | None] = [None] * len(jobs)

    @property
    def members(self) -> list[MERModule]:
        return self.engine.members

    def datamodules(self, val_subjects: Sequence[Sequence[str]] | None = None) -> list[MERDataModule]:
        vals = [None] * len(self.jobs) if val_subjects is None else [list(v) for v in val_subjects]
        return [datamodule(cfg, self.index, self.features, s, v, task=t)
                for (cfg, s), v, t in zip(self.jobs, vals, self.tasks, strict=True)]

    def draw_val_subjects(self) -> list[list[str]]:
        out = []
        for cfg, s in self.jobs:
            split = split_of(cfg)
            out.append(choose_val_subjects(
                self.index, s, float(cfg.inner_val.val_fraction), int(cfg.seed),
                train_subjects=None if split.name == "loso" else split.train_subjects(self.index, s)))
        return out

    def trackers(self, keep_best: bool) -> list[InnerValidation]:
        return [inner_tracker(cfg, self.index, self.tasks[k], keep_best=keep_best, **self.engine.tracker_options(k))
                for k, (cfg, _) in enumerate(self.jobs)]

    def fit(self, dms: Sequence[MERDataModule], epochs: Sequence[int],
            trackers: Sequence[InnerValidation] | None = None, log_name: str | None = None) -> None:
        self.engine.fit(dms, epochs, trackers, log_name)

    def record_inner(self, k: int, tracker: InnerValidation, val_subjects: Sequence[str], **extra) -> None:
        if self.tasks[k].name == "au" and self.tasks[k].task.threshold == "inner_val":
            self.thresholds[k] = tracker.thresholds()
        self.selections[k].update(val_subjects=list(val_subjects), n_val=len(self.dms[k].val_idx), **extra,
                                  **tracker.summary())


def run_folds(engine: Engine, jobs: Sequence[Job], index: ClipIndex, features: torch.Tensor) -> list[dict]:
    """Select, fit and finish the folds ``jobs`` with ``engine`` (their locks held by the
    caller); returns each fold's record. How the folds are fitted and which weights
    predict is their selection rule's (:mod:`mefnet.selection_rules`); the members share
    ``selection`` and ``inner_val`` (the batched engine checks this)."""
    quiet_lightning()
    cfg0 = jobs[0][0]
    torch.set_num_threads(int(cfg0.get("threads_per_fold", 1)))
    start = time.perf_counter()
    outs = [fold_dir(cfg.experiment_dir, s) for cfg, s in jobs]
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
    tasks = [task_runner(cfg, index) for cfg, _ in jobs]
    run = _FoldRun(engine, jobs, index, features, tasks)
    rule = rule_of(cfg0.selection)
    rule.select(run)
    if len(run.dms) != len(jobs):  # a user's rule that forgot to say what its folds predict from
        raise RuntimeError(f"selection={rule.name}: the rule's select left {len(run.dms)} data modules in run.dms "
                           f"for {len(jobs)} folds; it must leave the data modules the test subjects are "
                           "predicted from")
    return finish_folds(engine, jobs, index, run.dms, run.selections, run.thresholds, tasks, start)


def finish_folds(engine: Engine, jobs: Sequence[Job], index: ClipIndex, dms: Sequence[MERDataModule],
                 selections: Sequence[dict], thresholds: Sequence[list[float] | None],
                 tasks: Sequence[TaskRunner], start: float) -> list[dict]:
    """The one and only look at the test subjects, then every fold written. Every member
    is checked before any fold is written; a fold's ``elapsed_s`` is its share of the
    engine's time."""
    probs_of = engine.predict(dms)
    for k, (_, s) in enumerate(jobs):
        check_finite_weights(engine.members[k], f"fold {s}, the trained model")
        if len(probs_of[k]) != len(dms[k].test_idx):  # e.g. fast_dev_run / limit_predict_batches: one batch only
            raise ValueError(
                f"fold {s}: {len(probs_of[k])} predictions for {len(dms[k].test_idx)} test clips; the trainer "
                "predicted only part of the test fold (trainer.fast_dev_run or trainer.limit_predict_batches "
                "with more test clips than data.batch_size); nothing of the fold was written"
            )
        check_finite_probabilities(probs_of[k], f"fold {s}")
    share = (time.perf_counter() - start) / len(jobs)
    records = []
    for k, (cfg, s) in enumerate(jobs):
        records.append(write_fold(
            cfg, index, fold_dir(cfg.experiment_dir, s), s, dms[k], engine.members[k], probs_of[k], selections[k],
            engine.epochs_trained(k), share, engine.loggers, task=tasks[k], thresholds=thresholds[k]))
    engine.close()
    return records


def write_fold(cfg: DictConfig, index: ClipIndex, out: Path, subject_key: str, dm: MERDataModule,
               module: MERModule, probs: torch.Tensor, selection: dict, epochs: int, elapsed_s: float,
               loggers: list, task: TaskRunner | None = None,
               thresholds: list[float] | None = None) -> dict:
    """Write one finished fold: predictions.csv, model.ckpt / model.pt, pictures, and
    fold.json last (the mark of a finished fold). Every engine ends here (through :func:`finish_folds`).

    ``task=au``: ``probs`` are per-AU probabilities, cut at ``thresholds`` (per AU; the
    task's fixed value when None). ``task=emotion_au``: ``probs`` hold the emotion
    probabilities then the AU ones; the task runner writes the AU file and the rest is
    written as for ``task=emotion``."""
    task = task or task_runner(cfg, index)
    if task.name == "au":
        thresholds = thresholds or [task.task.threshold_value] * task.num_outputs
        preds = (probs >= torch.tensor(thresholds)).int()
        # Labels are read only now, after prediction, for the file.
        write_au_predictions(out / PREDICTIONS, [(index[i].dataset, index[i].subject, index[i].clip)
                                                 for i in dm.test_idx],
                             task.output_names, task.targets()[dm.test_idx].int().tolist(), preds.tolist(),
                             probs.tolist(), thresholds)
        selection["thresholds"] = dict(zip(task.output_names, thresholds, strict=True))
        train_counts = {n: int(v) for n, v in zip(task.output_names,
                                                  task.targets()[dm.train_idx].sum(0).tolist(), strict=True)}
    else:
        probs = task.emotion_probabilities(out, dm, probs)  # task=emotion_au also writes its AU file
        train_counts = dm.train_class_counts()
        preds = probs.argmax(dim=1)
        names = index.class_names
        write_predictions(out, [
            [index[i].dataset, index[i].subject, index[i].clip, index[i].label, index[i].label_name, p, names[p],
             *[f"{x:.6f}" for x in pr]]
            for i, p, pr in zip(dm.test_idx, preds.tolist(), probs.tolist(), strict=True)
        ], names)
    if cfg.get("save_checkpoint", True):
        write_checkpoint(out / CHECKPOINT, module, epochs, subject_key, L.__version__)
    if cfg.get("save_model", True):  # model.pt: safe to load, for mefnet-predict / export / pictures
        save_model(out / MODEL_FILE, module.backbone, cfg, task.output_names, fold=subject_key)
    # Attention / stream-weight pictures of the predicted subject, to wandb when it is on
    # (after the predictions are written; nothing here feeds back into training).
    if task.name != "au":
        fold_pictures(loggers, module.backbone, dm.test_set.tensors[0],
                      [index[i].label for i in dm.test_idx], index.class_names, out / "pictures")
    record = {
        "status": "complete",
        "fold": subject_key,
        "seed": int(cfg.seed),
        "selection": selection,
        "epochs": int(epochs),
        "n_train": len(dm.train_idx),
        "n_test": len(dm.test_idx),
        "train_class_counts": train_counts,
        "elapsed_s": round(elapsed_s, 2),
        "versions": versions(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if training_warnings(module):  # a loss that exploded while finite (training/divergence.py)
        record["warnings"] = training_warnings(module)
    write_json(out / FOLD_DONE, record)
    pause_point("fold")
    return record
