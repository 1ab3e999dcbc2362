"""Seed ensembles, built from the stored predictions alone.

The ensemble of an experiment's N seeds predicts each clip with the mean of the N
runs' class probabilities (the ``prob_<class>`` columns of every fold's
``predictions.csv``) and takes the most probable class (the first on a tie). Each
member predicted the clip in the fold where its subject was the test subject, so the
ensemble needs nothing else from that subject: no label, no retraining, no choice made
on the test folds. It is then scored like any run: UF1, UAR and accuracy pooled over
all clips, and per source dataset for a composite.

In the table (``mefnet-table --ensemble``) it is its own row, named
``<experiment> (ensemble of N seeds)``, after the experiment's mean ± std rows; its
``seeds`` column is N, it has no standard deviation, and table.csv marks it with
``ensemble`` = N.

A *combination* of different experiments (``mefnet-table --combine A+B+C``: e.g. two
backbones trained on the same clips) is built the same way, once per seed: its seed-s run
is the mean of the class probabilities of A's, B's and C's seed-s runs. Its rows are the
mean ± std over the seeds every member has, named ``A + B + C``, like any experiment's.
"""

from __future__ import annotations

import numpy as np

from mefnet.report.aggregate import on_folds, shared_folds, summarize
from mefnet.runs.store import ReportError, Run
from mefnet.utils.quiet import plural

PROB_PREFIX = "prob_"


def ensemble_name(name: str, n: int) -> str:
    """The table's experiment name of the ensemble of ``n`` seeds of ``name``."""
    return f"{name} (ensemble of {n} seeds)"


def _clip_key(row: dict) -> tuple[str, str, str]:
    return row["dataset"], row["subject"], row["clip"]


def _probabilities(run: Run) -> dict[tuple[str, str, str], np.ndarray]:
    names = list(run.record["class_names"])
    out = {}
    for row in run.predictions:
        try:
            out[_clip_key(row)] = np.array([float(row[PROB_PREFIX + c]) for c in names], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise ReportError(
                f"{run.dir} ({run.name} seed {run.seed}): clip {'/'.join(_clip_key(row))} has no valid "
                f"{', '.join(PROB_PREFIX + c for c in names)} columns in its predictions.csv; an ensemble "
                "averages the stored class probabilities"
            ) from None
    return out


def ensemble_predictions(members: list[Run], allow_missing: bool = False) -> list[dict]:
    """Prediction rows of the ensemble of ``members`` (the seeds of one experiment, or the
    runs of several experiments that one seed of a combination averages).

    Every member must have predicted exactly the same clips; a member with unfinished
    folds is refused (``allow_missing``: the ensemble is made of the folds every member
    finished, see :func:`shared_folds`), and members with other clips are refused with the
    clips that differ. Rows keep the first member's order and columns, with ``pred``,
    ``pred_name`` and the probability columns replaced by the ensemble's.
    """
    if len(members) < 2:
        raise ReportError("an ensemble needs at least 2 seeds")
    mixed = len({run.name for run in members}) > 1
    name = combination_name([run.name for run in members]) if mixed else members[0].name

    def who(run: Run) -> str:
        return f"{run.name} seed {run.seed}" if mixed else f"seed {run.seed}"

    def pair(a: Run, b: Run) -> str:
        return f"{who(a)} and {who(b)}" if mixed else f"seeds {a.seed} and {b.seed}"

    if allow_missing:
        shared, _ = shared_folds(members)
        members = [on_folds(run, shared) for run in members]
    for run in members:
        if run.missing and not allow_missing:
            raise ReportError(
                f"ensemble of '{name}': {who(run)} ({run.dir}) is missing {plural(len(run.missing), 'fold')} "
                f"({', '.join(run.missing[:5])}{' ...' if len(run.missing) > 5 else ''}); finish them, pass "
                "--allow-missing (the ensemble of the folds every seed finished), or leave out --ensemble"
            )
    probs = [_probabilities(run) for run in members]
    ref = set(probs[0])
    for run, p in zip(members[1:], probs[1:], strict=True):
        if set(p) != ref:
            only_ref = sorted("/".join(k) for k in ref - set(p))
            only_run = sorted("/".join(k) for k in set(p) - ref)
            raise ReportError(
                f"ensemble of '{name}': {pair(members[0], run)} predicted different clips "
                f"(only in {who(members[0])}: {', '.join(only_ref[:5]) or 'none'}; "
                f"only in {who(run)}: {', '.join(only_run[:5]) or 'none'}); an ensemble averages the same clips"
            )
    names = list(members[0].record["class_names"])
    rows = []
    for row in members[0].predictions:
        key = _clip_key(row)
        mean = np.mean([p[key] for p in probs], axis=0)
        pred = int(np.argmax(mean))
        out = {**row, "pred": pred, "pred_name": names[pred]}
        out.update({PROB_PREFIX + c: float(v) for c, v in zip(names, mean, strict=True)})
        rows.append(out)
    return rows


def combination_name(names: list[str]) -> str:
    """The table's experiment name of the combination of the experiments ``names``."""
    return " + ".join(dict.fromkeys(names))


def combined_runs(groups: list[list[Run]], spec: str, allow_missing: bool = False) -> list[Run]:
    """The runs of the combination ``spec`` (experiment names joined by ``+``), one per seed
    that every member experiment has: each the mean of the members' class probabilities
    (:func:`ensemble_predictions`). ``groups``: the table's experiments, each a list of
    seeds. Refuses unknown names, fewer than two members, members with other classes or
    clips, and members without a seed in common, naming what differs."""
    names = [n.strip() for n in spec.split("+")]
    if len(names) < 2 or not all(names) or len(set(names)) < len(names):
        raise ReportError(f"--combine {spec!r}: give two or more different experiment names joined by '+' "
                          "(e.g. 'megc2019-am3f+megc2019-ststnet')")
    by_name = {g[0].name: g for g in groups}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ReportError(f"--combine {spec}: no emotion experiment named {', '.join(repr(n) for n in unknown)} "
                          f"in the folders given (found: {', '.join(sorted(by_name)) or 'none'})")
    members = [by_name[n] for n in names]
    classes = list(members[0][0].record["class_names"])
    for g in members[1:]:
        if list(g[0].record["class_names"]) != classes:
            raise ReportError(f"--combine {spec}: '{names[0]}' predicts {', '.join(classes)} but '{g[0].name}' "
                              f"predicts {', '.join(g[0].record['class_names'])}; a combination averages the "
                              "probabilities of the same classes")
    seeds = sorted(set.intersection(*({r.seed for r in g} for g in members)))
    if not seeds:
        raise ReportError(f"--combine {spec}: the experiments have no seed in common ("
                          + "; ".join(f"{g[0].name}: seeds {', '.join(str(r.seed) for r in g)}" for g in members)
                          + "); a combination averages each seed's runs")
    name = combination_name(names)
    out = []
    for seed in seeds:
        runs = [next(r for r in g if r.seed == seed) for g in members]
        _, left_out = shared_folds(runs) if allow_missing else ([], [])
        out.append(Run(runs[0].dir, {**runs[0].record, "name": name, "seed": seed,
                                     "combination": [str(r.dir) for r in runs]},
                       ensemble_predictions(runs, allow_missing), left_out))
    return out


def ensemble_rows(members: list[Run], bootstrap: int | None = None, bootstrap_seed: int = 0,
                  allow_missing: bool = False) -> list[dict]:
    """Table rows (all clips, then each source dataset) of the ensemble of ``members``
    (``bootstrap``, ``bootstrap_seed``: its UF1 interval, as :func:`summarize`'s;
    ``allow_missing``: on the folds every member finished, the others named in the rows'
    ``left_out``)."""
    members = sorted(members, key=lambda r: r.seed)
    first = members[0]
    name = ensemble_name(first.name, len(members))
    _, left_out = shared_folds(members) if allow_missing else ([], [])
    pseudo = Run(first.dir, {**first.record, "name": name}, ensemble_predictions(members, allow_missing),
                 left_out)
    rows = summarize([pseudo], bootstrap, bootstrap_seed)
    for row in rows:
        row.update(seeds=len(members), seed_list=[r.seed for r in members], per_seed=[], ensemble=len(members),
                   missing=[], left_out=left_out if row["part"] == "all" else [])
    return rows


def with_ensembles(rows: list[dict], groups: list[list[Run]], bootstrap: int | None = None,
                   bootstrap_seed: int = 0, allow_missing: bool = False) -> list[dict]:
    """``rows`` (the experiments' mean ± std rows) with each multi-seed experiment's
    ensemble rows inserted after its own (``allow_missing``: see :func:`ensemble_rows`)."""
    out = []
    for group in groups:
        out += [r for r in rows if r["experiment"] == group[0].name]
        if len(group) > 1:
            out += ensemble_rows(group, bootstrap, bootstrap_seed, allow_missing)
    return out
