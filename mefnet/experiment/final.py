"""``mefnet-train fold=none``: the final model, trained on every subject, for deployment.

A LOSO fold's model never saw its test subject but saw all the others; none of them saw
every subject. The final model is trained on all clips of the experiment's dataset, with
the experiment's own config, and is not a fold: it predicts nothing, scores nothing, and
tables never read it. It lives beside the folds::

    <experiment_dir>/final/model.pt      the model (what mefnet-predict / -export use by default)
    <experiment_dir>/final/final.json    how it was trained: epochs and the rule, clips, time

How many epochs:

* ``selection=fixed_epochs``: the recipe's ``trainer.max_epochs``.
* ``selection=inner_val``: there are no subjects left to validate on, so the epoch count
  comes from the LOSO run of the same experiment and seed: the median of the epochs its
  finished folds chose (rounded down to a whole epoch). The LOSO folds must have run first
  (at least one finished); otherwise this refuses and says so.
* any other rule (a user's): its rule object's ``final_epochs`` (:mod:`mefnet.selection_rules`).

Like a fold, it is trained once: starting it again leaves a finished final model
untouched. The experiment's identity check applies, so the final model always has the
config of the LOSO run it sits beside.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from mefnet.data.datamodule import MERDataModule
from mefnet.datasets.clip_index import ClipIndex
from mefnet.experiment.fitting import close_loggers, fit_model, versions
from mefnet.experiment.plan import task_runner
from mefnet.inference.checkpoint import FINAL_DIR, MODEL_FILE, save_model
from mefnet.preprocessing.features import Preprocessing
from mefnet.runs.store import fold_records
from mefnet.selection_rules import rule_of
from mefnet.training.divergence import check_finite_weights
from mefnet.utils.files import write_json
from mefnet.utils.quiet import plural

log = logging.getLogger("mefnet")

FINAL_RECORD = "final.json"


def final_dir(experiment_dir: str | Path) -> Path:
    """The folder of the final model inside ``experiment_dir``."""
    return Path(experiment_dir) / FINAL_DIR


def final_epochs(cfg: DictConfig, experiment_dir: str | Path) -> tuple[int, str]:
    """The epoch count of the final model and the rule that gave it, as ``cfg.selection``'s
    rule object derives it (see the module doc); ``cfg.selection`` was checked by the
    schema (:mod:`mefnet.schema`)."""
    return rule_of(cfg.selection).final_epochs(int(cfg.trainer.max_epochs), lambda: fold_records(experiment_dir),
                                               str(experiment_dir))


def run_final(cfg: DictConfig, index: ClipIndex, features: Callable[[], torch.Tensor],
              experiment_dir: str | Path) -> dict | None:
    """Train the final model on every clip of ``index`` (``features()`` gives their maps);
    None when it already exists."""
    out = final_dir(experiment_dir)
    if (out / FINAL_RECORD).is_file():
        log.info("final model %s is already trained; left untouched", out / MODEL_FILE)
        return None
    task = task_runner(cfg, index)
    if task.name != "emotion":
        raise ValueError(f"fold=none trains a final emotion model; task={task.name} has no final model yet")
    epochs, rule = final_epochs(cfg, experiment_dir)
    torch.set_num_threads(int(cfg.get("threads_per_fold", 1)))
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    everything = list(range(len(index)))
    dm = MERDataModule(
        index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir, fold=FINAL_DIR,
        features=features(), batch_size=int(cfg.data.batch_size),
        shuffle_train_labels=bool(cfg.shuffle_train_labels), seed=int(cfg.seed),
        split=(everything, []), targets=task.targets(),
        shuffle=bool(cfg.data.get("shuffle", True)), order=str(cfg.data.get("order", "index")),
    )
    dm.setup("fit")
    log.info("final model: %d clips of %s, %s (%s)", len(everything), plural(len(index.subjects), "subject"),
             plural(epochs, "epoch"), rule)
    module, trainer = fit_model(cfg, index, dm, out, FINAL_DIR, epochs, task=task)
    check_finite_weights(module, "the final model")
    save_model(out / MODEL_FILE, module.backbone, cfg, task.output_names, fold="")
    close_loggers(trainer)
    record = {
        "status": "complete",
        "what": "final model: trained on every subject, no test subject (not a fold; tables do not use it)",
        "seed": int(cfg.seed),
        "epochs": epochs,
        "epoch_rule": rule,
        "n_train": len(everything),
        "subjects": list(index.subjects),
        "train_class_counts": dm.train_class_counts(),
        "elapsed_s": round(time.perf_counter() - start, 2),
        "versions": versions(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json(out / FINAL_RECORD, record)
    log.info("final model: %s (%.1f s)", out / MODEL_FILE, record["elapsed_s"])
    return record
