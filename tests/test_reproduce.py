"""The reproduction sets compose, and the right one is chosen (the run itself is a slow test)."""

from __future__ import annotations

import pytest

from mefnet.config import compose
from mefnet.experiment.reproduce import choose_set, experiments, load_set

ROOTS = ("MEFNET_CASME2_ROOT", "MEFNET_SAMM_ROOT", "MEFNET_SMIC_ROOT")


@pytest.mark.parametrize("name", ["synthetic", "paper", "flows"])
def test_every_experiment_of_a_set_composes_with_its_own_name(name):
    todo = experiments(load_set(name))
    runs = set()
    for exp_name, overrides in todo:
        cfg = compose([*overrides, f"experiment_name={exp_name}"])
        assert cfg.experiment_name == exp_name
        runs.add((exp_name, cfg.seed))
    assert len(runs) == len(todo)  # each run once (the seeds of one experiment share its name)


def test_paper_set_has_the_composite_the_five_class_sets_baselines_and_ablations():
    spec = load_set("paper")
    names = [n for n, _ in experiments(spec)]
    for needle in ("megc2019-am3f-la", "megc2019-am3f-ce", "megc2019-ststnet", "megc2019-offapexnet",
                   "megc2019-resnet", "no-msff", "no-spatial-attention", "no-mofrw",
                   "casme2-5class-am3f", "samm-5class-am3f"):
        assert any(needle in n for n in names), needle
    composite = dict(experiments(spec))["megc2019-am3f-la"]
    cfg = compose(composite)
    assert cfg.dataset.name == "megc2019" and cfg.backbone._target_.endswith("AM3FFlowNet")


def test_the_paper_set_needs_every_dataset_root(monkeypatch):
    for var in (*ROOTS, "MEFNET_FLOW_ROOT"):
        monkeypatch.delenv(var, raising=False)
    assert choose_set(None) == "synthetic"
    monkeypatch.setenv("MEFNET_CASME2_ROOT", "/data/casme2")
    assert choose_set(None) == "synthetic"
    with pytest.raises(SystemExit, match="MEFNET_SAMM_ROOT, MEFNET_SMIC_ROOT"):
        choose_set("paper")
    for var in ROOTS:
        monkeypatch.setenv(var, f"/data/{var}")
    assert choose_set(None) == "paper"
    with pytest.raises(SystemExit, match="known sets: flows, paper, synthetic"):
        load_set("nonexistent")


def test_paper_set_has_the_hold_out_database_and_au_tables_and_the_au_one_needs_casme3(monkeypatch):
    monkeypatch.delenv("MEFNET_CASME3_ROOT", raising=False)
    names = [n for n, _ in experiments(load_set("paper"))]
    assert "megc2019-lodo-am3f-la" in names and not any(n.startswith("au-lodo") for n in names)
    monkeypatch.setenv("MEFNET_CASME3_ROOT", "/data/casme3")
    todo = dict(experiments(load_set("paper")))
    assert {"au-lodo-am3f", "au-lodo-ststnet", "au-lodo-offapexnet", "au-lodo-resnet"} <= set(todo)
    cfg = compose(todo["au-lodo-am3f"])
    assert cfg.task.name == "au" and cfg.protocol.name == "lodo" and list(cfg.dataset.datasets) == [
        "casme2", "samm", "casme3"]
    assert cfg.dataset.index.action_units is True and cfg.dataset.index.protocol == "all"
    held = compose(todo["megc2019-lodo-ststnet"])
    assert held.protocol.name == "lodo" and held.dataset.name == "megc2019" and held.task.name == "emotion"


@pytest.mark.parametrize("name", ["synthetic", "paper", "flows"])
def test_a_set_is_a_hydra_sweep_for_the_loso_sweeper_with_its_table_callback(name, monkeypatch):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from mefnet.config import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        hc = hydra_compose("train", overrides=[f"reproduce={name}"], return_hydra_config=True).hydra
    assert hc.mode.name == "MULTIRUN" and hc.sweeper._target_ == "hydra_plugins.mefnet_loso.LosoSweeper"
    assert hc.callbacks.reproduce._target_.endswith("hydra_callbacks.SetTable") and hc.callbacks.reproduce.name == name
    assert list(hc.callbacks)[:2] == ["flow_cache", "tables"]  # train.yaml's, kept
    # (the AU runs of flows need a flow folder with an aus column; unset, nothing is checked)
    monkeypatch.delenv("MEFNET_FLOW_ROOT", raising=False)
    if name != "paper":  # the AU runs of paper need MEFNET_CASME3_ROOT
        assert list(load_set(name).runs) == list(dict.fromkeys(n for n, _ in experiments(load_set(name))))
