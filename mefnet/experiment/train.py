"""``mefnet-train``: leave-one-subject-out training and prediction, driven by Hydra.

One experiment (one seed) is one directory,
``<paths.output_dir>/<experiment_name>/seed_<seed>/`` (its layout:
:mod:`mefnet.runs.store`). This module is the command and the fold loop; one fold's
work is :func:`mefnet.experiment.fold.run_fold`.

``fold=all`` runs every subject in turn (``n_jobs`` processes; with ``engine=batched``
the folds are trained together, :mod:`mefnet.experiment.batched`) and writes the table;
``fold=<subject>`` runs one fold, so a Hydra multirun over ``fold`` works as well;
``fold=none`` trains the final model on every subject (:mod:`mefnet.experiment.final`).
Starting the same experiment again skips the folds that finished: nothing finished is
recomputed or overwritten.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mefnet.config import CONFIG_DIR, absolute_paths, register_resolvers
from mefnet.datasets.bad_clips import BadClipWarning
from mefnet.datasets.clip_index import ClipIndex
from mefnet.experiment import hydra_callbacks
from mefnet.experiment.batched import run_jobs, unsupported
from mefnet.experiment.engine import selection_rule
from mefnet.experiment.final import run_final
from mefnet.experiment.fitting import quiet_lightning
from mefnet.experiment.fold import _run_fold_job, run_fold_locked
from mefnet.experiment.plan import load_index, pretrain_spec, split_of, task_runner, tracking_of
from mefnet.experiment.search import holdout, objective, optimized_metric
from mefnet.experiment.validate import check_train_config, register_check_resolver
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.report.finish import finish_experiment
from mefnet.report.progress import progress
from mefnet.runs.identity import clip_identity, comparable_config, experiment_differences
from mefnet.runs.store import (
    CLIPS,
    EXPERIMENT,
    FOLD_DONE,
    RefusedRunError,
    damaged_fold_records,
    finished_folds,
    fold_clips,
    fold_dir,
    fold_problem,
    read_experiment,
)
from mefnet.schema import ENGINES, choice
from mefnet.training.pretrain import pretrained_weights
from mefnet.utils.cli import cli, open_map_overrides
from mefnet.utils.files import atomic_path, atomic_write, write_json
from mefnet.utils.quiet import duration, plural, quiet
from mefnet.utils.workers import WithParent, exit_with_launcher_parent, launcher_parent

# mefnet-train's entry module registers the config's resolvers when it is imported: Hydra's
# launchers import it in every job process (joblib, submitit) and resolve the run
# directory (${mefnet.name:...}) there before the task function runs.
register_resolvers()
register_check_resolver()  # hydra.run.dir's ${mefnet.checked:...}: the config checked before Hydra writes

log = logging.getLogger("mefnet")

def config_fingerprint(cfg: DictConfig) -> str:
    """Hash of everything that shapes the results (not of which folds this run does, nor
    of where it runs): the compared part of the config, as :mod:`mefnet.runs.identity`
    defines it."""
    c = comparable_config({"config": OmegaConf.to_container(cfg, resolve=True), "folds": [], "class_names": []})
    return hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _prepare_experiment(cfg: DictConfig, index: ClipIndex, folds: list[str] | None = None) -> Path:
    """Create or re-open the experiment directory, refusing a different config under one name."""
    exp_dir = Path(cfg.experiment_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "name": cfg.experiment_name,
        "fingerprint": config_fingerprint(cfg),
        "dataset": cfg.dataset.name,
        "folds": index.subjects if folds is None else folds,
        "protocol": split_of(cfg).describe(),
        **task_runner(cfg, index).record(),
        "class_names": list(index.class_names),
        "num_clips": len(index),
        "selection": selection_rule(cfg),
        "seed": cfg.seed,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "clips": clip_identity(index),
    }
    path = exp_dir / EXPERIMENT
    if path.is_file():
        old = read_experiment(exp_dir)
        diffs = experiment_differences(old, record)
        if diffs:
            shown = "\n  ".join(diffs[:12]) + (f"\n  ... and {len(diffs) - 12} more" if len(diffs) > 12 else "")
            raise RefusedRunError(
                f"{exp_dir} holds experiment '{old.get('name')}' run with a different configuration or "
                f"dataset:\n  {shown}\nFinished folds are never overwritten. Choose another "
                f"experiment_name, or delete {exp_dir} yourself to start over."
            )
        return exp_dir
    # The clips as used: frames, and which apex frame was taken and how (annotated,
    # midpoint, spotted, apex file), one row per clip.
    with atomic_path(exp_dir / CLIPS) as tmp:
        index.to_csv(tmp)
    _write_hydra_files(exp_dir, cfg)
    write_json(path, record)
    return exp_dir


def _write_hydra_files(exp_dir: Path, cfg: DictConfig) -> None:
    """``.hydra/`` (config.yaml, overrides.yaml, hydra.yaml) of the run that created the
    experiment, as Hydra would write them (Hydra's own writing is off: it would rewrite them
    on every later run, even one that is then refused)."""
    from hydra.core.hydra_config import HydraConfig

    out = exp_dir / ".hydra"
    atomic_write(out / "config.yaml", OmegaConf.to_yaml(cfg))
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        atomic_write(out / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(hc.overrides.task))))
        atomic_write(out / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hc}), resolve=False))


def _intact_folds(exp_dir: Path, index: ClipIndex) -> set[str]:
    """The finished folds whose predictions are whole: each of the fold's clips predicted
    exactly once. A damaged one is said so and reopened (its record removed), so that this
    run computes it again; no other fold is touched."""
    done = finished_folds(exp_dir)
    for f, problem in damaged_fold_records(exp_dir).items():  # not counted as finished: computed again
        log.warning("fold %s is marked finished but is damaged (%s); computing it again", f, problem)
    record = read_experiment(exp_dir)
    au_names = list(record["au_names"]) if record.get("task") == "au" else None
    by_subject: dict[str, list[str]] = {}
    for c in index:
        by_subject.setdefault(c.subject_key, []).append(c.clip_key)
    for f in sorted(done):
        problem = fold_problem(exp_dir, f, list(index.class_names), fold_clips(by_subject, f), au_names=au_names)
        if problem:
            log.warning("fold %s is marked finished but is damaged (%s); computing it again", f, problem)
            (fold_dir(exp_dir, f) / FOLD_DONE).unlink(missing_ok=True)
            done.discard(f)
    return done


def _dataset_targets(node) -> list[str]:
    """Every loader ``_target_`` in a dataset config (a composite's parts included)."""
    if isinstance(node, dict):
        own = [str(node["_target_"])] if "_target_" in node else []
        return own + [t for v in node.values() for t in _dataset_targets(v)]
    return []


def synthetic_data_warning(cfg: DictConfig, environ: dict[str, str] | None = None) -> str | None:
    """The warning for a run on the built-in synthetic data while a dataset root is set in
    the environment (``MEFNET_*_ROOT``): the user most likely meant that data. None otherwise."""
    environ = os.environ if environ is None else environ
    roots = sorted(k for k, v in environ.items() if re.fullmatch(r"MEFNET_\w+_ROOT", k) and v.strip())
    index = OmegaConf.to_container(cfg.dataset, resolve=False).get("index") or {}
    loaders = [t for t in _dataset_targets(index) if t != "mefnet.datasets.composite.load_composite"]
    if not roots or not loaders or not all(t.endswith(".load_synthetic") for t in loaders):
        return None
    return (f"this run trains on mefnet's built-in SYNTHETIC dataset (dataset={cfg.dataset.name}), not on "
            f"the data of {', '.join(f'{r}={environ[r]}' for r in roots)}; choose that data with dataset=... "
            f"(e.g. dataset=flow_folder for MEFNET_FLOW_ROOT)")


def run(cfg: DictConfig) -> list[dict] | None:
    """Run the configured folds; return the table rows when every fold is done."""
    quiet_lightning()
    warning = synthetic_data_warning(cfg)
    if warning:  # first, before hours of training on data the user did not mean
        log.warning("%s", warning)
    cfg = absolute_paths(cfg)
    check_train_config(cfg)
    with warnings.catch_warnings():  # the loaders' warnings on skipped clips: listed below, once
        warnings.simplefilter("ignore", BadClipWarning)
        index: ClipIndex = holdout(cfg, load_index(cfg))
    log.info("%s", index.summary())
    for s in index.skipped:
        log.warning("skipped clip: %s", s)
    split = split_of(cfg)
    all_folds = split.folds(index)
    if str(cfg.fold) == "none":  # not a fold: the final model on every subject (mefnet.experiment.final)

        exp_dir = _prepare_experiment(cfg, index, all_folds)
        run_final(cfg, index, lambda: build_features(index, Preprocessing.from_config(cfg.preprocessing),
                                                     cfg.preprocessing.cache_dir,
                                                     n_jobs=int(cfg.preprocessing.n_jobs)), exp_dir)
        return None
    folds = all_folds if str(cfg.fold) == "all" else [split.resolve(index, str(cfg.fold))]
    exp_dir = _prepare_experiment(cfg, index, all_folds)

    done = _intact_folds(exp_dir, index)
    todo = [f for f in folds if f not in done]
    if len(todo) < len(folds):
        log.info("%s: %d of %d folds already finished (skipped, left untouched)",
                 exp_dir, len(folds) - len(todo), len(folds))
    if todo:
        if cfg.get("pretrain"):  # once, here, before the folds' processes start
            pretrained_weights(pretrain_spec(cfg), list(index.class_names), announce=True)
        prep = Preprocessing.from_config(cfg.preprocessing)
        features = build_features(index, prep, cfg.preprocessing.cache_dir, n_jobs=int(cfg.preprocessing.n_jobs))
        n_jobs = max(1, int(cfg.n_jobs))
        engine = resolve_engine(cfg)
        if engine == "batched":  # the folds trained together (mefnet.experiment.batched)
            for rec in run_jobs([(cfg, f) for f in todo], index, features, n_jobs):
                log_progress(exp_dir, rec, workers=min(n_jobs, len(todo)))
        elif n_jobs > 1 and len(todo) > 1:
            from joblib import Parallel, delayed

            container = OmegaConf.to_container(cfg, resolve=True)
            jobs = (delayed(WithParent(_run_fold_job))(container, index, features, f) for f in todo)
            for rec in Parallel(n_jobs=n_jobs, return_as="generator")(jobs):
                if rec is not None:
                    log_progress(exp_dir, rec, workers=n_jobs)
        else:
            workers = _launcher_workers() if len(todo) == 1 else 1
            for f in todo:
                rec = run_fold_locked(cfg, index, features, f)
                if rec is not None:
                    log_progress(exp_dir, rec, workers=workers)

    if str(cfg.fold) != "all":
        return None
    return finish_experiment(exp_dir, tracking_of(cfg))


def run_experiments(cfgs: Sequence[DictConfig], n_jobs: int = 1) -> list[list[dict] | None]:
    """Several experiments on one dataset (the seeds of an ensemble, a recipe search), every
    unfinished fold of all of them trained together by the batched engine in ``n_jobs``
    processes; then each experiment's table (as ``mefnet-train fold=all`` writes it).

    The benchmark's entry (benchmarks/bench_loso.py); :mod:`mefnet.experiment.batched`
    trains the members."""
    cfgs = [absolute_paths(c) for c in cfgs]
    for c in cfgs[1:]:
        for key in ("dataset", "preprocessing"):
            if OmegaConf.to_container(c[key]) != OmegaConf.to_container(cfgs[0][key]):
                raise ValueError(f"run_experiments: every experiment must use the same '{key}'")
    index = instantiate(cfgs[0].dataset.index)
    jobs = []
    for cfg in cfgs:
        exp_dir = _prepare_experiment(cfg, index)
        done = finished_folds(exp_dir)
        jobs += [(cfg, f) for f in index.subjects if f not in done]
    if jobs:
        prep = Preprocessing.from_config(cfgs[0].preprocessing)
        features = build_features(index, prep, cfgs[0].preprocessing.cache_dir,
                                  n_jobs=int(cfgs[0].preprocessing.n_jobs))
        for rec in run_jobs(jobs, index, features, n_jobs):
            log_progress(Path(rec["config"]["experiment_dir"]), rec, workers=max(1, n_jobs))
    return [finish_experiment(Path(cfg.experiment_dir), tracking_of(cfg)) for cfg in cfgs]


def resolve_engine(cfg: DictConfig) -> str:
    """The engine that trains ``cfg``'s folds: ``engine`` (per_fold | batched | auto). ``auto``
    (the default) is ``batched`` wherever that engine runs the config (any protocol and
    task, a per-parameter optimizer, one device: docs/architecture.md lists what it refuses) and
    ``per_fold`` otherwise, saying why; an explicit ``batched`` that cannot run is an error."""
    engine = choice("engine", str(cfg.get("engine", "auto")), ENGINES)
    if engine != "auto":
        return engine
    reason = unsupported(cfg)
    if reason:
        log.info("engine=auto: per_fold, one Lightning fit per fold (%s)", reason)
        return "per_fold"
    log.info("engine=auto: batched, the folds trained together as one fit per process (this config "
             "allows it: a per-parameter optimizer, one device; "
             "engine=per_fold gives one Lightning fit per fold)")
    return "batched"


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
    """Log a finished fold with the experiment's progress: folds done and the time left."""
    p = progress(exp_dir, workers)
    log.info("[%s] fold %s done in %.1f s (%s) | %d/%d folds, about %s left",
             Path(exp_dir).parent.name + "/" + Path(exp_dir).name, rec["fold"], rec["elapsed_s"],
             plural(int(rec["n_test"]), "test clip"),
             p["done"], p["total"], duration(p["eta_s"]))


def task(cfg: DictConfig) -> str | float:
    """One Hydra job: run the configured fold(s); returns the experiment directory, or,
    in a recipe search (``optimized_metric`` set), the trial's inner-validation objective."""
    exit_with_launcher_parent()  # a joblib launcher's job ends with mefnet-train (SIGKILL included)
    searching = optimized_metric(cfg) is not None  # refuses a search without inner_val first
    run(cfg)
    if searching:
        return objective(absolute_paths(cfg))
    return str(absolute_paths(cfg).experiment_dir)


def _kept_error(task_function, failed: list[Exception]):
    """``task_function`` that, in a single run (not a multirun), keeps its error in ``failed``
    for mefnet-train to print once; Hydra would first write its own "Error executing job
    with overrides" line. A multirun's jobs still fail as jobs (the sweep goes on)."""

    @functools.wraps(task_function)
    def run_task(cfg: DictConfig):
        try:
            return task_function(cfg)
        except Exception as e:
            if HydraConfig.get().mode != RunMode.RUN:
                raise
            failed.append(e)
            try:
                _remove_unstarted_run_folder(Path(cfg.paths.output_dir).absolute())
            except Exception:  # a tidy-up that fails must not hide the error the user is to read
                log.debug("the refused run's folder was left as it is", exc_info=True)
            return None

    return run_task


def _remove_unstarted_run_folder(output_dir: Path) -> None:
    """After a refused single run that recorded nothing (a bad data file: no
    experiment.json) and logged nothing: the seed folder Hydra made for it, with its empty
    log, and the folders above it up to ``output_dir`` where they are left empty. The output
    folder is then as it was; a log with lines in it is kept (it says what happened)."""
    out = Path(HydraConfig.get().runtime.output_dir).absolute()
    if (out / EXPERIMENT).exists() or output_dir not in out.parents:
        return
    logs = [h for h in logging.getLogger().handlers
            if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == out]
    for h in logs:
        h.flush()
    if any(Path(h.baseFilename).is_file() and Path(h.baseFilename).stat().st_size for h in logs):
        return
    for h in logs:
        logging.getLogger().removeHandler(h)
        h.close()
        Path(h.baseFilename).unlink(missing_ok=True)
    folder = out
    while folder != output_dir:
        try:
            folder.rmdir()  # only an empty folder: anything else in it stays
        except OSError:
            return
        folder = folder.parent


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
    quiet()  # before Hydra's launchers log (mefnet.utils.quiet)

    def entry() -> None:
        hydra_callbacks._failures.clear()
        failed: list[Exception] = []
        hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")(_kept_error(task, failed))()
        if failed:
            raise failed[0]
        hydra_callbacks.raise_failures()  # a sweep's table that could not be written is an error

    sys.argv[1:] = open_map_overrides(sys.argv[1:])  # dataset.index.class_map='{...}' and the like
    with launcher_parent():  # a joblib launcher's workers inherit it: their jobs end with this process
        cli("mefnet-train", entry)


if __name__ == "__main__":
    main()
