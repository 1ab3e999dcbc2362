"""Training and inner-validation curves per experiment: ``mefnet-table --curves``.

One figure per experiment, ``curves_<experiment>.png`` (or ``--format pdf|svg``), read from
the stored fold files; it shows only what was logged:

* left: the training loss per epoch of every fold (``logs/metrics.csv``, the run whose
  model predicted the test subject; under ``inner_val`` with ``refit: false`` that is the
  inner run itself), as the median over folds and seeds with the 25-75 % band;
* right (``inner_val`` only): the inner-validation score the epoch was chosen by
  (``fold.json``: ``selection.curve`` and ``selection.metric``), median and band over the
  folds, with each fold's chosen epoch marked below the curve and the median chosen
  epoch as a dashed line. Without inner validation (``fixed_epochs``) there is no such
  panel: the figure is the loss panel alone, the epochs trained marked on it.

Epochs are counted from 1 (after the first epoch), as ``selection.best_epoch`` counts them.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from mefnet.runs.store import FOLD_DONE, Run, fold_dir
from mefnet.schema import uses_inner_val
from mefnet.utils.figure_output import save
from mefnet.utils.quiet import plural

FIGSIZE = (11.0, 4.2)
DPI = 100


def _train_loss(path: Path) -> dict[int, float]:
    """Epoch (from 1) -> training loss of a Lightning CSV log (the last value of the epoch)."""
    out: dict[int, float] = {}
    if not path.is_file():
        return out
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            value = row.get("train/loss", "")
            if value not in ("", None) and row.get("epoch", "") != "":
                out[int(float(row["epoch"])) + 1] = float(value)
    return out


def fold_curves(run: Run) -> list[dict]:
    """Per finished fold: its training loss, validation curve, metric and chosen epoch."""
    out = []
    for subject_key in run.record["folds"]:
        folder = fold_dir(run.dir, subject_key)
        done = folder / FOLD_DONE
        if not done.is_file():
            continue
        record = json.loads(done.read_text())
        selection = record.get("selection", {})
        inner = uses_inner_val(selection.get("rule"))
        refit = bool(selection.get("refit", True))
        log = folder / ("inner" if inner and not refit else "logs") / "metrics.csv"
        if not log.is_file() and inner and not refit:
            log = folder / "logs" / "metrics.csv"
        metric = selection.get("metric", "")
        out.append({
            "fold": subject_key,
            "loss": _train_loss(log),
            "val": {int(p["epoch"]): float(p[metric]) for p in selection.get("curve", []) if metric in p},
            "metric": metric,
            "chosen": int(selection["best_epoch"]) if inner and "best_epoch" in selection else int(record.get("epochs", 0)),
            "rule": selection.get("rule", "fixed_epochs"),
        })
    return out


def _band(series: list[dict[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for s in series:
        for epoch, value in s.items():
            by_epoch[epoch].append(value)
    epochs = np.array(sorted(by_epoch))
    values = [np.array(by_epoch[e]) for e in epochs]
    return (epochs, np.array([np.median(v) for v in values]), np.array([np.percentile(v, 25) for v in values]),
            np.array([np.percentile(v, 75) for v in values]))


def plot_curves(name: str, folds: list[dict], path: str | Path) -> Path:
    """Write one experiment's curves (see the module docstring) to ``path``."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    vals = [f["val"] for f in folds if f["val"]]
    # Only what was logged: without inner validation the figure is the loss panel alone.
    fig = Figure(figsize=FIGSIZE if vals else (FIGSIZE[0] / 2 + 0.5, FIGSIZE[1]), dpi=DPI)
    left, right = fig.subplots(1, 2) if vals else (fig.subplots(1, 1), None)
    n = len(folds)
    losses = [f["loss"] for f in folds if f["loss"]]
    if losses:
        e, med, lo, hi = _band(losses)
        left.fill_between(e, lo, hi, color="#9ecae1", alpha=0.6, label="25-75 % of folds")
        left.plot(e, med, color="#08519c", lw=2, label="median over folds")
    rules = {f["rule"] for f in folds}
    chosen = [f["chosen"] for f in folds if f["chosen"]]
    if rules and not any(uses_inner_val(r) for r in rules) and chosen:  # no fold chose an epoch
        left.axvline(int(np.median(chosen)), color="#d95f02", ls="--", lw=1.5,
                     label=f"epochs trained ({int(np.median(chosen))})")
    left.set(title="training loss", xlabel="epoch", ylabel="loss")
    left.grid(alpha=0.3)
    left.legend(fontsize=8, loc="upper right")

    if vals:
        metric = folds[0]["metric"]
        e, med, lo, hi = _band(vals)
        right.fill_between(e, lo, hi, color="#c7e9c0", alpha=0.7, label="25-75 % of folds")
        right.plot(e, med, color="#006d2c", lw=2, marker="o", ms=3, label="median over folds")
        bottom = float(np.nanmin(lo)) if len(lo) else 0.0
        right.plot(chosen, [bottom] * len(chosen), "|", color="#d95f02", ms=14, mew=1.5,
                   label="chosen epoch of each fold")
        right.axvline(float(np.median(chosen)), color="#d95f02", ls="--", lw=1.5,
                      label=f"median chosen epoch ({np.median(chosen):g})")
        right.set(title=f"inner validation ({metric}, held-out training subjects)", xlabel="epoch",
                  ylabel=metric)
        right.grid(alpha=0.3)
        right.legend(fontsize=8, loc="lower right")
    if not losses:  # nothing logged at all: say why instead of an empty frame
        left.text(0.5, 0.5, "no training loss was logged\n(logger=none, or no metrics.csv)", ha="center",
                  va="center", fontsize=10, transform=left.transAxes)
    for ax in (left, right) if vals else (left,):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{name}: {plural(n, 'fold')}", fontsize=12)
    fig.tight_layout()
    return save(fig, path)


def write_curves(groups: list[list[Run]], out_dir: str | Path) -> list[Path]:
    """``curves_<experiment>.png`` for every experiment (all its seeds' folds together)."""
    out = Path(out_dir)
    written = []
    used: set[str] = set()
    for group in groups:
        folds = [f for run in group for f in fold_curves(run)]
        if not folds:
            continue
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", group[0].name).strip("._") or "experiment"
        base, k = stem, 2
        while stem in used:
            stem, k = f"{base}-{k}", k + 1
        used.add(stem)
        written.append(plot_curves(group[0].name, folds, out / f"curves_{stem}.png"))
    return written
