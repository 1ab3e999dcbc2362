"""K independent models trained together in one Lightning fit (``engine: batched``), their
forward and backward passes vectorised with :func:`torch.func.vmap`.

Each *member* is an ordinary :class:`~mefnet.training.module.MERModule` (one fold of one
seed) with its own data module and its own leaf parameters, so it keeps everything a
fold trained on its own has:

* its own training clips (its fold's training subjects only) and its own seeded loader
  (:class:`BatchedData` iterates the members' own loaders side by side, each exactly as
  a per-fold fit would: same order, same last partial batch);
* its own initialisation (built right after seeding, as a per-fold fit builds it) and its
  own random stream: its augmentation and its dropout masks are drawn from its own saved
  generator state, in the order a fit of its own draws them (see below);
* its own batch-norm statistics (its own buffers, updated by its own batches);
* its own loss (class priors of its own training clips; any task's: the member's
  ``loss_of``, for ``task=au`` and ``emotion_au`` too) and its own training loss, loss
  parts, UF1 and UAR per epoch where its task has them (logged as
  ``train/<metric>/<member name>``), its own inner validation (one
  validation loader per member; scores logged as ``val/<metric>/<member name>``), its own
  number of epochs (a member that is done stops stepping while the others go on) and,
  with a weight-averaging callback (``callbacks=ema``), its own average
  (:class:`mefnet.training.averaging.MemberAveraging`).

**One vectorised step.** At each training step the members that have a batch are grouped
by architecture and batch shape (a fold's last batch of an epoch is usually smaller, and
its size differs between folds). For each group the members' parameters and buffers are
stacked (``torch.stack``: differentiable, so each member's gradient flows back to its own
leaves) and one ``vmap(functional_call(template, ...))`` runs the whole group's forward
pass (the template: a copy of the member's ``network()``, its backbone); vmapped convolutions run as grouped convolutions, vmapped linear layers as batched
matrix products. Each member's loss is computed on its own slice of the logits; the
losses are summed and one backward pass gives every member exactly the gradient of its
own loss. Batch norm updates the stacked running statistics in place; the rows are copied
back to each member after the step.

**Random draws.** ``vmap`` cannot draw a member's dropout mask from that member's stream,
so the template's ``nn.Dropout`` modules are replaced by :class:`_MaskDropout`, which
multiplies by a mask drawn beforehand: for each member, under its own generator state,
first its augmentation, then one mask per dropout call in forward order, each drawn as
PyTorch's CPU dropout draws it (``bernoulli_(1 - p)`` over the input's shape, divided by
``1 - p``). The masks, and so the trained weights, are what a fit of its own would draw.
Any other random operation inside a backbone's forward makes ``vmap`` raise
(``randomness="error"``) rather than silently draw something else. On a GPU, PyTorch's
fused dropout kernel draws differently, so there the masks are the CPU algorithm's, drawn
from the member's own device stream: deterministic, but not the per-fold engine's masks.

**One optimizer.** One optimizer holds every member's parameters. Adam, AdamW, SGD and
the other per-parameter optimizers update each parameter from its own gradient and state
alone (Adam's step count and bias correction are per parameter tensor), and a member
without a batch at a step has no gradient (``None``) and is not touched: one step over
the union is K independent steps. Optimizers that couple parameters (LBFGS) are refused
by the engine; gradient clipping (``trainer.gradient_clip_val``) clips each member's
gradient on its own (:meth:`BatchedMERModule.configure_gradient_clipping`).

**One tensor per member.** For the optimizer (and the weight average) each member's
parameters are views into one flat tensor of its own, its float buffers into another, for
the length of the fit (:class:`_MemberStorage`): after the backward pass each stepping
member's gradients are gathered into its flat tensor's gradient, and the optimizer steps
K flat tensors instead of every member's every tensor (2,652 for 34 AM3F-FlowNets, whose
per-tensor dispatch cost ten times the arithmetic). The update of an element depends only
on its own gradient and state and on the member's step count, so the parameters are the
same bit for bit (``tests/test_batched.py``). At the end of the fit every tensor gets its
own storage back.

Validation and prediction run per member (each once per validated epoch, resp. once at
the end), in eval mode, exactly as in a fit of its own.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import nn
from torch.func import functional_call, vmap

from mefnet.data.datamodule import MERDataModule
from mefnet.training.module import MERModule, configure_optimizers


class _MaskFeed:
    """What the :class:`_MaskDropout` modules of one template read: the masks of the
    current vmapped call, in call order, or (``record``) a list to record their inputs'
    shapes in."""

    def __init__(self) -> None:
        self.masks: list[torch.Tensor] = []
        self.i = 0
        self.record: list[tuple[tuple[int, ...], float]] | None = None


class _MaskDropout(nn.Module):
    """``nn.Dropout`` with its mask given from outside (see the module docstring)."""

    def __init__(self, p: float, inplace: bool, feed: _MaskFeed) -> None:
        super().__init__()
        self.p = float(p)
        self.inplace = inplace
        self.__dict__["feed"] = feed  # shared, not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        feed = self.feed
        if feed.record is not None:
            feed.record.append((tuple(x.shape), self.p))
            return x
        mask = feed.masks[feed.i]
        feed.i += 1
        return x * mask


def _draw_mask(shape: tuple[int, ...], p: float, device: torch.device) -> torch.Tensor:
    """Dropout's mask, scaled, drawn from the global generator as ``F.dropout`` draws it
    on the CPU (``at::native::dropout``: ``bernoulli_(1 - p)`` over the input, ``/ (1 - p)``)."""
    if p == 1.0:
        return torch.zeros(shape, device=device)
    return torch.empty(shape, device=device).bernoulli_(1 - p).div_(1 - p)


class _Template:
    """A member's backbone as a stateless function: a copy whose parameters and buffers
    :func:`~torch.func.functional_call` replaces, its dropouts reading given masks."""

    def __init__(self, backbone: nn.Module) -> None:
        self.feed = _MaskFeed()
        self.module = copy.deepcopy(backbone)
        for name, sub in list(self.module.named_modules()):
            if type(sub) is nn.Dropout:
                parent, _, leaf = name.rpartition(".")
                setattr(self.module.get_submodule(parent) if parent else self.module, leaf,
                        _MaskDropout(sub.p, sub.inplace, self.feed))
        self.params = [n for n, _ in self.module.named_parameters()]
        self.buffers = [n for n, _ in self.module.named_buffers()]
        self._shapes: dict[tuple[int, ...], list[tuple[tuple[int, ...], float]]] = {}

    def dropout_shapes(self, backbone: nn.Module, x: torch.Tensor) -> list[tuple[tuple[int, ...], float]]:
        """The input shape and rate of every dropout call of a training forward pass of
        ``x``'s shape (found once per shape by running the template, nothing kept)."""
        key = tuple(x.shape)
        if key not in self._shapes:
            self.feed.record = []
            state = {n: t.detach().clone() for n, t in itertools.chain(backbone.named_parameters(),
                                                                         backbone.named_buffers())}
            try:
                self.module.train()
                with torch.no_grad():
                    functional_call(self.module, state, (torch.zeros_like(x),))
                self._shapes[key] = self.feed.record
            finally:
                self.feed.record = None
        return self._shapes[key]

    def __call__(self, params: dict, buffers: dict, x: torch.Tensor, masks: list) -> torch.Tensor:
        self.module.train()

        def one(p, b, xi, mi):
            self.feed.masks, self.feed.i = mi, 0
            return functional_call(self.module, {**p, **b}, (xi,))

        try:
            return vmap(one, randomness="error")(params, buffers, x, masks)
        finally:
            self.feed.masks = []


def _share_storage(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One contiguous tensor holding ``tensors``' values; each of them becomes a view of
    its part (``.data`` reassigned: the same tensor objects, now sharing that storage)."""
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    offset = 0
    for t in tensors:
        n = t.numel()
        t.data = flat[offset:offset + n].view_as(t)
        offset += n
    return flat


def _flat_float_buffers(module: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``module``'s float buffers that can share one storage (those of the first float
    buffer's dtype and device, in ``buffers()`` order), and the rest."""
    buffers = list(module.buffers())
    first = next((b for b in buffers if b.is_floating_point()), None)
    same = [b for b in buffers if first is not None and b.is_floating_point()
            and (b.dtype, b.device) == (first.dtype, first.device)]
    ids = {id(b) for b in same}
    return same, [b for b in buffers if id(b) not in ids]


def flat_state(module: nn.Module) -> list[torch.Tensor]:
    """``module``'s parameters and buffers as a few tensors, in ``AveragedModel``'s
    pairing order: its parameters' flat tensor, its float buffers' flat tensor (when it
    has any), then each remaining buffer; the module's own tensors become views of the
    flat ones (see :func:`_share_storage`). Two copies of one architecture give lists
    that pair element by element."""
    floats, others = _flat_float_buffers(module)
    out = [_share_storage(list(module.parameters()))]
    if floats:
        out.append(_share_storage(floats))
    return out + others


class _MemberStorage:
    """A member's parameters as views of one flat parameter (what the optimizer holds), its
    float buffers as views of one flat buffer, for the length of one fit.

    ``gather`` sets the flat parameter's gradient from the members' own gradients after
    a backward pass (None for a member that did not step, so the optimizer leaves it
    alone, as it leaves tensors without a gradient); ``release`` gives every tensor its
    own storage back."""

    def __init__(self, member: nn.Module, name: str = "") -> None:
        self.name = name
        self.param_names = [n for n, _ in member.named_parameters()]
        self.params = list(member.parameters())
        self.floats = _flat_float_buffers(member)[0]
        flat, *rest = flat_state(member)
        self.flat = nn.Parameter(flat)  # the same storage: the optimizer's steps land in the views
        self._state = [self.flat.detach(), *rest]

    @staticmethod
    def possible(member: nn.Module) -> bool:
        """Every parameter trainable, of one dtype and device, and every step's loss
        reaching every parameter (else the member keeps its tensors, and the optimizer
        holds them one by one, skipping those without a gradient as a fit of its own
        does: ``task=emotion_au``'s AU head gets none from a batch without an annotated
        clip, ``steps_reach_every_parameter`` false)."""
        params = list(member.parameters())
        return bool(params) and all(p.requires_grad for p in params) and \
            len({(p.dtype, p.device) for p in params}) == 1 and \
            bool(getattr(member, "steps_reach_every_parameter", True))

    def state(self) -> list[torch.Tensor]:
        """The member's tensors as :func:`flat_state` gives them (for the weight average)."""
        return self._state

    def gather(self, stepped: bool) -> None:
        """The flat gradient from the member's own, or None when it did not step. A
        stepping member's parameter without a gradient (its loss does not reach it) is
        refused: the flat step would move it (weight decay, say) where a step over the
        member's own tensors leaves it alone."""
        if not stepped:
            self.flat.grad = None
            return
        grads = [p.grad for p in self.params]
        missing = [n for n, g in zip(self.param_names, grads, strict=True) if g is None]
        if missing:
            raise RuntimeError(
                f"engine=batched: member {self.name}: parameters {', '.join(missing)} got no gradient from "
                "its loss; the batched engine steps all of a member's parameters together. Use "
                "engine=per_fold for a backbone with parameters its forward pass does not use")
        self.flat.grad = torch.cat([g.reshape(-1) for g in grads])

    def clear_grads(self) -> None:
        self.flat.grad = None
        for p in self.params:
            p.grad = None

    def release(self) -> None:
        for t in [*self.params, *self.floats]:
            t.data = t.data.clone()
            if isinstance(t, nn.Parameter):
                t.grad = None
        self.flat.grad = None


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
    architectures: one key per member naming its backbone configuration; members with
        the same key (and batch shape) run in one vmapped call. Default: the backbone's
        class and ``repr``.
    vectorize: False runs the members' training steps one after another instead (each
        member's own forward under its own random stream, summed losses, one backward):
        the same members, data, random draws and optimizer, without ``vmap``.
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
        architectures: Sequence[str] | None = None,
        vectorize: bool = True,
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
        if architectures is None:
            architectures = [f"{type(m.backbone).__qualname__}:{m.backbone!r}" for m in members]
        if len(architectures) != len(members):
            raise ValueError("batched fit: one architecture key per member")
        self.architectures = list(architectures)
        self.vectorize = bool(vectorize)
        self.__dict__["_templates"] = {}  # architecture -> _Template (not submodules: no parameters of their own)
        self.stepped: list[int] = []  # the members that took a training step in the last batch
        self._loss_sum: list = [0.0] * len(members)
        self._loss_n = [0] * len(members)
        self._parts: list[dict] = [{} for _ in members]  # this epoch's summed loss parts, per member
        self._preds: list[list[torch.Tensor]] = [[] for _ in members]  # this epoch's, per member
        self._targets: list[list[torch.Tensor]] = [[] for _ in members]
        self._epoch_logged = False  # this epoch's training figures logged (see on_train_batch_end)
        self._validated: set[int] = set()  # the members with validation batches since the last epoch end
        self.__dict__["_own"] = {}  # member -> (its parameters, its buffers), see _own_tensors
        self.__dict__["_storage"] = []  # per member: its _MemberStorage during a fit, or None

    @property
    def loss_sums(self) -> list:
        """Each member's summed training loss in the epoch so far (what divergence checks read)."""
        return self._loss_sum

    @property
    def loss_counts(self) -> list:
        """Each member's number of training samples in :attr:`loss_sums` (their mean: the loss)."""
        return self._loss_n

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

    def _template(self, k: int) -> _Template:
        key = self.architectures[k]
        if key not in self._templates:
            self._templates[key] = _Template(self.members[k].network())
        return self._templates[key]

    def _own_tensors(self, k: int, template: _Template) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Member ``k``'s parameters and buffers in the template's order (looked up once:
        walking the module tree at every step cost as much as the optimizer step). Built on
        the first training step, after Lightning moved the members to their device."""
        if k not in self._own:
            network = self.members[k].network()
            params, buffers = dict(network.named_parameters()), dict(network.named_buffers())
            self._own[k] = ([params[n] for n in template.params], [buffers[n] for n in template.buffers])
        return self._own[k]

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        if not self.vectorize:
            return self._looped_step(batch)
        # 1. Each member's augmentation and dropout masks, from its own stream, in the
        #    order a fit of its own draws them; members grouped by architecture and shape.
        groups: dict[tuple, list[tuple[int, torch.Tensor, torch.Tensor, list[torch.Tensor]]]] = {}
        for k, b in enumerate(batch):
            if b is None or not self.active(k):
                continue
            x, y = b
            member = self.members[k]
            template = self._template(k)
            with self.member_rng(k):
                x = member.augmented(x)
                masks = [_draw_mask(shape, p, x.device) for shape, p in template.dropout_shapes(member.network(), x)]
            groups.setdefault((self.architectures[k], tuple(x.shape)), []).append((k, x, y, masks))
        self.stepped = [k for group in groups.values() for k, *_ in group]
        # 2. One vmapped forward per group, each member's own loss on its own slice.
        total = None
        for (arch, _), group in groups.items():
            template = self._templates[arch]
            own = [self._own_tensors(g[0], template) for g in group]
            params = {n: torch.stack([p[i] for p, _ in own]) for i, n in enumerate(template.params)}
            buffers = {n: torch.stack([b[i] for _, b in own]) for i, n in enumerate(template.buffers)}
            x = torch.stack([g[1] for g in group])
            masks = [torch.stack(ms) for ms in zip(*(g[3] for g in group), strict=True)]
            outputs = template(params, buffers, x, masks)  # a tensor, or a tuple (task=emotion_au)
            if buffers:  # batch norm's updated running statistics back to each member, in one call
                with torch.no_grad():
                    torch._foreach_copy_([b[i] for i in range(len(template.buffers)) for _, b in own],
                                         [row for stacked in buffers.values() for row in stacked.unbind(0)])
            for j, (k, _, y, _) in enumerate(group):
                own = outputs[j] if isinstance(outputs, torch.Tensor) else type(outputs)(o[j] for o in outputs)
                loss = self.members[k].loss_of(own, y)
                self._count(k, loss, own, y)
                total = loss if total is None else total + loss
        return total

    def _count(self, k: int, loss: torch.Tensor, outputs, y: torch.Tensor) -> None:
        """Member ``k``'s batch into its epoch's training loss, its loss parts
        (:meth:`MERModule.loss_parts`) and, for a member with training scores
        (:meth:`MERModule.train_metrics`; none for ``task=au``), its predictions."""
        member = self.members[k]
        self._loss_sum[k] = self._loss_sum[k] + loss.detach() * len(y)
        self._loss_n[k] += len(y)
        for key, value in member.loss_parts(outputs, y).items():
            self._parts[k][key] = self._parts[k].get(key, 0.0) + value.detach() * len(y)
        if member.train_metrics():
            with torch.no_grad():
                preds, labels = member.train_predictions(outputs, y)
            self._preds[k].append(preds)
            self._targets[k].append(labels)

    def _looped_step(self, batch) -> torch.Tensor | None:
        total = None
        self.stepped = []
        for k, b in enumerate(batch):
            if b is None or not self.active(k):
                continue
            x, y = b
            member = self.members[k]
            with self.member_rng(k):
                loss, outputs = member.step_loss(x, y)
            self.stepped.append(k)
            self._count(k, loss, outputs, y)
            total = loss if total is None else total + loss
        return total

    def on_train_epoch_start(self) -> None:
        self._loss_sum = [0.0] * len(self.members)
        self._loss_n = [0] * len(self.members)
        self._parts = [{} for _ in self.members]
        self._preds = [[] for _ in self.members]
        self._targets = [[] for _ in self.members]
        self._epoch_logged = False

    def _log_training(self) -> None:
        """Each member's epoch: its mean training loss and, from its own training metrics
        (:meth:`MERModule.train_metrics`: UF1 and UAR; none for ``task=au``), its training
        scores (``train/<metric>/<name>``), as a fit of its own logs them. The metrics are fed once per epoch with the epoch's
        predictions, which gives what one update per batch gives, at a fraction of the
        calls."""
        self._epoch_logged = True
        for k, name in enumerate(self.names):
            if not self._loss_n[k]:
                continue
            self.log(f"train/loss/{name}", self._loss_sum[k] / self._loss_n[k],
                     on_step=False, on_epoch=True, batch_size=1)
            for key, total in self._parts[k].items():
                self.log(f"train/{key}/{name}", total / self._loss_n[k], on_step=False, on_epoch=True, batch_size=1)
            metrics = self.members[k].train_metrics()
            if not metrics:
                continue
            preds, targets = torch.cat(self._preds[k]), torch.cat(self._targets[k])
            self._preds[k], self._targets[k] = [], []
            for key, metric in metrics.items():
                metric.update(preds, targets)
                self.log(f"train/{key}/{name}", metric.compute(), on_step=False, on_epoch=True, batch_size=1)
                metric.reset()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # Each member's epoch loss, logged at the epoch's last batch: Lightning runs the
        # callbacks' on_train_epoch_end (the heartbeats) before this module's, so a value
        # logged there would reach them, and running.json, one epoch late (as NaN at epoch 1).
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self._log_training()

    def on_train_epoch_end(self) -> None:
        if not self._epoch_logged:  # a loader of unknown length
            self._log_training()

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.members[dataloader_idx].val_update(*batch)
        self._validated.add(dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        # Only the members that got validation batches this time (any task's member keeps
        # its own scores until val_compute).
        for k in sorted(self._validated):
            for name, value in self.members[k].val_compute().items():
                self.log(f"val/{name}/{self.names[k]}", value)
        self._validated = set()

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self.members[dataloader_idx].predict_step(batch, batch_idx)

    def member_state(self, k: int) -> list[torch.Tensor] | None:
        """Member ``k``'s tensors as flat ones (see :class:`_MemberStorage`), or None."""
        storage = self._storage[k] if k < len(self._storage) else None
        return storage.state() if storage is not None else None

    def _optimized_tensors(self) -> list[torch.Tensor]:
        """Each member's flat parameter (its tensors become views of it), and any other
        parameter as it is. Built after Lightning moved the members to their device."""
        self.__dict__["_storage"] = [_MemberStorage(m, name) if _MemberStorage.possible(m) else None
                                     for m, name in zip(self.members, self.names, strict=True)]
        flat = {id(p) for s in self._storage if s is not None for p in s.params}
        return [s.flat for s in self._storage if s is not None] + \
            [p for p in self.parameters() if id(p) not in flat]

    def on_after_backward(self) -> None:
        stepped = set(self.stepped)
        for k, storage in enumerate(self._storage):
            if storage is not None:
                storage.gather(k in stepped)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer) -> None:
        optimizer.zero_grad()
        for storage in self._storage:
            if storage is not None:
                storage.clear_grads()

    def on_train_end(self) -> None:
        for storage in self._storage:
            if storage is not None:
                storage.release()
        self.__dict__["_storage"] = []

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """``trainer.gradient_clip_val``: each member's gradient clipped on its own, as its
        own fit clips it (Lightning would clip every member's tensors together, so one
        member's large gradient would shrink every other member's step). A member that did
        not step has no gradient and is left alone."""
        if not gradient_clip_val or gradient_clip_val <= 0:
            return
        algorithm = str(getattr(gradient_clip_algorithm, "value", gradient_clip_algorithm) or "norm").lower()
        for member, storage in zip(self.members, self._storage, strict=True):
            tensors = [storage.flat] if storage is not None else list(member.parameters())
            if algorithm == "value":
                torch.nn.utils.clip_grad_value_(tensors, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(tensors, gradient_clip_val)

    def configure_optimizers(self):
        # one optimizer over the members' flat parameters (see the module doc), built as a
        # member's own fit builds it; the multi-tensor step, as K members hold many tensors
        return configure_optimizers(self.optimizer_factory, self.scheduler_factory, self._optimized_tensors(),
                                    foreach=True)


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
