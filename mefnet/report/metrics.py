"""Pooled metrics, exactly as docs/protocol.md defines them.

Predictions of every fold are pooled first; TP / FP / FN are counted once over the
pool. Averaging per-fold scores gives different (wrong) numbers.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

from mefnet.utils.metrics import f1_from_counts


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[int(t), int(p)] += 1
    return cm


def pooled_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], num_classes: int, class_names: Sequence[str] | None = None
) -> dict:
    """UF1 (macro F1), UAR (macro recall), accuracy and the confusion matrix of pooled predictions.

    A class with no ground-truth clip in the pool is an error in the setup (its recall is
    undefined), not a number to hide.
    """
    if len(y_true) == 0:
        raise ValueError("no predictions to score")
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(axis=1)
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    absent = [names[c] for c in range(num_classes) if support[c] == 0]
    if absent:
        raise ValueError(f"class(es) {absent} have no clip in the pooled ground truth; UAR is undefined")
    tp = np.diag(cm).astype(float)
    fp = cm.sum(axis=0) - tp
    fn = support - tp
    f1 = f1_from_counts(tp, fp, fn)
    recall = tp / support
    return {
        "uf1": float(f1.mean()),
        "uar": float(recall.mean()),
        "accuracy": float(tp.sum() / cm.sum()),
        "n": int(cm.sum()),
        "f1_per_class": f1.tolist(),
        "recall_per_class": recall.tolist(),
        "confusion": cm.tolist(),
    }


def mean_std(values: Sequence[float], digits: int | None = None) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1) of one score over an experiment's seeds,
    each rounded to ``digits`` when given; the deviation is ``None`` for a single seed.

    The one place the tables (emotion, AU, per class) and the benchmarks summarise seeds."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    if digits is None:
        return mean, std
    return round(mean, digits), None if std is None else round(std, digits)


def format_mean_std(mean: float, std: float | None, spec: str = ".4f") -> str:
    """``mean ± std`` as the tables print it, or the mean alone for a single seed."""
    return f"{mean:{spec}}" if std is None else f"{mean:{spec}} ± {std:{spec}}"
