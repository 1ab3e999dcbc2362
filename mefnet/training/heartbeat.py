"""A fit's heartbeat: each fold's epoch, training loss and inner-validation score, while it trains.

:class:`Heartbeat` is a Lightning callback over the fit's members (one fold trained on its
own, or the folds of the batched engine's fit). After every epoch it rewrites each
member's ``<fold folder>/running.json`` (what ``mefnet-progress`` reads to show the folds
running now, from any machine that sees the output folder), and at most every
``every_s`` seconds, and after the last epoch, it logs one line for the fit: a fold of its
own names the fold::

    [synthetic-am3f-la/seed_42] fold synthetic/sub03 epoch 12/40  loss 0.412  val uf1 0.633

and the members of a batched fit are one line with their means::

    [megc2019-am3f/seed_1] 20 folds (casme2/sub01 ... smic/s04) epoch 12/29  loss 0.412 (mean)

(``MEFNET_HEARTBEAT_S`` sets the seconds between lines; 0 logs every epoch.)

It logs through the ``mefnet`` logger and sets up a stderr handler in a fold worker
process that has none (joblib / loky workers start without logging), so the lines of
parallel folds reach the terminal too, each naming its fold.

The file's format (written here, read by ``mefnet-progress``) is :mod:`mefnet.runs.heartbeat`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L

from mefnet.runs.heartbeat import RUNNING, run_label, write_running
from mefnet.utils.quiet import ensure_logging, plural

log = logging.getLogger("mefnet")

def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def every_s() -> float:
    """Seconds between heartbeat lines: ``MEFNET_HEARTBEAT_S`` (default 30; 0: every epoch)."""
    try:
        return max(0.0, float(os.environ.get("MEFNET_HEARTBEAT_S", "30")))
    except ValueError:
        return 30.0


class _Lines:
    """When a heartbeat logs its line: at most every ``every`` seconds (default
    :func:`every_s`), and always at the last epoch."""

    def __init__(self, every: float | None = None) -> None:
        self.every_s = every_s() if every is None else float(every)
        self._last = -math.inf

    def due(self, last_epoch: bool) -> bool:
        now = time.monotonic()
        if now - self._last >= self.every_s or last_epoch:
            self._last = now
            return True
        return False


@dataclass
class Member:
    """One fold of a fit: ``experiment_dir``'s fold ``fold``, its folder ``out_dir``.

    ``suffix``: the fold's metrics are logged as ``<name><suffix>`` (a member of the
    batched engine, ``/<member name>``; empty for a fold fitted on its own);
    ``max_epochs``: the fold's own number of epochs where the fit trains longer (a
    member's refit); None: the trainer's."""

    out_dir: str | Path
    experiment_dir: str | Path
    fold: str
    suffix: str = ""
    max_epochs: int | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.out_dir) / RUNNING
        self.label = run_label(self.experiment_dir)

    def total(self, trainer: L.Trainer) -> int:
        return int(trainer.max_epochs or 0) if self.max_epochs is None else int(self.max_epochs)

    def metrics(self, trainer: L.Trainer) -> dict:
        """The fold's own logged values of the epoch, their names without its suffix."""
        n = len(self.suffix)
        return {k[: len(k) - n]: v for k, v in trainer.callback_metrics.items() if k.endswith(self.suffix)}


class Heartbeat(L.Callback):
    """The heartbeat of a fit's ``members`` (:class:`Member`); ``stage`` names the fit when
    a fold has two (the inner-validation run before the refit). Use :meth:`of_fold` for a
    fold fitted on its own."""

    def __init__(self, members: Sequence[Member], stage: str = "", every: float | None = None) -> None:
        if not members:
            raise ValueError("a heartbeat needs at least one fold")
        self.members = list(members)
        self.stage = stage
        self.lines = _Lines(every)
        self._start = time.time()
        ensure_logging()

    @classmethod
    def of_fold(cls, out_dir: str | Path, experiment_dir: str | Path, fold: str, stage: str = "",
                every: float | None = None) -> Heartbeat:
        """The heartbeat of one fold fitted on its own (K=1)."""
        return cls([Member(out_dir, experiment_dir, fold)], stage=stage, every=every)

    @property
    def batched(self) -> bool:
        """Whether the members are the batched engine's (named by their metric suffix)."""
        return any(m.suffix for m in self.members)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.time()
        for m in self.members:
            self._write(m, {"epoch": 0, "max_epochs": m.total(trainer)})

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = int(trainer.current_epoch) + 1
        for m in self.members:
            total = m.total(trainer)
            if epoch > total:  # a member that has finished its own epochs
                continue
            metrics = m.metrics(trainer)
            val = {k.split("/", 1)[1]: _number(v) for k, v in metrics.items()
                   if k.startswith("val/") and k != "val/loss"}
            self._write(m, {"epoch": epoch, "max_epochs": total, "loss": _number(metrics.get("train/loss")),
                            "val": val})
        if self.batched:
            self._group_line(trainer, epoch)
        else:
            self._fold_line(trainer, epoch)

    def _fold_line(self, trainer: L.Trainer, epoch: int) -> None:
        (m,) = self.members
        total = m.total(trainer)
        if epoch > total or not self.lines.due(epoch == total):
            return
        metrics = m.metrics(trainer)
        loss = _number(metrics.get("train/loss"))
        val = {k.split("/", 1)[1]: _number(v) for k, v in metrics.items() if k.startswith("val/") and k != "val/loss"}
        score = "".join(f"  val {k} {v:.3f}" for k, v in val.items() if k == "uf1" or len(val) == 1)
        stage = f" ({self.stage})" if self.stage else ""
        what = "final model" if m.fold == "final" else f"fold {m.fold}"
        log.info("[%s] %s%s epoch %d/%d  loss %.3f%s", m.label, what, stage, epoch, total, loss, score)

    def _group_line(self, trainer: L.Trainer, epoch: int) -> None:
        total = int(trainer.max_epochs or 0)
        if not self.lines.due(epoch == total):
            return
        metrics = trainer.callback_metrics

        def mean(key: str) -> float:
            values = [_number(metrics.get(f"{key}{m.suffix}")) for m in self.members]
            values = [v for v in values if not math.isnan(v)]
            return sum(values) / len(values) if values else math.nan

        loss, uf1 = mean("train/loss"), mean("val/uf1")
        names = [m.suffix[1:] for m in self.members]
        folds = names[0] if len(names) == 1 else f"{names[0]} ... {names[-1]}"
        stage = f" ({self.stage})" if self.stage else ""
        score = "" if math.isnan(uf1) else f"  val uf1 {uf1:.3f} (mean)"
        log.info("[%s] %s (%s)%s epoch %d/%d  loss %.3f (mean)%s", self.members[0].label,
                 plural(len(names), "fold"), folds, stage, epoch, total, loss, score)

    def _write(self, m: Member, state: dict) -> None:
        write_running(m.path.parent, {"experiment": m.label, "fold": m.fold, "stage": self.stage,
                                      "pid": os.getpid(), "started": self._start, "updated": time.time(),
                                      **state})
