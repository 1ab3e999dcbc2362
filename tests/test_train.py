"""End-to-end LOSO on a tiny synthetic dataset: folds, predictions, resume, leak guard."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from mefnet.config import absolute_paths, compose
from mefnet.datasets.clip_index import DatasetError
from mefnet.experiment.fold import run_fold
from mefnet.experiment.train import run
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.report.aggregate import experiment_rows
from mefnet.report.metrics import pooled_metrics
from tests.helpers import tiny_overrides


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("loso")


def _read(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def one_fold(workdir):
    """Fold sub02 of an experiment, alone (each test using it passes alone and in any order)."""
    cfg = compose(tiny_overrides(workdir, "one-fold", "fold=sub02"))
    return cfg, run(cfg)


@pytest.fixture(scope="module")
def all_folds(workdir):
    """Every fold of an experiment, and its table rows."""
    cfg = compose(tiny_overrides(workdir, "all-folds"))
    return cfg, run(cfg)


def test_one_fold_trains_and_predicts_only_the_test_subject(one_fold):
    cfg, result = one_fold
    assert result is None  # a single fold writes no table
    fold = Path(cfg.experiment_dir) / "folds" / "synthetic" / "sub02"
    rows = _read(fold / "predictions.csv")
    assert rows and {r["subject"] for r in rows} == {"sub02"}
    for r in rows:
        assert sum(float(r[f"prob_{n}"]) for n in ("negative", "positive", "surprise")) == pytest.approx(1, abs=1e-4)
    record = json.loads((fold / "fold.json").read_text())
    assert record["status"] == "complete" and record["n_test"] == len(rows)
    assert record["selection"]["rule"] == "fixed_epochs" and record["versions"]["torch"]


def test_all_folds_table_equals_recomputation_and_a_rerun_resumes(all_folds):
    cfg, rows = all_folds
    exp = Path(cfg.experiment_dir)
    preds = [r for p in sorted(exp.glob("folds/*/*/predictions.csv")) for r in _read(p)]
    assert len(preds) == 18 and len({r["subject"] for r in preds}) == 4
    m = pooled_metrics([int(r["true"]) for r in preds], [int(r["pred"]) for r in preds], 3)
    assert rows[0]["uf1"] == pytest.approx(m["uf1"], abs=1e-4)
    assert rows[0]["uar"] == pytest.approx(m["uar"], abs=1e-4)
    table_md = (exp / "table.md").read_text()
    assert "fixed_epochs" in table_md
    stamps = {p: p.stat().st_mtime_ns for p in exp.glob("folds/*/*/fold.json")}
    assert run(cfg) == rows  # resumed: every fold already finished
    assert stamps == {p: p.stat().st_mtime_ns for p in exp.glob("folds/*/*/fold.json")}
    assert (exp / "table.md").read_text() == table_md


def test_parallel_folds_give_the_same_predictions_as_sequential(workdir, all_folds):
    seq, _ = all_folds
    par = compose(tiny_overrides(workdir, "all-folds-parallel", "n_jobs=2"))
    run(par)
    sequential = sorted(Path(seq.experiment_dir).glob("folds/*/*/predictions.csv"))
    assert len(sequential) == 4
    for p in sequential:
        twin = Path(par.experiment_dir) / p.relative_to(seq.experiment_dir)
        assert p.read_text() == twin.read_text()


def test_a_different_config_under_the_same_name_is_refused(workdir, all_folds):
    cfg = compose(tiny_overrides(workdir, "all-folds", "optimizer.lr=0.5"))
    with pytest.raises(RuntimeError, match="different configuration or dataset:\n  optimizer.lr: 0.001 vs 0.5"):
        run(cfg)


INNER_VAL = ["selection=inner_val", "inner_val.every_n_epochs=1", "inner_val.min_epochs=1", "inner_val.smooth=1",
             "inner_val.val_fraction=0.3"]


@pytest.mark.parametrize("selection", ["fixed_epochs", "inner_val"])
def test_test_subject_labels_cannot_influence_its_predictions(workdir, selection):
    extra = INNER_VAL if selection == "inner_val" else []
    cfg = absolute_paths(compose(tiny_overrides(workdir, f"leak-guard-{selection}", *extra)))
    index = instantiate(cfg.dataset.index)
    features = build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir)
    test_subject = index.subjects[1]
    honest = run_fold(cfg, index, features, test_subject)
    honest_preds = (Path(cfg.experiment_dir) / "folds" / test_subject / "predictions.csv").read_text()
    # Every test-subject clip gets a wrong label; nothing else changes.
    wrong = [replace(c, label=(c.label + 1) % 3, label_name=index.class_names[(c.label + 1) % 3])
             if c.subject_key == test_subject else c for c in index]
    cfg2 = absolute_paths(compose(tiny_overrides(workdir, f"leak-guard-wrong-labels-{selection}", *extra)))
    run_fold(cfg2, index.with_clips(wrong), features, test_subject)
    tampered = _read(Path(cfg2.experiment_dir) / "folds" / test_subject / "predictions.csv")
    honest_rows = _read(Path(cfg.experiment_dir) / "folds" / test_subject / "predictions.csv")
    assert [r["pred"] for r in tampered] == [r["pred"] for r in honest_rows]
    assert [r[k] for r in tampered for k in r if k.startswith("prob_")] == \
        [r[k] for r in honest_rows for k in r if k.startswith("prob_")]
    assert honest["n_test"] == len(honest_rows) and honest_preds
    if selection == "inner_val":
        assert test_subject not in honest["selection"]["val_subjects"]


def test_inner_validation_draws_training_subjects_only_seeded_per_fold(workdir):
    from mefnet.training.selection import choose_val_subjects

    cfg = absolute_paths(compose(tiny_overrides(workdir, "draws", "dataset.index.num_subjects=10",
                                                 "dataset.index.num_clips=60")))
    index = instantiate(cfg.dataset.index)
    draws = {s: choose_val_subjects(index, s, 0.25, seed=7) for s in index.subjects}
    for test, val in draws.items():
        assert test not in val and len(val) == 2 and set(val) <= set(index.subjects)
        train = [c.label for c in index if c.subject_key not in val and c.subject_key != test]
        assert set(train) == {0, 1, 2}
    assert draws == {s: choose_val_subjects(index, s, 0.25, seed=7) for s in index.subjects}
    assert len({tuple(v) for v in draws.values()}) > 1
    assert draws != {s: choose_val_subjects(index, s, 0.25, seed=8) for s in index.subjects}
    with pytest.raises(ValueError, match="val_fraction"):
        choose_val_subjects(index, index.subjects[0], 1.0, seed=7)


@pytest.mark.parametrize("refit", ["true", "false"])
def test_inner_validation_picks_an_epoch_and_records_it(workdir, refit):
    cfg = absolute_paths(compose(tiny_overrides(workdir, f"inner-{refit}", *INNER_VAL, "trainer.max_epochs=4",
                                                 f"inner_val.refit={refit}", "fold=sub03")))
    run(cfg)
    fold = Path(cfg.experiment_dir) / "folds" / "synthetic" / "sub03"
    rec = json.loads((fold / "fold.json").read_text())["selection"]
    assert rec["rule"] == "inner_val" and rec["refit"] is (refit == "true")
    assert [r["epoch"] for r in rec["curve"]] == [1, 2, 3, 4]
    assert 1 <= rec["best_epoch"] <= 4 and "synthetic/sub03" not in rec["val_subjects"]
    best = max(rec["curve"], key=lambda r: (r["uf1"], -r["epoch"]))
    assert rec["best_epoch"] == best["epoch"]
    exp = json.loads((Path(cfg.experiment_dir) / "experiment.json").read_text())
    assert exp["selection"].startswith("inner_val: 30% of the training subjects")
    # Same config and seed: identical predictions.
    again = absolute_paths(compose(tiny_overrides(workdir, f"inner-{refit}-again", *INNER_VAL,
                                                   "trainer.max_epochs=4", f"inner_val.refit={refit}", "fold=sub03")))
    run(again)
    assert (Path(again.experiment_dir) / "folds/synthetic/sub03/predictions.csv").read_text() == \
        (fold / "predictions.csv").read_text()


def test_shuffled_training_labels_are_recorded_in_the_experiment(workdir):
    cfg = compose(tiny_overrides(workdir, "shuffled", "shuffle_train_labels=true", "fold=sub01"))
    run(cfg)
    exp = json.loads((Path(cfg.experiment_dir) / "experiment.json").read_text())
    assert exp["config"]["shuffle_train_labels"] is True


def test_an_unknown_fold_subject_is_a_clear_error(workdir):
    cfg = compose(tiny_overrides(workdir, "bad-fold", "fold=sub77"))
    with pytest.raises(DatasetError, match="fold 'sub77' is not a subject of synthetic"):
        run(cfg)


def test_table_refuses_missing_folds_unless_told(one_fold):
    from mefnet.runs.store import IncompleteExperimentError

    cfg, _ = one_fold
    with pytest.raises(IncompleteExperimentError, match="3 of 4 folds have no finished predictions"):
        experiment_rows(cfg.experiment_dir)
    rows = experiment_rows(cfg.experiment_dir, allow_missing=True)
    assert rows[0]["folds"] == 1 and rows[0]["missing_folds"] == 3


@pytest.mark.parametrize("selection", ["fixed_epochs", "inner_val"])
def test_class_priors_are_counted_on_the_training_fold_only(workdir, monkeypatch, selection):
    """The test subject's clips are all one class, unlike the rest: the logit-adjusted
    loss must see the training fold's class mix, not the dataset's."""
    from mefnet.losses import LogitAdjustedLoss

    extra = INNER_VAL if selection == "inner_val" else []
    cfg = absolute_paths(compose(tiny_overrides(workdir, f"priors-{selection}", "loss=logit_adjusted", *extra)))
    index = instantiate(cfg.dataset.index)
    test_subject = index.subjects[0]
    skewed = index.with_clips([replace(c, label=2, label_name=index.class_names[2])
                               if c.subject_key == test_subject else c for c in index])
    features = build_features(skewed, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir)
    seen: list[torch.Tensor] = []
    original = LogitAdjustedLoss.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append(self.log_prior.exp())

    monkeypatch.setattr(LogitAdjustedLoss, "__init__", spy)
    record = run_fold(cfg, skewed, features, test_subject)
    train_idx, test_idx = skewed.fold_indices(test_subject)
    expected = torch.tensor(skewed.class_counts(train_idx), dtype=torch.float64)
    whole = torch.tensor(skewed.class_counts(range(len(skewed))), dtype=torch.float64)
    assert not torch.allclose(expected / expected.sum(), whole / whole.sum(), atol=1e-3)
    # The final model's loss (the last one built) uses the training fold's mix.
    assert torch.allclose(seen[-1].double(), expected / expected.sum(), atol=1e-6)
    assert record["train_class_counts"] == skewed.class_counts(train_idx)
    if selection == "inner_val":  # the inner model's priors leave the validation subjects out too
        val = set(record["selection"]["val_subjects"])
        inner = [i for i in train_idx if skewed[i].subject_key not in val]
        inner_counts = torch.tensor(skewed.class_counts(inner), dtype=torch.float64)
        assert torch.allclose(seen[0].double(), inner_counts / inner_counts.sum(), atol=1e-6)


@pytest.mark.parametrize("smooth", [1, 3, 5])
def test_the_weights_of_the_chosen_epoch_are_always_kept(smooth):
    """Whatever the validation curve, the state of the epoch chosen at the end was kept
    (a smoothed score can still move after its epoch; the pruning must allow for that)."""
    import numpy as np

    from mefnet.training.selection import InnerValidation

    rng = np.random.default_rng(smooth)
    for _ in range(300):
        tracker = InnerValidation(3, smooth=smooth, min_epochs=int(rng.integers(1, 6)), keep_best=True)
        for epoch in range(1, int(rng.integers(2, 25))):
            tracker.curve.append({"epoch": epoch, "uf1": float(rng.integers(0, 5)) / 4, "loss": 0.0})
            tracker._keep(epoch, {"epoch": epoch})
            assert len(tracker._states) <= smooth // 2 + 1
        assert tracker.best_state() == {"epoch": tracker.best_epoch}


@pytest.mark.parametrize("selection", ["fixed_epochs", "inner_val"])
def test_validation_sees_inner_validation_subjects_only(workdir, monkeypatch, selection):
    """Lightning's validation loop scores the held-out training subjects and nothing else:
    never the test subject, and no validation at all under fixed_epochs."""
    from mefnet.training.module import MERModule

    extra = INNER_VAL if selection == "inner_val" else []
    cfg = absolute_paths(compose(tiny_overrides(workdir, f"val-only-{selection}", *extra)))
    index = instantiate(cfg.dataset.index)
    features = build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir)
    seen: list[torch.Tensor] = []
    original = MERModule.validation_step

    def spy(self, batch, batch_idx):
        seen.append(batch[0].detach().clone())
        return original(self, batch, batch_idx)

    monkeypatch.setattr(MERModule, "validation_step", spy)
    test_subject = index.subjects[2]
    record = run_fold(cfg, index, features, test_subject)
    if selection == "fixed_epochs":
        assert seen == []
        return
    val = set(record["selection"]["val_subjects"])
    assert test_subject not in val and len(seen) == 3  # one batch after each of the 3 epochs
    rows = torch.cat(seen).flatten(1)
    subjects_of = [c.subject_key for c in index]
    for row in rows:
        match = [subjects_of[i] for i in torch.nonzero((features.flatten(1) == row).all(dim=1)).flatten().tolist()]
        assert match and set(match) <= val
    assert len(rows) == 3 * sum(1 for s in subjects_of if s in val)
