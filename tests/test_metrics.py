"""Pooled UF1 / UAR as docs/protocol.md defines them."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassF1Score, MulticlassRecall

from mefnet.report.metrics import format_mean_std, mean_std, pooled_metrics
from mefnet.utils.metrics import binary_f1, f1_from_counts

# Three folds; the last has a single clip.
FOLDS = [
    ([0, 0, 1, 2], [0, 1, 1, 2]),
    ([0, 0, 0, 1, 2], [0, 0, 2, 0, 2]),
    ([1], [1]),
]


def test_pooled_metrics_match_a_hand_computed_example():
    y_true = sum((t for t, _ in FOLDS), [])
    y_pred = sum((p for _, p in FOLDS), [])
    m = pooled_metrics(y_true, y_pred, 3)
    # Pooled confusion: class 0: 5 clips, 3 right (1 -> 1, 1 -> 2); class 1: 3 clips,
    # 2 right (1 -> 0); class 2: 2 clips, both right.
    assert m["confusion"] == [[3, 1, 1], [1, 2, 0], [0, 0, 2]]
    f1 = [2 * 3 / (6 + 1 + 2), 2 * 2 / (4 + 1 + 1), 2 * 2 / (4 + 1 + 0)]
    assert m["uf1"] == pytest.approx(np.mean(f1))
    assert m["uar"] == pytest.approx(np.mean([3 / 5, 2 / 3, 2 / 2]))
    assert m["accuracy"] == pytest.approx(7 / 10)


def test_pooled_metrics_equal_torchmetrics_updated_per_fold_computed_once():
    f1 = MulticlassF1Score(num_classes=3, average="macro")
    rec = MulticlassRecall(num_classes=3, average="macro")
    for t, p in FOLDS:
        f1.update(torch.tensor(p), torch.tensor(t))
        rec.update(torch.tensor(p), torch.tensor(t))
    m = pooled_metrics(sum((t for t, _ in FOLDS), []), sum((p for _, p in FOLDS), []), 3)
    assert m["uf1"] == pytest.approx(f1.compute().item())
    assert m["uar"] == pytest.approx(rec.compute().item())


def test_pooling_differs_from_averaging_per_fold_scores():
    pooled = pooled_metrics(sum((t for t, _ in FOLDS), []), sum((p for _, p in FOLDS), []), 3)["uf1"]
    per_fold = [pooled_metrics(t, p, 3)["uf1"] for t, p in FOLDS if len(set(t)) == 3]
    assert per_fold and pooled != pytest.approx(np.mean(per_fold))


def test_a_class_absent_from_the_ground_truth_is_an_error():
    with pytest.raises(ValueError, match=r"class\(es\) \['surprise'\] have no clip"):
        pooled_metrics([0, 1, 1], [0, 1, 2], 3, ["negative", "positive", "surprise"])


def test_f1_from_counts_is_zero_where_undefined_and_the_formula_elsewhere():
    f1 = f1_from_counts(np.array([3.0, 0.0, 0.0]), np.array([1.0, 2.0, 0.0]), np.array([2.0, 1.0, 0.0]))
    assert f1.tolist() == [6 / 9, 0.0, 0.0]  # 0/0 (no clip of the class anywhere) is 0, not nan
    assert float(f1_from_counts(2, 1, 0)) == 4 / 5  # scalar counts give a 0-d array


def test_binary_f1_scores_present_from_boolean_arrays():
    y = np.array([True, True, False, False])
    p = np.array([True, False, True, False])
    assert binary_f1(y, p) == 2 / (2 + 1 + 1)
    assert binary_f1(y, y) == 1.0
    none = np.zeros(4, dtype=bool)
    assert binary_f1(none, none) == 0.0


def test_mean_std_over_seeds_is_the_sample_deviation_and_none_for_one_seed():
    values = [0.61, 0.57, 0.66]
    assert mean_std(values) == (statistics.fmean(values), statistics.stdev(values))
    assert mean_std(values, 4) == (round(statistics.fmean(values), 4), round(statistics.stdev(values), 4))
    assert mean_std([0.5]) == (0.5, None) and mean_std([0.12345], 2) == (0.12, None)
    assert format_mean_std(0.5, None) == "0.5000"
    assert format_mean_std(0.5, 0.0123) == "0.5000 ± 0.0123"
    assert format_mean_std(61.25, 4.5, ".1f") == "61.2 ± 4.5"

