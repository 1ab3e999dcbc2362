"""Weight averaging for small micro-expression training sets.

A LOSO fold trains on a few hundred clips: an epoch is a handful of optimizer steps and
the weights still move a lot from one step to the next. :class:`WarmupEMA` keeps an
exponential moving average of the weights (parameters and batch-norm statistics) and
hands it to the model for validation and at the end of training, through Lightning's
:class:`~lightning.pytorch.callbacks.WeightAveraging` (so it is a callback in the config:
``callbacks=ema``).

Plain EMA with decay 0.99 over a fold of ~120 steps would still give the weights of the
first step about 30% of the average. The decay therefore warms up as in
TensorFlow's ``ExponentialMovingAverage(num_updates=...)``: the n-th update uses
``min(decay, (1 + n) / (10 + n))``, so early updates follow the model closely.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging


def _decay_at(decay: float, n: float) -> float:
    """The decay of the update after ``n`` earlier ones (the warm-up above)."""
    return min(decay, (1.0 + n) / (10.0 + n))


def warmup_ema(decay: float):
    """An ``AveragedModel`` average function: EMA whose decay warms up to ``decay``."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema decay: {decay} must be in [0, 1)")

    def avg_fn(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        if not averaged.is_floating_point():  # e.g. batch norm's num_batches_tracked
            return current
        d = _decay_at(decay, float(num_averaged))
        return averaged * d + current * (1.0 - d)

    return avg_fn


class WarmupEMA(WeightAveraging):
    """EMA of the weights with a warm-up of the decay (see the module docstring).

    Args:
        decay: the decay the warm-up reaches (0.99: about the last 100 steps count).
    """

    def __init__(self, decay: float = 0.99) -> None:
        super().__init__(use_buffers=True, avg_fn=warmup_ema(float(decay)))
        self.decay = float(decay)

    def average_in_place(self, averaged: list[torch.Tensor], current: list[torch.Tensor], n: int) -> None:
        """The update ``avg_fn`` makes, for many tensors at once: every ``averaged[i]``
        (an average that has had ``n`` updates) moves towards ``current[i]``.

        The batched engine calls it once per step for all its members' averages with
        the same ``n``, where ``AveragedModel.update_parameters`` would loop over every
        tensor of every member in Python. Multi-tensor (``torch._foreach_*``) products
        and sums round exactly as ``avg_fn``'s tensor operations do (tested bit for
        bit); non-float tensors (batch norm's ``num_batches_tracked``) take the current
        value, as there."""
        if n < 1:
            raise ValueError("average_in_place: the first update copies the weights (AveragedModel does it)")
        d = _decay_at(self.decay, float(n))
        pairs = [(a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()]
        others = [(a, c) for a, c in zip(averaged, current, strict=True) if not a.is_floating_point()]
        with torch.no_grad():
            if pairs:
                avg, cur = [a for a, _ in pairs], [c for _, c in pairs]
                new = torch._foreach_mul(avg, d)
                torch._foreach_add_(new, torch._foreach_mul(cur, 1.0 - d))
                torch._foreach_copy_(avg, new)
            for a, c in others:
                a.copy_(c)
