"""The backbones a model file (``model.pt``) may rebuild: an allow-list, nothing more.

A run chooses its backbone by the ``_target_`` of its config (``conf/backbone/*.yaml``,
or any config a user writes); nothing picks a backbone by name. ``model.pt`` stores the
run's config, and :func:`mefnet.inference.checkpoint.load_model` rebuilds the backbone
from its ``_target_`` only when that class is registered, so a model file can never make
mefnet import or call anything else. A class's ``model_name`` is what those commands print.

Registered are mefnet's own backbones (:data:`MODEL_FILE_BACKBONES`) and those a user's
package declares, without any change inside mefnet:

* a Python entry point in the group ``mefnet.backbones`` (``pyproject.toml``:
  ``[project.entry-points."mefnet.backbones"] mynet = "mypkg.nets:MyNet"``): found by
  ``mefnet-predict``, ``-export`` and ``-pictures`` in any process where that package is
  installed (or on ``PYTHONPATH`` with its ``.dist-info``);
* :func:`register_backbone` (a decorator), for a class defined in a notebook or script
  that runs mefnet through its Python API in the same process.

The entry points are matched by the text of their value (``module:Class``) before anything
is imported, so a model file naming some other target imports nothing; only the package
the user installed and registered is ever loaded. Losses are registered the same way
(group ``mefnet.losses``, :func:`register_loss`): a loss is never rebuilt from a model
file, so for losses the registry only lists what a user's package offers
(:func:`registered_losses`).
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

from torch import nn

from mefnet.models.am3f import AM3FFlowNet
from mefnet.models.offapexnet import OFFApexNet
from mefnet.models.resnet import SmallResNet
from mefnet.models.ststnet import STSTNet

log = logging.getLogger("mefnet")

#: mefnet's own backbone classes a model file may name, in its config's ``backbone._target_``.
MODEL_FILE_BACKBONES: tuple[type[nn.Module], ...] = (AM3FFlowNet, OFFApexNet, SmallResNet, STSTNet)

#: The entry-point groups a user's package registers its backbones and losses in.
BACKBONE_GROUP = "mefnet.backbones"
LOSS_GROUP = "mefnet.losses"

_registered: dict[str, dict[str, type]] = {BACKBONE_GROUP: {}, LOSS_GROUP: {}}


def class_path(cls: type) -> str:
    """``module.Class``: how a config's ``_target_`` names ``cls``."""
    return f"{cls.__module__}.{cls.__name__}"


def _entry_target(ep: EntryPoint) -> str:
    """``mypkg.nets:MyNet`` -> ``mypkg.nets.MyNet`` (the ``_target_`` spelling), unimported."""
    return ep.value.replace(":", ".").replace(" ", "")


def _entry_points(group: str) -> list[EntryPoint]:
    return list(entry_points(group=group))


def register_backbone(cls: type[nn.Module]) -> type[nn.Module]:
    """Decorator: let model files of this process name ``cls`` as their backbone."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_backbone: {cls!r} is not a torch.nn.Module class")
    _registered[BACKBONE_GROUP][class_path(cls)] = cls
    return cls


def register_loss(cls: type[nn.Module]) -> type[nn.Module]:
    """Decorator: list ``cls`` among the registered losses (:func:`registered_losses`)."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_loss: {cls!r} is not a torch.nn.Module class")
    _registered[LOSS_GROUP][class_path(cls)] = cls
    return cls


def _load_entry(ep: EntryPoint, group: str) -> type[nn.Module] | None:
    try:
        cls = ep.load()
    except Exception as e:  # a user's broken package must not break mefnet: say so, skip it
        log.warning("entry point %s = %s (group %s) could not be loaded: %s", ep.name, ep.value, group, e)
        return None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        log.warning("entry point %s = %s (group %s) is not a torch.nn.Module class; ignored",
                    ep.name, ep.value, group)
        return None
    return cls


def _lookup(group: str, target: str, own: tuple[type, ...] = ()) -> type[nn.Module] | None:
    target = str(target)
    for cls in (*own, *_registered[group].values()):
        if class_path(cls) == target:
            return cls
    for ep in _entry_points(group):
        if _entry_target(ep) == target:  # compared as text: nothing unregistered is imported
            cls = _load_entry(ep, group)
            if cls is not None:
                return cls
    return None


def model_file_backbone(target: str) -> type[nn.Module] | None:
    """The registered class a model file's ``backbone._target_`` names, or None."""
    return _lookup(BACKBONE_GROUP, target, MODEL_FILE_BACKBONES)


def registered_backbones() -> list[str]:
    """The ``_target_`` of every backbone a model file may name (mefnet's and the user's)."""
    names = [class_path(c) for c in (*MODEL_FILE_BACKBONES, *_registered[BACKBONE_GROUP].values())]
    names += [_entry_target(ep) for ep in _entry_points(BACKBONE_GROUP)]
    return sorted(dict.fromkeys(names))


def registered_losses() -> list[str]:
    """The ``_target_`` of every loss a user's package registered (entry points and decorator)."""
    names = [class_path(c) for c in _registered[LOSS_GROUP].values()]
    names += [_entry_target(ep) for ep in _entry_points(LOSS_GROUP)]
    return sorted(dict.fromkeys(names))
