"""``mefnet-train``: leave-one-subject-out training and prediction, driven by Hydra.

One experiment (one seed) is one directory,
``<paths.output_dir>/<experiment_name>/seed_<seed>/``::

    experiment.json                       the folds, classes, selection rule and config
    clips.csv                             every clip: frames, onset / apex and the apex's source
    folds/<dataset>/<subject>/
        predictions.csv                   dataset,subject,clip,true,...,pred,...,prob_<class>
        fold.json                         written last: the fold is finished
        model.ckpt                        Lightning checkpoint (save_checkpoint=true)
        model.pt                          the trained model for mefnet-predict (save_model=true)
        logs/metrics.csv                  training curves (logger=csv)
    table.md, table.csv                   pooled scores (written when fold=all)

``fold=all`` runs every subject in turn (``n_jobs`` processes) and writes the table;
``fold=<subject>`` runs one fold, so a Hydra multirun over ``fold`` works as well.
Starting the same experiment again skips the folds that finished: nothing finished is
recomputed or overwritten.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import platform
import subprocess
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mefnet.config import CONFIG_DIR
from mefnet.data.datamodule import MERDataModule
from mefnet.datasets.clip_index import ClipIndex
from mefnet.inference.checkpoint import MODEL_FILE, save_model
from mefnet.inference.pictures import fold_pictures
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.report.progress import duration, progress
from mefnet.report.table import (
    EXPERIMENT,
    FOLD_DONE,
    PREDICTIONS,
    finished_folds,
    fold_dir,
    write_table,
)
from mefnet.training.module import MERModule
from mefnet.training.selection import InnerValidation, choose_val_subjects

log = logging.getLogger("mefnet")

# Keys that choose what runs, not what is computed: they may differ between the runs
# that together make up one experiment.
_RUN_KEYS = ("fold", "n_jobs", "engine", "logger", "trainer.enable_progress_bar", "save_model", "save_checkpoint")


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*`training_step` returns.*")
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")


def _absolute_paths(cfg: DictConfig) -> DictConfig:
    """Resolve every interpolation and make paths absolute (fold workers start elsewhere)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for key in ("output_dir", "data_dir", "cache_dir"):
        resolved["paths"][key] = str(Path(resolved["paths"][key]).expanduser().resolve())
    resolved["experiment_dir"] = str(Path(resolved["experiment_dir"]).expanduser().resolve())
    resolved["preprocessing"]["cache_dir"] = str(Path(resolved["preprocessing"]["cache_dir"]).resolve())
    return OmegaConf.create(resolved)


def config_fingerprint(cfg: DictConfig) -> str:
    """Hash of everything that shapes the results (not of which folds this run does)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for key in _RUN_KEYS:
        parent, _, leaf = key.rpartition(".")
        node = c.get(parent, {}) if parent else c
        if isinstance(node, dict):
            node.pop(leaf, None)
    return hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:16]


def versions() -> dict:
    import cv2
    import numpy

    import mefnet

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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _selection_rule(cfg: DictConfig) -> str:
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


def _prepare_experiment(cfg: DictConfig, index: ClipIndex) -> Path:
    """Create or re-open the experiment directory, refusing a different config under one name."""
    exp_dir = Path(cfg.experiment_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "name": cfg.experiment_name,
        "fingerprint": config_fingerprint(cfg),
        "dataset": cfg.dataset.name,
        "folds": index.subjects,
        "class_names": list(index.class_names),
        "num_clips": len(index),
        "selection": _selection_rule(cfg),
        "seed": cfg.seed,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    path = exp_dir / EXPERIMENT
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("fingerprint") != record["fingerprint"] or old.get("folds") != record["folds"]:
            raise RuntimeError(
                f"{exp_dir} holds experiment '{old.get('name')}' run with a different configuration or "
                f"dataset; finished folds are never overwritten. Choose another experiment_name, or "
                f"delete {exp_dir} yourself to start over."
            )
        return exp_dir
    # The clips as used: frames, and which apex frame was taken and how (annotated,
    # midpoint, spotted, apex file), one row per clip.
    clips_tmp = exp_dir / f".clips.csv.tmp-{os.getpid()}"
    index.to_csv(clips_tmp)
    os.replace(clips_tmp, exp_dir / "clips.csv")
    _atomic_write(path, json.dumps(record, indent=2))
    return exp_dir


def _instantiate_loggers(cfg: DictConfig, out: Path, subject_key: str, name: str | None = None) -> list:
    loggers = []
    for key, lg in (cfg.logger or {}).items():
        if lg is None:
            continue
        extra = {"save_dir": str(out)}
        if name and "CSVLogger" in str(lg.get("_target_", "")):
            extra["name"] = name
        if "Wandb" in str(lg.get("_target_", "")):
            from mefnet.report.tracking import wandb_run_settings

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


def build_module(cfg: DictConfig, index: ClipIndex, dm: MERDataModule) -> MERModule:
    """Seed, then build a fresh model and loss (priors from ``dm``'s training clips)."""
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    train_counts = dm.train_class_counts()
    backbone = instantiate(cfg.backbone, num_classes=index.num_classes)
    loss = instantiate(cfg.loss)(class_counts=train_counts)
    augment = cfg.data.get("augment") or "none"
    if augment not in ("none", "hflip"):
        raise ValueError(f"data.augment: '{augment}' is not one of none, hflip")
    hflip = None
    if augment == "hflip":
        hflip = "one_minus" if cfg.preprocessing.normalize == "minmax" else "negate"
    return MERModule(
        backbone, loss, instantiate(cfg.optimizer), index.num_classes, index.class_names,
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None, hflip=hflip,
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
         log_name: str | None = None) -> tuple[MERModule, L.Trainer]:
    """Build a fresh model and train it on ``dm`` (validating on its inner-validation
    subjects when ``tracker`` selects the epoch)."""
    module = build_module(cfg, index, dm)
    loggers = _instantiate_loggers(cfg, out, subject_key, log_name)
    every = None if tracker is None else tracker.check_every_n_epochs(tracker.every, max_epochs)
    trainer = build_trainer(cfg, out, max_epochs, [] if tracker is None else [tracker], loggers, every)
    trainer.fit(module, datamodule=dm)
    return module, trainer


def _datamodule(cfg: DictConfig, index: ClipIndex, features: torch.Tensor, subject_key: str,
                val_subjects: list[str] | None = None) -> MERDataModule:
    dm = MERDataModule(
        index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir, fold=subject_key,
        features=features, batch_size=int(cfg.data.batch_size),
        shuffle_train_labels=bool(cfg.shuffle_train_labels), seed=int(cfg.seed), val_subjects=val_subjects,
    )
    dm.setup("fit")
    return dm


def inner_tracker(cfg: DictConfig, index: ClipIndex, **kwargs) -> InnerValidation:
    iv = cfg.inner_val
    return InnerValidation(
        index.num_classes, metric=str(iv.metric), smooth=int(iv.smooth), every_n_epochs=int(iv.every_n_epochs),
        min_epochs=int(iv.min_epochs), keep_best=not bool(iv.refit), **kwargs,
    )


def run_fold(cfg: DictConfig, index: ClipIndex, features: torch.Tensor, subject_key: str) -> dict:
    """Train on every subject but ``subject_key``, predict ``subject_key`` once, store it."""
    _quiet_lightning()
    torch.set_num_threads(int(cfg.get("threads_per_fold", 1)))
    start = time.perf_counter()
    out = fold_dir(cfg.experiment_dir, subject_key)
    out.mkdir(parents=True, exist_ok=True)
    _selection_rule(cfg)  # refuses an unknown rule before any training
    selection: dict = {"rule": cfg.selection}
    max_epochs = int(cfg.trainer.max_epochs)

    if cfg.selection == "inner_val":
        iv = cfg.inner_val
        val_subjects = choose_val_subjects(index, subject_key, float(iv.val_fraction), int(cfg.seed))
        inner = _datamodule(cfg, index, features, subject_key, val_subjects)
        tracker = inner_tracker(cfg, index)
        module, trainer = _fit(cfg, index, inner, out, subject_key, max_epochs, tracker,
                               log_name="inner" if bool(iv.refit) else None)
        selection.update(val_subjects=val_subjects, n_val=len(inner.val_idx), refit=bool(iv.refit),
                         **tracker.summary())
        if bool(iv.refit):
            _close_loggers(trainer)
            dm = _datamodule(cfg, index, features, subject_key)
            module, trainer = _fit(cfg, index, dm, out, subject_key, tracker.best_epoch)
        else:
            dm = inner
            module.load_state_dict(tracker.best_state())
    else:
        dm = _datamodule(cfg, index, features, subject_key)
        module, trainer = _fit(cfg, index, dm, out, subject_key, max_epochs)
    # The one and only look at the test subject.
    probs = torch.cat(trainer.predict(module, dataloaders=dm.predict_dataloader())).float()
    record = write_fold(cfg, index, out, subject_key, dm, module, probs, selection, int(trainer.current_epoch),
                        time.perf_counter() - start, trainer.loggers,
                        save_checkpoint=lambda path: trainer.save_checkpoint(str(path)))
    _close_loggers(trainer)
    return record


def write_fold(cfg: DictConfig, index: ClipIndex, out: Path, subject_key: str, dm: MERDataModule,
               module: MERModule, probs: torch.Tensor, selection: dict, epochs: int, elapsed_s: float,
               loggers: list, save_checkpoint) -> dict:
    """Write one finished fold: predictions.csv, model.ckpt / model.pt, pictures, and
    fold.json last (the mark of a finished fold). Both engines end here."""
    train_counts = dm.train_class_counts()
    preds = probs.argmax(dim=1)
    names = index.class_names
    fields = ["dataset", "subject", "clip", "true", "true_name", "pred", "pred_name", *[f"prob_{n}" for n in names]]
    tmp = out / f".{PREDICTIONS}.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for i, p, pr in zip(dm.test_idx, preds.tolist(), probs.tolist(), strict=True):
            c = index[i]
            w.writerow([c.dataset, c.subject, c.clip, c.label, c.label_name, p, names[p], *[f"{x:.6f}" for x in pr]])
    os.replace(tmp, out / PREDICTIONS)
    if cfg.get("save_checkpoint", True):
        save_checkpoint(out / "model.ckpt")
    if cfg.get("save_model", True):  # model.pt: safe to load, for mefnet-predict / export / pictures
        save_model(out / MODEL_FILE, module.backbone, cfg, index.class_names, fold=subject_key)
    # Attention / stream-weight pictures of the predicted subject, to wandb when it is on
    # (after the predictions are written; nothing here feeds back into training).
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
    _atomic_write(out / FOLD_DONE, json.dumps(record, indent=2))
    return record


def _run_fold_job(cfg_container: dict, index: ClipIndex, features: torch.Tensor, subject_key: str) -> dict:
    return run_fold(OmegaConf.create(cfg_container), index, features, subject_key)


def run(cfg: DictConfig) -> list[dict] | None:
    """Run the configured folds; return the table rows when every fold is done."""
    _quiet_lightning()
    cfg = _absolute_paths(cfg)
    index: ClipIndex = instantiate(cfg.dataset.index)
    log.info("%s", index.summary())
    for s in index.skipped:
        log.warning("skipped clip: %s", s)
    folds = index.subjects if str(cfg.fold) == "all" else [index.resolve_subject(str(cfg.fold))]
    exp_dir = _prepare_experiment(cfg, index)

    done = finished_folds(exp_dir)
    todo = [f for f in folds if f not in done]
    if len(todo) < len(folds):
        log.info("%s: %d of %d folds already finished (skipped, left untouched)",
                 exp_dir, len(folds) - len(todo), len(folds))
    if todo:
        prep = Preprocessing.from_config(cfg.preprocessing)
        features = build_features(index, prep, cfg.preprocessing.cache_dir, n_jobs=int(cfg.preprocessing.n_jobs))
        n_jobs = max(1, int(cfg.n_jobs))
        engine = str(cfg.get("engine", "per_fold"))
        if engine not in ("per_fold", "batched"):
            raise ValueError(f"engine: '{engine}' is not one of per_fold, batched")
        if engine == "batched":
            from mefnet.experiment.batched import run_jobs

            for rec in run_jobs([(cfg, f) for f in todo], index, features, n_jobs):
                log_progress(exp_dir, rec, workers=min(n_jobs, len(todo)))
        elif n_jobs > 1 and len(todo) > 1:
            from joblib import Parallel, delayed

            container = OmegaConf.to_container(cfg, resolve=True)
            jobs = (delayed(_run_fold_job)(container, index, features, f) for f in todo)
            for rec in Parallel(n_jobs=n_jobs, return_as="generator")(jobs):
                log_progress(exp_dir, rec, workers=n_jobs)
        else:
            workers = _launcher_workers() if len(todo) == 1 else 1
            for f in todo:
                log_progress(exp_dir, run_fold(cfg, index, features, f), workers=workers)

    if str(cfg.fold) != "all":
        return None
    return finish_experiment(cfg, exp_dir)


def finish_experiment(cfg: DictConfig, exp_dir: Path) -> list[dict] | None:
    """Write the table of a finished experiment (and log it to wandb when that logger is on).

    An experiment with unfinished folds gets no table: it says how many are missing and
    how to resume.
    """
    exp_dir = Path(exp_dir)
    record = json.loads((exp_dir / EXPERIMENT).read_text())
    missing = sorted(set(record["folds"]) - set(finished_folds(exp_dir)))
    if missing:
        log.warning("%s: %d of %d folds unfinished (%s%s); run the same command again to resume",
                    exp_dir, len(missing), len(record["folds"]), ", ".join(missing[:5]),
                    ", ..." if len(missing) > 5 else "")
        return None
    rows = write_table([exp_dir], exp_dir)
    for r in rows:
        log.info("%s [%s]: UF1 %.4f  UAR %.4f  accuracy %.4f  (%d clips, %d folds)",
                 r["experiment"], r["part"], r["uf1"], r["uar"], r["accuracy"], r["clips"], r["folds"])
    log.info("table: %s", exp_dir / "table.md")
    if any("Wandb" in str((lg or {}).get("_target_", "")) for lg in (cfg.get("logger") or {}).values()):
        from mefnet.report.tracking import log_experiment_to_wandb

        log_experiment_to_wandb(cfg, exp_dir, rows)
    return rows


def _launcher_workers() -> int:
    """Parallel jobs of the Hydra launcher running this job (1 outside a parallel sweep)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher
        n = int(launcher.get("n_jobs") or launcher.get("array_parallelism") or 1)
        return os.cpu_count() or 1 if n < 0 else max(1, n)
    except (ValueError, AttributeError, TypeError):
        return 1


def log_progress(exp_dir: Path, rec: dict, workers: int = 1) -> None:
    p = progress(exp_dir, workers)
    log.info("[%s] fold %s done in %.1f s (%d test clips) | %d/%d folds, about %s left",
             Path(exp_dir).parent.name + "/" + Path(exp_dir).name, rec["fold"], rec["elapsed_s"], rec["n_test"],
             p["done"], p["total"], duration(p["eta_s"]))


def task(cfg: DictConfig) -> str:
    """One Hydra job: run the configured fold(s); returns the experiment directory."""
    run(cfg)
    return str(_absolute_paths(cfg).experiment_dir)


def register_plugins() -> None:
    """Make mefnet's LOSO sweeper known to Hydra.

    An installed wheel puts it in the ``hydra_plugins`` namespace, where Hydra finds it
    by scanning; an editable install maps it there without making it scannable, so it
    is registered explicitly as well (harmless when already found).
    """
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # scans first: the scan re-executes Hydra's plugin modules
    from hydra_plugins.mefnet_loso import LosoSweeper

    plugins.register(LosoSweeper)


def main() -> None:
    """Console entry point (``mefnet-train``)."""
    register_plugins()
    hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")(task)()


if __name__ == "__main__":
    main()
