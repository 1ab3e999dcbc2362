"""Diverged training stops the fold: a non-finite loss, weight or probability is an error.

A NaN loss does not stop PyTorch: the weights turn NaN, every prediction becomes class 0
(``argmax`` of NaN) and a results table would print a number. :class:`FiniteCheck` fails
the fold at the first non-finite loss (and checks the weights after every epoch), under
either engine;
:func:`check_finite_weights` and :func:`check_finite_probabilities` guard the model and
the predictions once more before anything is written.
"""

from __future__ import annotations

import logging
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
    """Raise :class:`DivergedError` naming the non-finite parameters of ``model``; ``where``
    says which fold and when."""
    bad = non_finite_parameters(model)
    if bad:
        shown = ", ".join(bad[:5]) + (f" ... ({len(bad)} in all)" if len(bad) > 5 else "")
        raise DivergedError(f"{where}: non-finite weights in {shown}; {HINT}")


def check_finite_probabilities(probs: torch.Tensor, where: str) -> None:
    """Raise :class:`DivergedError` if any clip's class probabilities are not finite."""
    if not bool(torch.isfinite(probs).all()):
        rows = (~torch.isfinite(probs)).any(dim=1).nonzero().flatten().tolist()
        raise DivergedError(f"{where}: non-finite class probabilities for {len(rows)} of {len(probs)} "
                            f"clips; {HINT}")


# A finite loss can still explode (Adam at lr=1e8 reached 1.5e17): above this, or this many
# times the first epoch's mean loss, the fold is said to diverge (a warning, kept in fold.json).
DIVERGING_LOSS = 1e6
DIVERGING_RATIO = 100.0

_log = logging.getLogger("mefnet")


class LossWatch:
    """A fold's mean training loss per epoch, and the warning once it explodes while still
    finite: set on the fold's module as ``training_warnings`` (what ``fold.json`` records)."""

    def __init__(self, fold: str) -> None:
        self.fold = fold
        self.first: float | None = None
        self.total = 0.0
        self.batches = 0
        self.warned = False

    def add(self, value: float, weight: float = 1.0) -> None:
        """One batch's mean loss (``value``), or a loss sum over ``weight`` samples."""
        self.total += value
        self.batches += weight

    def end_epoch(self, epoch: int, module: nn.Module) -> None:
        if not self.batches:
            return
        mean = self.total / self.batches
        self.total, self.batches = 0.0, 0
        if self.first is None:
            self.first = mean
        if self.warned or not math.isfinite(mean):
            return
        if mean > DIVERGING_LOSS or (self.first > 0 and mean > DIVERGING_RATIO * self.first):
            self.warned = True
            text = (f"fold {self.fold}: the training loss diverges: mean {mean:.4g} at epoch {epoch} "
                    f"(epoch 1: {self.first:.4g}); its predictions are likely meaningless; {HINT}")
            _log.warning(text)
            module.__dict__.setdefault("training_warnings", []).append(text)


def training_warnings(module: nn.Module) -> list[str]:
    """The warnings :class:`LossWatch` left on a fold's module (empty: none)."""
    return list(module.__dict__.get("training_warnings", []))


class FiniteCheck(L.Callback):
    """Raise :class:`DivergedError` at the first non-finite training loss, naming the
    fold(s), the epoch and the loss value, and at the end of an epoch that left non-finite
    weights; warn (:class:`LossWatch`) when a finite loss explodes.

    One check for both engines, over the fit's members: ``FiniteCheck(fold)`` watches a
    module that is one fold (K=1: the member is the module itself, its loss the batch's);
    ``FiniteCheck()`` watches the members of the batched engine's fit
    (:class:`~mefnet.training.batched.BatchedMERModule`: ``names``, ``members``, the
    members that ``stepped`` in the batch and their running ``loss_sums`` /
    ``loss_counts``). A non-finite summed loss there stops the fit naming the members
    (folds) whose own loss is not finite; no fold of the fit writes predictions then."""

    def __init__(self, fold: str | None = None) -> None:
        self.fold = fold
        self.watches: dict[int, LossWatch] = {}
        self.sums: dict[int, tuple[float, float]] = {}

    def _names(self, pl_module) -> list[str]:
        return list(pl_module.names) if self.fold is None else [self.fold]

    def _members(self, pl_module) -> list[nn.Module]:
        return list(pl_module.members) if self.fold is None else [pl_module]

    def _stepped(self, pl_module) -> list[int]:
        return list(pl_module.stepped) if self.fold is None else [0]

    def _batch_losses(self, pl_module, value: float) -> list[tuple[int, float, float]]:
        """Each stepping member's loss in this batch, as (member, loss sum, its weight):
        one fold's batch mean (weight 1), or a member's part of the batched module's
        running sums."""
        if self.fold is not None:
            return [(0, value, 1.0)]
        out = []
        for k in pl_module.stepped:
            total, n = float(pl_module.loss_sums[k]), float(pl_module.loss_counts[k])
            before, n_before = self.sums.get(k, (0.0, 0.0))
            self.sums[k] = (total, n)
            out.append((k, total - before, n - n_before))
        return out

    def _diverged(self, pl_module, k: int) -> bool:
        """Whether member ``k``'s own loss is not finite (a batched member's running sum)."""
        return self.fold is None and not math.isfinite(float(pl_module.loss_sums[k]))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = float(loss.detach())
        names = self._names(pl_module)
        if math.isfinite(value):
            for k, total, n in self._batch_losses(pl_module, value):
                self.watches.setdefault(k, LossWatch(names[k])).add(total, n)
            return
        stepped = self._stepped(pl_module)
        bad = [names[k] for k in stepped if self._diverged(pl_module, k)] or [names[k] for k in stepped]
        others = len(names) - len(bad)
        raise DivergedError(
            f"fold{'s' if len(bad) > 1 else ''} {', '.join(bad)}: the training loss is {value} at epoch "
            f"{trainer.current_epoch + 1} (batch {batch_idx + 1}); {HINT}. No predictions were written for "
            f"{'these folds' if len(bad) > 1 else 'this fold'}"
            + (f" nor for the {others} other fold(s) trained with {'them' if len(bad) > 1 else 'it'}." if others else ".")
        )

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.sums = {}  # the batched module's running sums restart with every epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        members = self._members(pl_module)
        for name, member in zip(self._names(pl_module), members, strict=True):
            check_finite_weights(member, f"fold {name}, epoch {trainer.current_epoch + 1}")
        for k, watch in self.watches.items():
            watch.end_epoch(trainer.current_epoch + 1, members[k])
