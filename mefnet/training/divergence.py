"""Diverged training stops the fold: a non-finite loss, weight or probability is an error.

A NaN loss does not stop PyTorch: the weights turn NaN, every prediction becomes class 0
(``argmax`` of NaN) and a results table would print a number. :class:`FiniteCheck` fails
the fold at the first non-finite loss (and checks the weights after every epoch);
:func:`check_finite_weights` and :func:`check_finite_probabilities` guard the model and
the predictions once more before anything is written.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from mefnet.utils.cli import UserError

HINT = ("training diverged; try a lower learning rate (optimizer.lr), another loss, or check "
        "the input maps for extreme values")


class DivergedError(UserError, RuntimeError):
    """Training produced a non-finite loss, weight or probability: the fold has no result."""


def non_finite_parameters(model: nn.Module) -> list[str]:
    """Names of the parameters and buffers holding a NaN or an infinity."""
    named = list(model.named_parameters()) + list(model.named_buffers())
    return [n for n, t in named if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def check_finite_weights(model: nn.Module, where: str) -> None:
    bad = non_finite_parameters(model)
    if bad:
        shown = ", ".join(bad[:5]) + (f" ... ({len(bad)} in all)" if len(bad) > 5 else "")
        raise DivergedError(f"{where}: non-finite weights in {shown}; {HINT}")


def check_finite_probabilities(probs: torch.Tensor, where: str) -> None:
    if not bool(torch.isfinite(probs).all()):
        rows = (~torch.isfinite(probs)).any(dim=1).nonzero().flatten().tolist()
        raise DivergedError(f"{where}: non-finite class probabilities for {len(rows)} of {len(probs)} "
                            f"clips; {HINT}")


class FiniteCheck(L.Callback):
    """Raise :class:`DivergedError` at the first non-finite training loss, naming the fold,
    the epoch and the loss value, and at the end of an epoch that left non-finite weights."""

    def __init__(self, fold: str) -> None:
        self.fold = fold

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = float(loss.detach())
        if not math.isfinite(value):
            raise DivergedError(
                f"fold {self.fold}: the training loss is {value} at epoch {trainer.current_epoch + 1} "
                f"(batch {batch_idx + 1}); {HINT}. No predictions were written for this fold."
            )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        check_finite_weights(pl_module, f"fold {self.fold}, epoch {trainer.current_epoch + 1}")


class MemberFiniteCheck(L.Callback):
    """:class:`FiniteCheck` for the members of the batched engine's fit
    (:class:`~mefnet.training.batched.BatchedMERModule`): a non-finite summed loss stops
    the fit naming the members (folds) whose own loss is not finite, and every member's
    weights are checked after every epoch. No fold of the fit writes predictions then."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = float(loss.detach())
        if math.isfinite(value):
            return
        bad = [pl_module.names[k] for k in pl_module.stepped if not math.isfinite(float(pl_module.loss_sums[k]))]
        bad = bad or [pl_module.names[k] for k in pl_module.stepped]
        others = len(pl_module.names) - len(bad)
        raise DivergedError(
            f"fold{'s' if len(bad) > 1 else ''} {', '.join(bad)}: the training loss is {value} at epoch "
            f"{trainer.current_epoch + 1} (batch {batch_idx + 1}); {HINT}. No predictions were written for "
            f"{'these folds' if len(bad) > 1 else 'this fold'}"
            + (f" nor for the {others} other fold(s) trained with {'them' if len(bad) > 1 else 'it'}." if others else ".")
        )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for name, member in zip(pl_module.names, pl_module.members, strict=True):
            check_finite_weights(member, f"fold {name}, epoch {trainer.current_epoch + 1}")

