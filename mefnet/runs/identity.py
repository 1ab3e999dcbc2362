"""Experiment identity: which stored runs are the same experiment.

A run and its resume, the seeds of one experiment, and the runs one table averages must
agree on what they compute (the compared config, :func:`comparable_config`) and on the data
(clip by clip, :func:`clip_identity`); how and where they ran may differ
(:data:`EXECUTION_KEYS`). :func:`experiment_differences` names what differs.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

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
# Keys added after experiments were stored whose implied value follows the task: the
# ``model`` group (conf/model/), the LightningModule each task built before the group
# existed (``task.name`` absent: emotion). Left out of the compared config at that value,
# as IMPLIED_KEYS; another module (a user's) is compared.
TASK_IMPLIED_KEYS = {
    "model._target_": {"emotion": "mefnet.training.module.MERModule", "au": "mefnet.training.au.AUModule",
                       "emotion_au": "mefnet.training.multitask.EmotionAUModule"},
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
    # lazy: heavy dependency (OpenCV, which the readers of runs, e.g. mefnet-table, do without)
    from mefnet.preprocessing.features import clip_inputs

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
    task = flat.get("task.name", "emotion")
    out = {}
    for key, value in flat.items():
        if any(key == k or key.startswith(k + ".") for k in (*EXECUTION_KEYS, *LABEL_KEYS)):
            continue
        if _LOCATION_KEY.search(key.rpartition(".")[2]):
            continue
        if key in IMPLIED_KEYS and value == IMPLIED_KEYS[key]:
            continue
        if key in TASK_IMPLIED_KEYS and value == TASK_IMPLIED_KEYS[key].get(task):
            continue
        out[key] = value
    out["<experiment.json>.folds"] = record["folds"]
    out["<experiment.json>.class_names"] = record["class_names"]
    return out


def _short(v) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 60 else s[:57] + "..."


def listed(keys: list[str], limit: int = 10) -> str:
    """The first ``limit`` of ``keys``, comma-separated, and how many more there are."""
    return ", ".join(keys[:limit]) + (f" ... and {len(keys) - limit} more" if len(keys) > limit else "")


def clip_differences(a: dict, b: dict) -> list[str]:
    """What changed between two :func:`clip_identity` records, in words (empty: the same data)."""
    out = []
    removed = [k for k in a if k not in b]
    added = [k for k in b if k not in a]
    if removed:
        out.append(f"{len(removed)} clip(s) removed: {listed(removed)}")
    if added:
        out.append(f"{len(added)} clip(s) added: {listed(added)}")
    both = [k for k in a if k in b]
    labels = [f"{k} ({a[k].get('label')} -> {b[k].get('label')})" for k in both
              if a[k].get("label") != b[k].get("label")]
    if labels:
        out.append(f"{len(labels)} label(s) changed: {listed(labels)}")
    frames = [f"{k} (onset/apex/offset {a[k].get('onset')}/{a[k].get('apex')}/{a[k].get('offset')} -> "
              f"{b[k].get('onset')}/{b[k].get('apex')}/{b[k].get('offset')})" for k in both
              if [a[k].get(f) for f in ("onset", "apex", "offset")] != [b[k].get(f) for f in ("onset", "apex", "offset")]]
    if frames:
        out.append(f"{len(frames)} clip(s) with other frames: {listed(frames)}")
    inputs = [k for k in both if a[k].get("inputs") != b[k].get("inputs")]
    if inputs:
        out.append(f"{len(inputs)} clip(s) whose input files changed content: {listed(inputs)}")
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
