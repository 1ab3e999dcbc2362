"""``mefnet-train``: leave-one-subject-out training and prediction, driven by Hydra.

One experiment (one seed) is one directory,
``<paths.output_dir>/<experiment_name>/seed_<seed>/`` (its layout:
:mod:`mefnet.experiment.store`). This module is the command and the fold loop; one fold's
work is :func:`mefnet.experiment.fold.run_fold`.

``fold=all`` runs every subject in turn (``n_jobs`` processes; with ``engine=batched``
the folds are trained together, :mod:`mefnet.experiment.batched`) and writes the table;
``fold=<subject>`` runs one fold, so a Hydra multirun over ``fold`` works as well.
Starting the same experiment again skips the folds that finished: nothing finished is
recomputed or overwritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mefnet.config import CONFIG_DIR
from mefnet.datasets.clip_index import ClipIndex
from mefnet.experiment.fold import (  # noqa: F401  (re-exported: one fold's work lives there)
    _quiet_lightning,
    _run_fold_job,
    run_fold,
    selection_rule,
    versions,
)
from mefnet.experiment.store import (
    CLIPS,
    EXPERIMENT,
    atomic_path,
    finished_folds,
    write_json,
)
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.report.progress import duration, progress
from mefnet.report.table import write_table

log = logging.getLogger("mefnet")

# Keys that choose what runs, not what is computed: they may differ between the runs
# that together make up one experiment.
_RUN_KEYS = ("fold", "n_jobs", "engine", "logger", "trainer.enable_progress_bar", "save_model", "save_checkpoint")


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
        "selection": selection_rule(cfg),
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
    with atomic_path(exp_dir / CLIPS) as tmp:
        index.to_csv(tmp)
    write_json(path, record)
    return exp_dir


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
        if engine == "batched":  # the folds trained together (mefnet.experiment.batched)
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
