"""Focal loss (Lin et al., ICCV 2017), optionally class-balanced."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mefnet.losses.class_counts import ClassCounts, as_class_counts, inverse_frequency_weights
from mefnet.losses.cross_entropy import _check_num_classes


class FocalLoss(nn.Module):
    """``mean(-alpha_y * (1 - p_y) ** gamma * log p_y)``.

    Lin, Goyal, Girshick, He, Dollar, "Focal Loss for Dense Object Detection", ICCV 2017.
    ``gamma`` down-weights clips the network already classifies well (``gamma=0`` is
    cross-entropy). ``alpha``: ``None`` (no class weights), ``"balanced"`` (the
    inverse-frequency weights of :class:`ClassWeightedCrossEntropyLoss`, computed from
    ``class_counts``), or one explicit weight per class. The batch reduction is a plain
    mean, as in the paper.
    """

    def __init__(
        self,
        class_counts: ClassCounts | None = None,
        gamma: float = 2.0,
        alpha: str | Sequence[float] | None = None,
        count_smoothing: float = 0.0,
    ):
        super().__init__()
        name = type(self).__name__
        if gamma < 0:
            raise ValueError(f"{name}: gamma={gamma} is not allowed; it must be >= 0")
        self.gamma = float(gamma)
        weights: torch.Tensor | None = None
        if isinstance(alpha, str):
            if alpha != "balanced":
                raise ValueError(
                    f"{name}: alpha={alpha!r} is not allowed; choose null, balanced, "
                    "or a list with one weight per class"
                )
            counts = as_class_counts(class_counts, f"{name}(alpha='balanced')")
            weights = inverse_frequency_weights(counts, name, 1.0, count_smoothing)
        elif alpha is not None:
            weights = torch.as_tensor(list(alpha), dtype=torch.float64)
            if class_counts is not None and weights.numel() != len(class_counts):
                raise ValueError(
                    f"{name}: alpha has {weights.numel()} weights but class_counts has "
                    f"{len(class_counts)} classes"
                )
        self.register_buffer("alpha", None if weights is None else weights.float())

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
        loss = -((1.0 - log_p.exp()).pow(self.gamma)) * log_p
        if self.alpha is not None:
            _check_num_classes(logits, self.alpha, type(self).__name__)
            loss = loss * self.alpha.to(logits.dtype)[targets]
        return loss.mean()
