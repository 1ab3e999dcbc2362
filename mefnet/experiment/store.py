"""The on-disk experiment: its layout, how it is read and written, all in one place.

One experiment (one seed) is one directory, ``<paths.output_dir>/<experiment_name>/seed_<seed>/``::

    experiment.json                       the folds, classes, selection rule and config
    clips.csv                             every clip: frames, onset / apex and the apex's source
    folds/<dataset>/<subject>/
        predictions.csv                   dataset,subject,clip,true,...,pred,...,prob_<class>
        fold.json                         written last: the fold is finished
        model.ckpt, model.pt, logs/ ...   the fold's other outputs

Everything that writes into an experiment (the runner), and everything that reads one
(``mefnet-table``, ``mefnet-progress``, ``mefnet-predict``), goes through this module, so
the layout, the file formats and the checks on them have one owner. Every file is written
whole or not at all: :func:`atomic_write` writes beside the target and renames.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

EXPERIMENT = "experiment.json"
CLIPS = "clips.csv"
FOLDS = "folds"
PREDICTIONS = "predictions.csv"
FOLD_DONE = "fold.json"
REQUIRED_COLUMNS = ("dataset", "subject", "clip", "true", "pred")


class ReportError(ValueError):
    """Stored files that cannot be used: malformed, or runs that do not belong together."""


class IncompleteExperimentError(RuntimeError):
    """Some folds of an experiment have no finished predictions."""


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto ``path`` when the block succeeds.

    The file appears whole or not at all: readers never see a half-written file, and a
    failed or killed writer leaves at most a hidden ``.<name>.*.tmp`` file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return path


def write_json(path: str | Path, record: dict) -> Path:
    return atomic_write(path, json.dumps(record, indent=2))


# --------------------------------------------------------------------------- layout


def fold_dir(experiment_dir: str | Path, subject_key: str) -> Path:
    """Where a fold's outputs live: ``<experiment>/folds/<dataset>/<subject>``."""
    return Path(experiment_dir) / FOLDS / subject_key


def fold_records(experiment_dir: str | Path) -> dict[str, dict]:
    """Every fold record (``fold.json``) of an experiment, by subject key, as written."""
    root = Path(experiment_dir) / FOLDS
    out = {}
    for marker in sorted(root.glob(f"*/*/{FOLD_DONE}")):
        try:
            record = json.loads(marker.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ReportError(f"{marker}: not a valid fold record (expected a JSON object with 'status')") from None
        if not isinstance(record, dict):
            raise ReportError(f"{marker}: not a valid fold record (expected a JSON object with 'status')")
        out[f"{marker.parent.parent.name}/{marker.parent.name}"] = record
    return out


def finished_folds(experiment_dir: str | Path) -> set[str]:
    """Subject keys whose fold wrote its completion record."""
    return {k for k, r in fold_records(experiment_dir).items() if r.get("status") == "complete"}


def read_experiment(experiment_dir: str | Path) -> dict:
    """The run's ``experiment.json``, checked for the keys the table needs."""
    path = Path(experiment_dir) / EXPERIMENT
    if not path.is_file():
        raise FileNotFoundError(f"{experiment_dir} is not a mefnet experiment: {EXPERIMENT} is missing")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
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


def write_predictions(out_dir: str | Path, rows: list[list], class_names: list[str]) -> Path:
    """A fold's ``predictions.csv``: one row per test clip
    (dataset, subject, clip, true, true_name, pred, pred_name, prob_<class>...)."""
    fields = ["dataset", "subject", "clip", "true", "true_name", "pred", "pred_name",
              *[f"prob_{n}" for n in class_names]]
    path = Path(out_dir) / PREDICTIONS
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        w.writerows(rows)
    return path


def read_fold_predictions(path: Path, subject_key: str, class_names: list[str]) -> list[dict]:
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


# --------------------------------------------------------------------------- runs


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
        for r in read_fold_predictions(path, subject_key, names):
            key = (r["dataset"], r["subject"], r["clip"])
            if key in seen:
                raise ReportError(f"{path}: clip {'/'.join(key)} is predicted twice")
            seen[key] = str(path)
            preds.append(r)
    missing = [f for f in record["folds"] if f not in done]
    return Run(Path(experiment_dir), record, preds, missing)


def missing_message(run: Run) -> str:
    folds = run.missing
    shown = ", ".join(folds[:20]) + (f" ... and {len(folds) - 20} more" if len(folds) > 20 else "")
    return (f"{run.name} seed {run.seed} ({run.dir}): {len(folds)} of {len(run.record['folds'])} folds "
            f"have no finished predictions: {shown}")


def read_predictions(experiment_dir: str | Path, allow_missing: bool = False) -> tuple[dict, list[dict]]:
    """(experiment record, pooled prediction rows) of one run; refuses missing folds unless told."""
    run = read_run(experiment_dir)
    if run.missing and not allow_missing:
        raise IncompleteExperimentError(
            f"{missing_message(run)}; rerun the experiment to finish them, or pass --allow-missing"
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
                sub[:] = [s for s in sub if s != FOLDS]
        if not hits:
            raise FileNotFoundError(
                f"{d} is not a mefnet experiment: {EXPERIMENT} is missing (in it and in every folder below it)"
            )
        for h in hits:
            found.setdefault(h.resolve(), h)
    return list(found.values())
