"""The one factory of a fold's fit: its model, DataModule, loggers and Trainer.

Both engines (:mod:`mefnet.experiment.fold`, :mod:`mefnet.experiment.batched`) and the
final model (:mod:`mefnet.experiment.final`) build what they fit here; the Trainer itself
comes from :func:`mefnet.training.trainer.make_trainer`, the one place that constructs a
Lightning ``Trainer`` for fitting (the synthetic pretraining uses it too).
"""

from __future__ import annotations

import logging
import platform
import subprocess
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import WeightAveraging
from omegaconf import DictConfig, OmegaConf

import mefnet
from mefnet.config import instantiate_option
from mefnet.data.datamodule import MERDataModule
from mefnet.datasets.clip_index import ClipIndex
from mefnet.experiment.plan import pretrain_spec, split_of, task_runner
from mefnet.experiment.validate import model_node
from mefnet.preprocessing.features import Preprocessing
from mefnet.report.tracking import group_name, wandb_run_settings
from mefnet.training.au import AUInnerValidation
from mefnet.training.augment import FlowAugment
from mefnet.training.averaging import MemberAveraging
from mefnet.training.divergence import FiniteCheck
from mefnet.training.heartbeat import Heartbeat
from mefnet.training.module import MERModule, module_class
from mefnet.training.pretrain import pretrained_weights
from mefnet.training.progress_bar import progress_bar
from mefnet.training.selection import InnerValidation
from mefnet.training.task_runner import TaskRunner
from mefnet.training.trainer import make_trainer
from mefnet.utils.quiet import quiet

log = logging.getLogger("mefnet")

# Backbones that convolve all three maps together, so any channel order is a valid input.
_ORDER_FREE = ("STSTNet", "SmallResNet")

def quiet_lightning() -> None:
    """Keep the console to mefnet's own lines: Lightning at WARNING, its routine warnings off."""
    quiet()  # OpenCV, Lightning's resume warning, loky, the joblib launcher (mefnet.utils.quiet)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*`training_step` returns.*")
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")


def versions() -> dict:
    """The versions a fit is recorded with (``fold.json``, ``final.json``): mefnet, its git
    commit (empty outside a checkout), Python and the main libraries."""
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


def instantiate_loggers(cfg: DictConfig, out: Path, subject_key: str, name: str | None = None) -> list:
    """The fold's loggers of ``cfg.logger``, writing under ``out``; a wandb logger also gets its
    run name and group (:mod:`mefnet.report.tracking`) and the resolved config."""
    loggers = []
    for key, lg in (cfg.logger or {}).items():
        if lg is None:
            continue
        extra = {"save_dir": str(out)}
        if name and "CSVLogger" in str(lg.get("_target_", "")):
            extra["name"] = name
        if "Wandb" in str(lg.get("_target_", "")):
            extra.update(wandb_run_settings(group_name(cfg.experiment_name, cfg.seed), subject_key, name))
            logger = instantiate(lg, **extra)
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
            loggers.append(logger)
            continue
        loggers.append(instantiate(lg, **extra))
        log.debug("logger %s -> %s", key, out)
    return loggers


def close_loggers(trainer: L.Trainer) -> None:
    """Finish the trainer's loggers once the fold has ended (and its wandb run, one per fold)."""
    for lg in trainer.loggers:
        lg.finalize("success")
        if type(lg).__name__ == "WandbLogger":
            lg.experiment.finish()  # one wandb run per fold, not one for the whole process


def build_module(cfg: DictConfig, index: ClipIndex, dm: MERDataModule, task: TaskRunner | None = None) -> MERModule:
    """Seed, then build a fresh model and loss (priors from ``dm``'s training clips) for
    the configured task (its output head and loss), and the LightningModule of the
    ``model`` group (``model._target_``, conf/model/; the task's config chooses it) around
    them. With ``pretrain`` the model starts from the seed's pretrained weights
    (:mod:`mefnet.training.pretrain`)."""
    pretrained = pretrained_weights(pretrain_spec(cfg), list(index.class_names))  # computed once per seed, then cached
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    task = task or task_runner(cfg, index)
    model = model_node(cfg)  # checked by the schema before a run; here too for callers that skip it
    module_class(model.get("_target_"))  # a one-line ConfigError naming model._target_ when unusable
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
    # The model group's own options (a user's module may have some) come from the config;
    # what is built from the other groups and the fold is given here, by keyword.
    factory = instantiate(model, _partial_=True)
    return factory(
        backbone=backbone, loss=loss, optimizer=instantiate(cfg.optimizer), num_classes=task.num_outputs,
        class_names=task.output_names, scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        augment=augment, test_time_mirror=mirror, **task.module_options(),
    )


def build_trainer(cfg: DictConfig, out: Path, max_epochs: int, callbacks: list, loggers: list,
                  validate_every: int | None = None) -> L.Trainer:
    """The configured trainer; ``validate_every``: run Lightning's validation loop (the inner
    validation subjects only) every that many epochs, else no validation at all."""
    extra = {}
    if validate_every is not None:
        extra = {"limit_val_batches": 1.0, "check_val_every_n_epoch": int(validate_every), "num_sanity_val_steps": 0}
    configured = [instantiate(cb) for cb in (cfg.callbacks or {}).values() if cb is not None]
    # A weight-averaging callback (callbacks=ema) runs through the one member-axis path:
    # one average per member, updated by that member's own steps (for the batched engine,
    # one average of all members would count every step of the fit).
    configured = [MemberAveraging(cb) if isinstance(cb, WeightAveraging) else cb for cb in configured]
    bar = progress_bar()  # on a terminal only (mefnet.training.progress_bar)
    if bar is not None:
        configured.append(bar)
        extra["enable_progress_bar"] = True
    return make_trainer(cfg.trainer, out, max_epochs, configured + callbacks, loggers, **extra)


def fit_model(cfg: DictConfig, index: ClipIndex, dm: MERDataModule, out: Path, subject_key: str,
         max_epochs: int, tracker: InnerValidation | None = None,
         log_name: str | None = None, task: TaskRunner | None = None) -> tuple[MERModule, L.Trainer]:
    """Build a fresh model and train it on ``dm`` (validating on its inner-validation
    subjects when ``tracker`` selects the epoch)."""
    module = build_module(cfg, index, dm, task)
    loggers = instantiate_loggers(cfg, out, subject_key, log_name)
    every = None if tracker is None else tracker.check_every_n_epochs(tracker.every, max_epochs)
    heartbeat = Heartbeat.of_fold(out, cfg.experiment_dir, subject_key, stage="inner-validation run" if log_name else "")
    trainer = build_trainer(cfg, out, max_epochs,
                            [FiniteCheck(subject_key), heartbeat] + ([] if tracker is None else [tracker]),
                            loggers, every)
    trainer.fit(module, datamodule=dm)
    return module, trainer


def inner_tracker(cfg: DictConfig, index: ClipIndex, task: TaskRunner | None = None, keep_best: bool | None = None,
                  **kwargs) -> InnerValidation:
    """The inner-validation tracker of ``cfg.inner_val`` for the task: per AU for ``task=au``,
    else over the emotion classes. ``keep_best``: whether it keeps the best epoch's weights
    (None: when ``inner_val.refit`` is false)."""
    iv = cfg.inner_val
    task = task or task_runner(cfg, index)
    options = dict(metric=str(iv.metric), smooth=int(iv.smooth), every_n_epochs=int(iv.every_n_epochs),
                   min_epochs=int(iv.min_epochs),
                   keep_best=not bool(iv.refit) if keep_best is None else keep_best, **kwargs)
    if task.name == "au":
        return AUInnerValidation(task.num_outputs, **options)
    return InnerValidation(index.num_classes, **options)


def datamodule(cfg: DictConfig, index: ClipIndex, features: torch.Tensor, subject_key: str,
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


