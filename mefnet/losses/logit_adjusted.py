"""Logit-adjusted cross-entropy (Menon et al., ICLR 2021): AM3F-FlowNet's loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mefnet.losses.class_counts import ClassCounts, as_class_counts, class_prior
from mefnet.losses.cross_entropy import _check_num_classes


class LogitAdjustedLoss(nn.Module):
    """``cross_entropy(logits + tau * log(prior), targets)``.

    Menon, Jayasumana, Rawat, Jain, Veit, Kumar, "Long-tail learning via logit
    adjustment", ICLR 2021; the "logarithmically adjusted prior-knowledge weighting
    loss" of AM3F-FlowNet. ``prior`` is the class frequency of the *training fold*
    (``class_counts / sum``). Adding ``tau * log(prior)`` during training only makes the
    network's plain logits estimate ``p(y | x) / prior(y) ** tau``, i.e. it shifts the
    decision toward rare classes; predictions therefore use the plain logits (argmax),
    never the adjusted ones. ``tau=0`` is plain cross-entropy; ``tau=1`` is the
    reference value of Menon et al.

    A class with no training clip has prior 0 and ``log(0) = -inf``: that raises a
    ``ValueError`` unless ``count_smoothing > 0`` adds that many pseudo-clips to every
    class before the prior is taken.
    """

    def __init__(
        self,
        class_counts: ClassCounts | None = None,
        tau: float = 1.0,
        count_smoothing: float = 0.0,
    ):
        super().__init__()
        name = type(self).__name__
        prior = class_prior(as_class_counts(class_counts, name), name, count_smoothing)
        self.tau = float(tau)
        self.register_buffer("log_prior", prior.log().float())

    def adjusted_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits the loss sees: ``logits + tau * log(prior)`` (training only)."""
        _check_num_classes(logits, self.log_prior, type(self).__name__)
        return logits + self.tau * self.log_prior.to(logits.dtype)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.adjusted_logits(logits), targets)
