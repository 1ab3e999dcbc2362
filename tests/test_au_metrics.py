"""Pooled AU metrics against a hand-computed example (one AU absent from a fold, one from all)."""

from __future__ import annotations

import pytest

from mefnet.tasks.au import au_scores

NAMES = ["AU1", "AU4", "AU12", "AU15"]
# Two folds of three clips. AU12 is absent from fold 1's ground truth, AU15 from both.
FOLD1_TRUE = [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]]
FOLD1_PRED = [[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
FOLD2_TRUE = [[0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
FOLD2_PRED = [[0, 1, 1, 0], [1, 1, 0, 1], [0, 0, 0, 0]]


def test_pooled_scores_match_the_hand_computed_example():
    m = au_scores(FOLD1_TRUE + FOLD2_TRUE, FOLD1_PRED + FOLD2_PRED, NAMES)
    # Pooled counts over the 6 clips (TP, FP, FN, TN):
    # (clips c1..c3 are fold 1, c4..c6 fold 2)
    #   AU1:  TP 2 (c1, c5), FP 0, FN 1 (c3), TN 3 -> F1 = 4/5 = 0.8;   F1(absent) = 6/7
    #   AU4:  TP 2 (c2, c4), FP 1 (c5), FN 1 (c1), TN 2 -> F1 = 4/6;     F1(absent) = 4/6
    #   AU12: TP 1 (c4), FP 1 (c2), FN 1 (c5), TN 3 -> F1 = 2/4 = 0.5;   F1(absent) = 6/8
    #   AU15: no positive clip anywhere (one false positive, c5) -> undefined, left out
    assert m["f1_per_au"]["AU1"] == pytest.approx(0.8)
    assert m["f1_per_au"]["AU4"] == pytest.approx(2 / 3)
    assert m["f1_per_au"]["AU12"] == pytest.approx(0.5)
    assert m["f1_per_au"]["AU15"] is None and m["absent"] == ["AU15"]
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0.5) / 3)
    binary = [(0.8 + 6 / 7) / 2, (2 / 3 + 2 / 3) / 2, (0.5 + 0.75) / 2]
    assert m["avg_binary_f1"] == pytest.approx(sum(binary) / 3)
    assert m["support"] == {"AU1": 3, "AU4": 3, "AU12": 2, "AU15": 0}
    assert m["label_accuracy"] == pytest.approx(18 / 24)


def test_averaging_per_fold_would_give_another_number():
    # Fold 1 alone has no AU12 positive: its own macro F1 covers AU1 and AU4 only. The
    # pooled figure is not the mean of the folds' figures (docs/protocol.md pools).
    f1 = au_scores(FOLD1_TRUE, FOLD1_PRED, NAMES)
    f2 = au_scores(FOLD2_TRUE, FOLD2_PRED, NAMES)
    pooled = au_scores(FOLD1_TRUE + FOLD2_TRUE, FOLD1_PRED + FOLD2_PRED, NAMES)
    assert f1["f1_per_au"]["AU12"] is None and "AU12" in f1["absent"]
    assert pooled["macro_f1"] != pytest.approx((f1["macro_f1"] + f2["macro_f1"]) / 2)


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="clips, AUs"):
        au_scores([[1, 0]], [[1, 0, 0]])
