"""Cross-entropy, plain and weighted by inverse class frequency."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mefnet.losses.class_counts import ClassCounts, as_class_counts, inverse_frequency_weights


class CrossEntropyLoss(nn.Module):
    """Plain cross-entropy (optionally label-smoothed); ignores ``class_counts``."""

    def __init__(self, class_counts: ClassCounts | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)


class ClassWeightedCrossEntropyLoss(nn.Module):
    """Cross-entropy with inverse-frequency class weights from the training fold's counts.

    Weights are ``prior ** -power`` normalized so the average training clip weighs 1 (see
    :func:`~mefnet.losses.class_counts.inverse_frequency_weights`). The batch reduction
    is PyTorch's weighted mean (``sum(w_y * loss) / sum(w_y)``).
    """

    def __init__(
        self,
        class_counts: ClassCounts | None = None,
        power: float = 1.0,
        label_smoothing: float = 0.0,
        count_smoothing: float = 0.0,
    ):
        super().__init__()
        counts = as_class_counts(class_counts, type(self).__name__)
        weights = inverse_frequency_weights(counts, type(self).__name__, power, count_smoothing)
        self.register_buffer("class_weights", weights.float())
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_num_classes(logits, self.class_weights, type(self).__name__)
        return F.cross_entropy(
            logits,
            targets,
            weight=self.class_weights.to(logits.dtype),
            label_smoothing=self.label_smoothing,
        )


def _check_num_classes(logits: torch.Tensor, per_class: torch.Tensor, loss_name: str) -> None:
    if logits.dim() != 2 or logits.shape[1] != per_class.numel():
        raise ValueError(
            f"{loss_name}: logits of shape {tuple(logits.shape)} do not match the "
            f"{per_class.numel()} classes of class_counts"
        )
