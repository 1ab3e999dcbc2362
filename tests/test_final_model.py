"""`fold=none`: the final model on every subject, beside the folds and out of every table."""

from __future__ import annotations

import json

import pytest

from mefnet.config import compose
from mefnet.experiment.final import FINAL_RECORD, final_dir, final_epochs
from mefnet.experiment.train import run
from mefnet.inference.checkpoint import load_model, model_files
from mefnet.inference.predict import Predictor
from mefnet.runs.store import finished_folds
from tests.helpers import tiny_overrides


def test_final_model_trains_on_every_clip_and_leaves_the_table_alone(tmp_path):
    loso = compose(tiny_overrides(tmp_path, "final"))
    run(loso)
    exp = tmp_path / "outputs" / "final" / "seed_42"
    table = (exp / "table.csv").read_bytes()
    folds = finished_folds(exp)
    fold_models = model_files(exp, final=False)
    assert len(fold_models) == 4

    assert run(compose(tiny_overrides(tmp_path, "final", "fold=none"))) is None
    out = final_dir(exp)
    record = json.loads((out / FINAL_RECORD).read_text())
    assert record["epochs"] == 3 and record["epoch_rule"].startswith("fixed_epochs")
    assert record["n_train"] == 18 and len(record["subjects"]) == 4
    model = load_model(out / "model.pt")
    assert model.fold == "" and model.class_names == ["negative", "positive", "surprise"]
    # Not a fold: the table, the finished folds and their models are what they were.
    assert (exp / "table.csv").read_bytes() == table and finished_folds(exp) == folds
    run(loso)  # the LOSO again: every fold skipped, the same table
    assert (exp / "table.csv").read_bytes() == table
    # mefnet-predict / -export use it by default; --folds (final=False) the fold models.
    assert model_files(exp) == model_files(exp.parent) == [out / "model.pt"]
    assert [m.path for m in Predictor.from_path(exp.parent, final=False).models] == fold_models
    # Trained once: a second fold=none leaves it untouched.
    stamp = (out / "model.pt").stat().st_mtime_ns
    run(compose(tiny_overrides(tmp_path, "final", "fold=none")))
    assert (out / "model.pt").stat().st_mtime_ns == stamp


def test_final_model_refuses_another_config_under_the_experiment_name(tmp_path):
    run(compose(tiny_overrides(tmp_path, "final2", "fold=none")))
    with pytest.raises(Exception, match="different configuration"):
        run(compose(tiny_overrides(tmp_path, "final2", "fold=none", "optimizer.lr=0.5")))


def _fold_record(exp, key, best):
    d = exp / "folds" / key
    d.mkdir(parents=True)
    (d / "fold.json").write_text(json.dumps({"status": "complete", "fold": key,
                                             "selection": {"rule": "inner_val", "best_epoch": best}}))


def test_inner_val_final_epochs_are_the_median_chosen_epoch_of_the_loso_folds(tmp_path):
    cfg = compose(tiny_overrides(tmp_path, "iv", "selection=inner_val"))
    with pytest.raises(ValueError, match="run the LOSO first"):
        final_epochs(cfg, tmp_path / "exp")
    for k, best in enumerate([2, 7, 3]):
        _fold_record(tmp_path / "exp", f"synthetic/sub0{k}", best)
    assert final_epochs(cfg, tmp_path / "exp")[0] == 3
    _fold_record(tmp_path / "exp", "synthetic/sub09", 6)
    n, rule = final_epochs(cfg, tmp_path / "exp")
    assert n == 4 and "median" in rule and "4 finished LOSO folds" in rule  # median of 2, 3, 6, 7 = 4.5
