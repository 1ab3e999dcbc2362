"""Hydra callbacks of a multirun: the work around the fold jobs of a LOSO sweep.

``conf/train.yaml`` lists them under ``hydra.callbacks``; Hydra calls them in the process
that starts the sweep, whatever launcher runs the jobs (basic, joblib, submitit):

- :class:`FlowCachePrefill` (``on_multirun_start``): fills the flow cache of each distinct
  dataset / preprocessing setting of the sweep once, so parallel fold jobs only read it.
- :class:`ExperimentTables` (``on_multirun_start`` / ``on_multirun_end``): records the
  sweep's config in every experiment it writes to (``multirun.yaml``) and, when the jobs
  have returned, writes the table of every experiment whose folds are all finished (a
  ``fold=all`` job writes its own); one with unfinished folds says how to resume. A job
  that fails is logged as it ends (``on_job_end``), not only when the sweep ends.
- :class:`SetTable` (a reproduction set, ``conf/reproduce/``): the side-by-side table of
  the set's experiments, rewritten after each job and written whole at the end.

The experiments of a sweep are its jobs before ``fold=each`` is expanded, as the LOSO
sweeper makes them (:func:`mefnet.experiment.sweeper.grid`). Under another sweeper
(``hparams_search=recipe_optuna``: the trials are chosen while the search runs) there is
no such list; every trial is a ``fold=all`` run that fills its cache and writes its table
itself, so these callbacks leave it alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mefnet.experiment.plan import tracking_of
from mefnet.experiment.sweeper import TARGET, fold_override, grid, job_config
from mefnet.experiment.validate import check_train_config
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.report.aggregate import group_runs
from mefnet.report.compare import write_anchor_comparisons
from mefnet.report.finish import finish_experiment
from mefnet.report.table import write_table
from mefnet.runs.store import (
    EXPERIMENT,
    ReportError,
    find_runs,
    finished_folds,
    read_experiment,
    read_run,
)
from mefnet.utils.cli import user_message

log = logging.getLogger("mefnet")


_last: tuple[DictConfig, list] | None = None  # the callbacks of one sweep share its configs

# Hydra turns an exception raised in a callback into a warning and carries on, so a table
# that could not be written would leave the command's exit status 0 (and an older table in
# place). Each failure is recorded here and :func:`raise_failures`, called by
# ``mefnet-train`` and ``mefnet-reproduce`` once Hydra returns, makes it the command's error.
_failures: list[str] = []


def _guarded(method):
    def run(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as e:
            _failures.append(f"{type(self).__name__}.{method.__name__}: {type(e).__name__}: {e}")
            raise

    run.__name__, run.__doc__ = method.__name__, method.__doc__
    return run


def raise_failures() -> None:
    """Raise (once) what the sweep's callbacks failed to do, naming each."""
    if _failures:
        text = "; ".join(_failures)
        _failures.clear()

        raise ReportError(f"the sweep's jobs ran, but its callbacks failed: {text}; no table of this run "
                          "can be trusted until the same command is run again (finished folds are kept)")


def sweep_experiments(config: DictConfig) -> list[tuple[list[str], DictConfig]] | None:
    """Each job of the sweep (``fold=each`` not expanded) with its resolved config, in the
    sweep's order; None when the sweeper is not mefnet's LOSO sweeper."""
    global _last
    sweeper = config.hydra.sweeper
    if sweeper.get("_target_") != TARGET:
        log.info("hydra callbacks: sweeper %s chooses its jobs as it runs; each writes its own table",
                 sweeper.get("_target_"))
        return None
    if _last is None or _last[0] is not config:
        loader = GlobalHydra.instance().config_loader()
        jobs = grid(OverridesParser.create(config_loader=loader), sweeper.get("params"),
                    list(config.hydra.overrides.task), sweeper.get("runs"))
        pairs = [(job, job_config(loader, config, job)) for job in jobs]
        try:  # as the sweeper checks them (fold=each: as one fold=all run)
            for job, cfg in pairs:
                check_train_config(OmegaConf.merge(cfg, {"fold": "all"}) if fold_override(job) is not None else cfg)
        except ValueError:
            # Hydra calls these callbacks before the sweeper, which refuses the sweep with the
            # key's message before any job starts: nothing is prepared or written for it.
            pairs = []
        _last = (config, pairs)
    return _last[1]


def _complete(exp_dir: Path) -> bool:
    return (exp_dir / EXPERIMENT).is_file() and set(read_experiment(exp_dir)["folds"]) <= finished_folds(exp_dir)


class FlowCachePrefill(Callback):
    """Fill each distinct dataset / preprocessing setting's flow cache before the jobs."""

    @_guarded
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.utils import instantiate


        experiments = sweep_experiments(config)
        seen: set[str] = set()
        for _, cfg in experiments or []:
            key = OmegaConf.to_yaml(OmegaConf.create({"d": cfg.dataset, "p": cfg.preprocessing}))
            if key in seen:
                continue
            seen.add(key)
            index = instantiate(cfg.dataset.index)
            log.info("flow cache for %s (%d clips): %s", cfg.dataset.name, len(index), cfg.preprocessing.cache_dir)
            build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir,
                           n_jobs=int(cfg.preprocessing.n_jobs))


class ExperimentTables(Callback):
    """The sweep's record in each of its experiments, and their tables when it ends."""

    def __init__(self) -> None:
        self.experiments: dict[str, DictConfig] = {}  # experiment dir -> config, in sweep order
        self.swept_folds: set[str] = set()  # experiments with jobs of single folds
        # A single run (no multirun, or one job that is not fold=each): its error is
        # printed once, by mefnet-train; there is no "next job" to go on with.
        self.single_job = True

    @_guarded
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = sweep_experiments(config) or []
        self.single_job = len(jobs) == 1 and fold_override(jobs[0][0]) is None
        for job, cfg in jobs:
            exp = str(cfg.experiment_dir)
            self.experiments.setdefault(exp, cfg)
            if fold_override(job) is not None or str(cfg.fold) != "all":
                self.swept_folds.add(exp)
        for exp in self.experiments:  # the sweep's config, in every experiment it writes to
            Path(exp).mkdir(parents=True, exist_ok=True)
            OmegaConf.save(config, Path(exp) / "multirun.yaml")
        if self.experiments:
            log.info("sweep over %d experiment(s): %s", len(self.experiments), ", ".join(self.experiments))

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        """Say at once that a job failed: the launcher goes on with the next job and the
        sweep raises the first failure only when every job has returned. A single run
        says nothing here: there is no next job, and mefnet-train prints its error."""
        if job_return is not None and job_return.status == JobStatus.FAILED and not self.single_job:
            err = getattr(job_return, "_return_value", None)
            log.error("job failed (%s): %s; the sweep goes on with the next job and fails at the end",
                      " ".join(job_return.overrides or []) or "no overrides",
                      user_message(err) if err is not None else "unknown error")

    @_guarded
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        for exp, cfg in self.experiments.items():
            if exp in self.swept_folds and (Path(exp) / "experiment.json").is_file():
                finish_experiment(Path(exp), tracking_of(cfg))


class SetTable(Callback):
    """A reproduction set's table (``table.md``, ``table.csv``, confusion matrices) of every
    experiment of the sweep, in its order, in ``out_dir``.

    Args:
        name: the set (``conf/reproduce/<name>.yaml``).
        out_dir: where the table goes.
        ensemble: a row for the seed ensemble of each experiment with several seeds.
        requires: environment variables (dataset roots) the set needs; ``mefnet-reproduce``
            chooses a set only when they are set.
        requires_for: ``{variable: [experiment names]}``: experiments that
            ``mefnet-reproduce`` leaves out, saying so, when that variable is unset.
        compare: ``{reference: <experiment>, anchors: [<experiment>, ...]}``: after the
            table, the paired comparison (UF1 difference, bootstrap interval over subjects,
            McNemar) of the reference against each anchor, in ``comparisons.md`` / ``.json``
            (:func:`mefnet.report.compare.write_anchor_comparisons`).
        requires_aus: experiments (``task=au``) that ``mefnet-reproduce`` leaves out, saying
            so, when the flow folder's labels.csv has no ``aus`` column.
        combine: combinations of experiments (``"a+b"``, as ``mefnet-table --combine``),
            each its own rows in the final table; one whose members did not all run (e.g.
            ``mefnet-reproduce --only``) is left out.
    """

    def __init__(self, name: str, out_dir: str, ensemble: bool = False, requires: list[str] | None = None,
                 requires_for: dict[str, list[str]] | None = None, compare: dict | None = None,
                 requires_aus: list[str] | None = None, combine: list[str] | None = None) -> None:
        self.name = name
        self.out_dir = Path(out_dir)
        self.ensemble = bool(ensemble)
        self.requires = list(requires or [])
        self.requires_for = {str(k): list(v) for k, v in (requires_for or {}).items()}
        self.compare = {"reference": str(compare["reference"]), "anchors": [str(a) for a in compare["anchors"]]} \
            if compare else None
        self.requires_aus = list(requires_aus or [])
        self.combine = [str(c) for c in combine or []]
        self.dirs: list[str] = []

    @_guarded
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.dirs = list(dict.fromkeys(str(cfg.experiment_dir) for _, cfg in sweep_experiments(config) or []))
        if self.dirs:  # none: the sweeper refuses the set's config next, naming the key
            log.info("reproduce set '%s': %d runs; table: %s", self.name, len(self.dirs), self.out_dir / "table.md")

    @_guarded
    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        """The table so far (no figures), so an interrupted set still has one."""
        done = [d for d in self.dirs if _complete(Path(d))]
        if done and len(done) < len(self.dirs):
            write_table(done, self.out_dir, figures=False, ensemble=self.ensemble)

    @_guarded
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # The runs are read here only when a combination or comparison needs their names.
        groups = group_runs([read_run(d) for d in find_runs(self.dirs)]) if self.combine or self.compare else []
        present = {g[0].name for g in groups}
        combine = [c for c in self.combine if all(n.strip() in present for n in c.split("+"))]
        write_table(self.dirs, self.out_dir, ensemble=self.ensemble, combine=combine)
        log.info("reproduce set '%s': table %s", self.name, self.out_dir / "table.md")
        if self.compare:
            path = write_anchor_comparisons(groups, self.compare["reference"], self.compare["anchors"], self.out_dir)[0]
            log.info("reproduce set '%s': paired comparisons %s", self.name, path)
