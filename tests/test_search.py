"""The leak-free recipe search (hparams_search=..., Hydra's Optuna sweeper): its objective
comes from inner validation on training subjects only, its trials are stored."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from mefnet.config import compose
from mefnet.experiment.search import best_recipe_yaml, holdout, optimized_metric
from mefnet.experiment.train import main
from mefnet.schema import uses_inner_val
from mefnet.selection_rules import rule_names
from tests.flow_trees import make_flow_folder

TEST_CONF = Path(__file__).resolve().parent / "conf"
HOLDOUT = "casme2/sub02"
TARGET = "smic/s02"  # the test subject of the single-fold search


def _search(tmp: Path, root: Path, name: str, *extra: str) -> Path:
    """A 2-trial search run by mefnet-train's own entry point, in this process."""
    argv = [
        "mefnet-train", "-m", "hparams_search=tiny_optuna", f"hydra.searchpath=[file://{TEST_CONF}]",
        "dataset=flow_folder", f"dataset.index.root={root}", f"paths.output_dir={tmp / 'out'}",
        f"paths.data_dir={tmp / 'data'}", f"search.name={name}", f"search.holdout_subjects=[{HOLDOUT}]",
        "logger=none", "save_checkpoint=false", "save_model=false", "n_jobs=1", "preprocessing.n_jobs=1",
        "inner_val.every_n_epochs=1", "inner_val.min_epochs=1", *extra,
    ]
    old = sys.argv
    GlobalHydra.instance().clear()
    try:
        sys.argv = argv
        main()
    finally:
        sys.argv = old
        GlobalHydra.instance().clear()
    return tmp / "out" / name


def _trials(folder: Path) -> list[dict]:
    with (folder / "trials.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if k != "experiment"} for r in rows]


def _records(folder: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in (folder / "trials").glob("*.json")), key=lambda t: t["number"])


def test_test_and_held_out_labels_cannot_move_the_search(tmp_path):
    honest = make_flow_folder(tmp_path / "honest", {"smic": 2, "casme2": 2})
    # The held-out subject's labels all wrong: never seen by any trial.
    wrong_holdout = make_flow_folder(tmp_path / "wrong_holdout", {"smic": 2, "casme2": 2}, relabel={HOLDOUT: 1})
    # The single-fold search's test subject's labels all wrong.
    wrong_test = make_flow_folder(tmp_path / "wrong_test", {"smic": 2, "casme2": 2}, relabel={TARGET: 2})

    a = _search(tmp_path, honest, "honest")
    b = _search(tmp_path, wrong_holdout, "wrong-holdout")
    trials = _trials(a)
    assert len(trials) == 2 and trials == _trials(b)  # identical params, identical objective values
    ra, rb = _records(a), _records(b)
    assert [r["fold_scores"] for r in ra] == [r["fold_scores"] for r in rb]
    assert HOLDOUT not in ra[0]["fold_scores"] and len(ra[0]["fold_scores"]) == 3
    # Each trial is an experiment of its own, with the held-out subject in none of its folds.
    exp = Path(ra[0]["experiment_dir"])
    assert HOLDOUT not in json.loads((exp / "experiment.json").read_text())["folds"]
    assert (a / "best_recipe.yaml").read_text().startswith("# @package _global_")
    assert (a / "optimization_results.yaml").is_file()

    # A search over one fold is blind to that fold's test subject: its objective equals
    # the honest search's score of that fold, trial by trial.
    c = _search(tmp_path, wrong_test, "wrong-test", f"fold={TARGET}")
    rc = _records(c)
    assert [r["params"] for r in rc] == [r["params"] for r in ra]
    assert [r["objective"] for r in rc] == [r["fold_scores"][TARGET] for r in ra]
    assert [list(r["fold_scores"]) for r in rc] == [[TARGET], [TARGET]]


def test_a_search_needs_inner_validation_and_a_known_metric():
    cfg = compose(["hparams_search=recipe_optuna", "selection=fixed_epochs"])
    with pytest.raises(ValueError, match="selection=inner_val"):
        optimized_metric(cfg)
    cfg = compose(["hparams_search=recipe_optuna", "optimized_metric=inner_val/f1"])
    with pytest.raises(ValueError, match="inner_val/uf1"):
        optimized_metric(cfg)
    assert optimized_metric(compose(["hparams_search=recipe_optuna"])) == "uf1"
    assert optimized_metric(compose([])) is None


def test_the_search_config_uses_optuna_and_the_default_stays_loso():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from mefnet.config import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        search = hydra_compose("train", overrides=["hparams_search=recipe_optuna"], return_hydra_config=True)
        plain = hydra_compose("train", return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert search.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert search.hydra.sweeper.direction == "maximize" and search.hydra.sweeper.storage is None
    assert search.fold == "all" and search.selection == "inner_val"
    assert plain.hydra.sweeper._target_ == "hydra_plugins.mefnet_loso.LosoSweeper"


def test_holdout_removes_subjects_and_best_recipe_is_an_experiment_config(tmp_path):
    from mefnet.datasets.flow_folder import load_flow_folder

    index = load_flow_folder(make_flow_folder(tmp_path / "f", {"smic": 2, "casme2": 2}))
    cfg = compose(["hparams_search=recipe_optuna", "search.holdout_subjects=[sub02]"])
    kept = holdout(cfg, index)
    assert "casme2/sub02" not in kept.subjects and len(kept.subjects) == 3
    text = best_recipe_yaml({"params": {"backbone": "am3f", "optimizer.lr": "0.002", "data.batch_size": "64"},
                             "optimized_metric": "inner_val/uf1", "objective": 0.7, "experiment_dir": "/x"})
    assert "- override /backbone: am3f" in text and "lr: 0.002" in text and "batch_size: 64" in text


def test_one_predicate_says_which_selection_rules_choose_on_inner_validation():
    assert rule_names() == ("fixed_epochs", "inner_val")
    assert uses_inner_val("inner_val")
    assert not uses_inner_val("fixed_epochs") and not uses_inner_val(None) and not uses_inner_val("")

