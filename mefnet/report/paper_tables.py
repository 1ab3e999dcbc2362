"""The tables a paper needs beside the main one: per class, per subject, and LaTeX.

Everything is computed from the runs' stored predictions, as the main table is
(:mod:`mefnet.report.table`), and under the same rules (docs/protocol.md): each seed's
scores are pooled over all its folds, then the seeds are averaged.

* ``per_class.csv`` / ``per_class.md``: for every experiment, part and class, the pooled
  F1 and recall (mean and sample standard deviation over seeds) and the class's clips.
* ``per_subject.csv``: for every experiment and subject (one LOSO fold), its clips, how
  many were predicted correctly (mean over seeds) and its accuracy. A subject holds a few
  clips, often of one class, so F1 per subject is not meaningful and is not given; the
  table shows which subjects a model fails on.
* ``table.tex`` (``mefnet-table --latex``): the main table as a LaTeX ``tabular`` with
  booktabs rules, one row per experiment and part.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path

from mefnet.report.aggregate import DATASET_TITLES, folds_text
from mefnet.report.metrics import format_mean_std, mean_std, pooled_metrics
from mefnet.runs.store import Run
from mefnet.utils.metrics import f1_from_counts

# ----------------------------------------------------------------------- per class


def _parts(run: Run) -> list[tuple[str, list[dict]]]:
    datasets = list(dict.fromkeys(r["dataset"] for r in run.predictions))
    parts = [("all", run.predictions)]
    if len(datasets) > 1:
        parts += [(d, [r for r in run.predictions if r["dataset"] == d]) for d in datasets]
    return parts


def per_class_rows(groups: list[list[Run]]) -> list[dict]:
    """One row per experiment, part and class: F1 and recall, mean (and std) over seeds."""
    out = []
    for group in groups:
        scored = [run for run in group if run.predictions]
        names = list(scored[0].record["class_names"]) if scored else []
        by_part: dict[str, list[dict]] = defaultdict(list)
        for run in scored:
            for part, rows in _parts(run):
                try:
                    m = pooled_metrics([r["true"] for r in rows], [r["pred"] for r in rows], len(names), names)
                    m["support"] = _support(m)
                except ValueError:
                    # A part without every class (a small dataset part): per-class rows of the
                    # classes it has; recall of an absent class is undefined and left blank.
                    m = _partial_metrics(rows, len(names))
                by_part[part].append(m)
        for part, metrics in by_part.items():
            for k, name in enumerate(names):
                f1 = [m["f1_per_class"][k] for m in metrics if m["f1_per_class"][k] is not None]
                recall = [m["recall_per_class"][k] for m in metrics if m["recall_per_class"][k] is not None]
                f1_mean, f1_std = mean_std(f1) if f1 else (None, None)
                rec_mean, rec_std = mean_std(recall) if recall else (None, None)
                out.append({
                    "experiment": group[0].name,
                    "part": part,
                    "class": name,
                    "clips": metrics[0]["support"][k],
                    "f1": f1_mean, "f1_std": f1_std,
                    "recall": rec_mean, "recall_std": rec_std,
                    "seeds": len(metrics),
                })
    return out


def _partial_metrics(rows: list[dict], k: int) -> dict:
    tp, fp, fn, support = [0] * k, [0] * k, [0] * k, [0] * k
    for r in rows:
        t, p = r["true"], r["pred"]
        support[t] += 1
        if t == p:
            tp[t] += 1
        else:
            fp[p] += 1
            fn[t] += 1
    f1 = [float(f) if support[c] else None for c, f in enumerate(f1_from_counts(tp, fp, fn))]
    recall = [tp[c] / support[c] if support[c] else None for c in range(k)]
    return {"f1_per_class": f1, "recall_per_class": recall, "support": support}


def _support(metrics: dict) -> list[int]:
    return [int(sum(row)) for row in metrics["confusion"]]


# --------------------------------------------------------------------- per subject


def per_subject_rows(groups: list[list[Run]]) -> list[dict]:
    """One row per experiment and subject: clips, correct (mean over seeds), accuracy."""
    out = []
    for group in groups:
        scored = [run for run in group if run.predictions]
        names = list(scored[0].record["class_names"]) if scored else []
        correct: dict[str, list[int]] = defaultdict(list)
        clips: dict[str, dict[int, int]] = {}
        for run in scored:
            per_subject: dict[str, int] = defaultdict(int)
            counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
            for r in run.predictions:
                key = f"{r['dataset']}/{r['subject']}"
                per_subject[key] += int(r["true"] == r["pred"])
                counts[key][r["true"]] += 1
            for key, n in per_subject.items():
                correct[key].append(n)
                clips.setdefault(key, dict(counts[key]))
        for key in sorted(correct, key=lambda s: (s.split("/")[0], s)):
            n = sum(clips[key].values())
            mean_correct = statistics.fmean(correct[key])
            out.append({
                "experiment": group[0].name,
                "subject": key,
                "clips": n,
                "classes": " ".join(f"{names[c]}:{clips[key][c]}" for c in sorted(clips[key])),
                "correct": round(mean_correct, 4),
                "accuracy": round(mean_correct / n, 4),
                "seeds": len(correct[key]),
            })
    return out


# -------------------------------------------------------------------------- LaTeX

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def latex_escape(text: object) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _latex_score(row: dict, key: str) -> str:
    std = row.get(f"{key}_std")
    return f"{row[key]:.4f}" if std is None else f"${row[key]:.4f} \\pm {std:.4f}$"


def _latex_ci(row: dict) -> str:
    low, high = row.get("uf1_ci_low"), row.get("uf1_ci_high")
    return "n/a" if low is None or high is None else f"[{low:.4f}, {high:.4f}]"


def to_latex(rows: list[dict], caption: str = "", label: str = "tab:results") -> str:
    """The main table's rows (:func:`mefnet.report.table.write_table`) as a LaTeX table.

    One row per experiment and part; an experiment's name is printed on its first row
    only, and experiments are separated by ``\\midrule``. Needs ``\\usepackage{booktabs}``.
    """
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{llrrrcccc}",
        r"\toprule",
        r"Experiment & Part & Clips & Folds & Seeds & UF1 & UF1 95\% CI & UAR & Accuracy \\",
        r"\midrule",
    ]
    previous = None
    for r in rows:
        if previous is not None and r["experiment"] != previous:
            lines.append(r"\midrule")
        name = latex_escape(r["experiment"]) if r["experiment"] != previous else ""
        part = r.get("title") or ("all" if r["part"] == "all" else DATASET_TITLES.get(r["part"], r["part"]))
        lines.append(
            f"{name} & {latex_escape(part)} & {latex_escape(r['clips'])} & {latex_escape(folds_text(r))} & "
            f"{r.get('seeds', 1)} & {_latex_score(r, 'uf1')} & {_latex_ci(r)} & {_latex_score(r, 'uar')} & "
            f"{_latex_score(r, 'accuracy')} \\\\"
        )
        previous = r["experiment"]
    selections = list(dict.fromkeys(r.get("selection", "") for r in rows if r.get("selection")))
    default_caption = (
        "UF1, UAR and accuracy pooled over all leave-one-subject-out folds of each run "
        "(mean $\\pm$ sample standard deviation over seeds where there are several); "
        "UF1 95\\% CI: percentile bootstrap over subjects."
        + (" Folds ``$k$ of $n$'': an unfinished run, scored on the $k$ folds that have predictions."
           if any(r.get("missing_folds") for r in rows) else "")
    )
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        f"\\caption{{{latex_escape(caption) if caption else default_caption}}}",
        f"\\label{{{latex_escape(label)}}}",
        r"\end{table}",
    ]
    if selections:
        lines.append("% model selection: " + " | ".join(s.replace("\n", " ") for s in selections))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- writing


def _num(v: float | None, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def per_class_markdown(rows: list[dict]) -> str:
    """``per_class.md``: F1 and recall of each class, per experiment and part (all clips or one
    dataset), mean ± std over the seeds."""
    head = ("| experiment | part | class | clips | F1 | recall |\n"
            "|---|---|---|---:|---:|---:|\n")

    def fmt(r: dict, key: str) -> str:
        if r[key] is None:
            return "n/a"
        return format_mean_std(r[key], r[f"{key}_std"])

    body = "".join(
        f"| {r['experiment']} | {'all' if r['part'] == 'all' else DATASET_TITLES.get(r['part'], r['part'])} "
        f"| {r['class']} | {r['clips']} | {fmt(r, 'f1')} | {fmt(r, 'recall')} |\n"
        for r in rows
    )
    note = ("\nPer-class F1 and recall of each seed's predictions pooled over all folds (docs/protocol.md); "
            "with several seeds, mean ± sample standard deviation. UF1 and UAR are the means of these "
            "columns over the classes.\n")
    return head + body + note


def write_paper_tables(groups: list[list[Run]], rows: list[dict], out_dir: str | Path,
                       latex: bool = False) -> list[Path]:
    """Write per_class.csv / .md, per_subject.csv and (``latex``) table.tex into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    classes = per_class_rows(groups)
    with (out / "per_class.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["experiment", "part", "class", "clips", "f1", "f1_std", "recall", "recall_std", "seeds"])
        for r in classes:
            w.writerow([r["experiment"], r["part"], r["class"], r["clips"], _num(r["f1"]), _num(r["f1_std"]),
                        _num(r["recall"]), _num(r["recall_std"]), r["seeds"]])
    partial = [f"WARNING: {run.name} seed {run.seed} is an unfinished run: "
               f"{len(run.record['folds']) - len(run.missing)} of {len(run.record['folds'])} folds "
               "(its per-class and per-subject rows are of those folds)." for g in groups for run in g if run.missing]
    (out / "per_class.md").write_text(per_class_markdown(classes) + "".join(f"\n{w}\n" for w in partial))
    written += [out / "per_class.csv", out / "per_class.md"]
    subjects = per_subject_rows(groups)
    with (out / "per_subject.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["experiment", "subject", "clips", "classes", "correct", "accuracy", "seeds"])
        w.writeheader()
        w.writerows(subjects)
    written.append(out / "per_subject.csv")
    if latex:
        (out / "table.tex").write_text(to_latex(rows))
        written.append(out / "table.tex")
    return written
