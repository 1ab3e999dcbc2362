"""``mefnet-train``: leave-one-subject-out training and prediction, driven by Hydra.

One experiment is one directory, ``<paths.output_dir>/<experiment_name>/``::

    experiment.json                       the folds, classes, selection rule and config
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
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.report.table import (
    EXPERIMENT,
    FOLD_DONE,
    PREDICTIONS,
    finished_folds,
    fold_dir,
    write_table,
)
from mefnet.training.module import MERModule

log = logging.getLogger("mefnet")

# Keys that choose what runs, not what is computed: they may differ between the runs
# that together make up one experiment.
_RUN_KEYS = ("fold", "n_jobs", "logger", "trainer.enable_progress_bar")


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
    raise ValueError(f"selection: '{cfg.selection}' is not supported; use fixed_epochs")


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
    _atomic_write(path, json.dumps(record, indent=2))
    return exp_dir


def _instantiate_loggers(cfg: DictConfig, out: Path, subject_key: str) -> list:
    loggers = []
    for name, lg in (cfg.logger or {}).items():
        if lg is None:
            continue
        extra = {"save_dir": str(out)}
        if "Wandb" in str(lg.get("_target_", "")):
            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_SILENT", "true")
            extra["name"] = f"{cfg.experiment_name}/{subject_key}"
        loggers.append(instantiate(lg, **extra))
        log.debug("logger %s -> %s", name, out)
    return loggers


def run_fold(cfg: DictConfig, index: ClipIndex, features: torch.Tensor, subject_key: str) -> dict:
    """Train on every subject but ``subject_key``, predict ``subject_key`` once, store it."""
    _quiet_lightning()
    torch.set_num_threads(int(cfg.get("threads_per_fold", 1)))
    start = time.perf_counter()
    out = fold_dir(cfg.experiment_dir, subject_key)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    prep = Preprocessing.from_config(cfg.preprocessing)
    dm = MERDataModule(
        index, prep, cfg.preprocessing.cache_dir, fold=subject_key, features=features,
        batch_size=int(cfg.data.batch_size), shuffle_train_labels=bool(cfg.shuffle_train_labels),
        seed=int(cfg.seed),
    )
    dm.setup("fit")
    train_counts = dm.train_class_counts()
    backbone = instantiate(cfg.backbone, num_classes=index.num_classes)
    loss = instantiate(cfg.loss)(class_counts=train_counts)
    module = MERModule(
        backbone, loss, instantiate(cfg.optimizer), index.num_classes, index.class_names,
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    callbacks = [instantiate(cb) for cb in (cfg.callbacks or {}).values() if cb is not None]
    trainer = instantiate(
        cfg.trainer, logger=_instantiate_loggers(cfg, out, subject_key) or False,
        callbacks=callbacks, default_root_dir=str(out),
    )
    trainer.fit(module, train_dataloaders=dm.train_dataloader())
    # The one and only look at the test subject.
    probs = torch.cat(trainer.predict(module, dataloaders=dm.predict_dataloader())).float()
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
        trainer.save_checkpoint(str(out / "model.ckpt"))
    if cfg.get("save_model", True):  # model.pt: safe to load, for mefnet-predict / export / pictures
        save_model(out / MODEL_FILE, module.backbone, cfg, index.class_names, fold=subject_key)
    for lg in trainer.loggers:
        lg.finalize("success")
    record = {
        "status": "complete",
        "fold": subject_key,
        "seed": int(cfg.seed),
        "selection": cfg.selection,
        "epochs": int(trainer.current_epoch),
        "n_train": len(dm.train_idx),
        "n_test": len(dm.test_idx),
        "train_class_counts": train_counts,
        "elapsed_s": round(time.perf_counter() - start, 2),
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
    prep = Preprocessing.from_config(cfg.preprocessing)
    features = build_features(index, prep, cfg.preprocessing.cache_dir, n_jobs=int(cfg.preprocessing.n_jobs))

    done = finished_folds(exp_dir)
    todo = [f for f in folds if f not in done]
    if len(todo) < len(folds):
        log.info("resuming %s: %d of %d folds already finished", exp_dir, len(folds) - len(todo), len(folds))
    n_jobs = max(1, int(cfg.n_jobs))
    start = time.perf_counter()
    if n_jobs > 1 and len(todo) > 1:
        from joblib import Parallel, delayed

        container = OmegaConf.to_container(cfg, resolve=True)
        jobs = (delayed(_run_fold_job)(container, index, features, f) for f in todo)
        for k, rec in enumerate(Parallel(n_jobs=n_jobs, return_as="generator")(jobs), start=1):
            _progress(k, len(todo), rec, start)
    else:
        for k, f in enumerate(todo, start=1):
            _progress(k, len(todo), run_fold(cfg, index, features, f), start)

    if str(cfg.fold) != "all":
        return None
    rows = write_table([exp_dir], exp_dir)
    for r in rows:
        log.info("%s [%s]: UF1 %.4f  UAR %.4f  accuracy %.4f  (%d clips, %d folds)",
                 r["experiment"], r["part"], r["uf1"], r["uar"], r["accuracy"], r["clips"], r["folds"])
    log.info("table: %s", exp_dir / "table.md")
    return rows


def _progress(k: int, total: int, rec: dict, start: float) -> None:
    elapsed = time.perf_counter() - start
    eta = elapsed / k * (total - k)
    log.info("fold %d/%d %s: %d test clips, %.1f s (elapsed %.0f s, about %.0f s left)",
             k, total, rec["fold"], rec["n_test"], rec["elapsed_s"], elapsed, eta)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    """Console entry point (``mefnet-train``)."""
    run(cfg)
