"""Backbones, each chosen by the ``_target_`` of its config (``backbone=ststnet`` picks
``conf/backbone/ststnet.yaml``).

Every backbone takes a float tensor ``(batch, channels, H, W)`` of stacked flow maps
(channel order u, v, optical strain) and returns class logits ``(batch, num_classes)``.
Constructors accept at least ``num_classes``, ``in_channels`` and ``input_size``.
:data:`MODEL_FILE_BACKBONES` lists mefnet's classes a ``model.pt`` may rebuild; a user's
package registers its own (entry-point group ``mefnet.backbones``, or
:func:`register_backbone`; :mod:`mefnet.models.registry`).
"""

from __future__ import annotations

from mefnet.models.am3f import AM3FFlowNet
from mefnet.models.offapexnet import OFFApexNet
from mefnet.models.registry import (
    MODEL_FILE_BACKBONES,
    model_file_backbone,
    register_backbone,
    register_loss,
)
from mefnet.models.resnet import SmallResNet
from mefnet.models.ststnet import STSTNet

__all__ = [
    "MODEL_FILE_BACKBONES",
    "AM3FFlowNet",
    "OFFApexNet",
    "STSTNet",
    "SmallResNet",
    "model_file_backbone",
    "register_backbone",
    "register_loss",
]
