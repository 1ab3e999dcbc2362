"""Every config composes; config groups carry the names users expect."""

from __future__ import annotations

from pathlib import Path

import pytest

from mefnet.config import CONFIG_DIR, compose, instantiate_option

GROUPS = ("dataset", "backbone", "loss", "trainer", "logger", "callbacks", "paths", "experiment", "optimizer",
          "scheduler", "debug", "model")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def test_the_config_groups_users_asked_for_exist():
    for group in GROUPS:
        assert _options(group), f"conf/{group}/ has no options"


def test_default_config_is_synthetic_ststnet_cross_entropy_on_cpu():
    cfg = compose()
    assert cfg.dataset.name == "synthetic"
    assert cfg.backbone._target_.endswith("STSTNet")
    assert cfg.loss._target_.endswith("CrossEntropyLoss")
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.experiment_name == "synthetic-ststnet-cross_entropy"
    assert cfg.selection == "fixed_epochs"


@pytest.mark.parametrize("group", ["dataset", "backbone", "loss", "trainer", "logger", "experiment",
                                   "optimizer", "scheduler", "debug", "model"])
def test_every_option_of_every_group_composes(group):
    for option in _options(group):
        cfg = compose([f"{group}={option}"])
        assert cfg is not None


def test_every_backbone_builds_from_its_config():
    for option in _options("backbone"):
        cfg = compose([f"backbone={option}"])
        model = instantiate_option(cfg.backbone, num_classes=3)
        assert sum(p.numel() for p in model.parameters()) > 0


def test_wandb_logger_is_offline_by_default():
    cfg = compose(["logger=wandb"])
    assert cfg.logger.wandb.offline is True


def test_a_gpu_trainer_exists_but_cpu_is_the_default():
    """(No ddp: multi-process training is not offered, tests/test_config_groups.py.)"""
    assert compose().trainer.accelerator == "cpu"
    assert compose(["trainer=gpu"]).trainer.accelerator == "gpu"


def test_a_backbone_key_its_model_does_not_take_is_named_before_any_work():
    """experiment=megc2019_flows sets an AM3F-FlowNet key; with backbone=ststnet it is
    named, with the way to drop it, and dropping it works. Every backbone option and
    every experiment passes the check as shipped."""
    from mefnet.config import ConfigError, absolute_paths
    from mefnet.experiment.validate import check_train_config

    swapped = ["experiment=megc2019_flows", "backbone=ststnet", "dataset=synthetic"]
    with pytest.raises(ConfigError, match=r"backbone\.msff_residual: STSTNet .*'~backbone\.msff_residual'"):
        check_train_config(absolute_paths(compose(swapped)))
    cfg = absolute_paths(compose([*swapped, "~backbone.msff_residual"]))
    check_train_config(cfg)
    assert "msff_residual" not in cfg.backbone
    with pytest.raises(ConfigError, match=r"backbone\.widht: AM3FFlowNet"):
        check_train_config(absolute_paths(compose(["backbone=am3f", "+backbone.widht=3"])))
    for option in _options("backbone"):
        check_train_config(absolute_paths(compose([f"backbone={option}"])))
    for option in _options("experiment"):
        check_train_config(absolute_paths(compose([f"experiment={option}"])))
