"""The backbones a model file (``model.pt``) may rebuild: an allow-list, nothing more.

A run chooses its backbone by the ``_target_`` of its config (``conf/backbone/*.yaml``,
or any config a user writes); nothing picks a backbone by name. ``model.pt`` stores the
run's config, and :func:`mefnet.inference.checkpoint.load_model` rebuilds the backbone
from its ``_target_`` only when that class is listed here, so a model file can never make
mefnet import or call anything else. A new backbone trains as soon as it has a config;
adding its class here makes its model files loadable (``mefnet-predict``, ``-export``,
``-pictures``). A class's ``model_name`` is what those commands print.
"""

from __future__ import annotations

from torch import nn

from mefnet.models.am3f import AM3FFlowNet
from mefnet.models.offapexnet import OFFApexNet
from mefnet.models.resnet import SmallResNet
from mefnet.models.ststnet import STSTNet

#: The backbone classes a model file may name, in its config's ``backbone._target_``.
MODEL_FILE_BACKBONES: tuple[type[nn.Module], ...] = (AM3FFlowNet, OFFApexNet, SmallResNet, STSTNet)


def class_path(cls: type) -> str:
    """``module.Class``: how a config's ``_target_`` names ``cls``."""
    return f"{cls.__module__}.{cls.__name__}"


def model_file_backbone(target: str) -> type[nn.Module] | None:
    """The allowed class a model file's ``backbone._target_`` names, or None."""
    return {class_path(cls): cls for cls in MODEL_FILE_BACKBONES}.get(str(target))
