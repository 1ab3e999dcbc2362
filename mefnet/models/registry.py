"""A name -> class registry for backbones (timm style)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a backbone selectable by ``name``."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"backbone name '{name}' is registered twice")
        MODELS[name] = cls
        cls.model_name = name
        return cls

    return wrap


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the backbone registered as ``name``."""
    if name not in MODELS:
        raise KeyError(f"unknown backbone '{name}'; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)
