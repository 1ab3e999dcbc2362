"""pretrain=synthetic: each seed's model pretrained once on synthetic clips, every fold
started from those weights; the weights cached, deterministic, and blind to the
experiment's dataset (so to its test subjects)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from mefnet.config import ConfigError, absolute_paths, compose
from mefnet.experiment.fitting import build_module, datamodule
from mefnet.experiment.plan import pretrain_spec
from mefnet.experiment.train import run
from mefnet.experiment.validate import check_train_config
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.runs.identity import comparable_config
from mefnet.training.pretrain import pretrain_key, pretrained_path, pretrained_weights
from tests.helpers import TINY_PRETRAIN, tiny_overrides


def _cfg(tmp: Path, *extra: str, pretrain: bool = True):
    pre = TINY_PRETRAIN if pretrain else []
    return absolute_paths(compose(tiny_overrides(tmp, "pre", "backbone=am3f", *pre, *extra)))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_every_fold_starts_from_the_seeds_pretrained_weights(tmp_path):
    cfg = _cfg(tmp_path, "fold=all")
    run(cfg)  # pretrains once (before the folds), then trains and writes every fold
    files = sorted((Path(cfg.paths.cache_dir) / "pretrain").glob("*.pt"))
    assert [f.stem for f in files] == [pretrained_path(pretrain_spec(cfg), ["negative", "positive", "surprise"]).stem]
    saved = torch.load(files[0], weights_only=True)
    assert saved["seed"] == 42 and saved["pretrain"]["epochs"] == 2

    index = instantiate(cfg.dataset.index)
    features = build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir)
    dm = datamodule(cfg, index, features, index.subjects[0])
    module = build_module(cfg, index, dm)
    assert _same(module.backbone.state_dict(), saved["state_dict"])
    # ... which is not what the network starts from without pretraining: it was trained.
    fresh = build_module(_cfg(tmp_path, pretrain=False), index, dm)
    assert not _same(fresh.backbone.state_dict(), saved["state_dict"])
    # The fold's own training is seeded as without pretraining (the pretraining's random
    # draws do not shift it): the RNG state right after building matches.
    build_module(cfg, index, dm)
    with_pre = torch.get_rng_state()
    build_module(_cfg(tmp_path, pretrain=False), index, dm)
    assert torch.equal(with_pre, torch.get_rng_state())


def test_pretrained_weights_are_deterministic_and_blind_to_the_dataset(tmp_path):
    """The same config and seed give identical weights computed afresh; the experiment's
    dataset (its clips, labels, subjects) is not part of the key, and no clip of it is read."""
    classes = ["negative", "positive", "surprise"]
    a = pretrained_weights(pretrain_spec(_cfg(tmp_path / "a")), classes)
    b = pretrained_weights(pretrain_spec(_cfg(tmp_path / "b", "dataset.index.num_clips=24", "dataset.index.seed=5",
                                              "shuffle_train_labels=true")), classes)
    assert _same(a, b)
    key = pretrain_key(pretrain_spec(_cfg(tmp_path)), classes)
    assert key == pretrain_key(pretrain_spec(_cfg(tmp_path / "elsewhere", "dataset.index.num_subjects=5",
                                                  "fold=sub02")), classes)
    for change in ("seed=1", "pretrain.epochs=3", "backbone=ststnet", "loss=logit_adjusted",
                   "pretrain.data.index.num_clips=14", "augment=flow", "data.batch_size=8"):
        assert pretrain_key(pretrain_spec(_cfg(tmp_path, change)), classes) != key, change


def test_pretraining_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ConfigError, match=r"pretrain\.epochs: expected a whole number"):
        check_train_config(_cfg(tmp_path, "pretrain.epochs=0"))
    with pytest.raises(ConfigError, match="only task=emotion"):
        check_train_config(compose(tiny_overrides(tmp_path, "au", "pretrain=synthetic", "task=au")))
    with pytest.raises(ValueError, match=r"classes \['negative', 'positive', 'surprise'\] are not the dataset's"):
        pretrained_weights(pretrain_spec(_cfg(tmp_path)), ["happiness", "disgust", "repression", "surprise", "others"])


def test_without_pretraining_the_config_and_its_fingerprint_are_unchanged():
    cfg = compose([])
    assert "pretrain" not in cfg
    record = {"config": {"seed": 1}, "folds": [], "class_names": []}
    assert comparable_config(record) == comparable_config({**record, "config": {"seed": 1, "pretrain": None}})
    assert compose(["pretrain=synthetic"]).pretrain.data.index.num_clips == 2000
