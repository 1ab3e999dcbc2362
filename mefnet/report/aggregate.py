"""Scores of stored runs: runs grouped into experiments (their seeds), pooled per run,
then mean and standard deviation over the seeds.

Runs with the same ``experiment_name`` are the seeds of one experiment: their configs
must agree apart from the seed (and from where data and outputs live, and how the run
was executed); two runs with one name and different configs are an error.
"""

from __future__ import annotations

from pathlib import Path

from mefnet.report.bootstrap import DEFAULT_BOOTSTRAP, uf1_interval
from mefnet.report.metrics import mean_std, pooled_metrics
from mefnet.runs.identity import comparable_config, experiment_differences  # noqa: F401  (comparable_config: re-exported)
from mefnet.runs.splits import fold_datasets
from mefnet.runs.store import IncompleteExperimentError, ReportError, Run, missing_message, read_run  # noqa: F401  (comparable_config: re-exported)

# How the parts of a composite are titled in table.md (table.csv keeps the dataset key).
DATASET_TITLES = {
    "smic": "SMIC",
    "casme2": "CASME II",
    "samm": "SAMM",
    "casme3": "CAS(ME)^3",
}

# --------------------------------------------------------------------------- grouping


def config_differences(a: Run, b: Run) -> list[str]:
    """Why two runs are not seeds of one experiment (empty: they are); see
    :func:`mefnet.runs.identity.experiment_differences`."""
    return experiment_differences(a.record, b.record, across_seeds=True)


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


def shared_folds(runs: list[Run]) -> tuple[list[str], list[str]]:
    """(the folds every run in ``runs`` finished, the folds left out), in the first run's
    fold order: what a comparison of partial runs (``--allow-missing``) is made on."""
    order = list(dict.fromkeys(f for run in runs for f in run.record["folds"]))
    finished = [set(run.record["folds"]) - set(run.missing) for run in runs]
    shared = [f for f in order if all(f in done for done in finished)]
    return shared, [f for f in order if f not in shared]


def on_folds(run: Run, folds: list[str]) -> Run:
    """``run`` restricted to the predictions of ``folds``; the other folds count as missing."""
    keep = set(folds)
    return Run(run.dir, run.record, [r for r in run.predictions if r["fold"] in keep],
               [f for f in run.record["folds"] if f not in keep])


# --------------------------------------------------------------------------- scoring


def _datasets(run: Run) -> list[str]:
    order = dict.fromkeys(d for f in run.record["folds"] for d in fold_datasets(f))
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
            "folds": len({r["fold"] for r in rows}),
            "folds_total": len([f for f in run.record["folds"] if part == "all" or part in fold_datasets(f)]),
            "uf1": m["uf1"],
            "uar": m["uar"],
            "accuracy": m["accuracy"],
            "confusion": m["confusion"],
            "class_names": names,
            "selection": run.record.get("selection", ""),
            "missing_folds": len([f for f in run.missing if part == "all" or part in fold_datasets(f)]),
        })
    return out


def experiment_rows(experiment_dir: str | Path, allow_missing: bool = False) -> list[dict]:
    """Table rows of one run (one seed): all clips, then each source dataset if several."""
    run = read_run(experiment_dir)
    if run.missing and not allow_missing:
        raise IncompleteExperimentError(
            f"{missing_message(run)}; rerun the experiment to finish them, or pass --allow-missing"
        )
    rows = run_rows(run)
    for r in rows:
        for k in ("uf1", "uar", "accuracy"):
            r[k] = round(r[k], 4)
    return rows


def folds_text(row: dict) -> str:
    """A row's folds as the tables print them: ``40``, or ``37 of 40`` when some of the
    run's folds have no predictions (``--allow-missing``; with several seeds ``37-40 of 40``)."""
    total = row.get("folds_total")
    if not row.get("missing_folds") or total is None or str(total) == str(row["folds"]):
        return str(row["folds"])
    return f"{row['folds']} of {total}"


def _span(values: list[int]) -> int | str:
    lo, hi = min(values), max(values)
    return lo if lo == hi else f"{lo}-{hi}"


def summarize(group: list[Run], bootstrap: int | None = None, bootstrap_seed: int = 0) -> list[dict]:
    """One experiment's rows: per part, mean and sample standard deviation over its seeds,
    and the 95% percentile bootstrap interval over subjects of the mean pooled UF1
    (``uf1_ci_low`` / ``uf1_ci_high``: :func:`mefnet.report.bootstrap.uf1_interval`, with
    ``bootstrap`` resamples, default 10000, drawn from ``bootstrap_seed``)."""
    n_boot = DEFAULT_BOOTSTRAP if bootstrap is None else bootstrap
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
            "folds_total": _span([r["folds_total"] for r in rows]),
            "seeds": len(rows),
            "seed_list": [r["seed"] for r in rows],
        }
        for k in ("uf1", "uar", "accuracy"):
            row[k], row[f"{k}_std"] = mean_std([r[k] for r in rows], 4)
        k = len(rows[0]["class_names"])
        preds = [[r for r in run.predictions if part == "all" or r["dataset"] == part] for run in scored]
        low, high = uf1_interval([p for p in preds if p], k, n_boot, bootstrap_seed)
        row["uf1_ci_low"], row["uf1_ci_high"] = (None, None) if low != low else (round(low, 4), round(high, 4))
        row["confusion"] = [[sum(r["confusion"][i][j] for r in rows) for j in range(k)] for i in range(k)]
        row["class_names"] = rows[0]["class_names"]
        row["selection"] = rows[0]["selection"]
        row["missing_folds"] = sum(r["missing_folds"] for r in rows) + (
            sum(len(m["folds"]) for m in missing if not any(r.seed == m["seed"] for r in scored))
            if part == "all" else 0
        )
        row["missing"] = missing if part == "all" else []
        row["per_seed"] = [{key: r[key] for key in ("seed", "clips", "folds", "folds_total", "uf1", "uar",
                                                     "accuracy", "missing_folds")} for r in rows]
        out.append(row)
    return out


