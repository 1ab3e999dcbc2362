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


def penultimate(backbone: nn.Module, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(emotion logits, penultimate features) of one forward pass through ``backbone``:
    the features are the input of its classifier ``layer``, taken with a forward hook; a
    ValueError naming the backbone when its output is not that layer's."""
    seen: dict[str, torch.Tensor] = {}

    def keep(_module, args, output) -> None:
        seen["features"], seen["logits"] = args[0], output

    handle = backbone.get_submodule(layer).register_forward_hook(keep)
    try:
        emotion = backbone(x)
    finally:
        handle.remove()
    if seen.get("logits") is not emotion:
        raise ValueError(
            f"task=emotion_au: backbone {type(backbone).__name__}'s output is not the output of its "
            f"layer '{layer}' (the logits are changed after it, or it is not called), so its "
            "penultimate features cannot feed the AU head; use ststnet, am3f, offapexnet or resnet")
    return emotion, seen["features"]


class _Penultimate(nn.Module):
    """The backbone as the training step's network, ``x`` -> (emotion logits, penultimate
    features) (:func:`penultimate`), over the member's own backbone."""

    def __init__(self, backbone: nn.Module, layer: str) -> None:
        super().__init__()
        self.backbone, self.layer = backbone, layer

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return penultimate(self.backbone, self.layer, x)


class EmotionAUModule(MERModule):
    """:class:`MERModule` with a second head: per-AU logits from the backbone's penultimate
    features. ``self(x)`` and :meth:`probabilities` stay the emotion outputs; the loss is an
    :class:`~mefnet.tasks.emotion_au.EmotionAULoss`; batches carry packed target rows
    (:func:`mefnet.tasks.emotion_au.packed_targets`).

    Args (beyond :class:`MERModule`'s):
        num_aus: the AU head's outputs (one per AU of ``task.au_set``).
        au_names: their names (recorded with the hyperparameters).
    """

    # A batch without an AU-annotated clip gives the AU head no gradient (its masked loss
    # is a constant 0): the batched engine's optimizer then holds this member's tensors
    # one by one and skips the head, as the fold's own optimizer does.
    steps_reach_every_parameter = False

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
        emotion, features = penultimate(self.backbone, self.logits_layer, x)
        return emotion, self.au_head(features)

    # The training step (MERModule.step_loss, for both engines): the network is the
    # backbone giving (emotion logits, penultimate features); the loss applies the AU head
    # to the features, then adds the weighted, masked AU loss to the emotion loss. The head
    # stays outside the network so that a batch without an annotated clip leaves it without
    # a gradient under the batched engine too (a head vmapped with other members would get
    # zeros, which Adam's step does not ignore). Emotion predictions and training metrics as
    # MERModule's; logged besides: train/emotion_loss and train/au_loss.

    def network(self) -> nn.Module:
        """The backbone, ``x`` -> (emotion logits, penultimate features). A new wrapper of
        the module's own backbone at each call (nothing registered twice)."""
        return _Penultimate(self.backbone, self.logits_layer)

    def loss_of(self, outputs: tuple[torch.Tensor, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        emotion, features = outputs
        return self.loss_fn(emotion, self.au_head(features), y)

    def train_predictions(self, outputs: tuple[torch.Tensor, torch.Tensor],
                          y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs[0].argmax(dim=-1), unpack(y)[0]

    def loss_parts(self, outputs: tuple[torch.Tensor, torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
        emotion, features = outputs
        with torch.no_grad():
            emotion, au = self.loss_fn.parts(emotion, self.au_head(features), y)
        return {"emotion_loss": emotion, "au_loss": au}

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
