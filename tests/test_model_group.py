"""The ``model`` config group (conf/model/): each task chooses its LightningModule, the
command line overrides it, the schema refuses what cannot be built (naming the key), runs
stored before the group existed are the same experiments, and engine=auto trains a user's
module with the batched engine only when that engine calls what the module overrides.
Trains nothing (tests/test_user_module.py trains a user's module through mefnet-train)."""

from __future__ import annotations

import pytest
import torch.nn.functional as F
from omegaconf import OmegaConf

from mefnet.config import ConfigError, compose
from mefnet.experiment.validate import check_train_config
from mefnet.runs.identity import comparable_config, experiment_differences
from mefnet.training.module import MERModule, batched_overrides, module_class


class LossOnly(MERModule):
    """A user's module (defined outside mefnet) that changes the training loss only."""

    def __init__(self, *args, smoothing: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.smoothing = smoothing

    def loss_of(self, logits, y):
        return F.cross_entropy(logits, y, label_smoothing=self.smoothing)


class OwnStep(LossOnly):
    """A user's module with its own Lightning training step (engine=batched does not call it)."""

    def training_step(self, batch, batch_idx: int):
        return super().training_step(batch, batch_idx)


class NoMirror(MERModule):
    """Leaves out an argument mefnet gives every module."""

    def __init__(self, backbone, loss, optimizer, num_classes, class_names=None, scheduler=None, augment=None):
        super().__init__(backbone, loss, optimizer, num_classes, class_names, scheduler=scheduler, augment=augment)


HERE = __name__


@pytest.mark.parametrize("overrides, target", [
    ([], "mefnet.training.module.MERModule"),
    (["task=au"], "mefnet.training.au.AUModule"),
    (["task=emotion_au"], "mefnet.training.multitask.EmotionAUModule"),
    (["experiment=megc2019_flows"], "mefnet.training.module.MERModule"),
    (["task=emotion", f"model._target_={HERE}.LossOnly"], f"{HERE}.LossOnly"),
    (["model=au", "task=au"], "mefnet.training.au.AUModule"),
])
def test_each_task_chooses_its_module_and_the_command_line_wins(overrides, target):
    cfg = compose(overrides)
    assert cfg.model._target_ == target
    check_train_config(cfg)


def test_a_user_module_and_its_options_pass_the_schema():
    cfg = compose([f"model._target_={HERE}.LossOnly", "+model.smoothing=0.1"])
    check_train_config(cfg)
    assert module_class(cfg.model._target_) is LossOnly


@pytest.mark.parametrize("overrides, message", [
    (["+model.smothing=0.1"], "model.smothing: MERModule takes no such option"),
    ([f"model._target_={HERE}.LossOnly", "+model.smothing=0.1"], "model.smothing: LossOnly takes no such option; "
                                                                 "its options are smoothing"),
    (["+model.optimizer=1"], "model.optimizer: mefnet builds and gives this argument itself"),
    (["model._target_=mynotthere.Module"], "model._target_: cannot import mynotthere.Module"),
    (["model._target_=torch.nn.Linear"], "model._target_: torch.nn.Linear is not a LightningModule class"),
    (["model._target_=lightning.LightningModule"], "model._target_: lightning.LightningModule is a LightningModule "
                                                   "but not a subclass of mefnet.training.module.MERModule"),
    (["model._target_=MERModule"], "model._target_: 'MERModule' is not a class path"),
    ([f"model._target_={HERE}.NoMirror"], "does not take test_time_mirror"),
    # Another task's module would train the wrong outputs or write them as this task's.
    (["task=emotion_au", "model=au"], "mefnet.training.au.AUModule is the module of task=au; task=emotion_au trains "
                                      "mefnet.training.multitask.EmotionAUModule or a subclass of it"),
    (["model=au"], "AUModule is the module of task=au; task=emotion trains mefnet.training.module.MERModule"),
    (["model=emotion_au"], "EmotionAUModule is the module of task=emotion_au; task=emotion trains"),
    (["task=au", "model=emotion"], "MERModule is not a subclass of the task's module; task=au trains "
                                   "mefnet.training.au.AUModule or a subclass of it (model=au"),
    (["task=au", f"model._target_={HERE}.LossOnly"], "LossOnly is not a subclass of the task's module"),
])
def test_a_model_that_cannot_be_built_is_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as e:
        check_train_config(compose(overrides))
    assert message in str(e.value) and "\n" not in str(e.value)


def _record(cfg, drop_model: bool = False) -> dict:
    config = OmegaConf.to_container(cfg, resolve=True)
    if drop_model:
        del config["model"]
    return {"config": config, "folds": ["synthetic/sub01"], "class_names": ["a", "b"]}


@pytest.mark.parametrize("task", ["emotion", "au", "emotion_au"])
def test_runs_stored_before_the_model_group_are_the_same_experiments(task):
    """A record without ``model`` (as every run before the group) and the same config now:
    the same experiment, the same compared config (so the same fingerprint)."""
    cfg = compose([f"task={task}"])
    old, new = _record(cfg, drop_model=True), _record(cfg)
    assert experiment_differences(old, new) == []
    assert comparable_config(old) == comparable_config(new)
    # Another module is another experiment, told by its key: a user's, or another task's.
    for target in (f"{HERE}.LossOnly", "mefnet.training.module.MERModule" if task != "emotion"
                   else "mefnet.training.au.AUModule"):
        other = _record(compose([f"task={task}", f"model._target_={target}"]))
        assert [d.split(":")[0] for d in experiment_differences(old, other)] == ["model._target_"]


def test_the_recipe_keeps_its_fingerprint():
    from mefnet.config import absolute_paths
    from mefnet.experiment.train import config_fingerprint

    assert config_fingerprint(absolute_paths(compose(["experiment=megc2019_flows"]))) == "16e2b7ef9a0c707c"


def test_engine_auto_trains_a_user_module_batched_only_if_the_batched_engine_calls_its_overrides():
    from mefnet.experiment.batched import unsupported
    from mefnet.experiment.train import resolve_engine

    assert batched_overrides(LossOnly) == [] and batched_overrides(OwnStep) == ["training_step"]
    assert resolve_engine(compose([f"model._target_={HERE}.LossOnly"])) == "batched"
    assert resolve_engine(compose([f"model._target_={HERE}.OwnStep"])) == "per_fold"
    reason = unsupported(compose([f"model._target_={HERE}.OwnStep", "engine=batched"]))
    assert reason and "overrides training_step" in reason and "engine=per_fold" in reason


def test_a_config_without_a_model_is_refused_saying_what_to_add():
    with pytest.raises(ConfigError, match="model: the config chooses no LightningModule; add `- model: emotion`"):
        check_train_config(compose(["~model"]))
