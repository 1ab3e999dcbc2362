"""One recommended composite recipe for every input (conf/recipe/megc2019.yaml): the raw-frame
and flow-folder experiments share it, the reproduction sets use it, and the flow-folder
experiment composes exactly as it did before the recipe moved into its own file."""

from __future__ import annotations

from omegaconf import OmegaConf

from mefnet.config import compose
from mefnet.experiment.reproduce import experiments, load_set

# What only the input stage (and the run's name) may change.
INPUT_STAGE = {"dataset", "preprocessing", "experiment_name", "experiment_dir"}


def _plain(overrides: list[str]) -> dict:
    return OmegaConf.to_container(compose(overrides), resolve=True)


def test_raw_frames_and_flow_folder_experiments_share_the_training_config():
    raw, flows = _plain(["experiment=megc2019"]), _plain(["experiment=megc2019_flows"])
    differing = {k for k in raw.keys() | flows.keys() if raw.get(k) != flows.get(k)}
    assert differing == INPUT_STAGE
    assert (raw["dataset"]["name"], flows["dataset"]["name"]) == ("megc2019", "flow_folder")
    # In preprocessing, only the face crop (which follows the dataset) differs.
    assert {k for k in raw["preprocessing"] if raw["preprocessing"][k] != flows["preprocessing"][k]} == {"face"}
    assert raw["experiment_name"] == "megc2019-frames-am3f" and flows["experiment_name"] == "megc2019-am3f"
    # A change of backbone reaches both the same way.
    assert {k for k, v in _plain(["experiment=megc2019", "backbone=ststnet", "~backbone.msff_residual"]).items()
            if v != _plain(["experiment=megc2019_flows", "backbone=ststnet", "~backbone.msff_residual"]).get(k)
            } == INPUT_STAGE


def test_the_flow_folder_experiment_composes_as_before_the_recipe_had_its_own_file():
    """The fingerprint (every key that shapes results) of experiment=megc2019_flows as it
    composed at 60009c7, before conf/recipe/: the README's figures were made with it."""
    from mefnet.config import absolute_paths
    from mefnet.experiment.train import config_fingerprint

    assert config_fingerprint(absolute_paths(compose(["experiment=megc2019_flows"]))) == "16e2b7ef9a0c707c"
    cfg = compose(["experiment=megc2019_flows"])
    assert (cfg.selection, cfg.trainer.max_epochs, cfg.data.batch_size, cfg.test_time_mirror) == (
        "fixed_epochs", 29, 32, True)
    assert cfg.pretrain.epochs == 10 and cfg.loss.tau == 0.5 and cfg.backbone.msff_residual is True


def test_the_raw_input_options_are_config_keys_of_the_raw_experiment():
    cfg = compose(["experiment=megc2019", "preprocessing.size=64", "flow=tvl1", "dataset.index.smic_apex=spotted",
                   "dataset.face.samm=haar"])
    assert cfg.preprocessing.size == 64 and cfg.backbone.input_size == 64
    assert cfg.preprocessing.flow.tvl1.warps != compose(["experiment=megc2019"]).preprocessing.flow.tvl1.warps
    assert cfg.dataset.index.smic_apex == "spotted" and cfg.dataset.face.samm == "haar"
    assert compose(["experiment=megc2019", "preprocessing.face=landmarks"]).preprocessing.face == "landmarks"


def test_the_paper_set_uses_the_recipe_and_keeps_the_previous_one_as_a_named_row(monkeypatch):
    monkeypatch.setenv("MEFNET_CASME3_ROOT", "/data/casme3")
    todo = {}
    for name, overrides in experiments(load_set("paper")):
        todo.setdefault(name, overrides)
    recipe = compose(["experiment=megc2019"])
    for name in ("megc2019-am3f-la", "megc2019-am3f-la-no-msff", "megc2019-am3f-la-gap-head",
                 "megc2019-lodo-am3f-la", "megc2019-ststnet"):
        cfg = compose(todo[name])
        assert cfg.dataset.name == "megc2019", name
        assert (cfg.selection, cfg.trainer.max_epochs, cfg.data.batch_size, cfg.test_time_mirror) == (
            recipe.selection, 29, 32, True), name
        assert cfg.pretrain.epochs == recipe.pretrain.epochs and cfg.augment == recipe.augment, name
    assert compose(todo["megc2019-lodo-am3f-la"]).protocol.name == "lodo"
    assert [compose(o).seed for n, o in experiments(load_set("paper")) if n == "megc2019-am3f-la"] == [1, 2, 3]
    previous = compose(todo["megc2019-am3f-la-previous-recipe"])
    assert (previous.selection, previous.trainer.max_epochs, previous.data.batch_size, previous.inner_val.refit,
            previous.inner_val.every_n_epochs, previous.test_time_mirror) == ("inner_val", 30, 64, False, 1, False)
    assert "pretrain" not in previous and previous.loss.tau == 1.0 and previous.augment.hflip == 0.0
    # The five-class and action-unit rows keep the SMIC development recipe.
    for name in ("casme2-5class-am3f-la", "samm-5class-ststnet-ce", "au-lodo-am3f"):
        cfg = compose(todo[name])
        assert cfg.selection == "inner_val" and cfg.data.batch_size == 64 and "pretrain" not in cfg, name
    assert compose(todo["casme2-5class-am3f-la"]).trainer.max_epochs == 60


def test_the_ensemble_members_are_the_recipe_with_their_backbone_and_budget():
    """experiment=megc2019_flows_nomsff and _ststnet (round 2 of the recipe search) change
    only the backbone, the epoch budget chosen on their own validation curves, and the name."""
    recipe = _plain(["experiment=megc2019_flows"])
    nomsff = _plain(["experiment=megc2019_flows_nomsff"])
    ststnet = _plain(["experiment=megc2019_flows_ststnet"])
    for member, epochs, name in ((nomsff, 30, "megc2019-am3f-nomsff"), (ststnet, 28, "megc2019-ststnet")):
        assert {k for k in recipe.keys() | member.keys() if recipe.get(k) != member.get(k)} == {
            "backbone", "trainer", "experiment_name", "experiment_dir"}
        assert {k for k in recipe["trainer"] if recipe["trainer"][k] != member["trainer"][k]} == {"max_epochs"}
        assert member["trainer"]["max_epochs"] == epochs and member["experiment_name"] == name
    assert {k for k in recipe["backbone"] if recipe["backbone"][k] != nomsff["backbone"][k]} == {
        "msff", "msff_residual"}
    assert nomsff["backbone"]["msff"] == "off" and ststnet["backbone"]["_target_"].endswith("STSTNet")
