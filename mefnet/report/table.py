"""Results tables rebuilt from the per-fold prediction files alone.

``mefnet-table DIR...`` takes experiment directories, or folders holding them (a sweep
folder with several experiments, an experiment with one sub-folder per seed), and finds
every run by its ``experiment.json``, whatever the layout. From the runs'
``folds/<dataset>/<subject>/predictions.csv`` it writes:

``table.md`` / ``table.csv``
    one row per experiment (and, for a multi-dataset run such as the MEGC2019
    composite, one row per source dataset): UF1, UAR and accuracy pooled over the folds
    of each seed's run, then mean and sample standard deviation over the seeds, and the
    95% percentile bootstrap interval over subjects of that UF1 (``UF1 95% CI``; in
    table.csv the last columns ``uf1_ci_low`` / ``uf1_ci_high``;
    :func:`mefnet.report.compare.uf1_interval`: 10000 resamples from seed 0 unless
    ``--bootstrap`` / ``--bootstrap-seed`` say otherwise).
``table_seeds.csv``
    the same scores for every seed (long form).
``confusion_<experiment>.csv`` / ``.png``
    the confusion matrix summed over the experiment's seeds, counts and row-normalised.

Runs of ``debug=`` (under ``<output folder>/debug/``) are left out, and named, unless the
folder given is that ``debug/`` folder or inside it.

Runs with the same ``experiment_name`` are the seeds of one experiment: their configs
must agree apart from the seed (and from where data and outputs live, and how the run
was executed); two runs with one name and different configs are an error. A run whose
folds did not all finish is refused unless ``allow_missing`` (then every missing fold is
named, per experiment and seed).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import os
import re
import sys
from pathlib import Path

from mefnet.report.aggregate import (
    DATASET_TITLES,
    folds_text,
    group_runs,
    summarize,
)
from mefnet.report.calibration import write_calibration
from mefnet.report.compare import compare, write_comparison
from mefnet.report.compare import to_markdown as compare_markdown
from mefnet.report.curves import write_curves
from mefnet.report.ensemble import combined_runs, ensemble_rows, with_ensembles
from mefnet.report.figures import plot_confusion
from mefnet.report.metrics import format_mean_std
from mefnet.report.paper_tables import write_paper_tables
from mefnet.runs.store import (
    EXPERIMENT,
    IncompleteExperimentError,
    ReportError,
    find_runs,
    missing_message,
    read_experiment,
    read_run,
)
from mefnet.utils.figure_output import FORMATS, add_figure_arguments, figure_output
from mefnet.utils.files import atomic_path, atomic_write
from mefnet.utils.quiet import plural

# --------------------------------------------------------------------------- finding

#: Where ``debug=`` runs are written: ``<paths.output_dir>/debug/<experiment>/seed_<seed>``
#: (conf/debug/default.yaml). They carry real experiment names, so a table of
#: ``outputs/`` leaves them out (naming them); a table of that folder has them.
DEBUG_FOLDER = "debug"


def _debug_folder(run_dir: Path, record: dict) -> Path | None:
    """The ``debug/`` folder holding ``run_dir`` when it is a ``debug=`` run, else None."""
    config = record.get("config") or {}
    out, exp = (config.get("paths") or {}).get("output_dir"), config.get("experiment_dir")
    if not out or not exp:
        return None
    try:
        rel = Path(exp).relative_to(out).parts
    except ValueError:
        return None
    if len(rel) == 3 and rel[0] == DEBUG_FOLDER:  # debug/<experiment>/seed_<seed>
        return run_dir.resolve().parents[1]
    return None


def table_runs(dirs: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """The runs a table of ``dirs`` is made of, and the ``debug=`` runs it leaves out: those
    found below a given folder that is not itself in their ``debug/`` folder."""
    kept, debug = [], []
    given = [Path(d).resolve() for d in dirs]
    for d in find_runs(dirs):
        folder = _debug_folder(d, read_experiment(d))
        asked = folder is not None and any(g == folder or folder in g.parents for g in given)
        (debug if folder is not None and not asked else kept).append(d)
    if not kept and debug:
        raise ReportError(f"{', '.join(map(str, dirs))} holds only debug= runs ({len(debug)}, under "
                          f"{_debug_folder(debug[0], read_experiment(debug[0]))}); give that folder to tabulate them")
    return kept, debug


# --------------------------------------------------------------------------- writing


def _fmt(row: dict, key: str) -> str:
    return format_mean_std(row[key], row.get(f"{key}_std"))


def to_markdown(rows: list[dict]) -> str:
    """The table and its notes: how scores are pooled, each selection rule, what is missing."""
    head = ("| experiment | part | clips | folds | seeds | UF1 | UF1 95% CI | UAR | accuracy |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r['experiment']} | {r.get('title', r['part'])} | {r['clips']} | {folds_text(r)} | "
        f"{r.get('seeds', 1)} | {_fmt(r, 'uf1')} | {_ci(r)} | {_fmt(r, 'uar')} | {_fmt(r, 'accuracy')} |\n"
        for r in rows
    )
    notes = [
        "",
        "UF1 / UAR / accuracy: pooled over all folds of a run (docs/protocol.md; one fold per subject, or "
        "per dataset under protocol=lodo), "
        "never averaged per fold. With several seeds: mean ± sample standard deviation (n-1) of "
        "the seeds' pooled scores; clips and folds are per seed.",
        "UF1 95% CI: percentile bootstrap over subjects (LOSO folds) of the row's UF1: subjects drawn with "
        "replacement, their clips pooled, UF1 recomputed (with several seeds, the mean over seeds on the same "
        "resampled subjects); the 2.5th and 97.5th percentile (mefnet/report/compare.py)."
        + (" n/a: the seeds did not predict the same clips." if any(r.get("uf1_ci_low") is None for r in rows)
           else ""),
    ]
    if any(r.get("missing_folds") for r in rows):
        notes.append("Folds \"k of n\": an unfinished run (--allow-missing), scored on the k folds that have "
                     "predictions; its scores are not those of the whole dataset.")
    if any(r.get("ensemble") for r in rows):
        notes.append("Ensemble rows: each clip predicted by the mean of the seeds' stored class probabilities "
                     "(argmax), then pooled like one run; no standard deviation.")
    if any(r["part"] != "all" for r in rows):
        notes.append("Dataset parts: the same runs' pooled predictions restricted to that dataset's clips.")
    for sel in dict.fromkeys(r["selection"] for r in rows):
        users = list(dict.fromkeys(r["experiment"] for r in rows if r["selection"] == sel))
        notes.append(f"Model selection ({', '.join(users)}): {sel}.")
    for r in rows:
        if r["part"] != "all":
            continue
        for m in r.get("missing", []):
            notes.append(f"WARNING: {r['experiment']} seed {m['seed']} is missing {len(m['folds'])} "
                         f"folds: {', '.join(m['folds'])}.")
        if r.get("left_out"):
            notes.append(f"WARNING: {r['experiment']} is made of the folds every seed finished; left out "
                         f"{plural(len(r['left_out']), 'fold')}: {', '.join(r['left_out'])}.")
        elif not r.get("missing") and r["missing_folds"]:
            notes.append(f"WARNING: {r['experiment']} is missing {plural(r['missing_folds'], 'fold')}.")
    return head + body + "\n".join(notes) + "\n"


def _ci(row: dict) -> str:
    low, high = row.get("uf1_ci_low"), row.get("uf1_ci_high")
    return "n/a" if low is None or high is None else f"[{low:.4f}, {high:.4f}]"


def _file_stem(name: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"
    base, n = stem, 2
    while stem in used:
        stem, n = f"{base}-{n}", n + 1
    used.add(stem)
    return stem


def _num(v: float | None, digits: int) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def write_table(
    experiment_dirs: list[str | Path],
    out_dir: str | Path,
    allow_missing: bool = False,
    names: list[str] | None = None,
    figures: bool = True,
    ensemble: bool = False,
    bootstrap: int | None = None,
    bootstrap_seed: int = 0,
    combine: list[str] | None = None,
) -> list[dict]:
    """Build the table of every run in or below ``experiment_dirs``; write it into ``out_dir``.

    ``names``: glob patterns (``*ststnet*``); only experiments matching one are kept.
    ``ensemble``: after each experiment with several seeds, the rows of its seed ensemble
    (:mod:`mefnet.report.ensemble`).
    ``bootstrap`` / ``bootstrap_seed``: resamples (default 10000) and seed of the UF1
    intervals (:func:`mefnet.report.aggregate.summarize`).
    ``combine``: combinations of experiments (``"A+B"``), each added as rows of its own: per
    seed the mean of the members' class probabilities (with ``ensemble``: and the ensemble
    of those seeds); see :func:`mefnet.report.ensemble.combined_runs`.
    Returns one row per experiment and part, with keys experiment, part, clips, folds,
    seeds, uf1, uar, accuracy (means), uf1_std, uar_std, accuracy_std (None for one seed),
    uf1_ci_low, uf1_ci_high (None where the seeds predicted different clips), selection,
    confusion (summed over seeds), class_names, missing_folds, missing.
    """
    records = [(d, read_experiment(d)) for d in table_runs(experiment_dirs)[0]]
    if names:
        kept = [(d, r) for d, r in records if any(fnmatch.fnmatchcase(r["name"], p) for p in names)]
        if not kept:
            found = sorted({r["name"] for _, r in records})
            raise ReportError(f"no experiment matches --name {' '.join(names)}; found: {', '.join(found)}")
        records = kept
    runs = [read_run(d, r) for d, r in records]
    groups = group_runs(runs)
    incomplete = [r for g in groups for r in g if r.missing]
    if incomplete and not allow_missing:
        raise IncompleteExperimentError(
            "\n".join(missing_message(r) for r in incomplete)
            + "\nRerun the experiment(s) to finish them, or pass --allow-missing to score the finished folds."
        )
    # Action-unit experiments (task=au) get their own table (mefnet.report.au_metrics).
    au_groups = [g for g in groups if g[0].record.get("task") == "au"]
    groups = [g for g in groups if g[0].record.get("task") != "au"]
    rows = [row for g in groups for row in summarize(g, bootstrap, bootstrap_seed)]
    if ensemble:
        rows = with_ensembles(rows, groups, bootstrap, bootstrap_seed, allow_missing)
    combined = [combined_runs(groups, spec, allow_missing) for spec in combine or []]
    for runs_c in combined:
        rows += summarize(runs_c, bootstrap, bootstrap_seed)
        if ensemble and len(runs_c) > 1:
            rows += ensemble_rows(runs_c, bootstrap, bootstrap_seed)

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    # lazy: heavy dependency (torch, through the AU task's scores), needed for AU runs only
    from mefnet.report.au_metrics import au_markdown, summarize_au, write_au_csv

    au_rows = [row for g in au_groups for row in summarize_au(g, DATASET_TITLES)]
    earlier = _confusion_stems(out / "table.csv")  # before table.csv is rewritten
    if au_rows:
        write_au_csv(au_rows, out / "table_au.csv")
    atomic_write(out / "table.md", (to_markdown(rows) if rows else "") + ("\n" if rows and au_rows else "")
                 + au_markdown(au_rows))
    cols = ["experiment", "part", "clips", "folds", "uf1", "uar", "accuracy", "uf1_std", "uar_std",
            "accuracy_std", "seeds", "seed_list", "missing_folds", "selection", "ensemble",
            "uf1_ci_low", "uf1_ci_high"]
    with atomic_path(out / "table.csv") as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([r["experiment"], r["part"], r["clips"], folds_text(r), _num(r["uf1"], 4), _num(r["uar"], 4),
                        _num(r["accuracy"], 4), _num(r["uf1_std"], 4), _num(r["uar_std"], 4),
                        _num(r["accuracy_std"], 4), r["seeds"], " ".join(map(str, r["seed_list"])),
                        r["missing_folds"], r["selection"], r.get("ensemble", ""),
                        _num(r.get("uf1_ci_low"), 4), _num(r.get("uf1_ci_high"), 4)])
    run_dir = {(r.name, r.seed): os.path.relpath(r.dir, out) for g in groups for r in g}
    run_dir.update({(r.name, r.seed): " + ".join(os.path.relpath(d, out) for d in r.record["combination"])
                    for runs_c in combined for r in runs_c})
    with atomic_path(out / "table_seeds.csv") as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["experiment", "part", "seed", "clips", "folds", "uf1", "uar", "accuracy",
                    "missing_folds", "missing", "run"])
        for r in rows:
            missing = {m["seed"]: m["folds"] for m in r["missing"]}
            for s in r["per_seed"]:
                w.writerow([r["experiment"], r["part"], s["seed"], s["clips"], folds_text(s), _num(s["uf1"], 6),
                            _num(s["uar"], 6), _num(s["accuracy"], 6), s["missing_folds"],
                            " ".join(missing.get(s["seed"], [])),
                            run_dir[(r["experiment"], s["seed"])]])
    used: set[str] = set()
    for r in rows:
        if r["part"] != "all":
            continue
        stem = _file_stem(r["experiment"], used)
        with atomic_path(out / f"confusion_{stem}.csv") as tmp, tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["true \\ predicted", *r["class_names"]])
            for name, counts in zip(r["class_names"], r["confusion"], strict=True):
                w.writerow([name, *counts])
        if figures:
            seeds = r["seed_list"]
            if len(seeds) == 1:
                title, label = f"{r['experiment']}: seed {seeds[0]}, {r['clips']} clips", "counts"
            else:
                title = f"{r['experiment']}: {len(seeds)} seeds ({', '.join(map(str, seeds))}), {r['clips']} clips per seed"
                label = f"counts summed over {len(seeds)} seeds"
            plot_confusion(r["confusion"], r["class_names"], out / f"confusion_{stem}.png", title, label)
    # A confusion matrix the previous table in this folder wrote for a row that is gone
    # (e.g. the 2-seed ensemble of a set whose third seed has finished since) would sit
    # next to the new table as if it were part of it: removed. Only files named by the
    # previous table.csv's rows are touched.
    for stem in earlier - used:
        for suffix in (".csv", *(f".{f}" for f in FORMATS)):
            (out / f"confusion_{stem}{suffix}").unlink(missing_ok=True)
    return rows + au_rows


def _confusion_stems(table_csv: Path) -> set[str]:
    """The confusion-matrix file stems that the table in ``table_csv`` was written with
    (its ``all`` rows, in order); empty if there is no such table or it cannot be read."""
    try:
        with table_csv.open(newline="") as f:
            names = [r["experiment"] for r in csv.DictReader(f) if r.get("part") == "all" and r.get("experiment")]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError):
        return set()
    used: set[str] = set()
    for name in names:
        _file_stem(name, used)
    return used


def default_out(dirs: list[str]) -> Path:
    """One folder: that folder. Several: ``table/`` in their deepest common folder."""
    if len(dirs) == 1:
        return Path(dirs[0])
    common = Path(os.path.commonpath([os.path.abspath(d) for d in dirs]))
    if common == Path(common.anchor):
        raise ReportError("the folders share no parent folder to write the table into; pass --out")
    return common / "table"


def check_out(out: Path, dirs: list[str]) -> None:
    """Refuse an ``--out`` that would overwrite a run's own files: a folder inside a run
    (its ``folds/``, ``.hydra/`` ...), or a run's folder when the table is not of that run
    alone (its own table.md / table.csv are the run's record; rebuilding them from the run
    itself, as ``mefnet-table RUN`` does, is allowed)."""
    target = out.resolve()
    for folder in (target, *target.parents):
        if (folder / EXPERIMENT).is_file():
            alone = len(dirs) == 1 and Path(dirs[0]).resolve() == folder == target
            if not alone:
                where = "is the run folder" if folder == target else "lies inside the run folder"
                raise ReportError(f"--out {out} {where} {folder}: its own table and folds would be "
                                  "overwritten; give --out a folder outside every run (e.g. tables/<name>)")
            return


def main(argv: list[str] | None = None) -> None:
    """``mefnet-table``: the pooled results table of experiments, rebuilt from their predictions."""
    ap = argparse.ArgumentParser(
        prog="mefnet-table",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  mefnet-table outputs --name 'megc2019-*' --ensemble --latex --out paper/megc2019",
        description="Pooled UF1 / UAR / accuracy table (mean ± std over seeds) from stored fold predictions.",
    )
    ap.add_argument("dirs", nargs="*", metavar="DIR",
                    help="experiment directories, or folders holding them (searched for experiment.json)")
    ap.add_argument("--out", help="output folder (default: DIR if one is given, else table/ in the "
                                  "folders' common parent)")
    ap.add_argument("--allow-missing", action="store_true",
                    help="score the finished folds of unfinished runs (folds 'k of n' in every table), and name "
                         "the missing ones; with --compare / --ensemble: on the folds every run finished")
    ap.add_argument("--name", action="append", metavar="PATTERN",
                    help="keep only experiments whose name matches this glob (repeatable)")
    ap.add_argument("--no-figures", action="store_true", help="skip the confusion-matrix figures")
    add_figure_arguments(ap)
    ap.add_argument("--ensemble", action="store_true",
                    help="add a row per experiment with several seeds: the seeds' mean class probabilities")
    ap.add_argument("--combine", action="append", metavar="A+B",
                    help="add rows for the combination of these experiments (names joined by '+', e.g. two "
                         "backbones on the same clips): per seed, the mean of their class probabilities; "
                         "repeatable")
    ap.add_argument("--latex", action="store_true", help="also write the table as LaTeX (table.tex, booktabs)")
    ap.add_argument("--curves", action="store_true",
                    help="also write training / inner-validation curves per experiment (curves_<experiment>.png)")
    ap.add_argument("--calibration", action="store_true",
                    help="also write temperature scaling fitted per fold on the training subjects' out-of-fold "
                         "predictions: ECE and NLL before / after (calibration.md, .csv, calibration_folds.csv) "
                         "and reliability_<experiment> in --format")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"),
                    help="paired comparison of two experiment folders on the same clips: bootstrap over "
                         "subjects of the UF1 difference, McNemar's test (writes compare.md / .json)")
    ap.add_argument("--bootstrap", type=int, default=10000,
                    help="bootstrap resamples of the UF1 intervals and of --compare (default 10000)")
    ap.add_argument("--bootstrap-seed", type=int, default=0,
                    help="seed of the resampling of the UF1 intervals and of --compare (default 0)")
    a = ap.parse_args(argv)
    if not a.dirs and not a.compare:
        ap.error("give experiment folders (DIR ...) and/or --compare A B")
    with figure_output(a.format, a.dpi):
        _table(a)


def _table(a: argparse.Namespace) -> None:
    try:
        if a.out:
            check_out(Path(a.out), list(a.dirs))
        if a.compare:
            out = Path(a.out) if a.out else default_out(list(a.compare)).with_name("compare")
            result = compare(a.compare[0], a.compare[1], a.bootstrap, a.bootstrap_seed, a.allow_missing)
            print(compare_markdown(result))
            print(f"written to {out}: {', '.join(p.name for p in write_comparison(result, out))}")
            if not a.dirs:
                return
        out = Path(a.out) if a.out else default_out(a.dirs)
        rows = write_table(a.dirs, out, a.allow_missing, a.name, figures=not a.no_figures, ensemble=a.ensemble,
                           bootstrap=a.bootstrap, bootstrap_seed=a.bootstrap_seed, combine=a.combine)

        # The per-class / per-subject / LaTeX / curve reports are of emotion experiments;
        # action-unit experiments have their table in table.md and table_au.csv.
        emotion_rows = [r for r in rows if "uf1" in r]
        kept, debug_runs = table_runs(a.dirs)
        if debug_runs:
            folders = sorted({str(Path(os.path.relpath(d)).parents[1]) for d in debug_runs})
            print(f"mefnet-table: left out {len(debug_runs)} debug= run(s) under {', '.join(folders)} "
                  f"(give that folder to tabulate them)", file=sys.stderr)
        runs = [read_run(d) for d in kept]
        groups = [g for g in group_runs(runs) if g[0].record.get("task") != "au"
                  and g[0].name in {r["experiment"] for r in emotion_rows}]
        extra = write_paper_tables(groups, emotion_rows, out, latex=a.latex)
        if a.curves:
            extra += write_curves(groups, out)
        if a.calibration:
            used: set[str] = set()
            extra += write_calibration(groups, out, figures=not a.no_figures, stem=lambda n: _file_stem(n, used))
    except (IncompleteExperimentError, FileNotFoundError, ReportError) as e:
        raise SystemExit(f"mefnet-table: {e}") from None
    print((out / "table.md").read_text())
    for r in rows:
        for m in r.get("missing", []):
            print(f"mefnet-table: {r['experiment']} seed {m['seed']} ({m['dir']}) is missing "
                  f"{plural(len(m['folds']), 'fold')}: {', '.join(m['folds'])}", file=sys.stderr)
        if r.get("left_out") and r["part"] == "all":
            print(f"mefnet-table: {r['experiment']}: left out {plural(len(r['left_out']), 'fold')} not finished "
                  f"by every seed: {', '.join(r['left_out'])}", file=sys.stderr)
    files = ["table.md", "table.csv", "table_seeds.csv", "confusion_*.csv"]
    files += (["table_au.csv"] if (out / "table_au.csv").is_file() else []) + \
        ([] if a.no_figures else [f"confusion_*.{a.format}"])
    files += sorted({f"curves_*{p.suffix}" if p.name.startswith("curves_") else f"reliability_*{p.suffix}"
                     if p.name.startswith("reliability_") else p.name for p in extra})
    print(f"written to {out}: {', '.join(files)}")


if __name__ == "__main__":
    main()
