"""A backbone and a loss of the user's own package (not mefnet's), registered by Python
entry points: it trains, predicts, exports and draws pictures through the console commands
with no change inside mefnet, and a model file still cannot name code to run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import user_files
from tests.test_first_hour import mefnet

NETS = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    model_name = "tinynet"

    def __init__(self, num_classes: int, in_channels: int = 3, input_size: int = 28, width: int = 4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class TinyLoss(nn.Module):
    def __init__(self, class_counts, smoothing: float = 0.1):
        super().__init__()
        self.smoothing = smoothing

    def forward(self, logits, targets):
        return nn.functional.cross_entropy(logits, targets, label_smoothing=self.smoothing)


class Unlisted(TinyNet):
    pass
'''

# Imported only if something imports it: a model file naming it must not.
TRAP = '''
from pathlib import Path
Path(__file__).with_name("IMPORTED").write_text("imported")
from torch import nn
Boom = nn.Identity
'''

ENTRY_POINTS = """[mefnet.backbones]
tinynet = mynets.nets:TinyNet

[mefnet.losses]
tinyloss = mynets.nets:TinyLoss
"""

# What docs/recipes.md shows: `name` is what experiment_name is built from.
BACKBONE_YAML = """name: tinynet
_target_: mynets.nets.TinyNet
input_size: ${preprocessing.size}
in_channels: 3
width: 4
"""
LOSS_YAML = """name: tinyloss
_target_: mynets.nets.TinyLoss
_partial_: true
smoothing: 0.1
"""


def user_package(root: Path) -> Path:
    """``root/site``: the package ``mynets`` and its ``.dist-info`` with the entry points,
    as pip would install it; ``root/conf``: its configs for ``--config-dir``."""
    return user_files(root, {"site/mynets/nets.py": NETS, "site/mynets/trap.py": TRAP,
                             "conf/backbone/tinynet.yaml": BACKBONE_YAML, "conf/loss/tinyloss.yaml": LOSS_YAML},
                      {"mynets": ENTRY_POINTS})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("user_backbone")
    site = user_package(base)
    env = {"PYTHONPATH": str(site)}
    run = mefnet("mefnet-train", "--config-dir", str(base / "conf"), "backbone=tinynet", "loss=tinyloss",
                 "dataset.index.num_subjects=3", "dataset.index.num_clips=12", "dataset.index.frame_size=48",
                 "dataset.index.frames_per_clip=[5,6]", "preprocessing.n_jobs=1", "trainer.max_epochs=1",
                 "logger=none", cwd=base, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    exp = base / "outputs" / "synthetic-tinynet-tinyloss" / "seed_42"  # named without experiment_name=
    return base, site, env, exp


def test_a_user_backbone_trains_predicts_exports_and_draws(trained):
    base, site, env, exp = trained
    assert json.loads((exp / "experiment.json").read_text())["config"]["backbone"]["_target_"] == \
        "mynets.nets.TinyNet"
    frames = sorted(sorted((base / "data" / "synthetic").glob("*/sub01/clip*"))[0].glob("img*.png"))
    clip = ["--onset", str(frames[0]), "--apex", str(frames[len(frames) // 2])]
    model = sorted(exp.glob("folds/*/*/model.pt"))[0]
    predict = mefnet("mefnet-predict", str(exp), *clip, "--out", "pred.json", cwd=base, env=env)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert json.loads((base / "pred.json").read_text())
    export = mefnet("mefnet-export", str(model), "--torchscript", "tiny.torchscript.pt", cwd=base, env=env)
    assert export.returncode == 0, export.stderr[-3000:]
    assert (base / "tiny.torchscript.pt").stat().st_size > 0
    pictures = mefnet("mefnet-pictures", str(model), *clip, "--out", "pictures", cwd=base, env=env)
    assert pictures.returncode == 0, pictures.stderr[-3000:]
    assert list((base / "pictures").rglob("*.png"))
    # Without the user's package installed, its model files are refused, saying how to register.
    refused = mefnet("mefnet-predict", str(model), *clip, cwd=base)
    assert refused.returncode != 0
    assert "mynets.nets.TinyNet" in refused.stderr and "mefnet.backbones" in refused.stderr


def test_a_model_file_names_only_registered_classes_and_imports_nothing_else(trained, monkeypatch, tmp_path):
    from mefnet.inference.checkpoint import ModelFileError, load_model, save_model
    from mefnet.models.registry import model_file_backbone, registered_backbones, registered_losses

    base, site, env, exp = trained
    monkeypatch.syspath_prepend(str(site))
    assert "mynets.nets.TinyNet" in registered_backbones() and "mynets.nets.TinyLoss" in registered_losses()
    assert model_file_backbone("mynets.nets.TinyNet").__name__ == "TinyNet"
    loaded = load_model(sorted(exp.glob("folds/*/*/model.pt"))[0])
    assert loaded.backbone_name == "tinynet"
    for target in ("mynets.trap.Boom", "mynets.nets.Unlisted"):
        config = {**loaded.config, "backbone": {**loaded.config["backbone"], "_target_": target}}
        path = save_model(tmp_path / f"{target}.pt", loaded.model, config, loaded.class_names)
        with pytest.raises(ModelFileError, match="is not a registered backbone"):
            load_model(path)
    assert not (site / "mynets" / "IMPORTED").exists() and "mynets.trap" not in sys.modules


def test_a_backbone_config_without_a_name_is_refused_saying_what_to_add(tmp_path):
    (tmp_path / "conf" / "backbone").mkdir(parents=True)
    (tmp_path / "conf" / "backbone" / "noname.yaml").write_text(
        "_target_: mefnet.models.ststnet.STSTNet\ninput_size: ${preprocessing.size}\n")
    run = mefnet("mefnet-train", "--config-dir", str(tmp_path / "conf"), "backbone=noname", cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "name:" in run.stderr and "conf/backbone/noname.yaml" in run.stderr
