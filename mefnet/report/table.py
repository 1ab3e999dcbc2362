"""Results tables rebuilt from the per-fold prediction files alone.

``mefnet-table DIR...`` takes experiment directories, or folders holding them (a sweep
folder with several experiments, an experiment with one sub-folder per seed), and finds
every run by its ``experiment.json``, whatever the layout. From the runs'
``folds/<dataset>/<subject>/predictions.csv`` it writes:

``table.md`` / ``table.csv``
    one row per experiment (and, for a multi-dataset run such as the MEGC2019
    composite, one row per source dataset): UF1, UAR and accuracy pooled over the folds
    of each seed's run, then mean and sample standard deviation over the seeds.
``table_seeds.csv``
    the same scores for every seed (long form).
``confusion_<experiment>.csv`` / ``.png``
    the confusion matrix summed over the experiment's seeds, counts and row-normalised.

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
import json
import os
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from mefnet.report.metrics import pooled_metrics

PREDICTIONS = "predictions.csv"
FOLD_DONE = "fold.json"
EXPERIMENT = "experiment.json"
REQUIRED_COLUMNS = ("dataset", "subject", "clip", "true", "pred")

# How the parts of a composite are titled in table.md (table.csv keeps the dataset key).
DATASET_TITLES = {
    "smic": "SMIC",
    "casme2": "CASME II",
    "samm": "SAMM",
    "casme3": "CAS(ME)^3",
}

# Config keys that say how or where a run was executed, not what it computes: the runs
# that are seeds of one experiment may differ in them (and in the seed).
_NOT_COMPARED = (
    "seed",
    "fold",
    "n_jobs",
    "engine",
    "threads_per_fold",
    "logger",
    "hydra",
    "paths",
    "experiment_dir",
    "save_checkpoint",
    "save_model",
    "trainer.enable_progress_bar",
    "preprocessing.cache_dir",
    "preprocessing.n_jobs",
)
# Leaf keys naming a location (dataset roots, data folders): where the data is, not what
# it is. The data's identity is checked instead through the folds, the class names and
# every clip's true label, which must agree between the seeds of an experiment.
_LOCATION_KEY = re.compile(r"(^|_)(root|dir)$")


class IncompleteExperimentError(RuntimeError):
    """Some folds of an experiment have no finished predictions."""


class ReportError(ValueError):
    """Stored files the table cannot be built from: malformed, or runs that do not belong together."""


@dataclass
class Run:
    """One finished (or partly finished) LOSO run: one experiment, one seed."""

    dir: Path
    record: dict
    predictions: list[dict]
    missing: list[str]

    @property
    def name(self) -> str:
        return str(self.record["name"])

    @property
    def seed(self) -> int:
        return int(self.record["seed"])


# --------------------------------------------------------------------------- reading


def fold_dir(experiment_dir: str | Path, subject_key: str) -> Path:
    """Where a fold's outputs live: ``<experiment>/folds/<dataset>/<subject>``."""
    return Path(experiment_dir) / "folds" / subject_key


def read_experiment(experiment_dir: str | Path) -> dict:
    """The run's ``experiment.json``, checked for the keys the table needs."""
    path = Path(experiment_dir) / EXPERIMENT
    if not path.is_file():
        raise FileNotFoundError(f"{experiment_dir} is not a mefnet experiment: {EXPERIMENT} is missing")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(record, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in ("name", "folds", "class_names") if k not in record]
    if missing:
        raise ReportError(f"{path}: missing key(s) {missing}; expected name, folds, class_names, seed, config")
    if "seed" not in record:
        seed = (record.get("config") or {}).get("seed")
        if seed is None:
            raise ReportError(f"{path}: no 'seed' (neither at the top level nor in 'config')")
        record["seed"] = seed
    try:
        record["seed"] = int(record["seed"])
    except (TypeError, ValueError):
        raise ReportError(f"{path}: 'seed' must be an integer, got {record['seed']!r}") from None
    if not isinstance(record["folds"], list) or not record["folds"]:
        raise ReportError(f"{path}: 'folds' must be a non-empty list of '<dataset>/<subject>' keys")
    if not isinstance(record["class_names"], list) or not record["class_names"]:
        raise ReportError(f"{path}: 'class_names' must be a non-empty list")
    return record


def finished_folds(experiment_dir: str | Path) -> set[str]:
    """Subject keys whose fold wrote its completion record."""
    root = Path(experiment_dir) / "folds"
    done = set()
    for marker in root.glob(f"*/*/{FOLD_DONE}"):
        try:
            status = json.loads(marker.read_text()).get("status")
        except (json.JSONDecodeError, AttributeError):
            raise ReportError(f"{marker}: not a valid fold record (expected a JSON object with 'status')") from None
        if status == "complete":
            done.add(f"{marker.parent.parent.name}/{marker.parent.name}")
    return done


def _read_fold_predictions(path: Path, subject_key: str, class_names: list[str]) -> list[dict]:
    """The rows of one fold's predictions.csv, each checked against its fold and the classes."""
    if not path.is_file():
        raise ReportError(f"{path}: the fold is marked complete in {FOLD_DONE} but has no {PREDICTIONS}")
    dataset, _, subject = subject_key.partition("/")
    k = len(class_names)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        absent = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise ReportError(
                f"{path}: missing column(s) {absent}; expected {','.join(REQUIRED_COLUMNS)},... "
                f"(got {reader.fieldnames})"
            )
        rows = []
        for line, r in enumerate(reader, start=2):
            for key in ("true", "pred"):
                try:
                    r[key] = int(r[key])
                except (TypeError, ValueError):
                    raise ReportError(f"{path}, line {line}: '{key}' = {r[key]!r} is not a class index") from None
                if not 0 <= r[key] < k:
                    raise ReportError(f"{path}, line {line}: '{key}' = {r[key]} is outside 0..{k - 1} ({class_names})")
            if r.get("true_name") and r["true_name"] != class_names[r["true"]]:
                raise ReportError(
                    f"{path}, line {line}: true = {r['true']} is '{class_names[r['true']]}' in "
                    f"{EXPERIMENT} but the row says '{r['true_name']}'"
                )
            if (r["dataset"], r["subject"]) != (dataset, subject):
                raise ReportError(
                    f"{path}, line {line}: clip of {r['dataset']}/{r['subject']} in the fold of {subject_key}"
                )
            rows.append(r)
    if not rows:
        raise ReportError(f"{path}: no predictions (a finished fold predicts at least one clip)")
    return rows


def read_run(experiment_dir: str | Path, record: dict | None = None) -> Run:
    """Experiment record and pooled predictions of the finished folds of one run."""
    record = record if record is not None else read_experiment(experiment_dir)
    done = finished_folds(experiment_dir)
    names = list(record["class_names"])
    preds: list[dict] = []
    seen: dict[tuple, str] = {}
    for subject_key in record["folds"]:
        if subject_key not in done:
            continue
        path = fold_dir(experiment_dir, subject_key) / PREDICTIONS
        for r in _read_fold_predictions(path, subject_key, names):
            key = (r["dataset"], r["subject"], r["clip"])
            if key in seen:
                raise ReportError(f"{path}: clip {'/'.join(key)} is predicted twice")
            seen[key] = str(path)
            preds.append(r)
    missing = [f for f in record["folds"] if f not in done]
    return Run(Path(experiment_dir), record, preds, missing)


def _missing_message(run: Run) -> str:
    folds = run.missing
    shown = ", ".join(folds[:20]) + (f" ... and {len(folds) - 20} more" if len(folds) > 20 else "")
    return (f"{run.name} seed {run.seed} ({run.dir}): {len(folds)} of {len(run.record['folds'])} folds "
            f"have no finished predictions: {shown}")


def read_predictions(experiment_dir: str | Path, allow_missing: bool = False) -> tuple[dict, list[dict]]:
    """(experiment record, pooled prediction rows) of one run; refuses missing folds unless told."""
    run = read_run(experiment_dir)
    if run.missing and not allow_missing:
        raise IncompleteExperimentError(
            f"{_missing_message(run)}; rerun the experiment to finish them, or pass --allow-missing"
        )
    return {**run.record, "missing_folds": run.missing}, run.predictions


def find_runs(dirs: list[str | Path]) -> list[Path]:
    """Every directory holding an ``experiment.json`` in or below ``dirs`` (each once, in order).

    A run's own ``folds/`` tree and hidden folders are not searched.
    """
    found: dict[Path, Path] = {}
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: no such directory")
        hits = []
        for root, sub, files in os.walk(d):
            sub[:] = sorted(s for s in sub if not s.startswith("."))
            if EXPERIMENT in files:
                hits.append(Path(root))
                sub[:] = [s for s in sub if s != "folds"]
        if not hits:
            raise FileNotFoundError(
                f"{d} is not a mefnet experiment: {EXPERIMENT} is missing (in it and in every folder below it)"
            )
        for h in hits:
            found.setdefault(h.resolve(), h)
    return list(found.values())


# --------------------------------------------------------------------------- grouping


def _flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def comparable_config(record: dict) -> dict:
    """The run's config as ``{dotted.key: value}``, without the keys seeds may differ in."""
    flat = _flatten(record.get("config") or {})
    out = {}
    for key, value in flat.items():
        if any(key == k or key.startswith(k + ".") for k in _NOT_COMPARED):
            continue
        if _LOCATION_KEY.search(key.rpartition(".")[2]):
            continue
        out[key] = value
    out["<experiment.json>.folds"] = record["folds"]
    out["<experiment.json>.class_names"] = record["class_names"]
    return out


def config_differences(a: Run, b: Run) -> list[str]:
    """Keys whose values differ between two runs, other than values that follow each run's seed.

    A key equal to its run's seed in both runs (``inner_val.seed: ${seed}``) follows the
    seed and is not a difference.
    """
    ca, cb = comparable_config(a.record), comparable_config(b.record)
    diffs = []
    for key in sorted(set(ca) | set(cb)):
        va, vb = ca.get(key, "<absent>"), cb.get(key, "<absent>")
        if va == vb:
            continue
        if (isinstance(va, int) and isinstance(vb, int) and not isinstance(va, bool)
                and not isinstance(vb, bool) and va == a.seed and vb == b.seed):
            continue
        diffs.append(f"{key}: {_short(va)} vs {_short(vb)}")
    return diffs


def _short(v) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 60 else s[:57] + "..."


def group_runs(runs: list[Run]) -> list[list[Run]]:
    """Runs grouped by experiment name (first appearance first), each group sorted by seed.

    Raises :class:`ReportError` when two runs share a name but not their config (apart
    from the seed), when two runs of one experiment share a seed, or when they disagree
    on a clip's true label.
    """
    groups: dict[str, list[Run]] = {}
    for run in runs:
        group = groups.setdefault(run.name, [])
        if group:
            ref = group[0]
            diffs = config_differences(ref, run)
            if diffs:
                raise ReportError(
                    f"two runs named '{run.name}' differ in more than the seed, so they are not seeds "
                    f"of one experiment:\n  {ref.dir}\n  {run.dir}\ndiffering: "
                    + "; ".join(diffs[:8]) + (f" (and {len(diffs) - 8} more)" if len(diffs) > 8 else "")
                    + "\nGive them different experiment names, or pass only one of them (--name filters)."
                )
            twin = next((g for g in group if g.seed == run.seed), None)
            if twin is not None:
                raise ReportError(
                    f"experiment '{run.name}' seed {run.seed} is stored twice:\n  {twin.dir}\n  {run.dir}\n"
                    "pass only one of them"
                )
        group.append(run)
    for name, group in groups.items():
        truth: dict[tuple, tuple[int, Path]] = {}
        for run in group:
            for r in run.predictions:
                key = (r["dataset"], r["subject"], r["clip"])
                label, where = truth.setdefault(key, (r["true"], run.dir))
                if label != r["true"]:
                    raise ReportError(
                        f"experiment '{name}': clip {'/'.join(key)} has true label {label} in {where} "
                        f"but {r['true']} in {run.dir}; these runs did not see the same data"
                    )
        group.sort(key=lambda r: r.seed)
    return list(groups.values())


# --------------------------------------------------------------------------- scoring


def _datasets(run: Run) -> list[str]:
    order = dict.fromkeys(f.partition("/")[0] for f in run.record["folds"])
    order.update(dict.fromkeys(r["dataset"] for r in run.predictions))
    return list(order)


def run_rows(run: Run) -> list[dict]:
    """Unrounded scores of one run: all clips, then each source dataset if there are several."""
    names = list(run.record["class_names"])
    parts = [("all", run.predictions)]
    datasets = _datasets(run)
    if len(datasets) > 1:
        parts += [(d, [r for r in run.predictions if r["dataset"] == d]) for d in datasets]
    out = []
    for part, rows in parts:
        if not rows:  # every fold of this dataset is missing (allow_missing)
            continue
        try:
            m = pooled_metrics([r["true"] for r in rows], [r["pred"] for r in rows], len(names), names)
        except ValueError as e:
            raise ReportError(f"{run.dir} ({run.name} seed {run.seed}, part {part}): {e}") from None
        out.append({
            "experiment": run.name,
            "part": part,
            "seed": run.seed,
            "clips": m["n"],
            "folds": len({(r["dataset"], r["subject"]) for r in rows}),
            "uf1": m["uf1"],
            "uar": m["uar"],
            "accuracy": m["accuracy"],
            "confusion": m["confusion"],
            "class_names": names,
            "selection": run.record.get("selection", ""),
            "missing_folds": len([f for f in run.missing if part == "all" or f.partition("/")[0] == part]),
        })
    return out


def experiment_rows(experiment_dir: str | Path, allow_missing: bool = False) -> list[dict]:
    """Table rows of one run (one seed): all clips, then each source dataset if several."""
    run = read_run(experiment_dir)
    if run.missing and not allow_missing:
        raise IncompleteExperimentError(
            f"{_missing_message(run)}; rerun the experiment to finish them, or pass --allow-missing"
        )
    rows = run_rows(run)
    for r in rows:
        for k in ("uf1", "uar", "accuracy"):
            r[k] = round(r[k], 4)
    return rows


def _span(values: list[int]) -> int | str:
    lo, hi = min(values), max(values)
    return lo if lo == hi else f"{lo}-{hi}"


def summarize(group: list[Run]) -> list[dict]:
    """One experiment's rows: per part, mean and sample standard deviation over its seeds."""
    scored = [r for r in group if r.predictions]
    if not scored:
        raise IncompleteExperimentError(
            f"experiment '{group[0].name}': no run has a finished fold ("
            + ", ".join(f"seed {r.seed}: {r.dir}" for r in group) + ")"
        )
    per_seed = [row for run in scored for row in run_rows(run)]
    parts = list(dict.fromkeys(r["part"] for r in per_seed))
    missing = [{"seed": r.seed, "dir": str(r.dir), "folds": list(r.missing)} for r in group if r.missing]
    out = []
    for part in parts:
        rows = [r for r in per_seed if r["part"] == part]
        row = {
            "experiment": group[0].name,
            "part": part,
            "title": "all" if part == "all" else DATASET_TITLES.get(part, part),
            "clips": _span([r["clips"] for r in rows]),
            "folds": _span([r["folds"] for r in rows]),
            "seeds": len(rows),
            "seed_list": [r["seed"] for r in rows],
        }
        for k in ("uf1", "uar", "accuracy"):
            values = [r[k] for r in rows]
            row[k] = round(statistics.fmean(values), 4)
            row[f"{k}_std"] = round(statistics.stdev(values), 4) if len(values) > 1 else None
        k = len(rows[0]["class_names"])
        row["confusion"] = [[sum(r["confusion"][i][j] for r in rows) for j in range(k)] for i in range(k)]
        row["class_names"] = rows[0]["class_names"]
        row["selection"] = rows[0]["selection"]
        row["missing_folds"] = sum(r["missing_folds"] for r in rows) + (
            sum(len(m["folds"]) for m in missing if not any(r.seed == m["seed"] for r in scored))
            if part == "all" else 0
        )
        row["missing"] = missing if part == "all" else []
        row["per_seed"] = [{key: r[key] for key in ("seed", "clips", "folds", "uf1", "uar", "accuracy",
                                                     "missing_folds")} for r in rows]
        out.append(row)
    return out


# --------------------------------------------------------------------------- writing


def _fmt(row: dict, key: str) -> str:
    std = row.get(f"{key}_std")
    return f"{row[key]:.4f}" if std is None else f"{row[key]:.4f} ± {std:.4f}"


def to_markdown(rows: list[dict]) -> str:
    """The table and its notes: how scores are pooled, each selection rule, what is missing."""
    head = ("| experiment | part | clips | folds | seeds | UF1 | UAR | accuracy |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r['experiment']} | {r.get('title', r['part'])} | {r['clips']} | {r['folds']} | "
        f"{r.get('seeds', 1)} | {_fmt(r, 'uf1')} | {_fmt(r, 'uar')} | {_fmt(r, 'accuracy')} |\n"
        for r in rows
    )
    notes = [
        "",
        "UF1 / UAR / accuracy: pooled over all leave-one-subject-out folds of a run (PROTOCOL.md), "
        "never averaged per fold. With several seeds: mean ± sample standard deviation (n-1) of "
        "the seeds' pooled scores; clips and folds are per seed.",
    ]
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
        if not r.get("missing") and r["missing_folds"]:
            notes.append(f"WARNING: {r['experiment']} is missing {r['missing_folds']} folds.")
    return head + body + "\n".join(notes) + "\n"


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
) -> list[dict]:
    """Build the table of every run in or below ``experiment_dirs``; write it into ``out_dir``.

    ``names``: glob patterns (``*ststnet*``); only experiments matching one are kept.
    Returns one row per experiment and part, with keys experiment, part, clips, folds,
    seeds, uf1, uar, accuracy (means), uf1_std, uar_std, accuracy_std (None for one seed),
    selection, confusion (summed over seeds), class_names, missing_folds, missing.
    """
    records = [(d, read_experiment(d)) for d in find_runs(experiment_dirs)]
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
            "\n".join(_missing_message(r) for r in incomplete)
            + "\nRerun the experiment(s) to finish them, or pass --allow-missing to score the finished folds."
        )
    rows = [row for g in groups for row in summarize(g)]

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(to_markdown(rows))
    cols = ["experiment", "part", "clips", "folds", "uf1", "uar", "accuracy", "uf1_std", "uar_std",
            "accuracy_std", "seeds", "seed_list", "missing_folds", "selection"]
    with (out / "table.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([r["experiment"], r["part"], r["clips"], r["folds"], _num(r["uf1"], 4), _num(r["uar"], 4),
                        _num(r["accuracy"], 4), _num(r["uf1_std"], 4), _num(r["uar_std"], 4),
                        _num(r["accuracy_std"], 4), r["seeds"], " ".join(map(str, r["seed_list"])),
                        r["missing_folds"], r["selection"]])
    run_dir = {(r.name, r.seed): r.dir for g in groups for r in g}
    with (out / "table_seeds.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["experiment", "part", "seed", "clips", "folds", "uf1", "uar", "accuracy",
                    "missing_folds", "missing", "run"])
        for r in rows:
            missing = {m["seed"]: m["folds"] for m in r["missing"]}
            for s in r["per_seed"]:
                w.writerow([r["experiment"], r["part"], s["seed"], s["clips"], s["folds"], _num(s["uf1"], 6),
                            _num(s["uar"], 6), _num(s["accuracy"], 6), s["missing_folds"],
                            " ".join(missing.get(s["seed"], [])),
                            os.path.relpath(run_dir[(r["experiment"], s["seed"])], out)])
    used: set[str] = set()
    for r in rows:
        if r["part"] != "all":
            continue
        stem = _file_stem(r["experiment"], used)
        with (out / f"confusion_{stem}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["true \\ predicted", *r["class_names"]])
            for name, counts in zip(r["class_names"], r["confusion"], strict=True):
                w.writerow([name, *counts])
        if figures:
            from mefnet.report.figures import plot_confusion

            seeds = r["seed_list"]
            if len(seeds) == 1:
                title, label = f"{r['experiment']}: seed {seeds[0]}, {r['clips']} clips", "counts"
            else:
                title = f"{r['experiment']}: {len(seeds)} seeds ({', '.join(map(str, seeds))}), {r['clips']} clips per seed"
                label = f"counts summed over {len(seeds)} seeds"
            plot_confusion(r["confusion"], r["class_names"], out / f"confusion_{stem}.png", title, label)
    return rows


def default_out(dirs: list[str]) -> Path:
    """One folder: that folder. Several: ``table/`` in their deepest common folder."""
    if len(dirs) == 1:
        return Path(dirs[0])
    common = Path(os.path.commonpath([os.path.abspath(d) for d in dirs]))
    if common == Path(common.anchor):
        raise ReportError("the folders share no parent folder to write the table into; pass --out")
    return common / "table"


def main(argv: list[str] | None = None) -> None:
    """``mefnet-table``: the pooled results table of experiments, rebuilt from their predictions."""
    ap = argparse.ArgumentParser(
        prog="mefnet-table",
        description="Pooled UF1 / UAR / accuracy table (mean ± std over seeds) from stored fold predictions.",
    )
    ap.add_argument("dirs", nargs="+", metavar="DIR",
                    help="experiment directories, or folders holding them (searched for experiment.json)")
    ap.add_argument("--out", help="output folder (default: DIR if one is given, else table/ in the "
                                  "folders' common parent)")
    ap.add_argument("--allow-missing", action="store_true",
                    help="score the finished folds of unfinished runs, and name the missing ones")
    ap.add_argument("--name", action="append", metavar="PATTERN",
                    help="keep only experiments whose name matches this glob (repeatable)")
    ap.add_argument("--no-figures", action="store_true", help="skip the confusion-matrix PNGs")
    a = ap.parse_args(argv)
    try:
        out = Path(a.out) if a.out else default_out(a.dirs)
        rows = write_table(a.dirs, out, a.allow_missing, a.name, figures=not a.no_figures)
    except (IncompleteExperimentError, FileNotFoundError, ReportError) as e:
        raise SystemExit(f"mefnet-table: {e}") from None
    print(to_markdown(rows))
    for r in rows:
        for m in r["missing"]:
            print(f"mefnet-table: {r['experiment']} seed {m['seed']} ({m['dir']}) is missing "
                  f"{len(m['folds'])} folds: {', '.join(m['folds'])}", file=sys.stderr)
    files = ["table.md", "table.csv", "table_seeds.csv", "confusion_*.csv"] + ([] if a.no_figures else ["confusion_*.png"])
    print(f"written to {out}: {', '.join(files)}")


if __name__ == "__main__":
    main()
