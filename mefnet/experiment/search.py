"""Leak-free recipe search: the objective of an ``hparams_search`` trial.

``mefnet-train hparams_search=<name>`` (``conf/hparams_search/``) replaces the LOSO
sweeper with Hydra's Optuna sweeper. Every trial is one mefnet experiment with its own
name (``<search.name>-<hash of the trial's overrides>``), run with ``selection:
inner_val``; :func:`objective` turns its finished folds into the number Optuna
maximizes: the mean over the trial's folds of the inner-validation score of each fold's
chosen epoch (``fold.json`` -> ``selection.best.<metric>``, ``optimized_metric:
inner_val/<metric>``).

What cannot influence the objective:

* **A fold's test subject.** A fold's score is measured on validation subjects drawn
  from its *training* subjects, after training on the other training subjects; the test
  subject's clips are in neither set. So a search over one fold (``fold=<subject>``)
  is unchanged whatever that subject's labels are, and in a search over all folds each
  fold's share of the mean is. (In the mean over all LOSO folds every subject is a
  training subject of the other folds, so that mean does see every label: the usual
  caveat of choosing hyperparameters on the same subjects that are then reported.)
* **The held-out subjects** ``search.holdout_subjects``: removed from the dataset
  before anything else, in every trial; they are never a training, validation or test
  subject of the search. Report the chosen recipe on them (or on a dataset the search
  never saw) for a figure no search decision has seen.

Both are tested by replacing those labels with wrong ones: identical trials, identical
objective values (``tests/test_search.py``).

After each trial, ``<paths.output_dir>/<search.name>/`` holds ``trials/<experiment>.json``
(one per trial: number, params, objective, per-fold scores, the experiment's folder),
``trials.csv`` (one row per trial) and ``best_recipe.yaml`` (the best trial so far as an
experiment config: copy it to ``conf/experiment/<name>.yaml`` to make the chosen recipe
a named experiment). Optuna's own summary, ``optimization_results.yaml``, is written
there when the search ends.
"""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mefnet.config import CONFIG_DIR
from mefnet.datasets.clip_index import ClipIndex
from mefnet.schema import INNER_VAL_METRICS as METRICS  # the schema owns the list
from mefnet.schema import uses_inner_val

METRIC_PREFIX = "inner_val/"
TRIALS = "trials"


def optimized_metric(cfg: DictConfig) -> str | None:
    """The metric of ``optimized_metric: inner_val/<metric>`` (None when not searching).

    Refuses a search whose trials would not select on inner validation.
    """
    value = cfg.get("optimized_metric")
    if not value:
        return None
    value = str(value)
    metric = value[len(METRIC_PREFIX):] if value.startswith(METRIC_PREFIX) else ""
    if metric not in METRICS:
        raise ValueError(f"optimized_metric: '{value}' is not one of "
                         f"{', '.join(METRIC_PREFIX + m for m in METRICS)}")
    if not uses_inner_val(cfg.get("selection")):
        raise ValueError(f"optimized_metric={value}: every search trial must use selection=inner_val "
                         f"(got selection={cfg.get('selection')}); the objective is the inner-validation score "
                         "of training subjects, never a test-fold score")
    return metric


def holdout(cfg: DictConfig, index: ClipIndex) -> ClipIndex:
    """``index`` without ``search.holdout_subjects`` (unchanged when there are none)."""
    subjects = list((cfg.get("search") or {}).get("holdout_subjects") or [])
    if not subjects:
        return index
    keys = {index.resolve_subject(str(s)) for s in subjects}
    kept = [c for c in index if c.subject_key not in keys]
    if not kept:
        raise ValueError("search.holdout_subjects holds out every subject; nothing is left to search on")
    return index.with_clips(kept)


def fold_scores(experiment_dir: str | Path, folds: list[str], metric: str) -> dict[str, float]:
    """Each fold's inner-validation ``metric`` at its chosen epoch, from its ``fold.json``."""
    out = {}
    for fold in folds:
        path = Path(experiment_dir) / "folds" / fold / "fold.json"
        if not path.is_file():
            raise RuntimeError(f"{path} is missing: fold {fold} of the trial did not finish")
        selection = json.loads(path.read_text()).get("selection") or {}
        best = selection.get("best")
        if not uses_inner_val(selection.get("rule")) or not isinstance(best, dict) or metric not in best:
            raise RuntimeError(f"{path}: no inner-validation score '{metric}' at the chosen epoch "
                               "(the fold did not run with selection=inner_val)")
        out[fold] = float(best[metric])
    return out


def trial_folds(cfg: DictConfig) -> list[str]:
    """The folds the trial ran: every fold of its experiment, or the one ``fold`` names."""
    folds = json.loads((Path(cfg.experiment_dir) / "experiment.json").read_text())["folds"]
    if str(cfg.fold) == "all":
        return folds
    chosen = [f for f in folds if f == str(cfg.fold) or f.partition("/")[2] == str(cfg.fold)]
    if len(chosen) != 1:
        raise RuntimeError(f"fold={cfg.fold}: not exactly one fold of {cfg.experiment_dir}")
    return chosen


def objective(cfg: DictConfig) -> float:
    """The trial's objective (see the module docstring); records the trial on disk."""
    metric = optimized_metric(cfg)
    folds = trial_folds(cfg)
    scores = fold_scores(cfg.experiment_dir, folds, metric)
    value = statistics.fmean(scores.values())
    record_trial(cfg, value, scores)
    return value


def search_dir(cfg: DictConfig) -> Path:
    """The folder of the search ``search.name`` under the output folder: its trials and summary."""
    return Path(cfg.paths.output_dir) / str(cfg.search.name)


def _hydra_job() -> tuple[int | None, list[str], list[str]]:
    """(job number, the job's overrides, the swept keys) when running under Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except ValueError:
        return None, [], []
    num = hc.job.get("num")
    swept = list((hc.sweeper.get("params") or {}).keys()) if "sweeper" in hc else []
    # Search dimensions given on the command line (-m key=interval(...)) are in the
    # sweep's own record, written by Hydra when the sweep starts.
    sweep_record = Path(str(hc.sweep.dir)) / "multirun.yaml"
    if sweep_record.is_file():
        command_line = OmegaConf.load(sweep_record).hydra.overrides.task
        swept += [o.split("=", 1)[0].lstrip("+~") for o in command_line
                  if "=" in o and re.match(r"^\s*(interval|choice|range|tag)\(|^[^[{].*,", o.split("=", 1)[1])]
    return (int(num) if num is not None else None), list(hc.overrides.task), list(dict.fromkeys(swept))


def record_trial(cfg: DictConfig, value: float, scores: dict[str, float]) -> Path:
    """Write this trial's record (number, parameters, objective, fold scores) into the search's
    ``trials/`` folder and refresh the summary; the record's path."""
    number, overrides, swept = _hydra_job()
    pairs = [o.split("=", 1) for o in overrides if "=" in o]
    params = {k.lstrip("+~"): v for k, v in pairs if k.lstrip("+~") in swept or not swept}
    out = search_dir(cfg)
    (out / TRIALS).mkdir(parents=True, exist_ok=True)
    record = {
        "number": number,
        "experiment": str(cfg.experiment_name),
        "objective": value,
        "optimized_metric": str(cfg.optimized_metric),
        "params": params,
        "overrides": overrides,
        "fold_scores": scores,
        "experiment_dir": str(cfg.experiment_dir),
    }
    path = out / TRIALS / f"{cfg.experiment_name}.json"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
    write_summary(out)
    return path


def read_trials(search_folder: str | Path) -> list[dict]:
    """Every recorded trial of a search, by trial number."""
    paths = sorted((Path(search_folder) / TRIALS).glob("*.json"))
    trials = [json.loads(p.read_text()) for p in paths]
    return sorted(trials, key=lambda t: (t["number"] is None, t["number"] or 0, t["experiment"]))


def write_summary(search_folder: str | Path) -> None:
    """``trials.csv`` and ``best_recipe.yaml`` of a search, rebuilt from its trial records."""
    folder = Path(search_folder)
    trials = read_trials(folder)
    keys = list(dict.fromkeys(k for t in trials for k in t["params"]))
    tmp = folder / f".trials.csv.tmp-{os.getpid()}"
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "objective", "optimized_metric", *keys, "experiment"])
        for t in trials:
            w.writerow([t["number"], f"{t['objective']:.6f}", t["optimized_metric"],
                        *[t["params"].get(k, "") for k in keys], t["experiment"]])
    os.replace(tmp, folder / "trials.csv")
    if not trials:
        return
    minimize = trials[0]["optimized_metric"].endswith("/loss")
    best = (min if minimize else max)(trials, key=lambda t: t["objective"])
    text = best_recipe_yaml(best)
    tmp = folder / f".best_recipe.yaml.tmp-{os.getpid()}"
    tmp.write_text(text)
    os.replace(tmp, folder / "best_recipe.yaml")


def best_recipe_yaml(trial: dict) -> str:
    """A trial's params as an experiment config (``conf/experiment/<name>.yaml``).

    Config-group choices (``backbone=am3f``) become ``defaults`` overrides, every other
    key a value; the search's own settings (selection, inner_val, ...) are not repeated:
    add them from the search config if the experiment should keep them.
    """
    groups, values = {}, {}
    for key, raw in trial["params"].items():
        if (Path(CONFIG_DIR) / key).is_dir():
            groups[key] = raw
        else:
            OmegaConf.update(values_cfg := OmegaConf.create(values), key, _value(raw), force_add=True)
            values = OmegaConf.to_container(values_cfg)
    head = [
        "# @package _global_",
        f"# Best trial ({trial['optimized_metric']} = {trial['objective']:.4f}, mean over its folds) of a "
        "recipe search:",
        f"#   {trial['experiment_dir']}",
        "# Copy to conf/experiment/<name>.yaml and set experiment_name to make it a named experiment.",
    ]
    body = {}
    if groups:
        body["defaults"] = [{f"override /{g}": v} for g, v in groups.items()]
    body.update(values)
    return "\n".join(head) + "\n" + (OmegaConf.to_yaml(OmegaConf.create(body)) if body else "")


def _value(raw: str):
    """An override's value as YAML would read it (numbers as numbers)."""
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
