"""Weight averaging for small micro-expression training sets.

A LOSO fold trains on a few hundred clips: an epoch is a handful of optimizer steps and
the weights still move a lot from one step to the next. :class:`WarmupEMA` keeps an
exponential moving average of the weights (parameters and batch-norm statistics) and
hands it to the model for validation and at the end of training: :class:`WarmupEMA` is a
Lightning :class:`~lightning.pytorch.callbacks.WeightAveraging` (so it is a callback in the
config: ``callbacks=ema``) that says when to update and how, and :class:`MemberAveraging`
applies it to each member of a fit, under both engines (the runner wraps it).

Plain EMA with decay 0.99 over a fold of ~120 steps would still give the weights of the
first step about 30% of the average. The decay therefore warms up as in
TensorFlow's ``ExponentialMovingAverage(num_updates=...)``: the n-th update uses
``min(decay, (1 + n) / (10 + n))``, so early updates follow the model closely.
"""

from __future__ import annotations

import itertools
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch import nn
from torch.optim.swa_utils import AveragedModel

from mefnet.training.batched import flat_state


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


class MemberAveraging(L.Callback):
    """The one weight-averaging path of both engines: a weight-averaging callback
    (Lightning's :class:`WeightAveraging`, e.g. :class:`WarmupEMA`, which says when to
    update and how) applied to every member of a fit on its own.

    The members are the module itself for a fold fitted on its own (K=1), or the members
    of the batched engine's :class:`~mefnet.training.batched.BatchedMERModule`. Each has
    its own average (an ``AveragedModel``), updated after its own optimizer steps only
    (its own step count drives the EMA warm-up; a batched member without a batch does not
    step), swapped in for validation and copied into the member at the end of training,
    as Lightning's callback does for a module of its own. For one member the average
    also goes into a Lightning checkpoint as Lightning's callback puts it there
    (``state_dict`` the average, ``current_model_state`` the trained weights,
    ``averaging_state``, the callback's ``latest_update_step`` under its own key), for a
    user's own checkpoint callback (a fold's ``model.ckpt`` is written by
    :func:`mefnet.runs.store.write_checkpoint` from the averaged weights)."""

    def __init__(self, averaging: WeightAveraging) -> None:
        self.averaging = averaging
        self.models: list[AveragedModel] = []
        self.steps: list[int] = []
        self.latest_epoch = -1
        self.latest_update_step = 0  # the trainer's optimizer steps at the last update (one member)
        self._views: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]] | None] = {}

    @property
    def state_key(self) -> str:
        return self.averaging.state_key

    @staticmethod
    def _batched(pl_module: L.LightningModule) -> bool:
        return isinstance(getattr(pl_module, "members", None), nn.ModuleList)

    def _members(self, pl_module: L.LightningModule) -> list[nn.Module]:
        return list(pl_module.members) if self._batched(pl_module) else [pl_module]

    def _step_indices(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[tuple[int, int]]:
        """(member, index of its last optimizer step) for the members that may update now:
        the batched module says which members stepped, each counting its own steps; one
        module counts the trainer's optimizer steps, as Lightning's callback does
        (gradient accumulation included)."""
        if not self._batched(pl_module):
            return [(0, trainer.global_step - 1)] if trainer.global_step > self.latest_update_step else []
        out = []
        for k in pl_module.stepped:
            self.steps[k] += 1
            out.append((k, self.steps[k] - 1))
        return out

    def _active(self, pl_module: L.LightningModule, k: int) -> bool:
        return pl_module.active(k) if self._batched(pl_module) else True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            device = self.averaging._device or pl_module.device
            self.models = [AveragedModel(model=m, device=device, use_buffers=self.averaging._use_buffers,
                                         **self.averaging._kwargs) for m in self._members(pl_module)]
            self.steps = [0] * len(self.models)
            self._views = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        members = self._members(pl_module)
        due = [k for k, step in self._step_indices(trainer, pl_module) if self.averaging.should_update(step_idx=step)]
        if due and not self._batched(pl_module):
            self.latest_update_step = trainer.global_step
        in_place = getattr(self.averaging, "average_in_place", None)
        if in_place is None:
            for k in due:
                self.models[k].update_parameters(members[k])
            return
        # The members whose averages had the same number of updates share the decay: one
        # multi-tensor update for all of them (the same arithmetic as update_parameters,
        # without its Python loop over every tensor of every member).
        by_count: dict[int, list[int]] = {}
        for k in due:
            n = int(self.models[k].n_averaged)
            if n == 0 or self._tensors(k, pl_module) is None:
                # the first update copies the member's weights; an average kept on another
                # device than the member needs AveragedModel to move them
                self.models[k].update_parameters(members[k])
            else:
                by_count.setdefault(n, []).append(k)
        for n, ks in by_count.items():
            in_place([a for k in ks for a in self._views[k][0]], [c for k in ks for c in self._views[k][1]], n)
            for k in ks:
                self.models[k].n_averaged += 1

    def _tensors(self, k: int, pl_module: L.LightningModule) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        """Member ``k``'s average and its own weights (parameters, then buffers, as
        ``AveragedModel`` pairs them), detached views, looked up once; None when the
        average lives on another device than the member."""
        if k not in self._views:
            member_state = getattr(pl_module, "member_state", None)
            flat = member_state(k) if member_state is not None else None
            if flat is not None:  # the member's tensors share one storage: so do its average's
                avg, cur = [t.detach() for t in flat_state(self.models[k].module)], flat
            else:
                member = self._members(pl_module)[k]
                avg = [t.detach() for t in itertools.chain(self.models[k].module.parameters(),
                                                           self.models[k].module.buffers())]
                cur = [t.detach() for t in itertools.chain(member.parameters(), member.buffers())]
            same = len(avg) == len(cur) and all(a.device == c.device for a, c in zip(avg, cur, strict=False))
            self._views[k] = (avg, cur) if same else None
        return self._views[k]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if epoch > self.latest_epoch and self.averaging.should_update(epoch_idx=epoch):
            for k, (avg, member) in enumerate(zip(self.models, self._members(pl_module), strict=True)):
                if self._active(pl_module, k):
                    avg.update_parameters(member)
            self.latest_epoch = epoch

    @staticmethod
    def _pairs(avg: AveragedModel, member: nn.Module):
        return zip(itertools.chain(avg.module.parameters(), avg.module.buffers()),
                   itertools.chain(member.parameters(), member.buffers()), strict=True)

    def _swap(self, pl_module: L.LightningModule) -> None:
        for avg, member in zip(self.models, self._members(pl_module), strict=True):
            for a, c in self._pairs(avg, member):
                tmp = a.data.clone()
                a.data.copy_(c.data)
                c.data.copy_(tmp)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.models:
            self._swap(pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.models:
            self._swap(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for avg, member in zip(self.models, self._members(pl_module), strict=True):
            for a, c in self._pairs(avg, member):
                c.data.copy_(a.data)

    def state_dict(self) -> dict[str, Any]:
        return {"latest_update_step": self.latest_update_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.latest_update_step = state_dict["latest_update_step"]

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # One module's Lightning checkpoint (a user's ModelCheckpoint) holds its average as
        # Lightning's callback writes it; a batched fit has no one module to write.
        if len(self.models) != 1 or self._batched(pl_module):
            return
        state = self.models[0].state_dict()
        checkpoint["current_model_state"] = checkpoint["state_dict"]
        checkpoint["state_dict"] = {n[7:]: v for n, v in state.items() if n.startswith("module.")}
        checkpoint["averaging_state"] = {n: v for n, v in state.items() if not n.startswith("module.")}
