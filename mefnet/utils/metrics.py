"""The F1 formula, once, for every pooled score of the package.

``F1 = 2 TP / (2 TP + FP + FN)`` per class (or per action unit), with 0 where the
denominator is 0 (no clip predicted or true in that class). The emotion table
(:func:`mefnet.report.metrics.pooled_metrics`), the paper tables, the bootstrap, the AU
scores (:func:`mefnet.tasks.au.au_scores`) and per-AU thresholds all call it. It lives in
the bottom layer because :mod:`mefnet.tasks` (AU scores, below training) and
:mod:`mefnet.report` both need it, and it needs nothing but numpy (the report stays free
of torch).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def f1_from_counts(tp: ArrayLike, fp: ArrayLike, fn: ArrayLike) -> np.ndarray:
    """Elementwise F1 of true-positive, false-positive and false-negative counts (floats),
    0 where ``2 TP + FP + FN`` is 0; a 0-d array for scalar counts (``float()`` it)."""
    tp, fp, fn = (np.asarray(x, dtype=float) for x in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)


def binary_f1(y: np.ndarray, p: np.ndarray) -> float:
    """F1 of "present" from boolean truth and prediction arrays (0 without any positive)."""
    return float(f1_from_counts(np.sum(y & p), np.sum(~y & p), np.sum(y & ~p)))
