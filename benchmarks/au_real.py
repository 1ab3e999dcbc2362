"""Figures of real-data action-unit runs (``task=au``), per AU, with both scores named apart.

Reads finished mefnet experiments (their ``experiment.json``, ``fold.json`` and
``predictions.csv`` files, nothing else) and prints markdown. A multi-task run
(``task=emotion_au``) is read from its folds' ``au_predictions.csv`` instead, scored on the
clips ``task=au`` scores by default (annotated, with an AU of the set), so that its AU
figures stand beside the single-task runs' on the same clips:

* **selection**: per experiment and seed, the inner-validation score the candidates are
  compared on (mean over folds of ``selection.best[metric]``, the fold's chosen epoch; training
  subjects only) beside the test-fold figures of the same run (reported, never used to choose);
* **per AU**: for each experiment, mean ± sample standard deviation over its seeds of, per AU
  and averaged over AUs, the F1 of "present" (mefnet's ``macro F1`` when averaged) and the
  average binary F1 (mean of the F1 of "present" and of "absent", the meb toolkit's
  headline), every score pooled over the folds of one seed's run (docs/protocol.md). An AU
  no clip has is shown as absent, never scored.

    python benchmarks/au_real.py /tmp/au_out/au-ststnet /tmp/au_out/au-am3f
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np

from mefnet.datasets.action_units import au_names
from mefnet.report.aggregate import group_runs
from mefnet.report.metrics import format_mean_std, mean_std
from mefnet.runs.store import (
    AU_PREDICTIONS,
    FOLD_DONE,
    find_runs,
    fold_dir,
    read_au_predictions,
    read_run,
)
from mefnet.schema import uses_inner_val
from mefnet.tasks.au import au_scores
from mefnet.utils.metrics import f1_from_counts


def au_rows(run) -> tuple[list[str], list[dict]]:
    """The AU names and pooled AU prediction rows of one seed's run (``task=au``, or the AU
    head of ``task=emotion_au``: its clips with an AU of the set)."""
    names, by_fold = au_rows_by_fold(run)
    return names, [r for rows in by_fold.values() for r in rows]


def au_rows_by_fold(run) -> tuple[list[str], dict[str, list[dict]]]:
    """:func:`au_rows` per fold, keeping only the folds with AU rows (under
    ``task=emotion_au``, the folds of a dataset without AU coding, e.g. SMIC, have none)."""
    if run.record.get("task") == "emotion_au":
        names = au_names(run.record["au_set"])
        by_fold = {key: [r for r in read_au_predictions(fold_dir(run.dir, key) / AU_PREDICTIONS, names)
                         if any(r["y_true"])] for key in run.record["folds"]}
        return names, {key: rows for key, rows in by_fold.items() if rows}
    by_fold = {}
    for r in run.predictions:
        by_fold.setdefault(r["fold"], []).append(r)
    return list(run.record["au_names"]), by_fold


def per_au(run) -> dict:
    """Pooled per-AU F1 present / absent / average binary of one seed's run, and the means."""
    names, rows = au_rows(run)
    t = np.array([r["y_true"] for r in rows], dtype=bool)
    p = np.array([r["y_pred"] for r in rows], dtype=bool)
    out = {"n": len(t), "support": {}, "present": {}, "binary": {}}
    for k, name in enumerate(names):
        tp, fp = float((t[:, k] & p[:, k]).sum()), float((~t[:, k] & p[:, k]).sum())
        fn, tn = float((t[:, k] & ~p[:, k]).sum()), float((~t[:, k] & ~p[:, k]).sum())
        out["support"][name] = int(t[:, k].sum())
        if t[:, k].any():
            present, absent = float(f1_from_counts(tp, fp, fn)), float(f1_from_counts(tn, fn, fp))
            out["present"][name] = present
            out["binary"][name] = (present + absent) / 2
    m = au_scores(t, p, names)  # the owner of the averages: they must agree with mefnet-table
    out["macro_f1"], out["avg_binary_f1"] = m["macro_f1"], m["avg_binary_f1"]
    return out


def inner_val(run) -> dict:
    """Mean over the run's folds of the inner-validation AU scores at each fold's chosen
    epoch; empty under ``task=emotion_au``, whose epoch is chosen on the emotion scores."""
    if run.record.get("task") == "emotion_au":
        return {}
    scores: dict[str, list[float]] = {}
    epochs = []
    for key in run.record["folds"]:
        done = fold_dir(run.dir, key) / FOLD_DONE
        if not done.is_file():
            continue
        sel = json.loads(done.read_text()).get("selection", {})
        if not uses_inner_val(sel.get("rule")):
            return {}
        epochs.append(int(sel["best_epoch"]))
        for metric, value in sel["best"].items():
            if metric != "epoch":
                scores.setdefault(metric, []).append(float(value))
    out = {m: statistics.fmean(v) for m, v in scores.items()}
    out["median_epoch"] = statistics.median(epochs) if epochs else None
    return out


def _ms(values: list[float]) -> str:
    if not values:
        return "absent"
    mean, std = mean_std(values)
    return format_mean_std(100 * mean, None if std is None else 100 * std, ".1f")


def _pct(scores: dict, key: str) -> str:
    return f"{100 * scores[key]:.1f}" if key in scores else "–"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+", help="experiment folders (or folders holding them)")
    a = ap.parse_args(argv)
    groups = group_runs([read_run(d) for d in find_runs(a.dirs)])
    print("## Selection (inner validation: training subjects only) beside the test folds\n")
    print("| experiment | seed | folds | inner-val avg binary F1 | inner-val F1 present (macro) | "
          "median chosen epoch | test avg binary F1 | test F1 present (macro) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for runs in groups:
        for run in runs:
            if run.missing:
                print(f"{run.name} seed {run.seed}: {len(run.missing)} folds missing", file=sys.stderr)
                continue
            iv, te = inner_val(run), per_au(run)
            print(f"| {run.name} | {run.seed} | {len(au_rows_by_fold(run)[1])} | {_pct(iv, 'uar')} | {_pct(iv, 'uf1')} | "
                  f"{iv.get('median_epoch', '–')} | {100 * te['avg_binary_f1']:.1f} | {100 * te['macro_f1']:.1f} |")
    for runs in groups:
        runs = [r for r in runs if not r.missing]
        if not runs:
            continue
        names = au_rows(runs[0])[0]
        scored = [per_au(r) for r in runs]
        print(f"\n## {runs[0].name}: test folds, {len(runs)} seed(s) ({', '.join(str(r.seed) for r in runs)}), "
              f"{scored[0]['n']} clips, {len(au_rows_by_fold(runs[0])[1])} folds with AU rows\n")
        print("| AU | clips with the AU | avg binary F1 (present/absent) | F1 of present |")
        print("|---|---:|---:|---:|")
        for name in names:
            print(f"| {name} | {scored[0]['support'][name]} | {_ms([s['binary'][name] for s in scored if name in s['binary']])} | "
                  f"{_ms([s['present'][name] for s in scored if name in s['present']])} |")
        print(f"| **mean over AUs** | | **{_ms([s['avg_binary_f1'] for s in scored])}** | "
              f"**{_ms([s['macro_f1'] for s in scored])}** |")


if __name__ == "__main__":
    main()
