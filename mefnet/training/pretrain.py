"""Pretraining on the built-in synthetic micro-expression set (``pretrain=synthetic``).

A dataset of 300 to 450 clips is small for a network of 20k to 40k weights. With
``pretrain`` set, the experiment's own network, loss, optimiser, batch size and
augmentation are first trained on ``pretrain.data`` (synthetic clips generated from
their seed, :mod:`mefnet.datasets.synthetic`, their maps computed with the experiment's
preprocessing) for ``pretrain.epochs`` epochs, once per seed; each fold's model (either
engine, and the final model of ``fold=none``) then starts from those weights instead of
a fresh initialisation and is trained on its fold as usual.

The pretraining sees no clip of the experiment's dataset, so no subject (test or
otherwise) can influence it: the weights depend on the config and the seed only. They
are cached under ``<paths.cache_dir>/pretrain/<key>.pt`` (``key``: a hash of everything
that shapes them, :func:`pretrain_key`); parallel processes of one run wait for the one
that computes them (a file lock), and a later run, or another experiment with the same
network and recipe, reads them.

What the pretraining is made of travels as one :class:`PretrainSpec`, built from the
composed config by :func:`mefnet.experiment.plan.pretrain_spec`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mefnet.datasets.synthetic import generation_seconds, is_generated, synthetic_folder
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.training.divergence import FiniteCheck
from mefnet.training.module import MERModule
from mefnet.training.trainer import make_trainer
from mefnet.utils.files import atomic_path
from mefnet.utils.locks import exclusive
from mefnet.utils.quiet import duration, plural

log = logging.getLogger("mefnet")

#: What shapes the pretrained weights besides ``pretrain.*`` and the seed (config keys,
#: read into :attr:`PretrainSpec.shaping`): the network, its loss and optimiser, the batch
#: and its augmentation, and how the maps are made.
SHAPING_KEYS = ("backbone", "loss", "optimizer", "augment", "data.batch_size", "preprocessing.size",
                "preprocessing.normalize", "preprocessing.flow", "preprocessing.scale",
                "preprocessing.channel_order", "trainer.accelerator", "trainer.precision")
# Where the synthetic clips are written (not what they are).
_LOCATION = ("root", "data_dir")


@dataclass(frozen=True)
class PretrainSpec:
    """What one seed's synthetic pretraining is made of (a checked ``pretrain`` block and the
    experiment's network, loss, optimiser, batch, augmentation, maps and trainer)."""

    pretrain: dict  # the resolved ``pretrain`` block: ``epochs`` and ``data`` (its ``index``, ``face``)
    seed: int
    threads: int  # ``threads_per_fold``: the same arithmetic whoever computes the weights
    shaping: dict  # the values of :data:`SHAPING_KEYS` (None where absent), hashed into the key
    cache_dir: str  # ``paths.cache_dir``: the weights under ``pretrain/``
    preprocessing: dict  # the resolved ``preprocessing`` block the synthetic maps are made with
    batch_size: int
    backbone: Callable[..., nn.Module]  # called with ``num_classes``
    loss: Callable[[Sequence[int]], nn.Module]  # the loss for these class counts
    optimizer: Callable[[], Any]  # the optimizer factory MERModule takes
    augment: Callable[[], Any] | None  # the batch augmentation, or None
    trainer: Mapping[str, Any]  # the ``trainer`` group's node (:func:`make_trainer`)
    model_name: str = "the model"  # for the log

    @property
    def epochs(self) -> int:
        return int(self.pretrain["epochs"])


def pretrain_key(spec: PretrainSpec, class_names: list[str]) -> str:
    """Hash of everything the pretrained weights depend on (not where anything is stored)."""
    p = spec.pretrain
    index = {k: v for k, v in (p.get("data", {}).get("index") or {}).items() if k not in _LOCATION}
    what = {
        "epochs": p.get("epochs"),
        "index": index,
        "seed": int(spec.seed),
        "class_names": list(class_names),
        "threads": int(spec.threads),
        **{k: spec.shaping.get(k) for k in SHAPING_KEYS},
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pretrained_path(spec: PretrainSpec, class_names: list[str]) -> Path:
    """The cache file of the pretrained weights of this spec and class set (:func:`pretrain_key`)."""
    return Path(spec.cache_dir).expanduser() / "pretrain" / f"{pretrain_key(spec, class_names)}.pt"


def check_pretrain_config(pretrain: Any, task: str = "emotion") -> None:
    """Refuse a ``pretrain`` block (``pretrain``, the block's value) that cannot run for the
    task named ``task``, naming the key."""
    if not pretrain:  # null, or {} (pretrain=none)
        return
    data = pretrain.get("data") if isinstance(pretrain, Mapping) else None
    if not isinstance(data, Mapping) or "index" not in data:
        raise ValueError("pretrain: expected a block with data (a dataset config, e.g. conf/dataset/synthetic.yaml) "
                         "and epochs; use pretrain=synthetic, or leave it out (null)")
    epochs = pretrain.get("epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"pretrain.epochs: expected a whole number of epochs >= 1, got {epochs!r}")

    if task == "au":
        raise ValueError("pretrain: only task=emotion can be pretrained (the synthetic clips carry emotion "
                         "classes, not action units); this run has task=au")


def pretrained_weights(spec: PretrainSpec | None, class_names: list[str],
                       announce: bool = False) -> dict[str, torch.Tensor] | None:
    """The seed's pretrained backbone weights (computed and cached on first use); None
    without pretraining (``spec`` None). ``announce``: say so when cached weights are reused
    (the run's one call before its folds; the folds' own calls stay quiet)."""
    if spec is None:
        return None
    path = pretrained_path(spec, class_names)
    if path.is_file() and announce:
        log.info("pretraining: the weights of this pretraining config and seed %s are cached, reused: %s",
                 spec.seed, path)
    if not path.is_file():
        with exclusive(path.with_suffix(".lock"), what=f"pretraining {path.name}"):
            if not path.is_file():  # another process may have finished it while this one waited
                start = time.perf_counter()
                state = _pretrain(spec, class_names)
                with atomic_path(path) as tmp:
                    torch.save({"state_dict": state, "key": path.stem, "pretrain": spec.pretrain,
                                "seed": int(spec.seed), "class_names": list(class_names)}, tmp)
                log.info("pretrained weights for seed %s in %.0f s: %s", spec.seed, time.perf_counter() - start,
                         path)
    return _load(str(path))


@lru_cache(maxsize=8)
def _load(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def synthetic_maps(spec: PretrainSpec) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The pretraining clips' input maps and labels, made with the experiment's preprocessing
    (its face method replaced by the pretraining dataset's)."""
    from hydra.utils import instantiate


    announce_corpus(spec)
    data = spec.pretrain["data"]
    index = instantiate(data["index"])
    pre = dict(spec.preprocessing)
    pre["face"] = data.get("face", "none")
    pre["face_options"] = {}
    log.info("pretraining corpus: %d synthetic clips of %d subjects (not the experiment's data); their input "
             "maps are cached in %s for every later run", len(index), len(index.subjects), pre["cache_dir"])
    feats = build_features(index, Preprocessing.from_config(pre), pre["cache_dir"], n_jobs=int(pre.get("n_jobs", 1)))
    return feats, torch.tensor([c.label for c in index], dtype=torch.long), list(index.class_names)


def announce_corpus(spec: PretrainSpec) -> None:
    """Say, before the wait, that the synthetic pretraining clips are being made, once, and
    about how long it takes (the clips are kept under ``paths.data_dir`` for every later run
    with the same ``pretrain.data``)."""
    index = spec.pretrain["data"]["index"]
    if not str(index.get("_target_", "")).endswith(".load_synthetic"):
        return

    spec_, folder = synthetic_folder(**{k: v for k, v in index.items() if k != "_target_"})
    if not is_generated(folder):
        log.info("making %d synthetic pretraining clips, once: ~%s (kept in %s for every later run)",
                 spec_.num_clips, duration(generation_seconds(spec_)), folder.resolve())


def _pretrain(spec: PretrainSpec, class_names: list[str]) -> dict[str, torch.Tensor]:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset


    x, y, synthetic_classes = synthetic_maps(spec)
    if synthetic_classes != list(class_names):
        raise ValueError(f"pretrain: the pretraining clips' classes {synthetic_classes} are not the dataset's "
                         f"{list(class_names)}; the pretrained network's output layer needs the same classes "
                         "(pretrain=synthetic fits negative / positive / surprise data, such as the MEGC2019 "
                         "composite)")
    threads = torch.get_num_threads()
    torch.set_num_threads(int(spec.threads))  # the same arithmetic whoever computes it
    try:
        L.seed_everything(int(spec.seed), workers=True, verbose=False)
        n = len(class_names)
        backbone = spec.backbone(num_classes=n)
        loss = spec.loss(torch.bincount(y, minlength=n).tolist())
        module = MERModule(backbone, loss, spec.optimizer(), n, class_names,
                           augment=spec.augment() if spec.augment is not None else None)
        loader = DataLoader(TensorDataset(x, y), batch_size=int(spec.batch_size), shuffle=True,
                            generator=torch.Generator().manual_seed(int(spec.seed)))
        trainer = make_trainer(spec.trainer, Path(spec.cache_dir) / "pretrain", spec.epochs,
                               [FiniteCheck("pretraining")], enable_checkpointing=False, limit_val_batches=0)
        log.info("pretraining %s on %d synthetic clips for %s (seed %s)", spec.model_name,
                 len(y), plural(spec.epochs, "epoch"), spec.seed)
        with warnings.catch_warnings():  # no validation here: the pretraining has no held-out clips
            warnings.filterwarnings("ignore", ".*`validation_step` but have no `val_dataloader`.*")
            trainer.fit(module, train_dataloaders=loader)
        return {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    finally:
        torch.set_num_threads(threads)
