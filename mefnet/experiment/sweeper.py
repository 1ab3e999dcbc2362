"""The LOSO sweeper: Hydra multirun where ``fold=each`` means every subject.

``conf/train.yaml`` selects it (``hydra/sweeper: loso``), so::

    mefnet-train -m dataset=casme2 backbone=am3f,ststnet fold=each hydra/launcher=joblib

runs one job per (backbone, subject) in parallel processes, with no hand-written list of
subjects: for every combination of the other swept values the dataset's index is built
and ``fold=each`` is replaced by that dataset's subjects (two datasets in one sweep each
get their own folds). Everything else is Hydra's basic sweeper: cartesian products of
``a=1,2`` values, ``hydra.sweeper.max_batch_size``, any launcher (basic, joblib,
submitit).

Before launching, the flow cache of each distinct dataset / preprocessing setting is
filled once here, so parallel fold jobs only read it. Finished folds are skipped by the
jobs themselves (their ``fold.json`` exists), so starting an interrupted sweep again
reruns only what is missing. When the jobs return, every experiment whose folds are all
finished gets its table (and, with ``logger=wandb``, its final table and confusion
matrix logged); where the table is depends on ``experiment_dir`` and is printed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger("mefnet")

EACH = "each"


def _fold_override(job: Sequence[str]) -> int | None:
    for i, o in enumerate(job):
        key, _, value = o.partition("=")
        if key.lstrip("+~") == "fold" and value.strip("'\"") == EACH:
            return i
    return None


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class LosoSweeperImpl(Sweeper):
    """Hydra's basic sweeper plus ``fold=each`` expansion, cache prefill and final tables.

    It derives from Hydra's abstract ``Sweeper``, not from ``BasicSweeper``: Hydra's plugin
    scan re-executes its core plugin modules, which would leave a subclass of the old
    ``BasicSweeper`` class object behind. The basic sweeper's cartesian expansion is used
    through its static method.

    Args:
        max_batch_size: jobs handed to the launcher at once (None: all).
        params: sweep parameters from the config (as Hydra's basic sweeper).
        prefill_cache: fill each dataset's flow cache once before launching the jobs.
    """

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None,
                 prefill_cache: bool = True) -> None:
        super().__init__()
        self.max_batch_size = max_batch_size
        self.params = dict(params or {})
        self.prefill_cache = prefill_cache
        self.hydra_context = None
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _job_config(self, job: Sequence[str]) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(job))

    def _resolved(self, cfg: DictConfig) -> DictConfig:
        """The job's config with ``hydra:`` interpolations resolved, without the hydra node."""
        from mefnet.experiment.train import _absolute_paths

        hydra_config = HydraConfig.instance()
        saved = hydra_config.cfg
        hydra_config.set_config(cfg)
        try:
            c = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
            with open_dict(c):
                del c["hydra"]
            return _absolute_paths(c)
        finally:
            hydra_config.cfg = saved

    def expand(self, jobs: list[list[str]]) -> tuple[list[list[str]], dict[str, DictConfig]]:
        """Replace ``fold=each`` by one job per fold (per subject under protocol=loso); also
        return each job's resolved config."""
        from mefnet.experiment.splits import split_of
        from mefnet.experiment.validate import check_train_config
        from mefnet.tasks import load_index

        expanded: list[list[str]] = []
        configs: dict[str, DictConfig] = {}
        indexes: dict[str, Any] = {}

        def index_of(cfg: DictConfig):
            key = OmegaConf.to_yaml(cfg.dataset) + OmegaConf.to_yaml(cfg.get("task") or {})
            if key not in indexes:
                indexes[key] = load_index(cfg)  # the index as the task uses it (AU: AU-labelled clips)
            return indexes[key]

        for job in jobs:
            i = _fold_override(job)
            cfg = self._resolved(self._job_config(job))
            # Every job's values and fold name are checked before the first job starts.
            check_train_config(OmegaConf.merge(cfg, {"fold": "all"}) if i is not None else cfg)
            if i is None:
                if str(cfg.fold) != "all":
                    split_of(cfg).resolve(index_of(cfg), str(cfg.fold))
                expanded.append(list(job))
                configs[" ".join(job)] = cfg
                continue
            index = index_of(cfg)
            folds = split_of(cfg).folds(index)  # subjects under loso, datasets under lodo
            log.info("fold=each: %d folds of %s for %s", len(folds), cfg.dataset.name,
                     " ".join(o for o in job if o is not job[i]) or "the base config")
            for subject in folds:
                new = [*job[:i], f"fold={_quote(subject)}", *job[i + 1:]]
                expanded.append(new)
                configs[" ".join(new)] = OmegaConf.merge(cfg, {"fold": subject})
        return expanded, configs

    def _prefill(self, configs: dict[str, DictConfig]) -> None:
        from hydra.utils import instantiate

        from mefnet.preprocessing.features import Preprocessing, build_features

        seen: set[str] = set()
        for cfg in configs.values():
            key = OmegaConf.to_yaml(OmegaConf.create({"d": cfg.dataset, "p": cfg.preprocessing}))
            if key in seen:
                continue
            seen.add(key)
            index = instantiate(cfg.dataset.index)
            prep = Preprocessing.from_config(cfg.preprocessing)
            log.info("flow cache for %s (%d clips): %s", cfg.dataset.name, len(index), cfg.preprocessing.cache_dir)
            build_features(index, prep, cfg.preprocessing.cache_dir, n_jobs=int(cfg.preprocessing.n_jobs))

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        from mefnet.experiment.train import finish_experiment

        # Hydra does not set HydraConfig for the master config of a multirun, but our
        # sweep directory (= experiment_dir) interpolates hydra:runtime.choices.
        HydraConfig.instance().set_config(self.config)
        params_conf = [f"{k}={v}" for k, v in self.params.items()]
        params_conf.extend(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(params_conf)
        jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
        jobs, configs = self.expand(jobs)
        if self.prefill_cache:
            self._prefill(configs)
        experiments = sorted({str(c.experiment_dir) for c in configs.values()})
        log.info("sweep: %d jobs over %d experiment(s): %s", len(jobs), len(experiments), ", ".join(experiments))

        n = len(jobs) if self.max_batch_size in (None, -1) else int(self.max_batch_size)
        for exp in experiments:  # the sweep's config, in every experiment it writes to
            Path(exp).mkdir(parents=True, exist_ok=True)
            OmegaConf.save(self.config, Path(exp) / "multirun.yaml")

        returns = []
        initial_job_idx = 0
        for batch in (jobs[k:k + n] for k in range(0, len(jobs), max(1, n))):
            results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
            for r in results:
                _ = r.return_value  # re-raises a failed job's exception
            initial_job_idx += len(batch)
            returns.append(results)

        for exp in experiments:
            cfg = next(c for c in configs.values() if str(c.experiment_dir) == exp)
            finish_experiment(cfg, Path(exp))
        return returns
