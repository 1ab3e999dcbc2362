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
whole or not at all (:mod:`mefnet.utils.files`). Which stored runs are the same experiment
is :mod:`mefnet.runs.identity`; which clips each fold tests, :mod:`mefnet.runs.splits`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mefnet.datasets.action_units import au_vector, parse_normalised
from mefnet.datasets.subject_ids import id_problem
from mefnet.runs.identity import listed
from mefnet.runs.splits import fold_contains
from mefnet.utils.cli import UserError
from mefnet.utils.files import atomic_path
from mefnet.utils.locks import LockBusyError, exclusive

EXPERIMENT = "experiment.json"
CLIPS = "clips.csv"
FOLDS = "folds"
PREDICTIONS = "predictions.csv"
# task=emotion_au: the AU head's predictions of the fold's annotated test clips (AU format).
AU_PREDICTIONS = "au_predictions.csv"
FOLD_DONE = "fold.json"
CHECKPOINT = "model.ckpt"
REQUIRED_COLUMNS = ("dataset", "subject", "clip", "true", "pred")

_log = logging.getLogger("mefnet")


class ReportError(ValueError):
    """Stored files that cannot be used: malformed, or runs that do not belong together."""


class IncompleteExperimentError(UserError, RuntimeError):
    """Some folds of an experiment have no finished predictions."""


class RefusedRunError(UserError, RuntimeError):
    """A run refused before it changed anything: its directory holds another experiment,
    or a fold of it is being computed by another process."""


# --------------------------------------------------------------------------- layout


class UnsafePathError(UserError, ValueError):
    """A path the store was asked to create would lie outside the experiment folder."""


def fold_dir(experiment_dir: str | Path, subject_key: str) -> Path:
    """Where a fold's outputs live: ``<experiment>/folds/<dataset>/<subject>``.

    Refuses (:class:`UnsafePathError`) a key that is not two plain names or whose folder
    would resolve outside the experiment folder: the adapters check the ids they read, and
    this is the store's own guarantee that no fold ever writes elsewhere."""
    root = Path(experiment_dir)
    parts = str(subject_key).split("/")
    problems = [p for p in (id_problem(part) for part in parts) if p]
    path = root / FOLDS / subject_key
    if len(parts) != 2 or problems or not path.resolve().is_relative_to((root / FOLDS).resolve()):
        why = problems[0] if problems else "is not '<dataset>/<subject>'"
        raise UnsafePathError(
            f"fold {subject_key!r} of {root}: the key {why}; a fold's folder must be "
            f"{root / FOLDS}/<dataset>/<subject> with plain names (check the ids in the data files)"
        )
    return path


def _read_fold_record(marker: Path) -> dict:
    try:
        record = json.loads(marker.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ReportError(f"{marker}: not a valid fold record (expected a JSON object with 'status')") from None
    if not isinstance(record, dict):
        raise ReportError(f"{marker}: not a valid fold record (expected a JSON object with 'status')")
    return record


def fold_records(experiment_dir: str | Path) -> dict[str, dict]:
    """Every fold record (``fold.json``) of an experiment, by subject key, as written."""
    root = Path(experiment_dir) / FOLDS
    return {f"{marker.parent.parent.name}/{marker.parent.name}": _read_fold_record(marker)
            for marker in sorted(root.glob(f"*/*/{FOLD_DONE}"))}


def damaged_fold_records(experiment_dir: str | Path) -> dict[str, str]:
    """Fold records (``fold.json``) that cannot be read (truncated, not a JSON object), by
    subject key, with what is wrong: such a fold is damaged, not finished."""
    out = {}
    for marker in sorted((Path(experiment_dir) / FOLDS).glob(f"*/*/{FOLD_DONE}")):
        try:
            _read_fold_record(marker)
        except (ReportError, OSError) as e:
            out[f"{marker.parent.parent.name}/{marker.parent.name}"] = str(e)
    return out


def _complete(marker: Path) -> bool:
    try:
        return marker.is_file() and _read_fold_record(marker).get("status") == "complete"
    except ReportError:
        return False  # damaged (damaged_fold_records): computed again, never counted


def finished_folds(experiment_dir: str | Path) -> set[str]:
    """Subject keys whose fold wrote its completion record (a readable one)."""
    return {f"{m.parent.parent.name}/{m.parent.name}"
            for m in sorted((Path(experiment_dir) / FOLDS).glob(f"*/*/{FOLD_DONE}")) if _complete(m)}


def fold_finished(experiment_dir: str | Path, subject_key: str) -> bool:
    """Whether this one fold wrote its completion record (a readable one)."""
    return _complete(fold_dir(experiment_dir, subject_key) / FOLD_DONE)


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


def write_checkpoint(path: str | Path, module, epochs: int, fold: str, lightning_version: str) -> Path:
    """A fold's ``model.ckpt``, the same for every engine: the fitted member's weights (the
    ones it predicted with, weight averages applied), its hyperparameters, the epochs it
    trained and its fold, in Lightning's checkpoint layout (``state_dict``,
    ``hyper_parameters``, ``epoch``, ``pytorch-lightning_version``), so the module class's
    ``load_from_checkpoint`` reads it. No optimizer state: mefnet never resumes a fold from
    it (a fold without ``fold.json`` is computed again), and one vectorised fit's optimizer
    state belongs to all its members together. ``model.pt`` stays the file to predict
    from (:mod:`mefnet.inference.checkpoint`)."""
    import torch  # the store's readers (tables, progress) do not need torch

    record = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "epoch": int(epochs),
              "fold": fold, "pytorch-lightning_version": lightning_version}
    with atomic_path(path) as tmp:
        torch.save(record, tmp)
    return Path(path)


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


# Stored probabilities are rounded to 6 decimals; their sum may miss 1 by the rounding of
# each class and by float32 softmax, far below this.
PROB_SUM_TOLERANCE = 1e-4
# A stored probability is within 5e-7 of the one the prediction was made from.
ROUNDING = 1e-6


def _probability(path: Path, line: int, row: dict, column: str) -> float:
    text = row.get(column)
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ReportError(f"{path}, line {line}, column '{column}': {text!r} is not a probability") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ReportError(f"{path}, line {line}, column '{column}': {text!r} is not a probability "
                          "(expected a finite number in [0, 1])")
    return value


def _require_probabilities(path: Path, fieldnames: list[str] | None, prob_columns: list[str], what: str) -> None:
    """Every fold file mefnet writes has one ``prob_<name>`` column per class or AU (since
    the first release): a file without them, or with some missing, is damaged, never read
    without its checks."""
    absent = [c for c in prob_columns if c not in (fieldnames or [])]
    if absent:
        raise ReportError(f"{path}: missing column(s) {absent}; expected one prob_<{what}> column per {what} "
                          f"({', '.join(prob_columns)}), as mefnet-train writes them")


def _check_emotion_row(path: Path, line: int, r: dict, class_names: list[str], prob_columns: list[str],
                       labels: dict[str, str] | None) -> None:
    """A prediction row agrees with itself and with the experiment: ``pred_name`` names
    ``pred``, ``pred`` is the argmax of the stored probabilities (one of the tied classes
    where rounding made them equal), the probabilities are finite and sum to 1, and
    ``true`` is the clip's label recorded in clips.csv."""
    if r.get("pred_name") and r["pred_name"] != class_names[r["pred"]]:
        raise ReportError(f"{path}, line {line}, column 'pred_name': pred = {r['pred']} is "
                          f"'{class_names[r['pred']]}' in {EXPERIMENT} but the row says '{r['pred_name']}'")
    key = f"{r['dataset']}/{r['subject']}/{r['clip']}"
    recorded = (labels or {}).get(key)
    if recorded is not None and recorded != class_names[r["true"]]:
        raise ReportError(f"{path}, line {line}, column 'true': clip {key} is '{recorded}' in the "
                          f"experiment's {CLIPS} but the row says {r['true']} ('{class_names[r['true']]}')")
    probs = [_probability(path, line, r, c) for c in prob_columns]
    if abs(sum(probs) - 1.0) > PROB_SUM_TOLERANCE:
        raise ReportError(f"{path}, line {line}, columns {prob_columns[0]}..{prob_columns[-1]}: the "
                          f"probabilities sum to {sum(probs):.6f}, expected 1")
    if probs[r["pred"]] < max(probs):
        best = max(range(len(probs)), key=probs.__getitem__)
        raise ReportError(f"{path}, line {line}, column 'pred': pred = {r['pred']} ('{class_names[r['pred']]}', "
                          f"{prob_columns[r['pred']]} = {probs[r['pred']]:.6f}) is not the most probable class: "
                          f"{prob_columns[best]} = {probs[best]:.6f}")


def read_clip_labels(experiment_dir: str | Path, column: str = "label_name") -> dict[str, str] | None:
    """Each clip's recorded truth by ``<dataset>/<subject>/<clip>``, from the experiment's
    ``clips.csv``: its class name (``label_name``), or with ``column="aus"`` its normalised
    action units (``4+12``); None when the file or the column is absent."""
    path = Path(experiment_dir) / CLIPS
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"dataset", "subject", "clip", column} <= set(reader.fieldnames or []):
            return None
        return {f"{r['dataset']}/{r['subject']}/{r['clip']}": r[column] or "" for r in reader}


def read_clip_truth(experiment_dir: str | Path, au: bool) -> dict[str, str] | None:
    """What the experiment recorded as each clip's truth: its AUs for an action-unit run
    (``au``), its class name otherwise (:func:`read_clip_labels`)."""
    return read_clip_labels(experiment_dir, "aus" if au else "label_name")


def read_fold_predictions(path: Path, subject_key: str, class_names: list[str],
                          labels: dict[str, str] | None = None) -> list[dict]:
    """The rows of one fold's predictions.csv, each checked against its fold, the classes,
    its own probabilities and, given ``labels`` (:func:`read_clip_labels`), the clips'
    recorded labels (:func:`_check_emotion_row`)."""
    if not path.is_file():
        raise ReportError(f"{path}: the fold is marked complete in {FOLD_DONE} but has no {PREDICTIONS}")
    k = len(class_names)
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        absent = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise ReportError(
                f"{path}: missing column(s) {absent}; expected {','.join(REQUIRED_COLUMNS)},... "
                f"(got {reader.fieldnames})"
            )
        prob_columns = [f"prob_{n}" for n in class_names]
        _require_probabilities(path, reader.fieldnames, prob_columns, "class")
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
                    f"{path}, line {line}, column 'true_name': true = {r['true']} is '{class_names[r['true']]}' in "
                    f"{EXPERIMENT} but the row says '{r['true_name']}'"
                )
            if not fold_contains(subject_key, r["dataset"], r["subject"]):
                raise ReportError(
                    f"{path}, line {line}: clip of {r['dataset']}/{r['subject']} in the fold of {subject_key}"
                )
            _check_emotion_row(path, line, r, class_names, prob_columns, labels)
            rows.append(r)
    if not rows:
        raise ReportError(f"{path}: no predictions (a finished fold predicts at least one clip)")
    return rows


def read_clip_keys(experiment_dir: str | Path) -> dict[str, list[str]] | None:
    """The clips of each fold, from the experiment's ``clips.csv``:
    ``{"<dataset>/<subject>": ["<dataset>/<subject>/<clip>", ...]}`` (None without the file)."""
    path = Path(experiment_dir) / CLIPS
    if not path.is_file():
        return None
    out: dict[str, list[str]] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        absent = [c for c in ("dataset", "subject", "clip") if c not in (reader.fieldnames or [])]
        if absent:
            raise ReportError(f"{path}: missing column(s) {absent}")
        for r in reader:
            out.setdefault(f"{r['dataset']}/{r['subject']}", []).append(f"{r['dataset']}/{r['subject']}/{r['clip']}")
    return out


def fold_clips(clips: dict[str, list[str]], fold_key: str) -> list[str]:
    """The clip keys a fold tests, from :func:`read_clip_keys`'s clips by subject: one
    subject's under ``loso`` (``casme2/sub01``), every clip of the tested datasets under
    ``lodo/<dataset>`` and ``holdout/<a+b>``."""
    out: list[str] = []
    for subject_key, keys in clips.items():
        dataset, _, subject = subject_key.partition("/")
        if fold_contains(fold_key, dataset, subject):
            out += keys
    return out


def write_au_predictions(path: Path, rows: list[tuple], names: list[str], y_true, y_pred, probs,
                         thresholds: list[float]) -> None:
    """``predictions.csv`` of an AU fold: dataset, subject, clip, true (normalised AUs of the
    set), pred (likewise), then true_/pred_/prob_<AU> and the thresholds used (thr_<AU>)."""
    fields = ["dataset", "subject", "clip", "true", "pred",
              *[f"true_{n}" for n in names], *[f"pred_{n}" for n in names],
              *[f"prob_{n}" for n in names], *[f"thr_{n}" for n in names]]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for (dataset, subject, clip), t, p, pr in zip(rows, y_true, y_pred, probs, strict=True):
            w.writerow([dataset, subject, clip, _aus(names, t), _aus(names, p), *map(int, t), *map(int, p),
                        *[f"{x:.6f}" for x in pr], *[f"{x:.2f}" for x in thresholds]])
    tmp.replace(path)


def _aus(names: list[str], row) -> str:
    return "+".join(n.removeprefix("AU") for n, v in zip(names, row, strict=True) if int(v))


def read_au_predictions(path: Path, names: list[str]) -> list[dict]:
    """The rows of an AU fold's ``predictions.csv``, with ``y_true`` and ``y_pred`` 0/1 lists."""
    with Path(path).open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        need = [f"true_{n}" for n in names] + [f"pred_{n}" for n in names]
        absent = [c for c in ("dataset", "subject", "clip", *need) if c not in (reader.fieldnames or [])]
        if absent:
            raise ValueError(f"{path}: missing column(s) {absent} of an AU predictions file")
        rows = []
        for line, r in enumerate(reader, start=2):
            try:
                r["y_true"] = [int(r[f"true_{n}"]) for n in names]
                r["y_pred"] = [int(r[f"pred_{n}"]) for n in names]
            except ValueError:
                raise ValueError(f"{path}, line {line}: AU columns must be 0 or 1") from None
            rows.append(r)
    return rows


def read_au_fold_predictions(path: Path, subject_key: str, au_names: list[str],
                             recorded: dict[str, str] | None = None) -> list[dict]:
    """The rows of one action-unit fold's predictions.csv (multi-label: a 0/1 column per AU
    for the truth and the prediction), each checked against its fold, its own
    probabilities and thresholds and, given ``recorded`` (:func:`read_clip_truth`), the
    clips' AUs recorded in clips.csv."""
    if not path.is_file():
        raise ReportError(f"{path}: the fold is marked complete in {FOLD_DONE} but has no {PREDICTIONS}")
    try:
        rows = read_au_predictions(path, au_names)
    except ValueError as e:
        raise ReportError(str(e)) from None
    if rows:
        _require_probabilities(path, list(rows[0]), [f"prob_{n}" for n in au_names], "AU")
    thresholds = _au_thresholds(path, au_names)
    for line, r in enumerate(rows, start=2):
        if not fold_contains(subject_key, r["dataset"], r["subject"]):
            raise ReportError(f"{path}, line {line}: clip of {r['dataset']}/{r['subject']} in the fold of {subject_key}")
        _check_au_row(path, line, r, au_names, thresholds)
        _check_au_truth(path, line, r, au_names, recorded)
    if not rows:
        raise ReportError(f"{path}: no predictions (a finished fold predicts at least one clip)")
    return rows


def _au_thresholds(path: Path, au_names: list[str]) -> dict[str, tuple[float, float]] | None:
    """Each AU's threshold and the tolerance it is known to: the fold record's (as used),
    else the file's ``thr_<AU>`` columns (2 decimals); None where neither has them."""
    marker = path.parent / FOLD_DONE
    if marker.is_file():
        stored = (_read_fold_record(marker).get("selection") or {}).get("thresholds")
        if isinstance(stored, dict) and all(isinstance(stored.get(n), (int, float)) for n in au_names):
            return {n: (float(stored[n]), ROUNDING) for n in au_names}
    return None


def _check_au_row(path: Path, line: int, r: dict, au_names: list[str],
                  thresholds: dict[str, tuple[float, float]] | None) -> None:
    """An AU prediction row agrees with itself: probabilities finite in [0, 1], each
    ``pred_<AU>`` set exactly when its probability passes the fold's threshold, and the
    ``true`` / ``pred`` sets naming the AUs of the 0/1 columns."""
    for column, values in (("true", r["y_true"]), ("pred", r["y_pred"])):
        if column in r and r[column] is not None and r[column] != _aus(au_names, values):
            raise ReportError(f"{path}, line {line}, column '{column}': {r[column]!r} does not name the AUs "
                              f"of its {column}_<AU> columns ({_aus(au_names, values)!r})")
    for n, predicted in zip(au_names, r["y_pred"], strict=True):
        prob = _probability(path, line, r, f"prob_{n}")
        if thresholds is not None:
            thr, tol = thresholds[n]
        elif r.get(f"thr_{n}") not in (None, ""):
            try:
                thr, tol = float(r[f"thr_{n}"]), 0.005 + ROUNDING
            except ValueError:
                raise ReportError(f"{path}, line {line}, column 'thr_{n}': {r[f'thr_{n}']!r} is not a "
                                  "threshold") from None
        else:
            continue
        if (predicted and prob < thr - tol) or (not predicted and prob >= thr + tol):
            raise ReportError(f"{path}, line {line}, column 'pred_{n}': {predicted} but prob_{n} = {prob:.6f} "
                              f"{'does not pass' if predicted else 'passes'} the fold's threshold {thr:g}")


def _check_au_truth(path: Path, line: int, r: dict, au_names: list[str], recorded: dict[str, str] | None) -> None:
    """An AU row's truth is the clip's AUs recorded in clips.csv, restricted to the AU set
    (as the targets were made, :func:`mefnet.tasks.au.targets`)."""
    key = f"{r['dataset']}/{r['subject']}/{r['clip']}"
    if recorded is None or key not in recorded:
        return
    cell = recorded[key]
    try:
        expected = au_vector(parse_normalised(cell), [int(n.removeprefix("AU")) for n in au_names])
    except ValueError:
        raise ReportError(f"{path}, line {line}, column 'true': clip {key} has no action units in the "
                          f"experiment's {CLIPS} ({cell!r}) but the row gives it {r.get('true')!r}") from None
    for n, want, got in zip(au_names, expected, r["y_true"], strict=True):
        if want != got:
            raise ReportError(f"{path}, line {line}, column 'true_{n}': clip {key} has AUs '{cell}' in the "
                              f"experiment's {CLIPS} ({n} {'present' if want else 'absent'}) but the row "
                              f"says {got}")


def read_fold_rows(path: Path, subject_key: str, class_names: list[str],
                   au_names: list[str] | None = None, labels: dict[str, str] | None = None) -> list[dict]:
    """A fold's predictions of either task, checked (a disagreement is a :class:`ReportError`
    naming file, line and column): AU rows with ``au_names``, emotion rows without, their
    truth compared with ``labels`` (:func:`read_clip_truth`: class names, or AUs for AU
    rows) when given."""
    if au_names is not None:
        return read_au_fold_predictions(path, subject_key, au_names, labels)
    return read_fold_predictions(path, subject_key, class_names, labels)


def fold_problem(experiment_dir: str | Path, subject_key: str, class_names: list[str],
                 expected: list[str] | None, au_names: list[str] | None = None,
                 labels: dict[str, str] | None = None) -> str | None:
    """Why a fold marked finished cannot be used (None: it is intact): its predictions file
    is missing or malformed, disagrees with itself or with the clips' recorded labels
    (``labels``, read from the experiment's clips.csv when not given), or does not predict
    each of the fold's clips exactly once.
    ``au_names``: the fold is an action-unit fold (multi-label predictions)."""
    path = fold_dir(experiment_dir, subject_key) / PREDICTIONS
    try:
        if labels is None:
            labels = read_clip_truth(experiment_dir, au=au_names is not None)
        rows = read_fold_rows(path, subject_key, class_names, au_names, labels)
    except (ReportError, OSError, UnicodeDecodeError, csv.Error) as e:
        return str(e)
    got = [f"{r['dataset']}/{r['subject']}/{r['clip']}" for r in rows]
    twice = sorted({k for k in got if got.count(k) > 1})
    if twice:
        return f"{path}: clip(s) predicted more than once: {listed(twice)}"
    if expected is not None:
        missing = [k for k in expected if k not in set(got)]
        extra = [k for k in got if k not in set(expected)]
        if missing or extra:
            what = []
            if missing:
                what.append(f"{len(missing)} of the fold's {len(expected)} clips ({CLIPS}) have no "
                            f"prediction: {listed(missing)}")
            if extra:
                what.append(f"{len(extra)} row(s) for clips that are not in the fold: {listed(extra)}")
            return f"{path}: " + "; ".join(what)
    return None


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
    damaged = {k: why for k, why in damaged_fold_records(experiment_dir).items() if k in record["folds"]}
    if damaged:
        raise ReportError(f"{next(iter(damaged.values()))}\nThe fold is damaged: run the experiment again to "
                          "recompute it.")
    names = list(record["class_names"])
    au_names = list(record["au_names"]) if record.get("task") == "au" else None
    clips = read_clip_keys(experiment_dir)
    labels = read_clip_truth(experiment_dir, au=au_names is not None)
    preds: list[dict] = []
    seen: dict[tuple, str] = {}
    for subject_key in record["folds"]:
        if subject_key not in done:
            continue
        path = fold_dir(experiment_dir, subject_key) / PREDICTIONS
        if clips is not None:
            problem = fold_problem(experiment_dir, subject_key, names, fold_clips(clips, subject_key),
                                   au_names=au_names, labels=labels)
            if problem:
                raise ReportError(f"{problem}\nThe fold is damaged: run the experiment again to recompute it.")
        try:
            rows = read_fold_rows(path, subject_key, names, au_names, labels)
        except ReportError as e:
            raise ReportError(f"{e}\nThe fold is damaged: run the experiment again to recompute it.") from None
        for r in rows:
            r["fold"] = subject_key
            key = (r["dataset"], r["subject"], r["clip"])
            if key in seen:
                raise ReportError(f"{path}: clip {'/'.join(key)} is predicted twice")
            seen[key] = str(path)
            preds.append(r)
    missing = [f for f in record["folds"] if f not in done]
    return Run(Path(experiment_dir), record, preds, missing)


def missing_message(run: Run) -> str:
    """One line naming a run and its folds without finished predictions (the first 20 shown)."""
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


# --------------------------------------------------------------------------- locks

FOLD_LOCK = ".lock"


def fold_lock(experiment_dir: str | Path, subject_key: str) -> contextlib.AbstractContextManager:
    """The fold's lock, taken without waiting: two runs never compute one fold at once."""
    return exclusive(fold_dir(experiment_dir, subject_key) / FOLD_LOCK, wait=False,
                     what=f"fold {subject_key} of {experiment_dir}")


@contextlib.contextmanager
def claim_fold(experiment_dir: str | Path, subject_key: str) -> Iterator[bool]:
    """A fold to compute: yields True with the fold's lock held for the block, or False,
    said in the log, when the fold is not this process's to compute: another process holds
    it (computing it now: skipped here), or it was finished meanwhile (left untouched). Both
    engines take every fold through here, from before training until its files are written."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(fold_lock(experiment_dir, subject_key))
        except LockBusyError as e:
            _log.warning("%s; skipped here (run the same command again once it is done to get the table)", e)
            yield False
            return
        if fold_finished(experiment_dir, subject_key):
            held.close()  # not ours to compute: the lock is not kept
            _log.info("fold %s was finished by another run meanwhile; left untouched", subject_key)
            yield False
            return
        yield True
