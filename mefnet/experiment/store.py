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
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mefnet.experiment.splits import fold_contains

EXPERIMENT = "experiment.json"
CLIPS = "clips.csv"
FOLDS = "folds"
PREDICTIONS = "predictions.csv"
FOLD_DONE = "fold.json"
REQUIRED_COLUMNS = ("dataset", "subject", "clip", "true", "pred")

_log = logging.getLogger("mefnet")


class ReportError(ValueError):
    """Stored files that cannot be used: malformed, or runs that do not belong together."""


class IncompleteExperimentError(RuntimeError):
    """Some folds of an experiment have no finished predictions."""


class RefusedRunError(RuntimeError):
    """A run refused before it changed anything: its directory holds another experiment,
    or a fold of it is being computed by another process."""


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


def finished_folds(experiment_dir: str | Path) -> set[str]:
    """Subject keys whose fold wrote its completion record."""
    return {k for k, r in fold_records(experiment_dir).items() if r.get("status") == "complete"}


def fold_finished(experiment_dir: str | Path, subject_key: str) -> bool:
    """Whether this one fold wrote its completion record."""
    marker = fold_dir(experiment_dir, subject_key) / FOLD_DONE
    return marker.is_file() and _read_fold_record(marker).get("status") == "complete"


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
    k = len(class_names)
    with path.open(newline="", encoding="utf-8-sig") as f:
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
            if not fold_contains(subject_key, r["dataset"], r["subject"]):
                raise ReportError(
                    f"{path}, line {line}: clip of {r['dataset']}/{r['subject']} in the fold of {subject_key}"
                )
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


def read_au_fold_predictions(path: Path, subject_key: str, au_names: list[str]) -> list[dict]:
    """The rows of one action-unit fold's predictions.csv (multi-label: a 0/1 column per AU
    for the truth and the prediction), each checked against its fold."""
    from mefnet.report.au_metrics import read_au_predictions

    if not path.is_file():
        raise ReportError(f"{path}: the fold is marked complete in {FOLD_DONE} but has no {PREDICTIONS}")
    try:
        rows = read_au_predictions(path, au_names)
    except ValueError as e:
        raise ReportError(str(e)) from None
    for line, r in enumerate(rows, start=2):
        if not fold_contains(subject_key, r["dataset"], r["subject"]):
            raise ReportError(f"{path}, line {line}: clip of {r['dataset']}/{r['subject']} in the fold of {subject_key}")
    if not rows:
        raise ReportError(f"{path}: no predictions (a finished fold predicts at least one clip)")
    return rows


def read_fold_rows(path: Path, subject_key: str, class_names: list[str],
                   au_names: list[str] | None = None) -> list[dict]:
    """A fold's predictions of either task: AU rows with ``au_names``, emotion rows without."""
    if au_names is not None:
        return read_au_fold_predictions(path, subject_key, au_names)
    return read_fold_predictions(path, subject_key, class_names)


def fold_problem(experiment_dir: str | Path, subject_key: str, class_names: list[str],
                 expected: list[str] | None, au_names: list[str] | None = None) -> str | None:
    """Why a fold marked finished cannot be used (None: it is intact): its predictions file
    is missing or malformed, or does not predict each of the fold's clips exactly once.
    ``au_names``: the fold is an action-unit fold (multi-label predictions)."""
    path = fold_dir(experiment_dir, subject_key) / PREDICTIONS
    try:
        rows = read_fold_rows(path, subject_key, class_names, au_names)
    except (ReportError, OSError, UnicodeDecodeError, csv.Error) as e:
        return str(e)
    got = [f"{r['dataset']}/{r['subject']}/{r['clip']}" for r in rows]
    twice = sorted({k for k in got if got.count(k) > 1})
    if twice:
        return f"{path}: clip(s) predicted more than once: {_listed(twice)}"
    if expected is not None:
        missing = [k for k in expected if k not in set(got)]
        extra = [k for k in got if k not in set(expected)]
        if missing or extra:
            what = []
            if missing:
                what.append(f"{len(missing)} of the fold's {len(expected)} clips ({CLIPS}) have no "
                            f"prediction: {_listed(missing)}")
            if extra:
                what.append(f"{len(extra)} row(s) for clips that are not in the fold: {_listed(extra)}")
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
    names = list(record["class_names"])
    au_names = list(record["au_names"]) if record.get("task") == "au" else None
    clips = read_clip_keys(experiment_dir)
    preds: list[dict] = []
    seen: dict[tuple, str] = {}
    for subject_key in record["folds"]:
        if subject_key not in done:
            continue
        path = fold_dir(experiment_dir, subject_key) / PREDICTIONS
        if clips is not None:
            problem = fold_problem(experiment_dir, subject_key, names, fold_clips(clips, subject_key),
                                   au_names=au_names)
            if problem:
                raise ReportError(f"{problem}\nThe fold is damaged: run the experiment again to recompute it.")
        for r in read_fold_rows(path, subject_key, names, au_names):
            r["fold"] = subject_key
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


# --------------------------------------------------------------------------- locks

FOLD_LOCK = ".lock"


class FoldBusyError(RuntimeError):
    """Another process holds the fold (it is computing it now)."""


@contextlib.contextmanager
def exclusive(path: str | Path, wait: bool = True, what: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the block.

    The lock is the kernel's (``flock``): it goes with the process, so a run that was killed
    leaves no lock behind (the file stays, unlocked, and the next run takes it). The file
    names the holder (PID, host, since when) for the message of one that has to wait or
    skip. ``wait=False``: raise :class:`FoldBusyError` instead of waiting.
    """
    import fcntl
    import socket
    import time

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise FoldBusyError(f"{what or path} is held by {holder} (lock {path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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
        except FoldBusyError as e:
            _log.warning("%s; skipped here (run the same command again once it is done to get the table)", e)
            yield False
            return
        if fold_finished(experiment_dir, subject_key):
            held.close()  # not ours to compute: the lock is not kept
            _log.info("fold %s was finished by another run meanwhile; left untouched", subject_key)
            yield False
            return
        yield True


# --------------------------------------------------------------------------- test hook

_passes: dict[str, int] = {}


def pause_point(kind: str) -> None:
    """A place where a test may stop a process deterministically (to kill it there).

    With ``MEFNET_PAUSE_AT=<kind>:<n>`` and ``MEFNET_PAUSE_DIR`` set, the n-th time a
    process passes the point ``kind`` (``fold``: a fold's record was written; ``cache``:
    a cache entry was written) it creates ``<MEFNET_PAUSE_DIR>/<kind>-<pid>`` and sleeps
    until killed. Without the variables it does nothing.
    """
    wanted = os.environ.get("MEFNET_PAUSE_AT", "")
    if not wanted.startswith(kind + ":"):
        return
    _passes[kind] = _passes.get(kind, 0) + 1
    if str(_passes[kind]) != wanted.partition(":")[2]:
        return
    import time

    folder = Path(os.environ.get("MEFNET_PAUSE_DIR", "."))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{kind}-{os.getpid()}").write_text("paused\n")
    while True:
        time.sleep(60)


# --------------------------------------------------------------------------- identity

# The names of the chosen backbone and loss options (``experiment_name`` is built from
# them): labels that follow the option's ``_target_``, so not compared (runs stored before
# the configs had them are the same experiments).
LABEL_KEYS = ("backbone.name", "loss.name")

# Config keys that say how or where a run was executed, not what it computes: two runs
# of one experiment (a run and its resume, or the seeds of one experiment) may differ in
# them. Where the data lives is not compared either (keys ending in ``root`` or ``dir``):
# what the data *is* is compared instead, clip by clip (:func:`clip_identity`).
EXECUTION_KEYS = (
    "fold",
    "n_jobs",
    "engine",
    "vectorize",
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
_LOCATION_KEY = re.compile(r"(^|_)(root|dir|path)$")
# Config keys added after experiments were stored, with the value every earlier run had
# implicitly: a key at this value is left out of the compared config (as if absent), so
# a run stored before the key existed is still the same experiment (and keeps its
# fingerprint); any other value is compared as usual.
IMPLIED_KEYS = {
    "dataset._target_": "mefnet.data.datamodule.MERDataModule",  # conf/dataset/* build the DataModule
    "dataset._recursive_": False,
    # Added to conf/backbone/am3f.yaml after experiments existed; these values are the
    # module those experiments ran.
    "backbone.msff_residual": False,
    "backbone.attention_init": "sigmoid",
    "pretrain": None,  # no pretraining (conf/pretrain/; the key is absent unless chosen)
    # Added to conf/dataset/flow_folder.yaml and frames_csv.yaml with their aus column;
    # these values are what those experiments read (no AU cell checked).
    "dataset.index.action_units": False,
    "dataset.index.au_uncertain": "exclude",
}


def _file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def clip_identity(index) -> dict[str, dict]:
    """What each clip of a :class:`~mefnet.datasets.clip_index.ClipIndex` is, by clip key:
    its label, its onset / apex / offset frames and a hash of the content of the files its
    input maps are made from (the onset and apex frames, or its flow file).

    Content, not name or time: a dataset that moved keeps its identity, an edited frame
    does not.
    """
    from mefnet.preprocessing.features import clip_inputs  # here: features imports this module

    out = {}
    for c in index:
        try:
            inputs = [_file_digest(f) for f in clip_inputs(c)]
        except (OSError, ValueError) as e:  # the fold's feature building names it properly
            inputs = [f"unreadable: {e}"]
        out[c.clip_key] = {"label": c.label_name, "onset": c.onset, "apex": c.apex, "offset": c.offset,
                           "inputs": inputs}
    return out


def _flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def comparable_config(record: dict) -> dict:
    """The run's config as ``{dotted.key: value}``, without the execution and location keys,
    with the folds and class names of the record."""
    flat = _flatten(record.get("config") or {})
    out = {}
    for key, value in flat.items():
        if any(key == k or key.startswith(k + ".") for k in (*EXECUTION_KEYS, *LABEL_KEYS)):
            continue
        if _LOCATION_KEY.search(key.rpartition(".")[2]):
            continue
        if key in IMPLIED_KEYS and value == IMPLIED_KEYS[key]:
            continue
        out[key] = value
    out["<experiment.json>.folds"] = record["folds"]
    out["<experiment.json>.class_names"] = record["class_names"]
    return out


def _short(v) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 60 else s[:57] + "..."


def _listed(keys: list[str], limit: int = 10) -> str:
    return ", ".join(keys[:limit]) + (f" ... and {len(keys) - limit} more" if len(keys) > limit else "")


def clip_differences(a: dict, b: dict) -> list[str]:
    """What changed between two :func:`clip_identity` records, in words (empty: the same data)."""
    out = []
    removed = [k for k in a if k not in b]
    added = [k for k in b if k not in a]
    if removed:
        out.append(f"{len(removed)} clip(s) removed: {_listed(removed)}")
    if added:
        out.append(f"{len(added)} clip(s) added: {_listed(added)}")
    both = [k for k in a if k in b]
    labels = [f"{k} ({a[k].get('label')} -> {b[k].get('label')})" for k in both
              if a[k].get("label") != b[k].get("label")]
    if labels:
        out.append(f"{len(labels)} label(s) changed: {_listed(labels)}")
    frames = [f"{k} (onset/apex/offset {a[k].get('onset')}/{a[k].get('apex')}/{a[k].get('offset')} -> "
              f"{b[k].get('onset')}/{b[k].get('apex')}/{b[k].get('offset')})" for k in both
              if [a[k].get(f) for f in ("onset", "apex", "offset")] != [b[k].get(f) for f in ("onset", "apex", "offset")]]
    if frames:
        out.append(f"{len(frames)} clip(s) with other frames: {_listed(frames)}")
    inputs = [k for k in both if a[k].get("inputs") != b[k].get("inputs")]
    if inputs:
        out.append(f"{len(inputs)} clip(s) whose input files changed content: {_listed(inputs)}")
    return out


def experiment_differences(a: dict, b: dict, across_seeds: bool = False) -> list[str]:
    """Why two experiment records are not the same experiment (empty list: they are).

    The one definition of "same experiment", used when a run is started again on an
    existing experiment directory (``across_seeds=False``: everything that shapes the
    results must agree, the seed included) and when ``mefnet-table`` takes runs with one
    name as the seeds of one experiment (``across_seeds=True``: the seed, and values that
    follow it such as ``inner_val.seed: ${seed}``, may differ). Runs always may differ in
    :data:`EXECUTION_KEYS` and in where the data lives; never in the data itself (the
    clips, their labels, frames and input files, where both records hold them).
    """
    ca, cb = comparable_config(a), comparable_config(b)
    seed_a, seed_b = (a.get("config") or {}).get("seed", a.get("seed")), (b.get("config") or {}).get("seed", b.get("seed"))
    diffs = []
    for key in sorted(set(ca) | set(cb)):
        va, vb = ca.get(key, "<absent>"), cb.get(key, "<absent>")
        if va == vb:
            continue
        if across_seeds and key == "seed":
            continue
        if (across_seeds and isinstance(va, int) and isinstance(vb, int) and not isinstance(va, bool)
                and not isinstance(vb, bool) and va == seed_a and vb == seed_b):
            continue
        diffs.append(f"{key}: {_short(va)} vs {_short(vb)}")
    if "clips" in a and "clips" in b:
        diffs += [f"data: {d}" for d in clip_differences(a["clips"], b["clips"])]
    return diffs
