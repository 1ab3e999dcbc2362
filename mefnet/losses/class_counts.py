"""Class counts of a training fold turned into priors and inverse-frequency weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch

ClassCounts = Sequence[int] | Sequence[float] | torch.Tensor


def as_class_counts(class_counts: ClassCounts | None, loss_name: str) -> torch.Tensor:
    """Validate ``class_counts`` (one non-negative count per class) as a float64 tensor."""
    if class_counts is None:
        raise ValueError(
            f"{loss_name} needs class_counts (training clips per class of the current "
            "training fold); the pipeline passes them as loss(class_counts=...)"
        )
    counts = torch.as_tensor(
        class_counts.tolist() if hasattr(class_counts, "tolist") else list(class_counts),
        dtype=torch.float64,
    )
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(
            f"{loss_name}: class_counts must be a non-empty list, got {class_counts!r}"
        )
    if not torch.isfinite(counts).all() or (counts < 0).any():
        raise ValueError(
            f"{loss_name}: class_counts must be finite and non-negative, got {counts.tolist()}"
        )
    return counts


def _require_positive(counts: torch.Tensor, loss_name: str, smoothing_key: str) -> None:
    empty = [i for i, c in enumerate(counts.tolist()) if c <= 0]
    if empty:
        raise ValueError(
            f"{loss_name}: class_counts {counts.tolist()} has no training clip of class "
            f"index {empty}, so its prior is 0 and its log-prior/inverse frequency is "
            f"infinite. Check the fold split, or set {smoothing_key} > 0 to add that many "
            "pseudo-clips to every class"
        )


def class_prior(counts: torch.Tensor, loss_name: str, count_smoothing: float = 0.0) -> torch.Tensor:
    """``(counts + count_smoothing) / sum``; every class must end up with a positive count."""
    counts = counts + float(count_smoothing)
    _require_positive(counts, loss_name, "count_smoothing")
    return counts / counts.sum()


def inverse_frequency_weights(
    counts: torch.Tensor, loss_name: str, power: float = 1.0, count_smoothing: float = 0.0
) -> torch.Tensor:
    """Per-class weights ``prior ** -power`` normalized so that ``sum(prior * w) == 1``.

    With ``power=1`` this is scikit-learn's "balanced" weighting
    ``n_samples / (n_classes * count)``: every class carries the same total weight, and
    the average weight of a training clip is 1, so the loss keeps the scale of plain
    cross-entropy. ``power=0.5`` gives the milder inverse-square-root weighting.
    """
    prior = class_prior(counts, loss_name, count_smoothing)
    weights = prior.pow(-float(power))
    return weights / (prior * weights).sum()
