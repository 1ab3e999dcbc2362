"""One fold of a leave-one-subject-out experiment: train on every subject but one,
predict that one once, store the predictions and the fold's record.

:func:`run_fold` is the unit of work that :mod:`mefnet.experiment.train` schedules (in
turn, in processes, or as one job of a Hydra sweep); what it writes, and where, is
defined by :mod:`mefnet.runs.store`.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import mefnet
from mefnet.config import instantiate_option
from mefnet.data.datamodule import MERDataModule
from mefnet.datasets.clip_index import ClipIndex
from mefnet.inference.checkpoint import MODEL_FILE, save_model
from mefnet.inference.pictures import fold_pictures
from mefnet.preprocessing.features import Preprocessing
from mefnet.report.tracking import wandb_run_settings
from mefnet.runs.splits import split_of
from mefnet.runs.store import (
    FOLD_DONE,
    PREDICTIONS,
    claim_fold,
    fold_dir,
    write_au_predictions,
    write_predictions,
)
from mefnet.training.au import AUInnerValidation
from mefnet.training.augment import FlowAugment
from mefnet.training.divergence import (
    FiniteCheck,
    check_finite_probabilities,
    check_finite_weights,
    training_warnings,
)
from mefnet.training.heartbeat import Heartbeat
from mefnet.training.module import MERModule
from mefnet.training.pretrain import pretrained_weights
from mefnet.training.selection import InnerValidation, choose_val_subjects
from mefnet.training.task_runner import TaskRunner, task_runner
from mefnet.utils.files import write_json
from mefnet.utils.quiet import quiet
from mefnet.utils.testing_seam import pause_point

log = logging.getLogger("mefnet")

# Backbones that convolve all three maps together, so any channel order is a valid input.
_ORDER_FREE = ("STSTNet", "SmallResNet")


def _quiet_lightning() -> None:
    quiet()  # OpenCV, Lightning's resume warning, loky, the joblib launcher (mefnet.utils.quiet)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*`training_step` returns.*")
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")


def versions() -> dict:
    import cv2
    import numpy


    commit = ""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(mefnet.__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "mefnet": mefnet.__version__,
        "git_commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
    }


def selection_rule(cfg: DictConfig) -> str:
    if cfg.selection == "fixed_epochs":
        return (
            f"fixed_epochs: trained {cfg.trainer.max_epochs} epochs, the test subject predicted once "
            "after training; it is never used for early stopping, checkpoint choice or priors"
        )
    if cfg.selection == "inner_val":
        iv = cfg.get("inner_val")
        if iv is None:
            raise ValueError("selection: inner_val needs an inner_val block (val_fraction, metric, smooth, refit)")
        then = ("retrained on the whole training fold for that many epochs" if iv.refit
                else "the weights of that epoch kept")
        return (
            f"inner_val: {round(100 * float(iv.val_fraction))}% of the training subjects (seeded draw per fold) "
            f"held out; the epoch (1..{cfg.trainer.max_epochs}) with the best validation {iv.metric} "
            f"(smoothed over {iv.smooth}) chosen, {then}; the test subject predicted once at the end and "
            "never used for epoch choice, checkpoint choice or priors"
        )
    raise ValueError(f"selection: '{cfg.selection}' is not supported; use fixed_epochs or inner_val")


def _instantiate_loggers(cfg: DictConfig, out: Path, subject_key: str, name: str | None = None) -> list:
    loggers = []
    for key, lg in (cfg.logger or {}).items():
        if lg is None:
            continue
        extra = {"save_dir": str(out)}
        if name and "CSVLogger" in str(lg.get("_target_", "")):
            extra["name"] = name
        if "Wandb" in str(lg.get("_target_", "")):
            extra.update(wandb_run_settings(cfg, subject_key, name))
            logger = instantiate(lg, **extra)
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
            loggers.append(logger)
            continue
        loggers.append(instantiate(lg, **extra))
        log.debug("logger %s -> %s", key, out)
    return loggers


def _close_loggers(trainer: L.Trainer) -> None:
    for lg in trainer.loggers:
        lg.finalize("success")
        if type(lg).__name__ == "WandbLogger":
            lg.experiment.finish()  # one wandb run per fold, not one for the whole process


def build_module(cfg: DictConfig, index: ClipIndex, dm: MERDataModule, task: TaskRunner | None = None) -> MERModule:
    """Seed, then build a fresh model and loss (priors from ``dm``'s training clips) for
    the configured task (its output head, loss and module class). With ``pretrain`` the
    model starts from the seed's pretrained weights (:mod:`mefnet.training.pretrain`)."""
    pretrained = pretrained_weights(cfg, list(index.class_names))  # computed once per seed, then cached
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    task = task or task_runner(cfg, index)
    order = cfg.preprocessing.get("channel_order", "uvs")
    if order != "uvs" and str(cfg.backbone.get("_target_", "")).rpartition(".")[2] not in _ORDER_FREE:
        raise ValueError(f"preprocessing.channel_order={order} feeds strain as channel 0; backbone "
                         f"{cfg.backbone._target_} reads its maps by position (u, v, strain), so it needs uvs")
    backbone = instantiate_option(cfg.backbone, num_classes=task.num_outputs)  # the head is sized by the task
    if pretrained is not None:  # pretrain=synthetic: start from the seed's pretrained weights
        backbone.load_state_dict(pretrained)
    loss = task.loss(dm)
    augment = instantiate(cfg.augment) if cfg.get("augment") else None
    mirror = None
    if cfg.get("test_time_mirror", False):
        mirror = FlowAugment(scale=str(cfg.preprocessing.normalize))
    if (order != "uvs" or float(cfg.preprocessing.get("scale", 1.0)) != 1.0) and (
            mirror is not None or (augment is not None and augment.active)):
        raise ValueError("augment and test_time_mirror need preprocessing.channel_order=uvs and "
                         "preprocessing.scale=1 (they transform channel 0 as u, on the 0..1 or raw scale)")
    return task.module_class()(
        backbone, loss, instantiate(cfg.optimizer), task.num_outputs, task.output_names,
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None, augment=augment,
        test_time_mirror=mirror,
    )


def build_trainer(cfg: DictConfig, out: Path, max_epochs: int, callbacks: list, loggers: list,
                  validate_every: int | None = None) -> L.Trainer:
    """The configured trainer; ``validate_every``: run Lightning's validation loop (the inner
    validation subjects only) every that many epochs, else no validation at all."""
    extra = {}
    if validate_every is not None:
        extra = {"limit_val_batches": 1.0, "check_val_every_n_epoch": int(validate_every), "num_sanity_val_steps": 0}
    configured = [instantiate(cb) for cb in (cfg.callbacks or {}).values() if cb is not None]
    return instantiate(
        cfg.trainer, logger=loggers or False, callbacks=configured + callbacks,
        default_root_dir=str(out), max_epochs=int(max_epochs), **extra,
    )


def _fit(cfg: DictConfig, index: ClipIndex, dm: MERDataModule, out: Path, subject_key: str,
         max_epochs: int, tracker: InnerValidation | None = None,
         log_name: str | None = None, task: TaskRunner | None = None) -> tuple[MERModule, L.Trainer]:
    """Build a fresh model and train it on ``dm`` (validating on its inner-validation
    subjects when ``tracker`` selects the epoch)."""
    module = build_module(cfg, index, dm, task)
    loggers = _instantiate_loggers(cfg, out, subject_key, log_name)
    every = None if tracker is None else tracker.check_every_n_epochs(tracker.every, max_epochs)
    heartbeat = Heartbeat(out, cfg.experiment_dir, subject_key, stage="inner-validation run" if log_name else "")
    trainer = build_trainer(cfg, out, max_epochs,
                            [FiniteCheck(subject_key), heartbeat] + ([] if tracker is None else [tracker]),
                            loggers, every)
    trainer.fit(module, datamodule=dm)
    return module, trainer


def inner_tracker(cfg: DictConfig, index: ClipIndex, task: TaskRunner | None = None, **kwargs) -> InnerValidation:
    iv = cfg.inner_val
    task = task or task_runner(cfg, index)
    options = dict(metric=str(iv.metric), smooth=int(iv.smooth), every_n_epochs=int(iv.every_n_epochs),
                   min_epochs=int(iv.min_epochs), keep_best=not bool(iv.refit), **kwargs)
    if task.name == "au":
        return AUInnerValidation(task.num_outputs, **options)
    return InnerValidation(index.num_classes, **options)


def _datamodule(cfg: DictConfig, index: ClipIndex, features: torch.Tensor, subject_key: str,
                val_subjects: list[str] | None = None, task: TaskRunner | None = None) -> MERDataModule:
    """The fold's LightningDataModule, instantiated from ``cfg.dataset`` (its ``_target_``)
    and completed with this run's clip index and input maps (built once per run, shared by
    every fold), the fold, the protocol's split, the task's targets and the loader settings.
    Lightning sets it up in ``trainer.fit`` / ``trainer.predict``."""
    if "_target_" not in cfg.dataset:
        raise ValueError("dataset: the config has no _target_ (the LightningDataModule to build); add "
                         "`_target_: mefnet.data.datamodule.MERDataModule` and `_recursive_: false` "
                         "as in conf/dataset/*.yaml")
    split = split_of(cfg)
    build = instantiate(cfg.dataset, _partial_=True)
    return build(
        index=index, features=features, preprocessing=Preprocessing.from_config(cfg.preprocessing),
        cache_dir=cfg.preprocessing.cache_dir, fold=subject_key, batch_size=int(cfg.data.batch_size),
        shuffle_train_labels=bool(cfg.shuffle_train_labels), seed=int(cfg.seed), val_subjects=val_subjects,
        split=None if split.name == "loso" else split.indices(index, subject_key),
        targets=(task or task_runner(cfg, index)).targets(),
        shuffle=bool(cfg.data.get("shuffle", True)), order=str(cfg.data.get("order", "index")),
        n_jobs=int(cfg.preprocessing.n_jobs),
    )


def run_fold(cfg: DictConfig, index: ClipIndex, features: torch.Tensor, subject_key: str) -> dict:
    """Train on every subject but ``subject_key``, predict ``subject_key`` once, store it."""
    _quiet_lightning()
    torch.set_num_threads(int(cfg.get("threads_per_fold", 1)))
    start = time.perf_counter()
    out = fold_dir(cfg.experiment_dir, subject_key)
    out.mkdir(parents=True, exist_ok=True)
    selection_rule(cfg)  # refuses an unknown rule before any training
    selection: dict = {"rule": cfg.selection}
    max_epochs = int(cfg.trainer.max_epochs)
    task = task_runner(cfg, index)
    split = split_of(cfg)
    thresholds = None

    if cfg.selection == "inner_val":
        iv = cfg.inner_val
        val_subjects = choose_val_subjects(
            index, subject_key, float(iv.val_fraction), int(cfg.seed),
            train_subjects=None if split.name == "loso" else split.train_subjects(index, subject_key),
        )
        inner = _datamodule(cfg, index, features, subject_key, val_subjects, task=task)
        tracker = inner_tracker(cfg, index, task)
        module, trainer = _fit(cfg, index, inner, out, subject_key, max_epochs, tracker,
                               log_name="inner" if bool(iv.refit) else None, task=task)
        if task.name == "au" and task.task.threshold == "inner_val":
            thresholds = tracker.thresholds()
        selection.update(val_subjects=val_subjects, n_val=len(inner.val_idx), refit=bool(iv.refit),
                         **tracker.summary())
        if bool(iv.refit):
            _close_loggers(trainer)
            dm = _datamodule(cfg, index, features, subject_key, task=task)
            module, trainer = _fit(cfg, index, dm, out, subject_key, tracker.best_epoch, task=task)
        else:
            dm = inner
            module.load_state_dict(tracker.best_state())
    else:
        dm = _datamodule(cfg, index, features, subject_key, task=task)
        module, trainer = _fit(cfg, index, dm, out, subject_key, max_epochs, task=task)
    # The one and only look at the test subject.
    check_finite_weights(module, f"fold {subject_key}, the trained model")
    probs = torch.cat(trainer.predict(module, datamodule=dm)).float()
    if len(probs) != len(dm.test_idx):  # e.g. fast_dev_run / limit_predict_batches: one batch only
        raise ValueError(
            f"fold {subject_key}: {len(probs)} predictions for {len(dm.test_idx)} test clips; the trainer "
            "predicted only part of the test fold (trainer.fast_dev_run or trainer.limit_predict_batches "
            "with more test clips than data.batch_size); nothing of the fold was written"
        )
    check_finite_probabilities(probs, f"fold {subject_key}")
    record = write_fold(cfg, index, out, subject_key, dm, module, probs, selection, int(trainer.current_epoch),
                        time.perf_counter() - start, trainer.loggers,
                        save_checkpoint=lambda path: trainer.save_checkpoint(str(path)), task=task,
                        thresholds=thresholds)
    _close_loggers(trainer)
    return record


def write_fold(cfg: DictConfig, index: ClipIndex, out: Path, subject_key: str, dm: MERDataModule,
               module: MERModule, probs: torch.Tensor, selection: dict, epochs: int, elapsed_s: float,
               loggers: list, save_checkpoint, task: TaskRunner | None = None,
               thresholds: list[float] | None = None) -> dict:
    """Write one finished fold: predictions.csv, model.ckpt / model.pt, pictures, and
    fold.json last (the mark of a finished fold). Both engines end here.

    ``task=au``: ``probs`` are per-AU probabilities, cut at ``thresholds`` (per AU; the
    task's fixed value when None)."""
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
        train_counts = dm.train_class_counts()
        preds = probs.argmax(dim=1)
        names = index.class_names
        write_predictions(out, [
            [index[i].dataset, index[i].subject, index[i].clip, index[i].label, index[i].label_name, p, names[p],
             *[f"{x:.6f}" for x in pr]]
            for i, p, pr in zip(dm.test_idx, preds.tolist(), probs.tolist(), strict=True)
        ], names)
    if cfg.get("save_checkpoint", True):
        save_checkpoint(out / "model.ckpt")
    if cfg.get("save_model", True):  # model.pt: safe to load, for mefnet-predict / export / pictures
        save_model(out / MODEL_FILE, module.backbone, cfg, task.output_names, fold=subject_key)
    # Attention / stream-weight pictures of the predicted subject, to wandb when it is on
    # (after the predictions are written; nothing here feeds back into training).
    if task.name == "emotion":
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


def run_fold_locked(cfg: DictConfig, index: ClipIndex, features: torch.Tensor, subject_key: str) -> dict | None:
    """:func:`run_fold` under the fold's lock. None when another process holds the fold (it
    is computing it: skipped, said so) or finished it meanwhile (left untouched)."""
    with claim_fold(cfg.experiment_dir, subject_key) as claimed:
        return run_fold(cfg, index, features, subject_key) if claimed else None


def _run_fold_job(cfg_container: dict, index: ClipIndex, features: torch.Tensor, subject_key: str) -> dict | None:
    return run_fold_locked(OmegaConf.create(cfg_container), index, features, subject_key)
