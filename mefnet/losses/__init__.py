"""Classification losses, chosen with ``loss=...``.

Every loss is an ``nn.Module`` called as ``loss(logits, targets)`` and constructed with
the keyword ``class_counts``: the number of training clips per class *of the current
training fold* (never of the test subject), which prior-aware losses need and others
ignore. Predictions always use the plain logits; a loss may only change training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropyLoss(nn.Module):
    """Plain cross-entropy (optionally label-smoothed)."""

    def __init__(self, class_counts: Sequence[int] | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)


__all__ = ["CrossEntropyLoss"]
