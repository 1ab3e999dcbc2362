"""Bootstrap over subjects: the resampling behind the tables' ``UF1 95% CI`` column
(:func:`uf1_interval`) and the paired comparison of two experiments
(:func:`paired_bootstrap`, used by :mod:`mefnet.report.compare`, whose docstring states
the method). Subjects are the resampling unit (clips of one subject are not independent);
both draw their resamples from :func:`subject_resamples`, so the same seed gives the same
resamples.
"""

from __future__ import annotations

import numpy as np

from mefnet.utils.metrics import f1_from_counts

DEFAULT_BOOTSTRAP = 10000


def uf1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Macro F1 over the last axis of per-class counts, skipping classes with 0/0."""
    defined = (tp + fp + fn) > 0  # counts are never negative: the classes whose F1 is not 0/0
    return f1_from_counts(tp, fp, fn).sum(axis=-1) / np.maximum(defined.sum(axis=-1), 1)


def per_subject_counts(true: np.ndarray, pred: np.ndarray, subject: np.ndarray, n_subjects: int,
                        k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fp, fn) per subject and class, each ``(n_subjects, k)``."""
    tp = np.zeros((n_subjects, k))
    fp = np.zeros((n_subjects, k))
    fn = np.zeros((n_subjects, k))
    hit = true == pred
    np.add.at(tp, (subject[hit], true[hit]), 1)
    np.add.at(fp, (subject[~hit], pred[~hit]), 1)
    np.add.at(fn, (subject[~hit], true[~hit]), 1)
    return tp, fp, fn


def paired_bootstrap(true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, subject: np.ndarray,
                     k: int, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> tuple[float, np.ndarray]:
    """(observed UF1(A) - UF1(B), the ``n_boot`` resampled differences), subjects resampled.

    ``true``, ``pred_a``, ``pred_b`` are ``(seeds, clips)`` (or ``(clips,)``) class indices
    on the same clips, ``subject`` the ``(clips,)`` subject index of each clip. With several
    seeds the statistic is the mean over seeds of the difference.
    """
    true, pred_a, pred_b = (np.atleast_2d(np.asarray(x, dtype=int)) for x in (true, pred_a, pred_b))
    subject = np.asarray(subject, dtype=int)
    n_subjects = int(subject.max()) + 1
    counts_a = [per_subject_counts(t, p, subject, n_subjects, k) for t, p in zip(true, pred_a, strict=True)]
    counts_b = [per_subject_counts(t, p, subject, n_subjects, k) for t, p in zip(true, pred_b, strict=True)]

    def statistic(weights: np.ndarray) -> np.ndarray:
        """Mean over seeds of UF1(A) - UF1(B) for each row of subject multiplicities."""
        diffs = []
        for (ta, fpa, fna), (tb, fpb, fnb) in zip(counts_a, counts_b, strict=True):
            uf1_a = uf1_from_counts(weights @ ta, weights @ fpa, weights @ fna)
            uf1_b = uf1_from_counts(weights @ tb, weights @ fpb, weights @ fnb)
            diffs.append(uf1_a - uf1_b)
        return np.mean(diffs, axis=0)

    observed = float(statistic(np.ones((1, n_subjects)))[0])
    return observed, statistic(subject_resamples(n_subjects, n_boot, seed))


def subject_resamples(n_subjects: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n_subjects)`` multiplicities: row b counts how often each subject was drawn
    in resample b (``n_subjects`` draws with replacement). Seeded, so deterministic; both
    bootstraps of this module draw their resamples here."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_subjects, size=(n_boot, n_subjects))
    weights = np.zeros((n_boot, n_subjects))
    np.add.at(weights, (np.repeat(np.arange(n_boot), n_subjects), draws.ravel()), 1)
    return weights


def subject_bootstrap(true: np.ndarray, pred: np.ndarray, subject: np.ndarray, k: int,
                      n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> tuple[float, np.ndarray]:
    """(observed pooled UF1, the ``n_boot`` resampled UF1s) of one experiment, subjects resampled.

    The single-experiment counterpart of :func:`paired_bootstrap`, with the same resamples
    for the same ``seed``: ``true`` and ``pred`` are ``(seeds, clips)`` (or ``(clips,)``)
    class indices, ``subject`` the ``(clips,)`` subject index of each clip; with several
    seeds the statistic is the mean over seeds of the pooled UF1 (subjects resampled once
    for all seeds).
    """
    true, pred = (np.atleast_2d(np.asarray(x, dtype=int)) for x in (true, pred))
    subject = np.asarray(subject, dtype=int)
    n_subjects = int(subject.max()) + 1
    counts = [per_subject_counts(t, p, subject, n_subjects, k) for t, p in zip(true, pred, strict=True)]

    def statistic(weights: np.ndarray) -> np.ndarray:
        return np.mean([uf1_from_counts(weights @ tp, weights @ fp, weights @ fn) for tp, fp, fn in counts], axis=0)

    observed = float(statistic(np.ones((1, n_subjects)))[0])
    return observed, statistic(subject_resamples(n_subjects, n_boot, seed))


def uf1_interval(runs: list[list[dict]], k: int, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval over subjects of an experiment's pooled UF1.

    ``runs``: each seed's prediction rows (``dataset``, ``subject``, ``clip``, ``true``,
    ``pred``), all for the same part of the table. Subjects are ``(dataset, subject)``;
    every seed must hold the same clips (a subject a seed did not predict would weigh
    nothing in that seed), which is what the table's rows are made of.
    """
    if len(runs) > 1:
        clips = {(r["dataset"], r["subject"], r["clip"]) for r in runs[0]}
        if any({(r["dataset"], r["subject"], r["clip"]) for r in rows} != clips for rows in runs[1:]):
            # Seeds with different finished folds (allow_missing): the mean over seeds of
            # their pooled UF1 has no one set of subjects to resample; each seed's interval
            # would be a different quantity, so none is given.
            return (float("nan"), float("nan"))
    key = lambda r: (r["dataset"], r["subject"], r["clip"])  # noqa: E731
    # Every seed in the first seed's clip order; subjects numbered as they first appear there.
    ordered = [runs[0]] + [[{key(r): r for r in rows}[key(c)] for c in runs[0]] for rows in runs[1:]]
    subjects = {s: i for i, s in enumerate(dict.fromkeys((r["dataset"], r["subject"]) for r in ordered[0]))}
    subject = np.array([subjects[(r["dataset"], r["subject"])] for r in ordered[0]])
    true = np.array([[r["true"] for r in rows] for rows in ordered])
    pred = np.array([[r["pred"] for r in rows] for rows in ordered])
    _, resampled = subject_bootstrap(true, pred, subject, k, n_boot, seed)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return float(low), float(high)
