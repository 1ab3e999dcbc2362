"""A composite of any dataset adapters: ``dataset=composite dataset.datasets=[casme2,samm,casme3]``.

Beside the fixed, official ``megc2019`` composite, this one joins whichever adapters
are named, each loaded by its own adapter from its own config (``parts`` in
``conf/dataset/composite.yaml``) under one class protocol (``protocol``) that maps every
part's emotions onto shared classes:

* ``megc2019``: negative / positive / surprise for every part (CAS(ME)^3 through its
  MEGC2019-style mapping; synthetic parts already use these classes);
* ``all``: every part keeps all its emotions; the classes are the sorted union of the
  parts' class names (use it with ``task=au``, where emotions only decide which clips exist);
* any other protocol name every part knows (``objective`` for CASME II, SAMM, CAS(ME)^3).

Every clip keeps its source dataset as ``Clip.dataset``, so subjects never collide, the
table gets one row per part and ``protocol=lodo`` has its folds.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import replace

from hydra.utils import get_method
from omegaconf import OmegaConf

from mefnet.datasets.clip_index import ClipIndex, DatasetError


def load_composite(
    datasets: Sequence[str],
    parts: Mapping[str, Mapping],
    protocol: str = "megc2019",
    on_bad_clip: str | None = None,
    action_units: bool = False,
    au_uncertain: str = "exclude",
) -> ClipIndex:
    """Load each part named in ``datasets`` with its adapter and join them.

    ``parts[name]`` is an adapter config (``_target_`` plus its arguments). ``protocol``,
    ``on_bad_clip``, ``action_units`` and ``au_uncertain`` are handed to every adapter
    that takes them (the synthetic adapter has no protocol).
    """
    names = [str(d) for d in datasets]
    if len(names) < 1:
        raise DatasetError("dataset=composite: dataset.datasets is empty; name the parts, e.g. [casme2,samm]")
    if len(set(names)) != len(names):
        raise DatasetError(f"dataset=composite: a part is named twice in {names}")
    if OmegaConf.is_config(parts):  # as Hydra's instantiate hands it over
        parts = OmegaConf.to_container(parts, resolve=True)
    loaded: list[ClipIndex] = []
    for name in names:
        if name not in parts:
            raise DatasetError(
                f"dataset=composite: no part '{name}' (known: {', '.join(sorted(parts))}); "
                "add it under dataset.index.parts"
            )
        kwargs = dict(parts[name])
        target = kwargs.pop("_target_", None)
        if not target:
            raise DatasetError(f"dataset=composite: part '{name}' has no _target_ (its adapter)")
        loader = get_method(target)
        accepted = inspect.signature(loader).parameters
        shared = {"protocol": protocol, "on_bad_clip": on_bad_clip, "action_units": action_units,
                  "au_uncertain": au_uncertain}
        for key, value in shared.items():
            if key in accepted and value is not None:
                kwargs[key] = value
        part = loader(**kwargs)
        if not part.clips:
            raise DatasetError(f"dataset=composite: part '{name}' has no clip")
        loaded.append(part)
    return join_indices(loaded, name="composite-" + "+".join(names), protocol=protocol)


def join_indices(parts: Sequence[ClipIndex], name: str, protocol: str = "megc2019") -> ClipIndex:
    """One index of several; classes must agree, except under ``all`` (their union)."""
    seen: dict[str, str] = {}
    for part in parts:
        for d in part.datasets:
            if d in seen:
                raise DatasetError(
                    f"{name}: dataset name '{d}' comes from two parts ({seen[d]} and {part.name}); "
                    "give synthetic parts distinct names"
                )
            seen[d] = part.name
    if protocol == "all":
        classes = sorted({c for part in parts for c in part.class_names})
    else:
        classes = list(parts[0].class_names)
        for part in parts[1:]:
            if list(part.class_names) != classes:
                raise DatasetError(
                    f"{name}: part {part.name} has classes {part.class_names}, not {classes}; "
                    f"protocol '{protocol}' must map every part onto the same classes (or use all)"
                )
    clips = [replace(c, label=classes.index(c.label_name)) for part in parts for c in part.clips]
    return ClipIndex(clips, classes, name=name, skipped=[s for part in parts for s in part.skipped])
