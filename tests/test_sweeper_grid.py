"""The LOSO sweeper's job list, the experiment names it keys directories by, and the
Hydra contracts it keeps (public API only, the HydraConfig singleton left to Hydra)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from mefnet.config import CONFIG_DIR, compose
from mefnet.experiment.sweeper import grid
from mefnet.runs.identity import comparable_config, experiment_differences

ROOT = Path(__file__).resolve().parents[1]


def test_the_grid_is_hydras_cartesian_product_with_the_command_line_last():
    p = OverridesParser.create()
    assert grid(p, {"seed": "1,2"}, ["backbone=am3f,ststnet", "fold=each"]) == [
        ["seed=1", "backbone=am3f", "fold=each"], ["seed=1", "backbone=ststnet", "fold=each"],
        ["seed=2", "backbone=am3f", "fold=each"], ["seed=2", "backbone=ststnet", "fold=each"],
    ]
    # A command-line key replaces the same key of params, in its place.
    assert grid(p, {"trainer.max_epochs": 40, "shuffle_train_labels": False}, ["trainer.max_epochs=2"]) == [
        ["trainer.max_epochs=2", "shuffle_train_labels=False"]]  # Hydra reads it as a bool
    with pytest.raises(HydraException, match="needs a search sweeper"):
        grid(p, None, ["optimizer.lr=interval(0.0001,0.01)"])


def test_the_sweep_list_gives_each_entry_its_overrides_name_and_seeds_in_order():
    p = OverridesParser.create()
    runs = {"exp-a": ["backbone=am3f", "seed=1,2"], "exp-b": ["loss=focal", "dataset=synthetic_multi"]}
    assert grid(p, {"dataset": "synthetic", "data.batch_size": 64}, ["data.batch_size=8"], runs) == [
        ["dataset=synthetic", "data.batch_size=8", "backbone=am3f", "seed=1", "experiment_name=exp-a"],
        ["dataset=synthetic", "data.batch_size=8", "backbone=am3f", "seed=2", "experiment_name=exp-a"],
        ["dataset=synthetic_multi", "data.batch_size=8", "loss=focal", "experiment_name=exp-b"],
    ]


def test_experiment_names_come_from_the_name_keys_of_backbone_and_loss():
    backbones = sorted(q.stem for q in (Path(CONFIG_DIR) / "backbone").glob("*.yaml"))
    losses = sorted(q.stem for q in (Path(CONFIG_DIR) / "loss").glob("*.yaml"))
    for b in backbones:
        for loss in losses:
            cfg = compose([f"backbone={b}", f"loss={loss}"])
            assert (cfg.backbone.name, cfg.loss.name) == (b, loss)
            assert cfg.experiment_name == f"synthetic-{b}-{loss}"
    assert compose(["task=au", "protocol=lodo", "dataset=synthetic_multi"]).experiment_name == \
        "synthetic_multi-ststnet-au_bce-lodo"
    assert compose(["experiment=megc2019_flows"]).experiment_name == "megc2019-am3f"
    assert compose(["experiment=smic_dev", "backbone=resnet"]).experiment_name == "smic-resnet-cross_entropy"


def test_name_keys_are_labels_so_runs_stored_before_them_are_the_same_experiment():
    new = {"config": {"backbone": {"name": "am3f", "_target_": "X", "dropout": 0.5},
                      "loss": {"name": "focal", "_target_": "L"}, "seed": 1}, "folds": ["d/s1"], "class_names": ["a"]}
    old = {"config": {"backbone": {"_target_": "X", "dropout": 0.5}, "loss": {"_target_": "L"}, "seed": 1},
           "folds": ["d/s1"], "class_names": ["a"]}
    assert comparable_config(new) == comparable_config(old) and experiment_differences(old, new) == []
    other = {**new, "config": {**new["config"], "backbone": {**new["config"]["backbone"], "dropout": 0.1}}}
    assert experiment_differences(old, other) == ["backbone.dropout: 0.5 vs 0.1"]


def test_no_private_hydra_code_and_no_writes_to_the_hydra_config_singleton():
    for path in [*sorted((ROOT / "mefnet").rglob("*.py")), *sorted((ROOT / "tests").glob("*.py"))]:
        if path == Path(__file__):
            continue
        text = path.read_text()
        assert "hydra._internal" not in text, path
        assert "HydraConfig.instance().set_config" not in text and ".set_config(" not in text, path
    # Nothing in the application's configs reads the running job's Hydra state but the
    # recipe search's trial names (they exist only inside a search).
    for path in sorted(Path(CONFIG_DIR).rglob("*.yaml")):
        if "hydra:" in path.read_text().replace("\nhydra:", "").replace("# hydra:", ""):
            assert path.name == "recipe_optuna.yaml", path
