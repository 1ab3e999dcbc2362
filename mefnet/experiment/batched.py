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
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from mefnet.datasets.clip_index import ClipIndex
from mefnet.experiment.fold import (
    _close_loggers,
    _datamodule,
    _instantiate_loggers,
    _quiet_lightning,
    build_module,
    build_trainer,
    inner_tracker,
    selection_rule,
    write_fold,
)
from mefnet.runs.selection import uses_inner_val
from mefnet.runs.store import claim_fold, fold_dir
from mefnet.tasks.au import is_au
from mefnet.training.batched import BatchedData, BatchedMERModule, MemberAveraging
from mefnet.training.divergence import (
    MemberFiniteCheck,
    check_finite_probabilities,
    check_finite_weights,
)
from mefnet.training.heartbeat import GroupHeartbeat, Heartbeat
from mefnet.training.selection import InnerValidation, choose_val_subjects

log = logging.getLogger("mefnet")

# Config entries every member of one batched fit must share (one trainer, one optimizer
# over all members, one epoch schedule); seed, fold and output folder may differ.
_SHARED = ("trainer", "optimizer", "scheduler", "selection", "inner_val")
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

    if is_au(first):
        raise ValueError("engine=batched trains emotion classes only; use engine=per_fold with task=au")
    protocol = first.get("protocol")
    if protocol is not None and str(protocol.get("name", "loso")) != "loso":
        raise ValueError(f"engine=batched runs protocol=loso only; use engine=per_fold with "
                         f"protocol={protocol.get('name')}")
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
    if first.trainer.get("gradient_clip_val"):
        raise ValueError("engine=batched: gradient clipping is global over all members; use engine=per_fold")


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
    value = str(cfg.get("vectorize", "auto")).lower()
    if value not in ("auto", "true", "false"):
        raise ValueError(f"vectorize: '{cfg.get('vectorize')}' is not one of auto, true, false")
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
    loggers = _instantiate_loggers(cfg0, out, "batched", log_name)
    # As a fold's own fit has: the divergence check, and each fold's running.json (read by
    # mefnet-progress), with one heartbeat line for the whole group.
    stage = "inner-validation run" if log_name else ""
    beats = [Heartbeat(fold_dir(cfg.experiment_dir, s), cfg.experiment_dir, s, stage=stage, suffix=f"/{name}",
                       announce=False, max_epochs=int(e)) for (cfg, s), name, e in zip(jobs, names, epochs, strict=True)]
    checks = [MemberFiniteCheck(), GroupHeartbeat(cfg0.experiment_dir, list(names), stage=stage), *beats]
    trainer = build_trainer(cfg0, out, max_epochs, checks + list(trackers or []), loggers, every)
    # A weight-averaging callback (callbacks=ema) keeps one average per member, updated by
    # that member's own steps (one average of all members would count every step of the fit).
    trainer.callbacks[:] = [MemberAveraging(cb) if isinstance(cb, WeightAveraging) else cb
                            for cb in trainer.callbacks]
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


def _train_batched(jobs: Sequence[tuple[DictConfig, str]], index: ClipIndex, features: torch.Tensor) -> list[dict]:
    """:func:`run_batched` once the folds' locks are held."""
    _quiet_lightning()
    cfgs = [cfg for cfg, _ in jobs]
    _check_compatible(cfgs)
    for cfg in cfgs:
        selection_rule(cfg)  # refuses an unknown rule before any training
    cfg0 = cfgs[0]
    torch.set_num_threads(int(cfg0.get("threads_per_fold", 1)))
    start = time.perf_counter()
    outs = [fold_dir(cfg.experiment_dir, s) for cfg, s in jobs]
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
    names = _member_names(jobs)
    # The fit's own log folder, one per group (groups run side by side in n_jobs processes);
    # each member's columns are split into its fold's logs/metrics.csv after the fit.
    log_dir = Path(cfg0.experiment_dir) / "batched" / names[0].replace("/", "_")
    selections: list[dict] = [{"rule": cfg.selection} for cfg in cfgs]
    max_epochs = int(cfg0.trainer.max_epochs)
    K = len(jobs)

    if uses_inner_val(cfg0.selection):
        iv = cfg0.inner_val
        val_subjects = [choose_val_subjects(index, s, float(iv.val_fraction), int(cfg.seed)) for cfg, s in jobs]
        dms = [_datamodule(cfg, index, features, s, v) for (cfg, s), v in zip(jobs, val_subjects, strict=True)]
        trackers = [inner_tracker(cfg, index, member=k, suffix=f"/{names[k]}") for k, cfg in enumerate(cfgs)]
        module, trainer = fit_members(jobs, index, dms, [max_epochs] * K, names, trackers, log_dir,
                                      "inner" if bool(iv.refit) else None)
        for k, t in enumerate(trackers):
            selections[k].update(val_subjects=val_subjects[k], n_val=len(dms[k].val_idx), refit=bool(iv.refit),
                                 **t.summary())
        epochs = [max_epochs] * K
        if bool(iv.refit):
            split_member_logs(trainer, log_dir, names, outs)
            _close_loggers(trainer)
            dms = [_datamodule(cfg, index, features, s) for cfg, s in jobs]
            epochs = [t.best_epoch for t in trackers]
            module, trainer = fit_members(jobs, index, dms, epochs, names, None, log_dir, None)
        else:
            for k, t in enumerate(trackers):
                module.members[k].load_state_dict(t.best_state())
    else:
        dms = [_datamodule(cfg, index, features, s) for cfg, s in jobs]
        epochs = [max_epochs] * K
        module, trainer = fit_members(jobs, index, dms, epochs, names, None, log_dir, None)

    # The one and only look at the test subjects.
    out = trainer.predict(module, datamodule=BatchedData(dms))
    split_member_logs(trainer, log_dir, names, outs)  # before any fold.json marks a fold finished
    per_member = [out] if K == 1 else out
    share = (time.perf_counter() - start) / K
    # Every member checked before any fold is written, as run_fold checks its one model.
    probs_of = [torch.cat(per_member[k]).float() for k in range(K)]
    for k, (_, s) in enumerate(jobs):
        check_finite_weights(module.members[k], f"fold {s}, the trained model")
        if len(probs_of[k]) != len(dms[k].test_idx):  # e.g. fast_dev_run / limit_predict_batches
            raise ValueError(
                f"fold {s}: {len(probs_of[k])} predictions for {len(dms[k].test_idx)} test clips; the trainer "
                "predicted only part of the test fold (trainer.fast_dev_run or trainer.limit_predict_batches "
                "with more test clips than data.batch_size); nothing of the fold was written")
        check_finite_probabilities(probs_of[k], f"fold {s}")
    records = []
    for k, (cfg, s) in enumerate(jobs):
        member, probs = module.members[k], probs_of[k]

        def save_checkpoint(path, member=member, k=k):
            torch.save({"state_dict": member.state_dict(), "epoch": epochs[k], "member": names[k],
                        "pytorch-lightning_version": L.__version__, "hyper_parameters": dict(member.hparams)}, path)

        records.append(write_fold(cfg, index, outs[k], s, dms[k], member, probs, selections[k], epochs[k], share,
                                  trainer.loggers, save_checkpoint))
    _close_loggers(trainer)
    return records


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

    tasks = (delayed(_run_chunk)([(OmegaConf.to_container(c, resolve=True), f) for c, f in chunk], index, features)
             for chunk in chunks)
    for records in Parallel(n_jobs=n, return_as="generator")(tasks):
        yield from records
