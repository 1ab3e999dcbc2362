"""Paired comparison of two experiments on the same clips: ``mefnet-table --compare A B``.

Two tests, both paired (each clip is predicted by both experiments):

**Paired bootstrap over subjects of the UF1 difference.** LOSO folds are subjects, and
clips of one subject are not independent, so the resampling unit is the subject. Each of
``n_boot`` resamples draws as many subjects as there are, with replacement (a subject
drawn twice counts twice), pools *those subjects'* clips for A and for B, and computes
``UF1(A) - UF1(B)`` on the same resampled clips. The 95% confidence interval is the
2.5th and 97.5th percentile of these differences (percentile bootstrap); the two-sided
p-value is twice the share of resampled differences on the far side of zero (at most 1).
In a resample where a class has no clip and no prediction, its F1 is undefined and the
mean is taken over the other classes. The generator is seeded (``bootstrap_seed``), so
the interval is reproducible.

**McNemar's test on per-clip correctness.** ``b`` clips are right under A and wrong under
B, ``c`` the reverse; clips both get right or both get wrong carry no information about
the difference. The exact two-sided p-value is ``min(1, 2 * P(X <= min(b, c)))`` for
``X ~ Binomial(b + c, 1/2)``; the chi-square statistic with continuity correction,
``(|b - c| - 1)^2 / (b + c)``, and its p-value are given too.

With several seeds, the seeds both experiments share are compared: the bootstrap
statistic is the mean over those seeds of the UF1 difference (subjects resampled once
for all seeds), and McNemar's test is reported per seed. An experiment with several seeds
against one with a single run (a multi-seed recipe against a one-seed anchor row) pairs
each of its seeds with that run.

**The interval of one experiment's UF1** (the tables' ``UF1 95% CI`` column,
:func:`mefnet.report.bootstrap.uf1_interval`): the same resampling of subjects (the same resamples for the same
seed), applied to one experiment's pooled UF1 (mean over its seeds); the interval is the
2.5th and 97.5th percentile of the resampled UF1s.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mefnet.report.aggregate import group_runs, on_folds, shared_folds
from mefnet.report.bootstrap import (
    DEFAULT_BOOTSTRAP,
    paired_bootstrap,
    per_subject_counts,
    uf1_from_counts,
)
from mefnet.runs.store import ReportError, Run, find_runs, read_run
from mefnet.utils.quiet import plural


@dataclass
class McNemar:
    """McNemar's test on one seed's per-clip correctness, A against B (see the module docstring)."""

    seed: int
    b: int
    """clips right under A, wrong under B"""
    c: int
    """clips wrong under A, right under B"""
    p_exact: float
    chi2: float
    p_chi2: float


@dataclass
class Comparison:
    """The paired comparison of experiments A and B: their UF1, the bootstrap interval and
    p-value of the difference, and McNemar's test per seed."""

    a: str
    b: str
    seeds: list[int]
    clips: int
    subjects: int
    uf1_a: float
    uf1_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_bootstrap: float
    n_boot: int
    bootstrap_seed: int
    mcnemar: list[McNemar] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    """folds some run did not finish, left out of the comparison (``allow_missing``)"""

    def to_dict(self) -> dict:
        return asdict(self)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, seed: int = 0) -> McNemar:
    """McNemar's test of two classifiers' per-clip correctness (see the module docstring)."""
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    n = b + c
    if n == 0:
        return McNemar(seed, b, c, 1.0, 0.0, 1.0)
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n
    chi2 = (abs(b - c) - 1) ** 2 / n if abs(b - c) >= 1 else 0.0
    return McNemar(seed, b, c, min(1.0, 2 * tail), chi2, math.erfc(math.sqrt(chi2 / 2)))


def _aligned(run_a: Run, run_b: Run) -> tuple[list[tuple], dict, dict]:
    key = lambda r: (r["dataset"], r["subject"], r["clip"])  # noqa: E731
    a = {key(r): r for r in run_a.predictions}
    b = {key(r): r for r in run_b.predictions}
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ReportError(
            f"{run_a.name} and {run_b.name} did not predict the same clips (a paired comparison needs "
            f"them): {len(only_a)} only in {run_a.dir}, {len(only_b)} only in {run_b.dir}"
            + (f"; e.g. {'/'.join(only_a[0])}" if only_a else f"; e.g. {'/'.join(only_b[0])}")
        )
    for k in a:
        if a[k]["true"] != b[k]["true"]:
            raise ReportError(f"clip {'/'.join(k)} has true label {a[k]['true']} in {run_a.dir} but "
                              f"{b[k]['true']} in {run_b.dir}; the two experiments did not see the same data")
    return sorted(a), a, b


def _experiment(path: str | Path, allow_missing: bool = False) -> list[Run]:
    runs = [read_run(d) for d in find_runs([path])]
    groups = group_runs(runs)
    if len(groups) != 1:
        raise ReportError(f"{path} holds {len(groups)} experiments ({', '.join(g[0].name for g in groups)}); "
                          "give the folder of one experiment")
    if not allow_missing:
        _refuse_missing(groups[0])
    return groups[0]


def _refuse_missing(runs: list[Run]) -> None:
    for run in runs:
        if run.missing:
            raise ReportError(f"{run.name} seed {run.seed} ({run.dir}) is missing {plural(len(run.missing), 'fold')}; "
                              "a paired comparison needs every fold (--allow-missing: compare on the folds "
                              "both finished)")


def compare(a: str | Path, b: str | Path, n_boot: int = DEFAULT_BOOTSTRAP, bootstrap_seed: int = 0,
            allow_missing: bool = False) -> Comparison:
    """Paired bootstrap and McNemar's test of experiment folder ``a`` against ``b``
    (``allow_missing``: on the folds every compared run finished, the others named in
    :attr:`Comparison.left_out`)."""
    return compare_groups(_experiment(a, allow_missing), _experiment(b, allow_missing), n_boot, bootstrap_seed,
                          allow_missing)


def compare_groups(group_a: list[Run], group_b: list[Run], n_boot: int = DEFAULT_BOOTSTRAP,
                   bootstrap_seed: int = 0, allow_missing: bool = False) -> Comparison:
    """:func:`compare` of two experiments given as their runs (the seeds of each, every fold
    finished unless ``allow_missing``)."""
    if not allow_missing:
        _refuse_missing([*group_a, *group_b])
    seeds_a, seeds_b = {r.seed: r for r in group_a}, {r.seed: r for r in group_b}
    shared = sorted(set(seeds_a) & set(seeds_b))
    if not shared:
        if len(group_b) == 1:
            pairs = [(run, group_b[0]) for run in group_a]
        elif len(group_a) == 1:
            pairs = [(group_a[0], run) for run in group_b]
        else:
            raise ReportError(f"{group_a[0].name} (seeds {sorted(seeds_a)}) and {group_b[0].name} (seeds "
                              f"{sorted(seeds_b)}) share no seed; compare one run of each")
    else:
        pairs = [(seeds_a[s], seeds_b[s]) for s in shared]
    left_out: list[str] = []
    if allow_missing:
        folds, left_out = shared_folds([run for pair in pairs for run in pair])
        if not folds:
            raise ReportError(f"{group_a[0].name} and {group_b[0].name} have no fold that every compared run "
                              "finished; nothing to compare")
        pairs = [(on_folds(a, folds), on_folds(b, folds)) for a, b in pairs]
    names_a = list(pairs[0][0].record["class_names"])
    if names_a != list(pairs[0][1].record["class_names"]):
        raise ReportError(f"the two experiments have different classes: {names_a} and "
                          f"{pairs[0][1].record['class_names']}")
    keys, _, _ = _aligned(*pairs[0])
    subjects = {s: i for i, s in enumerate(dict.fromkeys(k[:2] for k in keys))}
    subject = np.array([subjects[k[:2]] for k in keys])
    true, pred_a, pred_b, tests = [], [], [], []
    for run_a, run_b in pairs:
        keys_here, ra, rb = _aligned(run_a, run_b)
        if keys_here != keys:
            raise ReportError(f"the seeds of {run_a.name} did not all predict the same clips")
        t = np.array([ra[k]["true"] for k in keys])
        pa = np.array([ra[k]["pred"] for k in keys])
        pb = np.array([rb[k]["pred"] for k in keys])
        true.append(t)
        pred_a.append(pa)
        pred_b.append(pb)
        tests.append(mcnemar(pa == t, pb == t, seed=run_a.seed))
    k = len(names_a)
    observed, diffs = paired_bootstrap(np.array(true), np.array(pred_a), np.array(pred_b), subject, k,
                                       n_boot, bootstrap_seed)
    uf1_a = float(np.mean([uf1_from_counts(*[x.sum(0) for x in per_subject_counts(t, p, subject, len(subjects), k)])
                           for t, p in zip(true, pred_a, strict=True)]))
    uf1_b = float(np.mean([uf1_from_counts(*[x.sum(0) for x in per_subject_counts(t, p, subject, len(subjects), k)])
                           for t, p in zip(true, pred_b, strict=True)]))
    low, high = np.percentile(diffs, [2.5, 97.5])
    far_side = np.mean(diffs <= 0) if observed > 0 else np.mean(diffs >= 0)
    return Comparison(
        a=pairs[0][0].name, b=pairs[0][1].name, seeds=[p[0].seed for p in pairs], clips=len(keys),
        subjects=len(subjects), uf1_a=uf1_a, uf1_b=uf1_b, difference=observed,
        ci_low=float(low), ci_high=float(high), p_bootstrap=float(min(1.0, 2 * far_side)) if observed else 1.0,
        n_boot=n_boot, bootstrap_seed=bootstrap_seed, mcnemar=tests, left_out=left_out,
    )


def to_markdown(c: Comparison) -> str:
    """``compare.md``: the comparison as a report to read."""
    lines = [
        f"# {c.a} vs {c.b}",
        "",
        f"{c.clips} clips of {c.subjects} subjects, predicted by both; seeds {', '.join(map(str, c.seeds))}.",
        *(["", f"Partial runs (--allow-missing): left out {plural(len(c.left_out), 'fold')} that not every "
               f"compared run finished: {', '.join(c.left_out)}."] if c.left_out else []),
        "",
        "| | UF1 |",
        "|---|---:|",
        f"| {c.a} | {c.uf1_a:.4f} |",
        f"| {c.b} | {c.uf1_b:.4f} |",
        f"| difference (A - B) | {c.difference:+.4f} |",
        "",
        f"Paired bootstrap over subjects ({c.n_boot} resamples, seed {c.bootstrap_seed}): 95% CI of the "
        f"UF1 difference [{c.ci_low:+.4f}, {c.ci_high:+.4f}], two-sided p = {c.p_bootstrap:.4f}.",
        "",
        "McNemar's test on per-clip correctness (b: right only under A, c: right only under B):",
        "",
        "| seed | b | c | exact p | chi2 (corrected) | p (chi2) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {m.seed} | {m.b} | {m.c} | {m.p_exact:.4f} | {m.chi2:.4f} | {m.p_chi2:.4f} |" for m in c.mcnemar]
    lines += ["", "UF1 is pooled over all folds of each seed (docs/protocol.md); with several seeds, the "
                  "mean over seeds."]
    return "\n".join(lines) + "\n"


def write_comparison(c: Comparison, out_dir: str | Path) -> list[Path]:
    """Write ``compare.md`` and ``compare.json`` into ``out_dir``; their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(to_markdown(c))
    (out / "compare.json").write_text(json.dumps(c.to_dict(), indent=2) + "\n")
    return [out / "compare.md", out / "compare.json"]


def anchor_comparisons(groups: list[list[Run]], reference: str, anchors: list[str],
                       n_boot: int = DEFAULT_BOOTSTRAP, bootstrap_seed: int = 0) -> tuple[list[Comparison], list[str]]:
    """The paired comparison of experiment ``reference`` against each of ``anchors`` (names
    in ``groups``, the table's experiments), and a line for each that could not be made
    (an experiment absent from the table, or one with unfinished folds)."""
    by_name = {g[0].name: g for g in groups}
    if reference not in by_name:
        return [], [f"{reference} is not in the table: no comparison against its anchors"]
    out, skipped = [], []
    for anchor in anchors:
        if anchor not in by_name:
            skipped.append(f"{anchor}: not in the table (not run in this set)")
            continue
        try:
            out.append(compare_groups(by_name[reference], by_name[anchor], n_boot, bootstrap_seed))
        except ReportError as e:
            skipped.append(f"{anchor}: {e}")
    return out, skipped


def comparisons_markdown(comparisons: list[Comparison], skipped: list[str] | None = None) -> str:
    """The comparisons of one reference against its anchors as one table, one row per anchor."""
    if not comparisons and not skipped:
        return ""
    ref = comparisons[0].a if comparisons else ""
    lines = [f"## Paired comparison{f' of {ref}' if ref else ''} against each anchor", ""]
    if comparisons:
        c0 = comparisons[0]
        lines += [
            "| against | seeds | clips | subjects | UF1 (A) | UF1 (B) | difference A - B | 95% CI | p (bootstrap) "
            "| McNemar b / c (exact p) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for c in comparisons:
            mc = "; ".join(f"seed {m.seed}: {m.b} / {m.c} ({m.p_exact:.4f})" for m in c.mcnemar)
            lines.append(f"| {c.b} | {', '.join(map(str, c.seeds))} | {c.clips} | {c.subjects} | {c.uf1_a:.4f} | "
                         f"{c.uf1_b:.4f} | {c.difference:+.4f} | [{c.ci_low:+.4f}, {c.ci_high:+.4f}] | "
                         f"{c.p_bootstrap:.4f} | {mc} |")
        lines += ["", f"A = {ref}. Paired bootstrap over subjects ({c0.n_boot} resamples, seed {c0.bootstrap_seed}) "
                      "of the UF1 difference (the mean over A's seeds, each paired with B's run of the same seed, or "
                      "with B's one run); McNemar's test per seed on per-clip correctness (b: right only under A, "
                      "c: right only under B). Method: mefnet/report/compare.py."]
    lines += [f"Not compared: {s}" for s in skipped or []]
    return "\n".join(lines) + "\n"


def write_anchor_comparisons(groups: list[list[Run]], reference: str, anchors: list[str], out_dir: str | Path,
                             n_boot: int = DEFAULT_BOOTSTRAP, bootstrap_seed: int = 0) -> list[Path]:
    """``comparisons.md`` / ``comparisons.json`` in ``out_dir``: :func:`anchor_comparisons`."""
    comparisons, skipped = anchor_comparisons(groups, reference, anchors, n_boot, bootstrap_seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparisons.md").write_text(comparisons_markdown(comparisons, skipped))
    (out / "comparisons.json").write_text(json.dumps({"reference": reference, "comparisons":
                                                      [c.to_dict() for c in comparisons], "not_compared": skipped},
                                                     indent=2) + "\n")
    return [out / "comparisons.md", out / "comparisons.json"]
