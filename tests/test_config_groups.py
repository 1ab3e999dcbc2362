"""The optimizer, scheduler and debug config groups, the dataset configs as DataModules,
the refusal of multi-process training, and the identity of runs stored before them.

Every option of every group here is instantiated (and stepped, or run on tiny data),
not only composed.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from mefnet.config import CONFIG_DIR, ConfigError, compose
from mefnet.data.datamodule import MERDataModule
from mefnet.experiment.validate import check_train_config
from mefnet.runs.identity import experiment_differences
from mefnet.runs.store import finished_folds
from mefnet.utils.cli import retired_hint
from tests.helpers import TINY_SYNTHETIC, tiny_overrides

FIXTURE = Path(__file__).parent / "fixtures" / "experiment_tiny_synthetic_2026-11.json"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def test_the_new_groups_hold_the_options_users_expect():
    assert _options("optimizer") == ["adam", "adamw", "sgd"]
    assert _options("scheduler") == ["cosine", "none", "step"]
    assert _options("debug") == ["default", "fdr", "overfit", "tiny"]
    assert not (Path(CONFIG_DIR) / "trainer" / "ddp.yaml").exists()


# --------------------------------------------------------------------------- optimizer


@pytest.mark.parametrize("option", _options("optimizer"))
def test_every_optimizer_option_builds_and_steps(option):
    cfg = compose([f"optimizer={option}"])
    model = torch.nn.Linear(4, 3)
    opt = instantiate(cfg.optimizer)(params=model.parameters())
    assert type(opt).__name__ == {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}[option]
    assert opt.defaults["lr"] == cfg.optimizer.lr
    before = model.weight.detach().clone()
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    assert not torch.equal(before, model.weight)


# --------------------------------------------------------------------------- scheduler


@pytest.mark.parametrize("option", _options("scheduler"))
def test_every_scheduler_option_builds_and_steps(option):
    cfg = compose([f"scheduler={option}", "trainer.max_epochs=10", "optimizer.lr=0.1"])
    if option == "none":
        assert cfg.scheduler is None
        return
    opt = instantiate(cfg.optimizer)(params=torch.nn.Linear(2, 2).parameters())
    sched = instantiate(cfg.scheduler)(optimizer=opt)
    for _ in range(10):
        opt.step()
        sched.step()
    lr = opt.param_groups[0]["lr"]
    if option == "cosine":  # down to eta_min at T_max = trainer.max_epochs
        assert cfg.scheduler.T_max == 10 and lr == pytest.approx(cfg.scheduler.eta_min)
    else:  # step: no decay before step_size epochs
        assert lr == pytest.approx(0.1 * cfg.scheduler.gamma ** (10 // cfg.scheduler.step_size))


@pytest.mark.parametrize("option", _options("scheduler"))
def test_the_module_configures_every_scheduler_option(option, tmp_path):
    """The LightningModule's own configure_optimizers with each option, as a fold builds it."""
    from mefnet.experiment.fitting import build_module
    from mefnet.experiment.plan import load_index

    cfg = compose(tiny_overrides(tmp_path, "sched", f"scheduler={option}"))
    index = load_index(cfg)
    dm = MERDataModule(index, cfg.preprocessing, str(tmp_path / "cache"), fold=index.subjects[0])
    conf = build_module(cfg, index, dm).configure_optimizers()
    if option == "none":
        assert isinstance(conf, torch.optim.Adam)
    else:
        assert type(conf["lr_scheduler"]["scheduler"]).__name__ == {"cosine": "CosineAnnealingLR",
                                                                    "step": "StepLR"}[option]


def _opt_sched(cfg) -> tuple[dict, object]:
    return OmegaConf.to_container(cfg.optimizer), cfg.scheduler


ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "weight_decay": 0.0}


@pytest.mark.parametrize("overrides, lr", [
    ([], 0.001),
    (["experiment=ststnet_paper"], 5e-5),
    (["experiment=megc2019_flows"], 0.001),
    (["experiment=smic_dev"], 0.001),
    (["experiment=synthetic_ststnet"], 0.001),
])
def test_defaults_and_experiments_keep_their_optimizer_and_schedule(overrides, lr):
    """What conf/train.yaml held inline before the groups existed: Adam, no schedule."""
    assert _opt_sched(compose(overrides)) == ({**ADAM, "lr": lr}, None)


def test_the_command_line_wins_over_an_experiments_choice():
    cfg = compose(["experiment=ststnet_paper", "optimizer=sgd", "scheduler=cosine"])
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 5e-5  # the recipe's lr
    assert cfg.scheduler._target_.endswith("CosineAnnealingLR") and cfg.scheduler.T_max == 800


# --------------------------------------------------------------------------- identity


def _record(cfg) -> dict:
    from mefnet.config import absolute_paths
    from mefnet.experiment.train import config_fingerprint

    cfg = absolute_paths(cfg)
    return {"fingerprint": config_fingerprint(cfg), "folds": [f"synthetic/sub0{i}" for i in range(1, 5)],
            "class_names": ["negative", "positive", "surprise"], "config": OmegaConf.to_container(cfg, resolve=True)}


def test_an_experiment_stored_before_the_datamodule_configs_is_the_same_experiment(tmp_path):
    """experiment.json of a tiny run made before the dataset configs targeted the
    DataModule and before the optimizer / scheduler groups (its config has neither
    dataset._target_ nor a scheduler group): the same command now is the same experiment,
    with the same fingerprint, so a resume is accepted."""
    old = json.loads(FIXTURE.read_text())
    assert "_target_" not in old["config"]["dataset"]
    cfg = compose([*TINY_SYNTHETIC, f"paths.output_dir={tmp_path}", "experiment_name=plain"])
    new = _record(cfg)
    assert new["config"]["dataset"]["_target_"] == "mefnet.data.datamodule.MERDataModule"
    assert experiment_differences(old, new) == []
    assert new["fingerprint"] == old["fingerprint"]
    # What does differ is still told: another DataModule, another optimizer.
    other = json.loads(json.dumps(new))
    other["config"]["dataset"]["_target_"] = "my.data.OtherDataModule"
    other["config"]["optimizer"]["_target_"] = "torch.optim.AdamW"
    diffs = experiment_differences(old, other)
    assert any(d.startswith("dataset._target_") for d in diffs) and any(d.startswith("optimizer._target_")
                                                                       for d in diffs)


# --------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("option", _options("dataset"))
def test_every_dataset_config_instantiates_itsdatamodule(option, tmp_path):
    """Without reading any data: the clip index is built on first use."""
    cfg = compose([f"dataset={option}"])
    dm = instantiate(cfg.dataset, preprocessing=cfg.preprocessing, cache_dir=str(tmp_path), fold="s01")
    assert isinstance(dm, MERDataModule) and isinstance(dm, L.LightningDataModule)
    assert dm.name == cfg.dataset.name == option
    assert dm.preprocessing.size == cfg.preprocessing.size


def test_dataset_index_overrides_reach_thedatamodule(tmp_path):
    from hydra.errors import InstantiationException

    from mefnet.datasets.clip_index import DatasetError

    cfg = compose(["dataset=flow_folder", f"dataset.index.root={tmp_path / 'absent'}"])
    dm = instantiate(cfg.dataset, preprocessing=cfg.preprocessing, cache_dir=str(tmp_path), fold="s01")
    with pytest.raises((DatasetError, InstantiationException), match=r"absent.*dataset\.index\.root|dataset\.index\.root.*absent"):
        _ = dm.index


def test_the_documented_datamodule_snippet_trains_and_predicts_a_fold(tmp_path):
    cfg = compose(tiny_overrides(tmp_path, "snippet"))
    dm = instantiate(cfg.dataset, preprocessing=cfg.preprocessing, cache_dir=cfg.preprocessing.cache_dir,
                     fold="sub01")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
    from mefnet.training.module import MERModule

    module = MERModule(model, torch.nn.CrossEntropyLoss(), instantiate(cfg.optimizer), 3,
                       ["negative", "positive", "surprise"])
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    probs = torch.cat(trainer.predict(module, datamodule=dm))
    assert len(probs) == len(dm.test_idx) > 0
    assert {dm.index[i].subject for i in dm.test_idx} == {"sub01"}


def test_a_dataset_config_without_target_is_refused_naming_the_key(tmp_path):
    from mefnet.experiment.fitting import datamodule
    from mefnet.experiment.plan import load_index

    cfg = compose(tiny_overrides(tmp_path, "notarget"))
    index = load_index(cfg)
    with open_dict(cfg):
        del cfg.dataset["_target_"]
    with pytest.raises(ValueError, match=r"dataset: the config has no _target_"):
        datamodule(cfg, index, torch.zeros(len(index), 3, 28, 28), index.subjects[0])


def test_the_runner_computes_the_maps_once_per_run_not_per_fold(tmp_path, monkeypatch):
    import mefnet.data.datamodule as datamodule
    import mefnet.experiment.train as train

    calls = {"run": 0, "datamodule": 0}
    real = train.build_features

    def counted(key):
        def build(*args, **kwargs):
            calls[key] += 1
            return real(*args, **kwargs)
        return build

    monkeypatch.setattr(train, "build_features", counted("run"))
    monkeypatch.setattr(datamodule, "build_features", counted("datamodule"))
    cfg = compose(tiny_overrides(tmp_path, "once", "trainer.max_epochs=1", "selection=inner_val",
                                 "inner_val.min_epochs=1", "inner_val.every_n_epochs=1", "inner_val.smooth=1"))
    train.run(cfg)
    assert calls == {"run": 1, "datamodule": 0}
    assert len(finished_folds(Path(train.absolute_paths(cfg).experiment_dir))) == 4


# --------------------------------------------------------------------------- debug


# The tiny data, without the epochs and logger the debug options set themselves.
DEBUG_DATA = [o for o in TINY_SYNTHETIC if not o.startswith(("trainer.max_epochs", "logger"))]


def _debug_run(tmp_path, option, *extra):
    from mefnet.config import absolute_paths
    from mefnet.experiment.train import run

    cfg = compose([*DEBUG_DATA, f"paths.data_dir={tmp_path / 'data'}", f"debug={option}",
                   f"paths.output_dir={tmp_path / 'out'}", "experiment_name=dbg", *extra])
    trainer = instantiate(cfg.trainer)  # the debug keys are real Trainer arguments
    assert isinstance(trainer, L.Trainer)
    rows = run(cfg)
    return absolute_paths(cfg), rows


@pytest.mark.parametrize("option", ["default", "fdr"])
def test_debug_default_and_fdr_run_every_fold(option, tmp_path):
    cfg, rows = _debug_run(tmp_path, option)
    exp = Path(cfg.experiment_dir)
    assert exp == (tmp_path / "out" / "debug" / "dbg" / "seed_42").resolve()
    assert cfg.trainer.max_epochs == 1 and cfg.trainer.detect_anomaly is True and not cfg.logger
    assert cfg.trainer.get("fast_dev_run", False) is (option == "fdr")
    assert len(finished_folds(exp)) == 4 and rows  # every fold predicted in full: the table is written
    for f in finished_folds(exp):
        record = json.loads((exp / "folds" / f / "fold.json").read_text())
        assert record["epochs"] == 1


def test_debug_fdr_refuses_a_cut_prediction_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"predictions for \d+ test clips.*trainer\.fast_dev_run"):
        _debug_run(tmp_path, "fdr", "data.batch_size=2")


def test_debug_overfit_fits_one_batch(tmp_path):
    import csv

    cfg, _ = _debug_run(tmp_path, "overfit", "fold=sub01", "trainer.max_epochs=40", "optimizer.lr=0.01",
                        "backbone.dropout=0.0")
    assert cfg.trainer.overfit_batches == 1
    metrics = Path(cfg.experiment_dir) / "folds" / "synthetic" / "sub01" / "logs" / "metrics.csv"
    losses = [float(r["train/loss"]) for r in csv.DictReader(metrics.open()) if r.get("train/loss")]
    assert len(losses) == 40 and losses[-1] < 0.25 * losses[0]


def test_debug_tiny_runs_one_fold_of_tiny_synthetic_data(tmp_path):
    from mefnet.config import absolute_paths
    from mefnet.experiment.train import run

    cfg = compose([f"paths.data_dir={tmp_path / 'data'}", f"paths.output_dir={tmp_path / 'out'}",
                   "debug=tiny", "experiment_name=tiny"])
    assert cfg.dataset.index.num_subjects == 4 and cfg.fold == "sub01"
    assert instantiate(cfg.trainer).max_epochs == 2
    assert run(cfg) is None  # one fold: no table
    exp = Path(absolute_paths(cfg).experiment_dir)
    assert exp == (tmp_path / "out" / "debug" / "tiny" / "seed_42").resolve()
    assert finished_folds(exp) == {"synthetic/sub01"}


# --------------------------------------------------------------------------- one process


def test_trainer_ddp_is_gone_with_a_clear_message():
    with pytest.raises(MissingConfigException) as e:
        compose(["trainer=ddp"])
    text = retired_hint(str(e.value))
    assert "trainer/ddp" in text and "trainer=ddp is no longer offered" in text and "n_jobs" in text


@pytest.mark.parametrize("override, key", [
    ("+trainer.strategy=ddp", "trainer.strategy"),
    ("+trainer.strategy=ddp_spawn", "trainer.strategy"),
    ("+trainer.strategy=fsdp", "trainer.strategy"),
    ("trainer.devices=2", "trainer.devices"),
    ("trainer.devices=auto", "trainer.devices"),
    ("+trainer.num_nodes=2", "trainer.num_nodes"),
])
def test_a_trainer_that_would_shard_prediction_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"^{key}: .*not supported.*n_jobs"):
        check_train_config(compose([override]))


@pytest.mark.parametrize("override", ["+trainer.strategy=auto", "+trainer.strategy=single_device",
                                      "trainer.devices=[0]", "trainer=gpu"])
def test_one_process_trainers_pass(override):
    check_train_config(compose([override]))
