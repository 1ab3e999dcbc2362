"""Backbones, chosen by name (``backbone=ststnet``) or built from a Hydra ``_target_``.

Every backbone takes a float tensor ``(batch, channels, H, W)`` of stacked flow maps
(channel order u, v, optical strain) and returns class logits ``(batch, num_classes)``.
Constructors accept at least ``num_classes``, ``in_channels`` and ``input_size``.
Importing this package registers every backbone in :data:`MODELS`.
"""

from __future__ import annotations

from mefnet.models.am3f import AM3FFlowNet
from mefnet.models.offapexnet import OFFApexNet
from mefnet.models.registry import MODELS, build_model, register_model
from mefnet.models.resnet import SmallResNet
from mefnet.models.ststnet import STSTNet

__all__ = [
    "MODELS",
    "AM3FFlowNet",
    "OFFApexNet",
    "STSTNet",
    "SmallResNet",
    "build_model",
    "register_model",
]
