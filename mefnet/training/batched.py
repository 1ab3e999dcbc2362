"""K independent models trained together in one Lightning fit (``engine: batched``).

Each *member* is an ordinary :class:`~mefnet.training.module.MERModule` (one fold of one
seed) with its own data module, so it keeps everything a fold trained on its own has:

* its own training clips (its fold's training subjects only) and its own seeded loader
  (:class:`BatchedData` iterates the members' own loaders side by side, each exactly as
  a per-fold fit would: same order, same last partial batch);
* its own initialisation (built right after seeding, as a per-fold fit builds it) and its
  own random stream for dropout and augmentation: the global RNG is swapped to the
  member's state around its forward pass, so it draws what it would draw alone;
* its own batch-norm statistics (its own modules);
* its own inner validation (one validation loader per member; scores logged as
  ``val/<metric>/<member name>``) and its own number of epochs (a member that is done
  stops stepping while the others go on).

One optimizer holds every member's parameters. The losses of the members are summed
before one backward pass: the gradient of a member's parameters is exactly the gradient
of its own loss, and Adam, AdamW, SGD and the other per-parameter optimizers update each
parameter from its own gradient and state alone, so one step over the union is K
independent steps; a member with no batch at a step gets no gradient and is not updated.
(Optimizers that couple parameters, like LBFGS or global gradient clipping, do not have
this property and are refused by the engine.)

The members run one after the other inside a training step (a loop, not ``vmap``): it is
what keeps every member's dropout stream, batch-norm update and partial last batch
identical to a fit of its own, which ``torch.func.vmap`` cannot (its random draws differ
and all members would need batches of one size). What the engine saves is everything
around the arithmetic: process start, one Lightning fit and its hooks per fold, one
optimizer step per fold and step, data set-up.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import nn

from mefnet.data.datamodule import MERDataModule
from mefnet.training.module import MERModule


class BatchedMERModule(L.LightningModule):
    """Args:
    members: the K models, each built and seeded as a fit of its own would build it.
    names: one name per member (used in logged keys, e.g. ``val/uf1/<name>``).
    epochs: epochs each member trains (the fit runs the largest; the others stop).
    rng_states: each member's global CPU RNG state at the start of its training
        (``torch.get_rng_state()`` right after it was built).
    seeds: each member's seed (its CUDA stream starts from it, as after
        ``seed_everything``, when the fit runs on a GPU).
    optimizer, scheduler: partial optimizer / LR scheduler (as for ``MERModule``),
        completed with every member's parameters.
    """

    def __init__(
        self,
        members: Sequence[MERModule],
        names: Sequence[str],
        epochs: Sequence[int],
        rng_states: Sequence[torch.Tensor],
        seeds: Sequence[int],
        optimizer,
        scheduler=None,
    ) -> None:
        super().__init__()
        if not (len(members) == len(names) == len(epochs) == len(rng_states) == len(seeds)) or not members:
            raise ValueError("batched fit: one name, epoch count, RNG state and seed per member (at least one member)")
        self.members = nn.ModuleList(members)
        self.names = list(names)
        self.epochs = [int(e) for e in epochs]
        self._cpu_rng = [s.clone() for s in rng_states]
        self._device_rng: list[torch.Tensor | None] = [None] * len(members)
        self.seeds = [int(x) for x in seeds]
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    @contextmanager
    def member_rng(self, k: int) -> Iterator[None]:
        """Draw from member ``k``'s own random stream (CPU, and the CUDA device in use)."""
        cuda = self.device.type == "cuda"
        saved = torch.get_rng_state()
        saved_dev = torch.cuda.get_rng_state(self.device) if cuda else None
        torch.set_rng_state(self._cpu_rng[k])
        if cuda:
            if self._device_rng[k] is None:  # as after seed_everything(seed) in a fit of its own
                self._device_rng[k] = _cuda_state_for(self.seeds[k], self.device)
            torch.cuda.set_rng_state(self._device_rng[k], self.device)
        try:
            yield
        finally:
            self._cpu_rng[k] = torch.get_rng_state()
            torch.set_rng_state(saved)
            if cuda:
                self._device_rng[k] = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(saved_dev, self.device)

    def active(self, k: int) -> bool:
        return self.current_epoch < self.epochs[k]

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        total = None
        for k, b in enumerate(batch):
            if b is None or not self.active(k):
                continue
            with self.member_rng(k):
                loss, _ = self.members[k].train_loss(b)
            self.log(f"train/loss/{self.names[k]}", loss.detach(), on_step=False, on_epoch=True,
                      batch_size=len(b[1]))
            total = loss if total is None else total + loss
        return total

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.members[dataloader_idx].val_update(*batch)

    def on_validation_epoch_end(self) -> None:
        for k, member in enumerate(self.members):
            if member.val_loss.update_count == 0:
                continue
            for name, value in member.val_compute().items():
                self.log(f"val/{name}/{self.names[k]}", value)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self.members[dataloader_idx].predict_step(batch, batch_idx)

    def configure_optimizers(self):
        opt = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=opt)}}


def _cuda_state_for(seed: int, device: torch.device) -> torch.Tensor:
    """The CUDA generator state right after seeding with ``seed``."""
    saved = torch.cuda.get_rng_state(device)
    with torch.cuda.device(device):
        torch.cuda.manual_seed(seed)
        state = torch.cuda.get_rng_state(device)
    torch.cuda.set_rng_state(saved, device)
    return state


class BatchedData(L.LightningDataModule):
    """The members' data modules side by side.

    Training: every member's own training loader, iterated together (``max_size``: a
    member whose epoch has fewer batches gets ``None`` for the rest of it). Validation:
    one loader per member that has validation subjects, in member order (``validate``),
    or none. Prediction: one loader per member, its test subject.
    """

    def __init__(self, members: Sequence[MERDataModule], validate: bool = False) -> None:
        super().__init__()
        self.members = list(members)
        self.validate = validate

    def setup(self, stage: str | None = None) -> None:
        for dm in self.members:
            dm.setup(stage)

    def train_dataloader(self) -> CombinedLoader:
        return CombinedLoader([dm.train_dataloader() for dm in self.members], mode="max_size")

    def val_dataloader(self) -> list:
        return [dm.val_dataloader() for dm in self.members] if self.validate else []

    def predict_dataloader(self) -> list:
        return [dm.predict_dataloader() for dm in self.members]
