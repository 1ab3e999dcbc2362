"""Action-unit scores, pooled over every fold as docs/protocol.md does for UF1.

For each AU k of the run's AU set, TP / FP / FN are counted once over the pooled
predictions of all folds (never per fold and then averaged):

``F1_k``
    ``2 TP / (2 TP + FP + FN)`` of the positive class (AU present).
``macro F1``
    the mean of ``F1_k`` over the AUs with at least one positive clip in the pooled ground
    truth. An AU that no pooled clip has is left out of the mean and named under the table
    (its F1 is undefined); an AU missing from one fold only is simply pooled.
``average binary F1``
    per AU, the binary problem's own macro F1 (the mean of the F1 of "present" and the F1
    of "absent"), averaged over the same AUs.
``label accuracy``
    the share of (clip, AU) decisions that are right.

The formula is the task's (:func:`mefnet.tasks.au.au_scores`); this module pools the folds'
predictions (read by :mod:`mefnet.runs.store`) and writes the AU tables.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mefnet.report.metrics import format_mean_std, mean_std
from mefnet.tasks.au import au_scores

# -- table rows -------------------------------------------------------------------------------


def au_part_scores(predictions: list[dict], names: list[str]) -> dict:
    """The pooled AU scores of some prediction rows (one part of a run: all clips or one dataset)."""
    return au_scores([r["y_true"] for r in predictions], [r["y_pred"] for r in predictions], names)


def summarize_au(runs, dataset_titles: dict[str, str]) -> list[dict]:
    """Rows of one AU experiment (its seeds): all clips, then each source dataset."""
    names = list(runs[0].record["au_names"])
    per_seed = []
    for run in runs:
        if not run.predictions:
            continue
        datasets = list(dict.fromkeys(r["dataset"] for r in run.predictions))
        parts = [("all", run.predictions)]
        if len(datasets) > 1:
            parts += [(d, [r for r in run.predictions if r["dataset"] == d]) for d in datasets]
        for part, rows in parts:
            m = au_part_scores(rows, names)
            per_seed.append({"part": part, "seed": run.seed, "clips": m["n"],
                             "folds": len({r["fold"] for r in rows}), **m})
    out = []
    for part in dict.fromkeys(r["part"] for r in per_seed):
        rows = [r for r in per_seed if r["part"] == part]
        row = {"experiment": runs[0].name, "part": part,
               "title": "all" if part == "all" else dataset_titles.get(part, part),
               "clips": rows[0]["clips"], "folds": rows[0]["folds"], "seeds": len(rows),
               "seed_list": [r["seed"] for r in rows], "au_names": names,
               "selection": runs[0].record.get("selection", ""),
               "absent": sorted({a for r in rows for a in r["absent"]})}
        for key in ("macro_f1", "avg_binary_f1", "label_accuracy"):
            row[key], row[f"{key}_std"] = mean_std([r[key] for r in rows], 4)
        row["f1_per_au"] = {}
        for n in names:
            values = [r["f1_per_au"][n] for r in rows if r["f1_per_au"][n] is not None]
            row["f1_per_au"][n] = mean_std(values, 4)[0] if values else None
        row["support"] = rows[0]["support"]
        out.append(row)
    return out


def au_markdown(rows: list[dict]) -> str:
    """The AU table: macro F1, average binary F1, then F1 per AU (pooled over folds)."""
    if not rows:
        return ""
    names = list(dict.fromkeys(n for r in rows for n in r["au_names"]))

    def fmt(r, key):
        return format_mean_std(r[key], r.get(f"{key}_std"))

    # Two scores the literature confuses: each header says which classes its F1 averages.
    head = ("| experiment | part | clips | folds | seeds | macro F1 (present) | avg binary F1 (present/absent) | "
            + " | ".join(names) + " |\n|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(names) + "\n")
    body = ""
    for r in rows:
        per = [("–" if r["f1_per_au"].get(n) is None else f"{r['f1_per_au'][n]:.3f}") for n in names]
        body += (f"| {r['experiment']} | {r['title']} | {r['clips']} | {r['folds']} | {r['seeds']} | "
                 f"{fmt(r, 'macro_f1')} | {fmt(r, 'avg_binary_f1')} | " + " | ".join(per) + " |\n")
    notes = ["", "Action units: F1 per AU (of \"present\"), macro F1 (present) = its mean over AUs, and the "
             "average binary F1 (present/absent) = the mean over AUs of the mean of the F1 of \"present\" "
             "and of \"absent\" (the headline of the meb toolkit), each pooled over all folds of a run, "
             "never averaged per fold; with several seeds, mean ± sample standard deviation. – : no clip "
             "of that part has the AU, so its F1 is undefined and it is left out of the averages."]
    for sel in dict.fromkeys(r["selection"] for r in rows):
        users = list(dict.fromkeys(r["experiment"] for r in rows if r["selection"] == sel))
        notes.append(f"Model selection ({', '.join(users)}): {sel}.")
    return head + body + "\n".join(notes) + "\n"


def write_au_csv(rows: list[dict], path: Path) -> None:
    """Write the AU table's rows as CSV, with one ``f1_<AU>`` column per AU of any row."""
    names = list(dict.fromkeys(n for r in rows for n in r["au_names"]))
    with Path(path).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["experiment", "part", "clips", "folds", "seeds", "macro_f1", "macro_f1_std",
                    "avg_binary_f1", "avg_binary_f1_std", "label_accuracy", *[f"f1_{n}" for n in names]])
        for r in rows:
            w.writerow([r["experiment"], r["part"], r["clips"], r["folds"], r["seeds"], r["macro_f1"],
                        "" if r["macro_f1_std"] is None else r["macro_f1_std"], r["avg_binary_f1"],
                        "" if r["avg_binary_f1_std"] is None else r["avg_binary_f1_std"], r["label_accuracy"],
                        *["" if r["f1_per_au"].get(n) is None else r["f1_per_au"][n] for n in names]])
