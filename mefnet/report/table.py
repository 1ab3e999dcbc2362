"""Results tables rebuilt from the per-fold prediction files alone.

``mefnet-table <experiment dirs...>`` reads ``folds/**/predictions.csv`` of each
experiment, checks that every fold listed in ``experiment.json`` finished, pools the
predictions and writes ``table.md`` and ``table.csv`` (and each experiment's pooled
confusion matrix). For a multi-dataset run (the MEGC2019 composite) it adds one row per
source dataset, computed from the same run's predictions restricted to that dataset.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from mefnet.report.metrics import pooled_metrics

PREDICTIONS = "predictions.csv"
FOLD_DONE = "fold.json"
EXPERIMENT = "experiment.json"


class IncompleteExperimentError(RuntimeError):
    """Some folds of an experiment have no finished predictions."""


def fold_dir(experiment_dir: str | Path, subject_key: str) -> Path:
    """Where a fold's outputs live: ``<experiment>/folds/<dataset>/<subject>``."""
    return Path(experiment_dir) / "folds" / subject_key


def read_experiment(experiment_dir: str | Path) -> dict:
    path = Path(experiment_dir) / EXPERIMENT
    if not path.is_file():
        raise FileNotFoundError(f"{experiment_dir} is not a mefnet experiment: {EXPERIMENT} is missing")
    return json.loads(path.read_text())


def finished_folds(experiment_dir: str | Path) -> set[str]:
    """Subject keys whose fold wrote its completion record."""
    root = Path(experiment_dir) / "folds"
    done = set()
    for marker in root.glob(f"*/*/{FOLD_DONE}"):
        if json.loads(marker.read_text()).get("status") == "complete":
            done.add(f"{marker.parent.parent.name}/{marker.parent.name}")
    return done


def read_predictions(experiment_dir: str | Path, allow_missing: bool = False) -> tuple[dict, list[dict]]:
    """(experiment record, pooled prediction rows) of a finished experiment."""
    exp = read_experiment(experiment_dir)
    done = finished_folds(experiment_dir)
    missing = [f for f in exp["folds"] if f not in done]
    if missing and not allow_missing:
        raise IncompleteExperimentError(
            f"{experiment_dir}: {len(missing)} of {len(exp['folds'])} folds have no finished "
            f"predictions ({', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}); "
            "rerun the experiment to finish them, or pass --allow-missing"
        )
    rows: list[dict] = []
    for subject_key in exp["folds"]:
        if subject_key not in done:
            continue
        with (fold_dir(experiment_dir, subject_key) / PREDICTIONS).open(newline="") as f:
            rows.extend(csv.DictReader(f))
    exp["missing_folds"] = missing
    return exp, rows


def experiment_rows(experiment_dir: str | Path, allow_missing: bool = False) -> list[dict]:
    """Table rows of one experiment: all clips, then each source dataset if several."""
    exp, preds = read_predictions(experiment_dir, allow_missing)
    names = exp["class_names"]
    parts = [("all", preds)]
    datasets = list(dict.fromkeys(r["dataset"] for r in preds))
    if len(datasets) > 1:
        parts += [(d, [r for r in preds if r["dataset"] == d]) for d in datasets]
    out = []
    for part, rows in parts:
        m = pooled_metrics([int(r["true"]) for r in rows], [int(r["pred"]) for r in rows], len(names), names)
        out.append(
            {
                "experiment": exp["name"],
                "part": part,
                "clips": m["n"],
                "folds": len({(r["dataset"], r["subject"]) for r in rows}),
                "uf1": round(m["uf1"], 4),
                "uar": round(m["uar"], 4),
                "accuracy": round(m["accuracy"], 4),
                "selection": exp.get("selection", ""),
                "confusion": m["confusion"],
                "class_names": names,
                "missing_folds": len(exp["missing_folds"]),
            }
        )
    return out


def to_markdown(rows: list[dict]) -> str:
    head = "| experiment | part | clips | folds | UF1 | UAR | accuracy |\n|---|---|---:|---:|---:|---:|---:|\n"
    body = "".join(
        f"| {r['experiment']} | {r['part']} | {r['clips']} | {r['folds']} | {r['uf1']:.4f} | "
        f"{r['uar']:.4f} | {r['accuracy']:.4f} |\n"
        for r in rows
    )
    notes = ["", "UF1 / UAR: pooled over all leave-one-subject-out folds (PROTOCOL.md)."]
    for sel in dict.fromkeys(r["selection"] for r in rows):
        users = sorted({r["experiment"] for r in rows if r["selection"] == sel})
        notes.append(f"Model selection ({', '.join(users)}): {sel}.")
    incomplete = [r for r in rows if r["missing_folds"] and r["part"] == "all"]
    for r in incomplete:
        notes.append(f"WARNING: {r['experiment']} is missing {r['missing_folds']} folds.")
    return head + body + "\n".join(notes) + "\n"


def write_table(experiment_dirs: list[str | Path], out_dir: str | Path, allow_missing: bool = False) -> list[dict]:
    """Write ``table.md`` / ``table.csv`` / ``confusion_<experiment>.csv`` into ``out_dir``."""
    rows = [r for d in experiment_dirs for r in experiment_rows(d, allow_missing)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(to_markdown(rows))
    cols = ["experiment", "part", "clips", "folds", "uf1", "uar", "accuracy", "selection"]
    with (out / "table.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        if r["part"] != "all":
            continue
        with (out / f"confusion_{r['experiment']}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["true \\ predicted", *r["class_names"]])
            for name, counts in zip(r["class_names"], r["confusion"], strict=True):
                w.writerow([name, *counts])
    return rows


def main(argv: list[str] | None = None) -> None:
    """``mefnet-table``: pooled results table of one or more experiment directories."""
    ap = argparse.ArgumentParser(description="Pooled UF1 / UAR table from stored fold predictions.")
    ap.add_argument("experiments", nargs="+", help="experiment directories (holding experiment.json)")
    ap.add_argument("--out", help="output folder (default: the experiment dir, or ./outputs/table for several)")
    ap.add_argument("--allow-missing", action="store_true", help="score finished folds only, and say which are missing")
    a = ap.parse_args(argv)
    out = a.out or (a.experiments[0] if len(a.experiments) == 1 else "outputs/table")
    try:
        rows = write_table(a.experiments, out, a.allow_missing)
    except (IncompleteExperimentError, FileNotFoundError) as e:
        raise SystemExit(f"mefnet-table: {e}") from None
    print(to_markdown(rows))
    print(f"written: {Path(out) / 'table.md'}, {Path(out) / 'table.csv'}")
