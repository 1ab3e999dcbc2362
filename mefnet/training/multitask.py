"""The multi-task option's LightningModule (``task=emotion_au``): the emotion backbone
as :class:`~mefnet.training.module.MERModule` trains it, plus an AU head on the
backbone's penultimate features.

What the option learns and how clips without AU annotation are masked is
:mod:`mefnet.tasks.emotion_au`; this module trains it.

The AU head reads the input of the backbone's *last* ``nn.Linear`` layer, the one whose
outputs are the backbone's logits (STSTNet's ``fc``, AM3F-FlowNet's ``classifier``,
OFF-ApexNet's last layer of ``classifier``, SmallResNet's ``fc``), taken with a forward
hook during the backbone's own forward pass, so backbones need no extra method and the
emotion path is computed exactly as in ``task=emotion``. A backbone whose logits are not
the output of such a layer is refused with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from mefnet.tasks.emotion_au import EmotionAULoss, unpack
from mefnet.training.augment import mirror_averaged
from mefnet.training.module import MERModule


def logits_layer(backbone: nn.Module, num_classes: int) -> str:
    """The name of ``backbone``'s last ``nn.Linear`` with ``num_classes`` outputs (its
    classifier); a ValueError naming the backbone when there is none."""
    found = [name for name, m in backbone.named_modules()
             if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not found:
        raise ValueError(
            f"task=emotion_au: backbone {type(backbone).__name__} has no nn.Linear layer with {num_classes} "
            "outputs whose input (the penultimate features) could feed the AU head; use a backbone whose "
            "logits come from a last nn.Linear (ststnet, am3f, offapexnet, resnet)")
    return found[-1]


class EmotionAUModule(MERModule):
    """:class:`MERModule` with a second head: per-AU logits from the backbone's penultimate
    features. ``self(x)`` and :meth:`probabilities` stay the emotion outputs; the loss is an
    :class:`~mefnet.tasks.emotion_au.EmotionAULoss`; batches carry packed target rows
    (:func:`mefnet.tasks.emotion_au.packed_targets`).

    Args (beyond :class:`MERModule`'s):
        num_aus: the AU head's outputs (one per AU of ``task.au_set``).
        au_names: their names (recorded with the hyperparameters).
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: EmotionAULoss,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_classes: int,
        class_names: Sequence[str] | None = None,
        scheduler: Callable[..., object] | None = None,
        augment: nn.Module | None = None,
        test_time_mirror: nn.Module | None = None,
        num_aus: int = 1,
        au_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, loss, optimizer, num_classes, class_names, scheduler=scheduler,
                         augment=augment, test_time_mirror=test_time_mirror)
        # A name, not the layer itself: an attribute would register the layer twice.
        self.logits_layer = logits_layer(backbone, num_classes)
        features = backbone.get_submodule(self.logits_layer).in_features
        # Drawn on a forked generator: training then draws the same dropout and
        # augmentation as task=emotion, so with task.au_weight=0 the emotion predictions
        # are those of task=emotion, bit for bit (tests/test_emotion_au.py).
        with torch.random.fork_rng(devices=[]):
            self.au_head = nn.Linear(features, int(num_aus))

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(emotion logits, AU logits) of one forward pass through the backbone."""
        seen: dict[str, torch.Tensor] = {}

        def keep(_module, args, output) -> None:
            seen["features"], seen["logits"] = args[0], output

        handle = self.backbone.get_submodule(self.logits_layer).register_forward_hook(keep)
        try:
            emotion = self.backbone(x)
        finally:
            handle.remove()
        if seen.get("logits") is not emotion:
            raise ValueError(
                f"task=emotion_au: backbone {type(self.backbone).__name__}'s output is not the output of its "
                f"layer '{self.logits_layer}' (the logits are changed after it, or it is not called), so its "
                "penultimate features cannot feed the AU head; use ststnet, am3f, offapexnet or resnet")
        return emotion, self.au_head(seen["features"])

    def train_loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's emotion loss plus the weighted, masked AU loss; emotion predictions
        and training metrics as :class:`MERModule`'s (logged: ``train/emotion_loss``,
        ``train/au_loss``)."""
        x, y = batch
        if self.augment is not None:
            x = self.augment(x)
        emotion_logits, au_logits = self.forward_both(x)
        emotion, au = self.loss_fn.parts(emotion_logits, au_logits, y)
        labels = unpack(y)[0]
        preds = emotion_logits.argmax(dim=1)
        self.train_uf1(preds, labels)
        self.train_uar(preds, labels)
        self.log("train/emotion_loss", emotion, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("train/au_loss", au, on_step=False, on_epoch=True, batch_size=len(y))
        return emotion + self.loss_fn.au_weight * au, preds

    def val_update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Emotion scores only (the epoch is chosen as for ``task=emotion``)."""
        super().val_update(x, unpack(y)[0])

    def au_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Per-AU probabilities (sigmoid), mirror-averaged under ``test_time_mirror``."""
        return mirror_averaged(lambda maps: torch.sigmoid(self.forward_both(maps)[1]), x, self.test_time_mirror)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        """Emotion probabilities (exactly :meth:`MERModule.probabilities`), then the AU
        probabilities, side by side: ``(batch, classes + AUs)``."""
        x = batch[0]
        return torch.cat([self.probabilities(x), self.au_probabilities(x)], dim=1)
