"""Classification losses, chosen with ``loss=...``.

Every loss is an ``nn.Module`` called as ``loss(logits, targets)`` and constructed with
the keyword ``class_counts``: the number of training clips per class *of the current
training fold* (never of the test subject), which prior-aware losses need and others
ignore. Predictions always use the plain logits; a loss may only change training.

- :class:`CrossEntropyLoss`: plain (``conf/loss/cross_entropy.yaml``).
- :class:`LogitAdjustedLoss`: ``CE(logits + tau * log prior)``, AM3F-FlowNet's loss
  (``logit_adjusted.yaml``).
- :class:`ClassWeightedCrossEntropyLoss`: inverse-frequency weights
  (``weighted_cross_entropy.yaml``).
- :class:`FocalLoss`: ``(1 - p)^gamma``-modulated CE, optionally balanced (``focal.yaml``).
"""

from __future__ import annotations

from mefnet.losses.cross_entropy import ClassWeightedCrossEntropyLoss, CrossEntropyLoss
from mefnet.losses.focal import FocalLoss
from mefnet.losses.logit_adjusted import LogitAdjustedLoss

__all__ = [
    "ClassWeightedCrossEntropyLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "LogitAdjustedLoss",
]
