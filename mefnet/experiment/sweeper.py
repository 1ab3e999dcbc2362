"""The LOSO sweeper: Hydra's grid sweep, where ``fold=each`` means every fold.

``conf/train.yaml`` selects it (``hydra/sweeper: loso``), so::

    mefnet-train -m dataset=casme2 backbone=am3f,ststnet fold=each hydra/launcher=joblib

runs one job per (backbone, subject), with no hand-written list of subjects. The jobs
are the grid of Hydra's basic sweeper (the cartesian product of ``a=1,2`` values of
``hydra.sweeper.params`` and of the command line, a command-line key replacing the same
key of ``params``), once per entry of ``hydra.sweeper.runs`` when a config lists some (the
reproduction sets, ``conf/reproduce/``: each entry an experiment named by its key, with
its own overrides). Then ``fold=each`` in a job is replaced by one job per fold of that
job's dataset and protocol (a subject under ``protocol=loso``, a dataset under ``lodo``),
every job's config is checked, and the jobs go to the configured launcher (basic, joblib,
submitit) in batches of ``max_batch_size``. That is all it does: filling the flow cache
before the jobs and writing each finished experiment's table after them are Hydra
callbacks (:mod:`mefnet.experiment.hydra_callbacks`, ``hydra.callbacks`` in the config).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf, open_dict

from mefnet.config import absolute_paths
from mefnet.experiment.plan import load_index, split_of
from mefnet.experiment.validate import check_train_config
from mefnet.utils.quiet import plural

log = logging.getLogger("mefnet")

EACH = "each"
# conf/hydra/sweeper/loso.yaml's _target_ (the class registered in Hydra's plugin namespace)
TARGET = "hydra_plugins.mefnet_loso.LosoSweeper"


def grid(parser: OverridesParser, params: Mapping[str, Any] | None, arguments: Sequence[str],
         runs: Mapping[str, Sequence[str]] | None = None) -> list[list[str]]:
    """The jobs of a sweep, ``fold=each`` not yet expanded (each job a list of overrides).

    Per entry of ``runs`` (or once, without any): ``params``, then the entry's overrides
    and ``experiment_name=<its key>``, then ``arguments`` (the command line); a later
    override of a key replaces an earlier one in place; the job grid is the cartesian
    product of the values of every key, in that order.
    """
    base = [f"{k}={_text(v)}" for k, v in (params or {}).items()]
    entries = [(None, [])] if runs is None else [(str(n), [str(o) for o in ov]) for n, ov in runs.items()]
    jobs: list[list[str]] = []
    for name, overrides in entries:
        named = [] if name is None else [f"experiment_name={name}"]
        choices: dict[str, list[str]] = {}
        for o in parser.parse_overrides([*base, *overrides, *named, *arguments]):
            key = o.get_key_element()
            if not o.is_sweep_override():
                choices[key] = [f"{key}={o.get_value_element_as_str()}"]
            elif o.is_discrete_sweep():
                choices[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
            else:
                raise HydraException(f"{o.input_line}: a {o.value_type.name} sweep needs a search sweeper "
                                     "(hparams_search=recipe_optuna); the LOSO sweeper takes lists (a=1,2)")
        jobs += [list(job) for job in itertools.product(*choices.values())]
    return jobs


def _text(value: Any) -> str:
    """A ``params`` value as override text (YAML's true / null, not Python's)."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def job_config(config_loader, master: DictConfig, job: Sequence[str]) -> DictConfig:
    """A job's config as its run sees it: resolved, absolute paths, no ``hydra`` node."""
    cfg = config_loader.load_sweep_config(master, list(job))
    with open_dict(cfg):
        del cfg["hydra"]
    return absolute_paths(cfg)


def fold_override(job: Sequence[str]) -> int | None:
    """Where ``fold=each`` is in a job (None: not there)."""
    for i, o in enumerate(job):
        key, _, value = o.partition("=")
        if key.lstrip("+~") == "fold" and value.strip("'\"") == EACH:
            return i
    return None


def quote_override(value: str) -> str:
    """``value`` as a quoted string of Hydra's override grammar."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class LosoSweeperImpl(Sweeper):
    """Hydra's grid sweep plus the sweep list ``runs`` and the ``fold=each`` expansion.

    Args:
        max_batch_size: jobs handed to the launcher at once (None: all).
        params: sweep parameters from the config (as Hydra's basic sweeper).
        runs: the sweep list, ``{experiment_name: [overrides]}`` (None: one grid).
    """

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None,
                 runs: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.max_batch_size = max_batch_size
        self.params = dict(params or {})
        self.runs = None if runs is None else {str(k): list(v) for k, v in runs.items()}
        self.hydra_context = None
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def expand(self, jobs: list[list[str]]) -> list[list[str]]:
        """Replace ``fold=each`` by one job per fold; check every job's config first."""
        indexes: dict[str, Any] = {}

        def index_of(cfg: DictConfig):
            key = OmegaConf.to_yaml(cfg.dataset) + OmegaConf.to_yaml(cfg.get("task") or {})
            if key not in indexes:
                indexes[key] = load_index(cfg)  # the index as the task uses it (AU: AU-labelled clips)
            return indexes[key]

        expanded: list[list[str]] = []
        for job in jobs:
            i = fold_override(job)
            cfg = job_config(self.hydra_context.config_loader, self.config, job)
            check_train_config(OmegaConf.merge(cfg, {"fold": "all"}) if i is not None else cfg)
            if i is None:
                if str(cfg.fold) != "all":
                    split_of(cfg).resolve(index_of(cfg), str(cfg.fold))  # a wrong fold name stops here
                expanded.append(list(job))
                continue
            folds = split_of(cfg).folds(index_of(cfg))  # subjects under loso, datasets under lodo
            log.info("fold=each: %s of %s for %s", plural(len(folds), "fold"), cfg.dataset.name,
                     " ".join(o for k, o in enumerate(job) if k != i) or "the base config")
            expanded += [[*job[:i], f"fold={quote_override(f)}", *job[i + 1:]] for f in folds]
        return expanded

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        jobs = self.expand(grid(parser, self.params, arguments, self.runs))
        log.info("sweep: %d jobs", len(jobs))
        n = len(jobs) if self.max_batch_size in (None, -1) else max(1, int(self.max_batch_size))
        # Hydra's launchers create hydra.sweep.dir as the sweep's own config resolves it: the
        # experiment directory of the default seed (seed_42) when the jobs set seed=1,2,3.
        # Where no job writes there, that empty directory would look like an experiment.
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        new_dirs = [d for d in (sweep_dir, sweep_dir.parent) if not d.exists()]
        returns = []
        try:
            for start in range(0, len(jobs), n):
                results = self.launcher.launch(jobs[start:start + n], initial_job_idx=start)
                for r in results:
                    if r.status == JobStatus.FAILED:
                        # The job's own exception, for mefnet-train to print once: Hydra's
                        # return_value would first write "Error executing job with overrides".
                        raise r._return_value
                returns.append(results)
        finally:
            for d in new_dirs:  # only directories this sweep created and left empty
                try:
                    d.rmdir()
                except OSError:
                    break  # not empty (a job's experiment) or gone: left as it is
        return returns
