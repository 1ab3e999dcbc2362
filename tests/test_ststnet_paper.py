"""The STSTNet anchor recipe (experiment=ststnet_paper) and the options it needs:
0..255 maps in B, G, R order, a fixed class-ordered training loader, dropout per branch."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mefnet.config import absolute_paths, compose
from mefnet.data.datamodule import MERDataModule
from mefnet.datasets.flow_folder import load_flow_folder
from mefnet.experiment.train import run
from mefnet.models.ststnet import STSTNet
from mefnet.preprocessing.features import Preprocessing, build_features
from tests.flow_trees import make_flow_folder


@pytest.fixture(scope="module")
def flows(tmp_path_factory) -> Path:
    return make_flow_folder(tmp_path_factory.mktemp("flows") / "flows")


def test_the_recipe_is_the_published_one():
    cfg = compose(["experiment=ststnet_paper", "dataset=megc2019"])
    assert cfg.experiment_name == "megc2019-ststnet-paper"
    assert cfg.backbone._target_.endswith("STSTNet") and cfg.loss._target_.endswith("CrossEntropyLoss")
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.scheduler) == (5e-5, 0.0, None)
    assert (cfg.data.batch_size, cfg.data.shuffle, cfg.data.order) == (256, False, "class")
    assert (cfg.selection, cfg.trainer.max_epochs) == ("fixed_epochs", 800)
    assert (cfg.preprocessing.scale, cfg.preprocessing.channel_order) == (255.0, "svu")
    assert cfg.backbone.dropout_position == "branch"
    assert compose(["experiment=ststnet_paper", "dataset=flow_folder"]).experiment_name == \
        "flow_folder-ststnet-paper"


def test_flow_folder_maps_are_what_cv2_imread_gives(flows, tmp_path):
    """minmax x 255 in svu order = the PNG's B, G, R bytes as floats (what their script feeds)."""
    cfg = compose(["experiment=ststnet_paper", "dataset=flow_folder", f"dataset.index.root={flows}"])
    prep = Preprocessing.from_config(cfg.preprocessing)
    index = load_flow_folder(flows)
    maps = build_features(index, prep, str(tmp_path / "cache")).numpy()
    for i in (0, 5, len(index) - 1):
        bgr = cv2.imread(index[i].flow_path).astype(np.float32).transpose(2, 0, 1)
        np.testing.assert_allclose(maps[i], bgr, atol=1e-3)
    # The default stays u, v, strain on 0..1, and its cache key does not change.
    default = Preprocessing.from_config(compose([]).preprocessing)
    assert "scale" not in default.describe() and "channel_order" not in default.describe()
    plain = build_features(index, default, str(tmp_path / "cache")).numpy()
    np.testing.assert_allclose(plain[0][::-1] * 255, maps[0], atol=1e-3)


def test_bad_preprocessing_values_are_refused():
    base = dict(compose([]).preprocessing)
    with pytest.raises(ValueError, match="preprocessing.channel_order"):
        Preprocessing.from_config({**base, "channel_order": "rgb"})
    with pytest.raises(ValueError, match="preprocessing.scale"):
        Preprocessing.from_config({**base, "scale": 0})


def test_class_ordered_loader_without_shuffling_is_fixed(flows):
    index = load_flow_folder(flows)
    feats = torch.arange(len(index), dtype=torch.float32)[:, None, None, None].expand(-1, 3, 28, 28).clone()
    dm = MERDataModule(index, Preprocessing(), "/nonexistent", fold=index.subjects[0], features=feats,
                       batch_size=4, shuffle=False, order="class")
    dm.setup("fit")
    epochs = [[int(x[:, 0, 0, 0][j]) for x, _ in dm.train_dataloader() for j in range(len(x))] for _ in range(2)]
    labels = [index[i].label for i in epochs[0]]
    assert epochs[0] == epochs[1] and labels == sorted(labels)
    assert epochs[0] == sorted(dm.train_idx, key=lambda i: (index[i].label, i))
    shuffled = MERDataModule(index, Preprocessing(), "/nonexistent", fold=index.subjects[0], features=feats,
                             batch_size=4)
    shuffled.setup("fit")
    order = [int(v) for x, _ in shuffled.train_dataloader() for v in x[:, 0, 0, 0]]
    assert order != sorted(order)
    with pytest.raises(ValueError, match="data.order"):
        MERDataModule(index, Preprocessing(), "/x", fold=index.subjects[0], order="random")


def test_ststnet_dropout_per_branch_keeps_the_parameters_and_eval_output():
    torch.manual_seed(0)
    pooled = STSTNet()
    branch = STSTNet(dropout_position="branch")
    branch.load_state_dict(pooled.state_dict())
    x = torch.rand(4, 3, 28, 28)
    pooled.eval()
    branch.eval()
    assert torch.equal(pooled(x), branch(x))
    branch.train()
    torch.manual_seed(1)
    a = branch(x)
    pooled.train()
    torch.manual_seed(1)
    assert not torch.allclose(a, pooled(x))
    with pytest.raises(ValueError, match="dropout_position"):
        STSTNet(dropout_position="head")


def test_an_ststnet_paper_fold_trains_and_predicts(flows, tmp_path):
    cfg = absolute_paths(compose([
        "experiment=ststnet_paper", "dataset=flow_folder", f"dataset.index.root={flows}", "trainer.max_epochs=3",
        f"paths.output_dir={tmp_path / 'out'}", f"paths.data_dir={tmp_path / 'data'}", "logger=none",
        "save_checkpoint=false", "fold=smic/s01", "preprocessing.n_jobs=1",
    ]))
    run(cfg)
    fold = Path(cfg.experiment_dir) / "folds" / "smic" / "s01"
    assert json.loads((fold / "fold.json").read_text())["epochs"] == 3
    assert Path(cfg.experiment_dir).parent.name == "flow_folder-ststnet-paper"


# backbone=am3f drops the recipe's STSTNet-only key (else that key is named first:
# tests/test_config.py), to reach the map-order check.
@pytest.mark.parametrize("bad", [["backbone=am3f", "~backbone.dropout_position"], ["augment=hflip"],
                                 ["test_time_mirror=true"]])
def test_options_that_would_misread_the_maps_are_refused(flows, tmp_path, bad):
    cfg = absolute_paths(compose([
        "experiment=ststnet_paper", "dataset=flow_folder", f"dataset.index.root={flows}", "trainer.max_epochs=1",
        f"paths.output_dir={tmp_path / 'out'}", f"paths.data_dir={tmp_path / 'data'}", "logger=none",
        "save_checkpoint=false", "fold=smic/s01", "preprocessing.n_jobs=1", *bad,
    ]))
    with pytest.raises(ValueError, match="channel_order"):
        run(cfg)
