"""``engine: batched``: the folds of an experiment (and the seeds of a seed ensemble)
trained together, as the members of one :class:`~mefnet.training.batched.BatchedMERModule`
in one Lightning fit per phase.

Every fold ends exactly as with ``engine: per_fold``: its own ``predictions.csv``,
``model.pt`` (and ``model.ckpt``), pictures and ``fold.json`` (written last), in its own
fold directory, so resuming, tables, ``mefnet-progress`` and ``mefnet-predict`` see no
difference. Under ``selection: inner_val`` every fold draws its own validation subjects,
keeps its own curve and chooses its own epoch; with ``refit: true`` the second fit
retrains every fold for its own chosen number of epochs. The test subjects are
predicted once, at the end. A fold's ``elapsed_s`` is its share of the batch's time.

The members' training steps are vectorised (``vmap``, see
:mod:`mefnet.training.batched`); ``vectorize=false`` runs them one after another
(faster for STSTNet on the CPU, README "Engines"; ``vectorize=auto``, the default, lets
the backbone's class choose).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from mefnet.data.datamodule import MERDataModule
from mefnet.datasets.clip_index import ClipIndex
from mefnet.experiment.engine import Job, run_folds
from mefnet.experiment.fitting import (
    build_module,
    build_trainer,
    close_loggers,
    instantiate_loggers,
)
from mefnet.runs.store import claim_fold, fold_dir
from mefnet.schema import VECTORIZE, choice
from mefnet.training.batched import BatchedData, BatchedMERModule
from mefnet.training.divergence import FiniteCheck
from mefnet.training.heartbeat import Heartbeat, Member
from mefnet.training.module import MERModule, batched_overrides, module_class
from mefnet.training.selection import InnerValidation
from mefnet.utils.workers import WithParent

log = logging.getLogger("mefnet")

# Config entries every member of one batched fit must share (one trainer, one optimizer
# over all members, one epoch schedule, one task and one LightningModule: members vmapped
# together have one network's outputs); seed, fold and output folder may differ.
_SHARED = ("trainer", "optimizer", "scheduler", "selection", "inner_val", "task", "model")
# Optimizers whose update of a parameter depends only on that parameter's gradient and
# state: one step over every member's parameters is one independent step per member.
_PER_PARAMETER = ("Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam", "Adadelta")


def unsupported(cfg: DictConfig) -> str | None:
    """Why ``cfg`` cannot run with ``engine=batched`` (None: it can). ``engine=auto``
    chooses ``per_fold`` then, saying this."""
    try:
        _check_compatible([cfg])
    except ValueError as e:
        return str(e)
    return None


def _check_compatible(cfgs: Sequence[DictConfig]) -> None:
    first = cfgs[0]

    for cfg in cfgs[1:]:
        for key in _SHARED:
            a = OmegaConf.to_container(first, resolve=True).get(key)
            b = OmegaConf.to_container(cfg, resolve=True).get(key)
            if a != b:
                raise ValueError(f"engine=batched: the runs trained together must share '{key}' ({a} vs {b})")
    target = str(first.optimizer.get("_target_", ""))
    if target.rsplit(".", 1)[-1] not in _PER_PARAMETER:
        raise ValueError(
            f"engine=batched: optimizer '{target}' may couple parameters across models; use engine=per_fold "
            f"or one of {', '.join(_PER_PARAMETER)}"
        )
    if "ddp" in str(first.trainer.get("strategy", "")):
        raise ValueError("engine=batched runs all members in one process on one device; use trainer=cpu or "
                         "trainer=gpu")
    model = first.get("model")
    overrides = batched_overrides(module_class(model.get("_target_"))) if model is not None else []
    if overrides:
        raise ValueError(f"engine=batched: model {model._target_} overrides {', '.join(overrides)}, which the batched "
                         "engine does not call (it calls a member's augmented, network and loss_of); use engine=per_fold")


def _member_names(jobs: Sequence[tuple[DictConfig, str]]) -> list[str]:
    seeds = {int(cfg.seed) for cfg, _ in jobs}
    return [s if len(seeds) == 1 else f"seed_{int(cfg.seed)}/{s}" for cfg, s in jobs]


def vectorized(cfg: DictConfig) -> bool:
    """Whether the members' training steps run as one ``vmap`` per group (key
    ``vectorize``: auto | true | false; absent = auto). ``auto`` asks the backbone's
    class (attribute ``batched_vectorize``, true where absent). Measured on 2 CPU cores
    (README, Engines): vmap saves a quarter of AM3F-FlowNet's CPU time, while STSTNet's
    few wide maps run faster one member after another (``STSTNet.batched_vectorize``
    is false)."""
    value = choice("vectorize", str(cfg.get("vectorize", "auto")).lower(), VECTORIZE)
    if value == "auto":
        target = OmegaConf.select(cfg, "backbone._target_")
        return bool(getattr(get_class(target), "batched_vectorize", True)) if target else True
    return value == "true"


def fit_members(jobs, index: ClipIndex, dms, epochs: Sequence[int], names: Sequence[str],
                trackers: Sequence[InnerValidation] | None, out, log_name: str | None):
    """Build every member (seeded as a fit of its own) and train them in one fit."""
    cfg0 = jobs[0][0]
    max_epochs = max(int(e) for e in epochs)
    every = None if not trackers else trackers[0].check_every_n_epochs(trackers[0].every, max_epochs)
    loggers = instantiate_loggers(cfg0, out, "batched", log_name)
    # As a fold's own fit has: the divergence check, and each fold's running.json (read by
    # mefnet-progress), with one heartbeat line for the whole group.
    stage = "inner-validation run" if log_name else ""
    beat = Heartbeat([Member(fold_dir(cfg.experiment_dir, s), cfg.experiment_dir, s, suffix=f"/{name}",
                             max_epochs=int(e)) for (cfg, s), name, e in zip(jobs, names, epochs, strict=True)],
                     stage=stage)
    checks = [FiniteCheck(), beat]
    trainer = build_trainer(cfg0, out, max_epochs, checks + list(trackers or []), loggers, every)
    members, states = [], []
    for (cfg, _), dm in zip(jobs, dms, strict=True):
        members.append(build_module(cfg, index, dm))
        states.append(torch.get_rng_state())  # what its own training would draw from first
    module = BatchedMERModule(
        members, names, epochs, states, [int(cfg.seed) for cfg, _ in jobs], instantiate(cfg0.optimizer),
        scheduler=instantiate(cfg0.scheduler) if cfg0.get("scheduler") else None,
        architectures=[OmegaConf.to_yaml(cfg.backbone) for cfg, _ in jobs],
        vectorize=vectorized(cfg0),
    )
    trainer.fit(module, datamodule=BatchedData(dms, validate=bool(trackers)))
    return module, trainer


def split_member_logs(trainer: L.Trainer, group_dir: Path, names: Sequence[str], outs: Sequence[Path]) -> None:
    """Give every member the CSV log a fit of its own writes (``<fold>/logs/metrics.csv``,
    or ``inner/`` for the inner run before a refit, as ``engine=per_fold``: ``epoch``,
    ``step``, ``train/loss``, ``val/...``) from the group's log, where each member's values
    are the columns ending in ``/<member name>``; the group's ``metrics.csv`` is then
    removed (its ``hparams.yaml`` stays). Without a CSV logger there is nothing to split."""
    for lg in trainer.loggers:
        if not isinstance(lg, CSVLogger):
            continue
        lg.save()  # what the logger still holds (Lightning writes every 100 steps)
        src = Path(lg.log_dir) / "metrics.csv"
        if not src.is_file():
            continue
        with src.open(newline="") as f:
            reader = csv.DictReader(f)
            header, rows = list(reader.fieldnames or []), list(reader)
        shared = [k for k in header if k in ("epoch", "step")]
        for name, out in zip(names, outs, strict=True):
            suffix = "/" + name
            own = {k: k[: -len(suffix)] for k in header if k.endswith(suffix)}
            dest = out / Path(lg.log_dir).relative_to(group_dir) / "metrics.csv"
            dest.parent.mkdir(parents=True, exist_ok=True)
            with dest.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=shared + list(own.values()))
                w.writeheader()
                for row in rows:
                    if any(row.get(k) not in ("", None) for k in own):
                        w.writerow({**{k: row[k] for k in shared}, **{v: row[k] for k, v in own.items()}})
        src.unlink()


def run_batched(jobs: Sequence[tuple[DictConfig, str]], index: ClipIndex, features: torch.Tensor) -> list[dict]:
    """Train and predict the folds ``jobs`` (config, test subject) together; write each fold.

    The configs may differ in seed, fold and experiment folder (a seed ensemble), not in
    what one fit shares (trainer, optimizer, scheduler, selection rule). Each fold's lock
    is held from before training until its files are written, as ``run_fold_locked`` holds
    it: a fold another process holds is skipped (said so), one finished meanwhile is left
    untouched.
    """
    with ExitStack() as locks:
        todo = [(cfg, s) for cfg, s in jobs if locks.enter_context(claim_fold(cfg.experiment_dir, s))]
        return _train_batched(todo, index, features) if todo else []


class Batched:
    """The engine of a group of folds (and seeds): each :meth:`fit` trains every member in
    one Lightning fit of a :class:`~mefnet.training.batched.BatchedMERModule`; each member's
    columns of the group's log are split into its fold's ``logs/metrics.csv`` at the end
    of every fit (before any ``fold.json`` marks a fold finished)."""

    def __init__(self, jobs: Sequence[Job], index: ClipIndex) -> None:
        _check_compatible([cfg for cfg, _ in jobs])
        self.jobs, self.index = list(jobs), index
        self.names = _member_names(jobs)
        self.outs = [fold_dir(cfg.experiment_dir, s) for cfg, s in jobs]
        # The fit's own log folder, one per group (groups run side by side in n_jobs processes).
        self.log_dir = Path(jobs[0][0].experiment_dir) / "batched" / self.names[0].replace("/", "_")
        self.members: list[MERModule] = []
        self.module: BatchedMERModule | None = None
        self.trainer: L.Trainer | None = None
        self._epochs: list[int] = []
        self._logs_split = False

    def tracker_options(self, k: int) -> dict:
        return {"member": k, "suffix": f"/{self.names[k]}"}

    def fit(self, dms: Sequence[MERDataModule], epochs: Sequence[int],
            trackers: Sequence[InnerValidation] | None, log_name: str | None) -> None:
        self.close()
        self.module, self.trainer = fit_members(self.jobs, self.index, dms, epochs, self.names, trackers,
                                                self.log_dir, log_name)
        self.members, self._epochs, self._logs_split = list(self.module.members), [int(e) for e in epochs], False

    def predict(self, dms: Sequence[MERDataModule]) -> list[torch.Tensor]:
        out = self.trainer.predict(self.module, datamodule=BatchedData(dms))
        self._split_logs()
        per_member = [out] if len(self.jobs) == 1 else out
        return [torch.cat(p).float() for p in per_member]

    def epochs_trained(self, k: int) -> int:
        return self._epochs[k]

    @property
    def loggers(self) -> list:
        return self.trainer.loggers if self.trainer is not None else []

    def _split_logs(self) -> None:
        if not self._logs_split:
            split_member_logs(self.trainer, self.log_dir, self.names, self.outs)
            self._logs_split = True

    def close(self) -> None:
        if self.trainer is not None:
            self._split_logs()
            close_loggers(self.trainer)
            self.trainer = None


def _train_batched(jobs: Sequence[Job], index: ClipIndex, features: torch.Tensor) -> list[dict]:
    """:func:`run_batched` once the folds' locks are held."""
    return run_folds(Batched(jobs, index), jobs, index, features)


def _run_chunk(jobs: list[tuple[dict, str]], index: ClipIndex, features: torch.Tensor) -> list[dict]:
    return run_batched([(OmegaConf.create(c), f) for c, f in jobs], index, features)


def run_jobs(jobs: Sequence[tuple[DictConfig, str]], index: ClipIndex, features: torch.Tensor,
             n_jobs: int = 1) -> Iterator[dict]:
    """``jobs`` in ``n_jobs`` contiguous groups, each group one batched fit (in a process
    of its own when there are several); yields each fold's record as its group finishes."""
    n = max(1, min(int(n_jobs), len(jobs)))
    chunks = [list(jobs[i * len(jobs) // n:(i + 1) * len(jobs) // n]) for i in range(n)]
    if n == 1:
        yield from run_batched(chunks[0], index, features)
        return
    from joblib import Parallel, delayed

    tasks = (delayed(WithParent(_run_chunk))([(OmegaConf.to_container(c, resolve=True), f) for c, f in chunk], index, features)
             for chunk in chunks)
    for records in Parallel(n_jobs=n, return_as="generator")(tasks):
        yield from records
