"""LightningModule: a backbone, a loss, an optimizer and the UF1 / UAR metrics.

Training logs ``train/loss``, ``train/uf1`` and ``train/uar`` per epoch. Validation
(only ever on inner-validation subjects, which are training subjects: see
:mod:`mefnet.training.selection`) logs ``val/loss`` (plain cross-entropy on the
logits), ``val/uf1``, ``val/uar`` and ``val/accuracy`` per epoch. There is no test
loop: the test subject is predicted once, after training, with ``trainer.predict``, and
scores are computed by the report over the pooled predictions of all folds (per-fold
scores are not what the field reports). Every score is a torchmetrics metric; the
pooled table equals them (``tests/test_metrics.py``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall

from mefnet.config import ConfigError
from mefnet.training.augment import mirror_averaged

VAL_METRICS = ("loss", "uf1", "uar", "accuracy")
# What mefnet hands the module of the ``model`` group when a fold builds it (by keyword,
# :func:`mefnet.experiment.fitting.build_module`): built from the other groups and the
# fold, so never keys of ``model`` itself.
MODULE_ARGS = ("backbone", "loss", "optimizer", "num_classes", "class_names", "scheduler", "augment",
               "test_time_mirror")


def val_metrics(num_classes: int) -> MetricCollection:
    """The validation scores (macro F1, macro recall, accuracy), torchmetrics' definitions."""
    return MetricCollection({
        "uf1": MulticlassF1Score(num_classes=num_classes, average="macro"),
        "uar": MulticlassRecall(num_classes=num_classes, average="macro"),
        "accuracy": MulticlassAccuracy(num_classes=num_classes, average="micro"),
    })


class MERModule(L.LightningModule):
    """Args:
    backbone: maps ``(B, 3, H, W)`` input maps to ``(B, num_classes)`` logits.
    loss: a built loss module, called ``loss(logits, targets)``.
    optimizer: a partial optimizer (``torch.optim.Adam`` with its settings), completed
        here with the parameters.
    num_classes: number of classes.
    scheduler: optional partial LR scheduler, completed with the optimizer.
    augment: a module applied to training batches only (e.g.
        :class:`~mefnet.training.augment.FlowAugment`: mirror, shift, zoom, rotation with
        the flow vectors turned accordingly). None: no augmentation. Prediction and
        validation never augment.
    test_time_mirror: a :class:`~mefnet.training.augment.FlowAugment` whose ``mirror``
        gives the maps of the mirrored face: prediction then averages the class
        probabilities of each clip and of its mirror image (a face and its mirror image
        show the same expression). None: the clip alone.
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_classes: int,
        class_names: Sequence[str] | None = None,
        scheduler: Callable[..., object] | None = None,
        augment: nn.Module | None = None,
        test_time_mirror: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "loss", "optimizer", "scheduler", "augment",
                                          "test_time_mirror"])
        self.augment = augment
        self.test_time_mirror = test_time_mirror
        self.backbone = backbone
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.train_uf1 = MulticlassF1Score(num_classes=num_classes, average="macro")
        self.train_uar = MulticlassRecall(num_classes=num_classes, average="macro")
        self.val_scores = val_metrics(num_classes)
        self.val_loss = MeanMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    # The training step (augment, forward, loss) is these methods, which both engines
    # call: a fold fitted on its own through step_loss; the batched engine's looped path
    # through step_loss under each member's random stream, its vmapped path through
    # augmented and loss_of with one vectorised forward pass of the members' networks in
    # between (mefnet.training.batched); both read train_predictions and loss_parts for
    # the logged figures. A subclass changes the step for both engines here.

    def network(self) -> nn.Module:
        """The module a training step's forward pass runs: input maps to the outputs
        :meth:`loss_of` takes (the backbone here; the batched engine vectorises it)."""
        return self.backbone

    def augmented(self, x: torch.Tensor) -> torch.Tensor:
        """A training batch's input maps as the step sees them (``augment``, when configured;
        draws from the global RNG)."""
        return x if self.augment is None else self.augment(x)

    def loss_of(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch's network outputs (here the logits)."""
        return self.loss_fn(outputs, y)

    def step_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step's loss and network outputs: augment, forward, loss (no metric
        updated)."""
        outputs = self.network()(self.augmented(x))
        return self.loss_of(outputs, y), outputs

    def train_predictions(self, outputs: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted classes, true classes) of a training batch, for :meth:`train_metrics`."""
        return outputs.argmax(dim=-1), y

    def loss_parts(self, outputs: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Parts of a batch's training loss logged per epoch as ``train/<key>`` (none here)."""
        return {}

    def train_loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss of one batch (augmented as configured) and its predictions.
        Updates the training metrics; draws dropout and augmentation from the global RNG."""
        x, y = batch
        loss, outputs = self.step_loss(x, y)
        preds, labels = self.train_predictions(outputs, y)
        self.train_uf1(preds, labels)
        self.train_uar(preds, labels)
        for key, value in self.loss_parts(outputs, y).items():
            self.log(f"train/{key}", value, on_step=False, on_epoch=True, batch_size=len(y))
        return loss, preds

    def train_metrics(self) -> dict[str, Metric]:
        """The training scores logged per epoch as ``train/<key>``, fed with the batches'
        predicted classes (the batched engine logs each member's from these)."""
        return {"uf1": self.train_uf1, "uar": self.train_uar}

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, _ = self.train_loss(batch)
        y = batch[1]
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("train/uf1", self.train_uf1, on_step=False, on_epoch=True)
        self.log("train/uar", self.train_uar, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.val_update(*batch)

    def on_validation_epoch_end(self) -> None:
        for name, value in self.val_compute().items():
            self.log(f"val/{name}", value)

    def val_update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Score one batch of validation clips (the module is in eval mode; the plain
        logits, no augmentation, no test-time mirror)."""
        logits = self(x).float()
        self.val_loss.update(F.cross_entropy(logits, y), weight=len(y))
        self.val_scores.update(logits.argmax(dim=1), y)

    def val_compute(self) -> dict[str, torch.Tensor]:
        """The scores of the validation clips seen since the last call (then reset)."""
        scores = {"loss": self.val_loss.compute(), **self.val_scores.compute()}
        self.val_loss.reset()
        self.val_scores.reset()
        return {k: scores[k] for k in VAL_METRICS}

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities from the plain logits (whatever the loss adjusted during
        training), averaged with those of the mirrored face under ``test_time_mirror``."""
        return mirror_averaged(lambda maps: torch.softmax(self(maps), dim=1), x, self.test_time_mirror)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self.probabilities(batch[0])

    def configure_optimizers(self):
        return configure_optimizers(self.optimizer_factory, self.scheduler_factory, self.parameters())


def configure_optimizers(optimizer: Callable[..., torch.optim.Optimizer], scheduler: Callable[..., object] | None,
                         params: Iterable[torch.Tensor], foreach: bool = False):
    """What a LightningModule's ``configure_optimizers`` returns: the partial ``optimizer``
    completed with ``params`` and, when given, the partial ``scheduler`` completed with it.
    The one place both engines build them (per fold over a member's parameters; batched
    over the members' flat parameters, :class:`mefnet.training.batched.BatchedMERModule`).

    ``foreach``: ask the optimizer for its multi-tensor implementation when it takes one and
    was not told otherwise (see :func:`_foreach_default`)."""
    opt = optimizer(params=params, **(_foreach_default(optimizer) if foreach else {}))
    if scheduler is None:
        return opt
    return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler(optimizer=opt)}}


def _foreach_default(factory: Callable[..., torch.optim.Optimizer]) -> dict:
    """``foreach=True`` for an optimizer that takes it and was not told otherwise.

    On the CPU PyTorch's optimizers default to a Python loop over the parameter tensors
    (``foreach`` is the default on GPUs only); one batched fit holds K members' tensors
    (2,652 for 34 AM3F-FlowNets), so that loop cost a tenth of a training step. The
    multi-tensor implementation does the same arithmetic (Adam, AdamW and SGD give
    bit-identical parameters, ``tests/test_batched.py``) and skips tensors without a
    gradient as the loop does."""
    func = getattr(factory, "func", factory)
    given = getattr(factory, "keywords", {}) or {}
    try:
        accepts = "foreach" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        accepts = False
    return {"foreach": True} if accepts and given.get("foreach") is None else {}


def module_class(target: object) -> type[MERModule]:
    """The class ``model._target_`` names (``conf/model/``), or a :class:`ConfigError`
    naming the key: it must import, and be a :class:`MERModule` (a subclass of its own is a
    user's LightningModule), since both engines, the inner validation and the fold's
    outputs use its interface (``backbone``, ``step_loss`` / ``augmented`` / ``loss_of``,
    ``val_update``, ``probabilities``)."""
    if not isinstance(target, str) or "." not in target:
        raise ConfigError(f"model._target_: {target!r} is not a class path (module.Class); the model group "
                          "(conf/model/) names the LightningModule to build, e.g. mefnet.training.module.MERModule")
    path, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(path), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"model._target_: cannot import {target} ({type(e).__name__}: {e}); is its package "
                          "installed or on PYTHONPATH?") from None
    if not (isinstance(cls, type) and issubclass(cls, L.LightningModule)):
        raise ConfigError(f"model._target_: {target} is not a LightningModule class")
    if not issubclass(cls, MERModule):
        raise ConfigError(f"model._target_: {target} is a LightningModule but not a subclass of "
                          "mefnet.training.module.MERModule, whose interface mefnet trains and predicts with "
                          "(docs/recipes.md, \"Your own LightningModule\")")
    return cls


# The methods of a MERModule that a subclass may override and still train the same under
# both engines: engine=batched calls a member's augmented, network (vectorised), loss_of,
# loss_parts, train_predictions and train_metrics, and its validation and prediction
# methods; nothing else of a member's training (not training_step, forward, step_loss,
# train_loss, configure_optimizers nor Lightning's hooks).
BATCHED_OVERRIDABLE = ("__init__", "augmented", "network", "loss_of", "loss_parts", "train_predictions",
                       "train_metrics", "val_update", "val_compute", "probabilities", "predict_step")


def batched_overrides(cls: type[MERModule]) -> list[str]:
    """The methods of MERModule (and so of Lightning) that a user's subclass ``cls``
    overrides and engine=batched would not call (empty: it trains ``cls`` as engine=per_fold
    does). mefnet's own modules are not judged here: the batched engine knows them."""
    found: list[str] = []
    for klass in cls.__mro__:
        if klass is MERModule or issubclass(MERModule, klass):
            break
        if klass.__module__.split(".")[0] == "mefnet":
            continue
        found += [name for name, value in vars(klass).items() if callable(value) and hasattr(MERModule, name)
                  and name not in BATCHED_OVERRIDABLE and name not in found]
    return found
