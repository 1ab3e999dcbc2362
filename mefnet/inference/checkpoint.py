"""The mefnet model file, ``model.pt``: a trained backbone that loads without running code.

Every LOSO fold writes one next to its predictions. It holds only tensors and plain
data, so :func:`load_model` reads it with ``torch.load(weights_only=True)``::

    format          "mefnet-model"
    version         1 (FORMAT_VERSION)
    state_dict      the backbone's parameters and buffers
    class_names     ["negative", "positive", "surprise"]: the order of the logits
    config          the resolved training config as a JSON string (backbone,
                    preprocessing, dataset, ...): prediction reads the face crop, flow,
                    size and normalization from here, never from the user
    fold            the test subject of the fold that trained it ("synthetic/sub03")
    mefnet_version  the mefnet that wrote it

The backbone is rebuilt from ``config["backbone"]``, and only if its ``_target_`` is on
the allow-list of backbones a model file may name (mefnet's own and those a user's package
registers, :mod:`mefnet.models.registry`): a model file cannot make mefnet import or call
anything else.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import mefnet
from mefnet.models.registry import BACKBONE_GROUP, model_file_backbone, registered_backbones
from mefnet.preprocessing.features import Preprocessing
from mefnet.runs.identity import experiment_differences
from mefnet.runs.store import ReportError, read_run
from mefnet.training.augment import FlowAugment, mirror_averaged
from mefnet.utils.files import atomic_path

FORMAT = "mefnet-model"
FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
# The final model of a run (mefnet-train fold=none): <run>/final/model.pt.
FINAL_DIR = "final"


class ModelFileError(ValueError):
    """A file is not a (readable, compatible) mefnet model file; the message names it."""


def _plain_config(config: Any) -> dict:
    if isinstance(config, dict):
        return json.loads(json.dumps(config, default=str))
    from omegaconf import OmegaConf

    return OmegaConf.to_container(config, resolve=True)


def save_model(
    path: str | Path,
    backbone: nn.Module,
    config: Any,
    class_names: Sequence[str],
    fold: str = "",
) -> Path:
    """Write ``backbone`` with the run's ``config`` (a mapping, stored as the model file's
    record of what it was trained with; an OmegaConf container is resolved first) to ``path``.

    The file appears whole or not at all (written beside it, then renamed).
    """
    path = Path(path)
    record = _plain_config(config)
    if "backbone" not in record or "preprocessing" not in record:
        raise ValueError("save_model: the config needs its 'backbone' and 'preprocessing' sections")
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()},
        "class_names": [str(n) for n in class_names],
        "config": json.dumps(record, sort_keys=True, default=str),
        "fold": str(fold),
        "mefnet_version": mefnet.__version__,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


@dataclass
class LoadedModel:
    """A model file, read: the backbone (in eval mode) and what it was trained with."""

    path: Path
    model: nn.Module
    class_names: list[str]
    config: dict
    fold: str = ""
    mefnet_version: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def backbone_name(self) -> str:
        return str(getattr(self.model, "model_name", type(self.model).__name__))

    @property
    def input_size(self) -> int:
        return int(self.config["preprocessing"]["size"])

    def preprocessing(self):
        """The stored :class:`~mefnet.preprocessing.features.Preprocessing`."""
        return Preprocessing.from_config(self.config["preprocessing"])

    @torch.no_grad()
    def probabilities(self, maps: torch.Tensor) -> torch.Tensor:
        """Softmax of the logits for ``(N, 3, size, size)`` input maps; averaged with that of
        the mirrored face when the model was trained with ``test_time_mirror`` (as its
        LOSO predictions were)."""
        self.model.eval()
        maps = maps.float()
        mirror = (FlowAugment(scale=str(self.config["preprocessing"].get("normalize", "minmax")))
                  if self.config.get("test_time_mirror", False) else None)
        return mirror_averaged(lambda x: torch.softmax(self.model(x), dim=1), maps, mirror)


def _backbone_class(target: str, path: Path) -> type[nn.Module]:
    cls = model_file_backbone(target)
    if cls is None:
        raise ModelFileError(
            f"{path}: backbone '{target}' is not a registered backbone "
            f"({', '.join(registered_backbones())}); refusing to build it. A backbone of your own "
            f"package is registered by an entry point in the group '{BACKBONE_GROUP}' (docs/recipes.md)"
        )
    return cls


def _read(path: Path) -> dict:
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if path.is_dir():
        raise ModelFileError(
            f"{path} is a folder; give a model file (<fold dir>/{MODEL_FILE}) or, where a command "
            "accepts it, an experiment folder holding experiment.json"
        )
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} is not a mefnet model file (not a PyTorch file at all); expected the {MODEL_FILE} "
            "that mefnet-train writes in each fold folder"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(e))
        raise ModelFileError(
            f"{path} is not a mefnet model file: it holds Python objects other than tensors and plain "
            f"data{f' ({unsafe.group(1)})' if unsafe else ''}, so it is not loaded. A Lightning checkpoint "
            f"(model.ckpt) is not a model file; use {MODEL_FILE} from the same fold folder"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ModelFileError(
            f"{path} is not a mefnet model file (not a readable PyTorch file: {str(e)[:200]})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        hint = ""
        if isinstance(payload, dict) and "pytorch-lightning_version" in payload:
            hint = f"; it is a Lightning checkpoint: use {MODEL_FILE} from the same fold folder"
        raise ModelFileError(
            f"{path} is not a mefnet model file: expected format '{FORMAT}', found {found!r}{hint}"
        )
    version = payload.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: mefnet model format version {version!r} is newer than this mefnet reads "
            f"(up to {FORMAT_VERSION}); upgrade mefnet"
        )
    for key, kind in (("state_dict", dict), ("class_names", list), ("config", str)):
        if not isinstance(payload.get(key), kind):
            raise ModelFileError(f"{path}: the model file's '{key}' is missing or not a {kind.__name__}")
    return payload


def _check_config_fits(path: Path, model: nn.Module, config: dict, target: str) -> None:
    """One forward pass of a blank input of the stored size: weights that load into the
    backbone can still disagree with the stored input size (an edited config, or the config
    of another model), which would otherwise fail later in a matrix product."""
    try:
        size = int(config["preprocessing"]["size"])
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{path}: the stored config has no usable preprocessing.size") from None
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    except (RuntimeError, ValueError) as e:
        raise ModelFileError(
            f"{path}: the stored config disagrees with the weights: backbone {target} with input size "
            f"{size} (preprocessing.size) fails ({str(e).splitlines()[0][:200]}); the file was edited or "
            f"mixes two models: use the {MODEL_FILE} that mefnet-train wrote"
        ) from None


def load_model(path: str | Path) -> LoadedModel:
    """Read a model file safely and rebuild its backbone (CPU, eval mode)."""
    path = Path(path)
    payload = _read(path)
    try:
        config = json.loads(payload["config"])
        spec = dict(config["backbone"])
        target = spec.pop("_target_")
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFileError(f"{path}: the stored config has no usable backbone section ({e})") from None
    cls = _backbone_class(str(target), path)
    kwargs = {k: v for k, v in spec.items() if not k.startswith("_") and k != "name"}  # name: the option's label
    kwargs["num_classes"] = len(payload["class_names"])
    try:
        model = cls(**kwargs)
        model.load_state_dict(payload["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: the stored weights do not fit backbone {target} ({str(e)[:300]})") from None
    _check_config_fits(path, model, config, str(target))
    bad = [k for k, t in payload["state_dict"].items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ModelFileError(
            f"{path}: the model's weights hold NaN or infinite values ({', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}); its training diverged, so it predicts nothing meaningful. "
            "Train it again (e.g. with a lower optimizer.lr)"
        )
    model.eval()
    return LoadedModel(
        path=path,
        model=model,
        class_names=list(payload["class_names"]),
        config=config,
        fold=str(payload.get("fold", "")),
        mefnet_version=str(payload.get("mefnet_version", "")),
    )


SEED_PREFIX = "seed_"


def _seed_folders(path: Path) -> dict[int, Path]:
    """``{seed: folder}`` of the ``seed_<N>/`` runs (with experiment.json) directly under ``path``."""
    found: dict[int, Path] = {}
    for child in sorted(path.glob(f"{SEED_PREFIX}*")):
        suffix = child.name[len(SEED_PREFIX):]
        if child.is_dir() and suffix.lstrip("-").isdigit() and (child / "experiment.json").is_file():
            found[int(suffix)] = child
    return found


def run_folders(path: str | Path, seed: int | None = None) -> list[Path]:
    """The run folders (one per seed, each with ``experiment.json``) a user means by ``path``.

    ``path`` is a seed folder (``outputs/<experiment>/seed_42``) or an experiment folder
    (``outputs/<experiment>``, holding ``seed_<N>/`` folders): all its seeds, or only
    ``seed`` when given.
    """
    path = Path(path)
    if (path / "experiment.json").is_file():
        if seed is not None:
            recorded = json.loads((path / "experiment.json").read_text()).get("seed")
            if recorded is not None and int(recorded) != int(seed):
                raise ModelFileError(f"{path} is the run of seed {recorded}, not --seed {seed}")
        return [path]
    seeds = _seed_folders(path)
    if not seeds:
        raise ModelFileError(
            f"{path} is a folder but not a mefnet experiment: it has no experiment.json and no "
            f"{SEED_PREFIX}<N>/experiment.json; give a {MODEL_FILE} file, a seed folder "
            f"(outputs/<experiment>/{SEED_PREFIX}42) or an experiment folder (outputs/<experiment>)"
        )
    if seed is None:
        return list(seeds.values())
    if int(seed) not in seeds:
        raise ModelFileError(
            f"{path} has no run of seed {seed}; its seeds are {', '.join(map(str, seeds))}"
        )
    return [seeds[int(seed)]]


def model_files(path: str | Path, seed: int | None = None, final: bool = True,
                say: Callable[[str], None] | None = None) -> list[Path]:
    """The model files a user means by ``path``: the file itself; for a seed folder, its
    final model (``<run>/final/model.pt``, trained on every subject by ``fold=none``) when
    ``final`` and it exists, else every fold's model (``<run>/folds/*/*/model.pt``, in fold
    order); for an experiment folder, the same for every seed (seed order; only ``seed``
    when given), the final models only when every seed has one.

    A partial run (some folds unfinished) gives the fold models it has; ``say`` (default:
    a warning of the ``mefnet`` logger) is told, per seed, ``37 of 40 folds have a model;
    using those`` and which folds have none."""
    path = Path(path)
    if not path.is_dir():
        if seed is not None:
            raise ModelFileError(f"--seed {seed} chooses among the seeds of an experiment folder; "
                                 f"{path} is one model file")
        return [path]
    runs = run_folders(path, seed)
    _check_one_experiment(path, runs)
    finals = [run / FINAL_DIR / MODEL_FILE for run in runs]
    if final and all(f.is_file() for f in finals):
        return finals
    files: list[Path] = []
    for run in runs:
        files += _run_model_files(run, say or logging.getLogger("mefnet").warning)
    return files


def _check_one_experiment(path: Path, runs: list[Path]) -> None:
    """Refuse to average the seeds of ``path`` when they are not one experiment, by the
    definition ``mefnet-table`` applies (:func:`mefnet.runs.identity.experiment_differences`
    across seeds): their models would be an ensemble of different experiments."""
    if len(runs) < 2:
        return
    records = [json.loads((run / "experiment.json").read_text()) for run in runs]
    for run, record in zip(runs[1:], records[1:], strict=True):
        diffs = experiment_differences(records[0], record, across_seeds=True)
        if diffs:
            shown = "; ".join(diffs[:3]) + (f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else "")
            raise ModelFileError(
                f"{runs[0]} and {run} differ in more than the seed, so they are not seeds of one "
                f"experiment (differing: {shown}); pass --seed N to use one of them"
            )


def _run_model_files(path: Path, say: Callable[[str], None]) -> list[Path]:
    exp = path / "experiment.json"
    folds = json.loads(exp.read_text()).get("folds", [])
    found = [path / "folds" / f / MODEL_FILE for f in folds]
    present = [p for p in found if p.is_file()]
    if not present:
        raise ModelFileError(
            f"experiment {path} has no {MODEL_FILE} in any of its {len(folds)} fold folders "
            "(run it with a mefnet that writes model files, or give one model file)"
        )
    if len(present) < len(found):
        # An unfinished run is still a set of trained models: use them, and say so.
        absent = [f for f, p in zip(folds, found, strict=True) if not p.is_file()]
        shown = ", ".join(absent[:10]) + (f" ... and {len(absent) - 10} more" if len(absent) > 10 else "")
        say(f"{path}: {len(present)} of {len(found)} folds have a model; using those "
            f"(no {MODEL_FILE} in: {shown})")
    # The fold models are used as the run that made them: a fold whose stored predictions
    # are damaged or disagree with the experiment is refused here as mefnet-table refuses it.
    try:
        read_run(path)
    except ReportError as e:
        raise ModelFileError(str(e)) from None
    return present


def load_models(path: str | Path, seed: int | None = None, final: bool = True,
                say: Callable[[str], None] | None = None) -> list[LoadedModel]:
    """:func:`load_model` for every file of :func:`model_files` (``say``: told of a partial
    run, see there); they must agree on the classes and the preprocessing (one experiment's
    folds and seeds always do)."""
    models = [load_model(p) for p in model_files(path, seed, final, say)]
    first = models[0]
    for m in models[1:]:
        if m.class_names != first.class_names:
            raise ModelFileError(
                f"{m.path}: classes {m.class_names} differ from {first.path}'s {first.class_names}"
            )
        if m.preprocessing().describe() != first.preprocessing().describe():
            raise ModelFileError(f"{m.path}: preprocessing differs from {first.path}'s")
    return models


class ProbabilityEnsemble(nn.Module):
    """Several backbones as one: ``forward`` returns ``log(mean_k softmax(model_k(x)))``.

    Those "logits" have the ensemble's probabilities as their softmax (the mean of the
    members' probabilities) and its prediction as their argmax, so the ensemble can be
    used, traced and exported wherever a single backbone can.
    """

    model_name = "ensemble"

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)
        self.member_name = str(getattr(members[0], "model_name", type(members[0]).__name__))
        self.model_name = f"ensemble of {len(members)} {self.member_name}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(x), dim=1) for m in self.members]).mean(dim=0)
        return torch.log(probs.clamp_min(1e-30))


def ensemble(models: Sequence[LoadedModel], path: str | Path | None = None) -> LoadedModel:
    """One :class:`LoadedModel` averaging ``models`` in probability (a single model is
    returned as it is)."""
    if len(models) == 1:
        return models[0]
    first = models[0]
    module = ProbabilityEnsemble([m.model for m in models]).eval()
    return LoadedModel(
        path=Path(path) if path is not None else first.path,
        model=module,
        class_names=list(first.class_names),
        config=first.config,
        fold="",
        mefnet_version=first.mefnet_version,
        extra={"members": [str(m.path) for m in models]},
    )
