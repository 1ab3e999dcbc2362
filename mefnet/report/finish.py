"""The end of an experiment: its table once every fold is finished (and, with the wandb
logger, the run's summary there). Called by ``mefnet-train`` after its folds and by the
sweep's Hydra callback after the last job."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mefnet.report.table import write_table
from mefnet.report.tracking import Tracking, log_experiment_to_wandb
from mefnet.runs.store import EXPERIMENT, finished_folds
from mefnet.utils.quiet import plural

log = logging.getLogger("mefnet")


def finish_experiment(exp_dir: Path, tracking: Tracking | None = None) -> list[dict] | None:
    """Write the table of a finished experiment (and log it to wandb when that logger is on:
    ``tracking``, :func:`mefnet.experiment.plan.tracking_of`).

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
        if "macro_f1" in r:
            log.info("%s [%s]: AU macro F1 %.4f  average binary F1 %.4f  (%s, %s)",
                     r["experiment"], r["part"], r["macro_f1"], r["avg_binary_f1"],
                     plural(r["clips"], "clip"), plural(r["folds"], "fold"))
            continue
        log.info("%s [%s]: UF1 %.4f  UAR %.4f  accuracy %.4f  (%s, %s)",
                 r["experiment"], r["part"], r["uf1"], r["uar"], r["accuracy"],
                 plural(r["clips"], "clip"), plural(r["folds"], "fold"))
    log.info("table: %s", exp_dir / "table.md")
    if tracking is not None:
        emotion_rows = [r for r in rows if "uf1" in r]  # the AU table is not sent to wandb yet
        if emotion_rows:
            log_experiment_to_wandb(tracking, exp_dir, emotion_rows)
    return rows
