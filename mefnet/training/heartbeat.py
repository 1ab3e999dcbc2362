"""A fold's heartbeat: epoch, training loss and inner-validation score, while it trains.

:class:`Heartbeat` is a Lightning callback. After every epoch it rewrites
``<fold folder>/running.json`` (what ``mefnet-progress`` reads to show the folds running
now, from any machine that sees the output folder), and at most every ``every_s`` seconds,
and after the last epoch, it logs one line::

    [synthetic-am3f-la/seed_42] fold synthetic/sub03 epoch 12/40  loss 0.412  val uf1 0.633

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


class Heartbeat(L.Callback):
    """``experiment_dir``'s fold ``fold`` (its folder ``out_dir``); ``stage`` names the fit
    when a fold has two (the inner-validation run before the refit)."""

    def __init__(self, out_dir: str | Path, experiment_dir: str | Path, fold: str, stage: str = "",
                 every: float | None = None, suffix: str = "", announce: bool = True,
                 max_epochs: int | None = None) -> None:
        """``suffix``: the fold's metrics are logged as ``<name><suffix>`` (a member of the
        batched engine, ``/<member name>``); ``announce=False`` writes ``running.json``
        only (the batched engine logs one line per group instead); ``max_epochs``: the
        fold's own number of epochs where the fit trains longer (a member's refit)."""
        self.max_epochs = max_epochs
        self.suffix = suffix
        self.announce = announce
        self.path = Path(out_dir) / RUNNING
        self.label = run_label(experiment_dir)
        self.fold = fold
        self.lines = _Lines(every)
        self.stage = stage
        self._start = time.time()
        ensure_logging()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.time()
        self._write({"epoch": 0, "max_epochs": self._total(trainer)})

    def _total(self, trainer: L.Trainer) -> int:
        return int(trainer.max_epochs or 0) if self.max_epochs is None else int(self.max_epochs)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = len(self.suffix)
        metrics = {k[: len(k) - n]: v for k, v in trainer.callback_metrics.items() if k.endswith(self.suffix)}
        total = self._total(trainer)
        epoch = int(trainer.current_epoch) + 1
        if epoch > total:  # a member that has finished its own epochs
            return
        loss = _number(metrics.get("train/loss"))
        val = {k.split("/", 1)[1]: _number(v) for k, v in metrics.items() if k.startswith("val/") and k != "val/loss"}
        self._write({"epoch": epoch, "max_epochs": total, "loss": loss, "val": val})
        if self.announce and self.lines.due(epoch == total):
            score = "".join(f"  val {k} {v:.3f}" for k, v in val.items() if k == "uf1" or len(val) == 1)
            stage = f" ({self.stage})" if self.stage else ""
            what = "final model" if self.fold == "final" else f"fold {self.fold}"
            log.info("[%s] %s%s epoch %d/%d  loss %.3f%s", self.label, what, stage, epoch, total, loss, score)

    def _write(self, state: dict) -> None:
        write_running(self.path.parent, {"experiment": self.label, "fold": self.fold, "stage": self.stage,
                                         "pid": os.getpid(), "started": self._start, "updated": time.time(),
                                         **state})


class GroupHeartbeat(L.Callback):
    """The batched engine's line for a group of members trained in one fit (each member's
    :class:`Heartbeat` writes its fold's ``running.json`` without logging): at most every
    ``every_s`` seconds and after the last epoch, the members' mean training loss (and mean
    inner-validation UF1 when there is one)::

        [megc2019-am3f/seed_1] 20 folds (casme2/sub01 ... smic/s04) epoch 12/29  loss 0.412 (mean)
    """

    def __init__(self, experiment_dir: str | Path, names: list[str], stage: str = "",
                 every: float | None = None) -> None:
        self.label = run_label(experiment_dir)
        self.names = list(names)
        self.stage = stage
        self.lines = _Lines(every)
        ensure_logging()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch, total = int(trainer.current_epoch) + 1, int(trainer.max_epochs or 0)
        if not self.lines.due(epoch == total):
            return
        metrics = trainer.callback_metrics

        def mean(key: str) -> float:
            values = [_number(metrics.get(f"{key}/{n}")) for n in self.names]
            values = [v for v in values if not math.isnan(v)]
            return sum(values) / len(values) if values else math.nan

        loss, uf1 = mean("train/loss"), mean("val/uf1")
        folds = self.names[0] if len(self.names) == 1 else f"{self.names[0]} ... {self.names[-1]}"
        stage = f" ({self.stage})" if self.stage else ""
        score = "" if math.isnan(uf1) else f"  val uf1 {uf1:.3f} (mean)"
        log.info("[%s] %s (%s)%s epoch %d/%d  loss %.3f (mean)%s", self.label, plural(len(self.names), "fold"), folds,
                 stage, epoch, total, loss, score)

