"""A Python API for one LOSO experiment, without the command line: ``from mefnet import Experiment``.

::

    from mefnet import Experiment

    exp = Experiment(["backbone=am3f", "loss=logit_adjusted", "trainer.max_epochs=20"])
    result = exp.run()              # every fold (finished folds are skipped), then the table
    result.metrics["uf1"]           # pooled over all folds (docs/protocol.md)
    result.predictions              # a pandas DataFrame: one row per clip
    result.table                    # the rows of table.md (all clips, then each dataset part)

The overrides are exactly those of ``mefnet-train`` (``dataset=casme2``,
``selection=inner_val``, ``paths.output_dir=...``), and :meth:`Experiment.run` goes through
the same code as ``mefnet-train``, so results, folders and resumption are the same.
``Experiment.from_config(cfg)`` takes an already composed config,
``Experiment.open(path)`` reads a finished run without training, and
``exp.train_final()`` trains the deployment model on every subject (``fold=none``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mefnet.config import compose
from mefnet.experiment.train import run
from mefnet.report.aggregate import experiment_rows
from mefnet.report.metrics import pooled_metrics
from mefnet.runs.store import read_predictions


def _setup_logging() -> None:
    """mefnet's progress lines on stderr, unless the caller already configured logging."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")


@dataclass
class Result:
    """A finished run (one experiment, one seed): its folder, predictions and pooled scores."""

    dir: Path
    predictions: Any
    """pandas DataFrame: dataset, subject, clip, true, true_name, pred, pred_name, prob_<class>..."""
    metrics: dict
    """Pooled over all clips: uf1, uar, accuracy, n, f1_per_class, recall_per_class, confusion."""
    class_names: list[str]
    table: list[dict] = field(default_factory=list)
    """The results table's rows (all clips, then each dataset part)."""
    record: dict = field(default_factory=dict)
    """experiment.json: folds, classes, selection rule, config."""

    @classmethod
    def read(cls, run_dir: str | Path) -> Result:
        import pandas as pd


        record, rows = read_predictions(run_dir)
        names = list(record["class_names"])
        frame = pd.DataFrame(rows)
        for col in frame.columns:
            if col.startswith("prob_"):
                frame[col] = frame[col].astype(float)
        metrics = pooled_metrics(frame["true"].tolist(), frame["pred"].tolist(), len(names), names)
        return cls(Path(run_dir), frame, metrics, names, experiment_rows(run_dir), record)

    def per_part(self) -> dict[str, dict]:
        """``{part: {uf1, uar, accuracy, clips, folds}}`` from the table rows."""
        return {r["part"]: {k: r[k] for k in ("uf1", "uar", "accuracy", "clips", "folds")} for r in self.table}


class Experiment:
    """One LOSO experiment built from ``mefnet-train`` overrides (or a composed config)."""

    def __init__(self, overrides: Sequence[str] | None = None, *, config: Any = None) -> None:
        self.overrides = list(overrides or [])
        self.config = config if config is not None else compose(self.overrides)

    @classmethod
    def from_config(cls, config: Any) -> Experiment:
        """An experiment from a config composed elsewhere (``mefnet.config.compose``)."""
        return cls(config=config)

    @staticmethod
    def open(run_dir: str | Path) -> Result:
        """The :class:`Result` of a run already on disk (a seed folder with experiment.json)."""
        return Result.read(run_dir)

    @property
    def dir(self) -> Path:
        """The run's folder, ``<output_dir>/<experiment_name>/seed_<seed>``."""
        return Path(self.config.experiment_dir).resolve()

    @property
    def name(self) -> str:
        return str(self.config.experiment_name)

    def run(self) -> Result:
        """Train and predict every fold that is not finished, write the table, return the result.

        Refuses (like ``mefnet-train``) a different config under a name that already exists.
        """
        _setup_logging()
        if str(self.config.fold) != "all":
            raise ValueError(f"Experiment.run() runs every fold; fold={self.config.fold} is for mefnet-train")
        run(self.config)
        return Result.read(self.dir)

    def train_final(self) -> Path:
        """Train the final model on every subject (``mefnet-train ... fold=none``, see
        :mod:`mefnet.experiment.final`) and return its file, ``<dir>/final/model.pt``.
        A folder given to ``mefnet-predict`` (or :class:`mefnet.inference.predict.Predictor`)
        then uses it by default. Left untouched when it exists."""
        from omegaconf import OmegaConf


        _setup_logging()
        cfg = self.config.copy()
        OmegaConf.update(cfg, "fold", "none")
        run(cfg)
        return self.dir / "final" / "model.pt"

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, dir={str(self.dir)!r})"
