"""Nothing wrong reaches a results table: experiment identity, completeness, refusals."""

from __future__ import annotations

import csv
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from hydra.utils import instantiate

from mefnet.config import absolute_paths, compose
from mefnet.experiment.train import _prepare_experiment, run
from mefnet.report.table import write_table
from mefnet.runs.identity import experiment_differences
from mefnet.runs.store import RefusedRunError, ReportError, read_experiment
from tests.helpers import tiny_overrides


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny experiment (4 folds); tests copy it before changing anything."""
    base = tmp_path_factory.mktemp("integrity")
    cfg = compose(tiny_overrides(base, "exp"))
    run(cfg)
    return base


def _copy(finished: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    shutil.copytree(finished / "outputs", tmp_path / "outputs")
    overrides = [*tiny_overrides(tmp_path, "exp"), f"paths.data_dir={finished / 'data'}"]
    return tmp_path / "outputs" / "exp" / "seed_42", overrides


def _cfg_index(overrides: list[str]):
    cfg = absolute_paths(compose(overrides))
    return cfg, instantiate(cfg.dataset.index)


# ---------------------------------------------------------------------------- identity


def test_a_resume_after_a_label_was_edited_is_refused_naming_the_clip(finished, tmp_path):
    exp, overrides = _copy(finished, tmp_path)
    cfg, index = _cfg_index(overrides)
    before = (exp / "experiment.json").read_text()
    c = index[3]
    edited = index.with_clips([replace(c, label=(c.label + 1) % 3, label_name=index.class_names[(c.label + 1) % 3])
                               if i == 3 else x for i, x in enumerate(index)])
    with pytest.raises(RefusedRunError) as e:
        _prepare_experiment(cfg, edited)
    msg = str(e.value)
    assert "1 label(s) changed" in msg and c.clip_key in msg
    assert f"{c.label_name} -> {index.class_names[(c.label + 1) % 3]}" in msg
    assert (exp / "experiment.json").read_text() == before


def test_a_resume_after_a_clip_was_removed_or_a_frame_changed_is_refused(finished, tmp_path):
    exp, overrides = _copy(finished, tmp_path)
    cfg, index = _cfg_index(overrides)
    with pytest.raises(RefusedRunError, match=f"1 clip\\(s\\) removed: {index[0].clip_key}"):
        _prepare_experiment(cfg, index.with_clips(index.clips[1:]))
    # Same clips and labels, but an onset frame of another content: the data changed.
    data = tmp_path / "data"
    shutil.copytree(finished / "data", data)
    cfg2, index2 = _cfg_index([*overrides, f"paths.data_dir={data}"])
    from mefnet.preprocessing.features import clip_inputs

    onset = clip_inputs(index2[0])[0]
    onset.write_bytes(clip_inputs(index2[1])[0].read_bytes())
    with pytest.raises(RefusedRunError, match=f"input files changed content: {index2[0].clip_key}"):
        _prepare_experiment(cfg2, index2)


def test_a_resume_names_the_config_keys_that_differ(finished, tmp_path):
    exp, overrides = _copy(finished, tmp_path)
    cfg, index = _cfg_index([*overrides, "optimizer.lr=0.5"])
    with pytest.raises(RefusedRunError, match=r"optimizer.lr: 0.001 vs 0.5"):
        _prepare_experiment(cfg, index)


def test_execution_keys_and_locations_may_change_between_a_run_and_its_resume(finished, tmp_path):
    exp, overrides = _copy(finished, tmp_path)
    # The data moved (same content), workers and cache folder changed: same experiment.
    data = tmp_path / "moved-data"
    shutil.copytree(finished / "data", data)
    cfg, index = _cfg_index([*overrides, f"paths.data_dir={data}", "preprocessing.n_jobs=2",
                             f"paths.cache_dir={tmp_path / 'cache'}", "n_jobs=2"])
    assert _prepare_experiment(cfg, index) == exp


def test_one_definition_of_same_experiment_for_resume_and_table(finished):
    record = read_experiment(finished / "outputs" / "exp" / "seed_42")
    other_seed = json.loads(json.dumps(record))
    other_seed["config"]["seed"] = other_seed["seed"] = 7
    other_seed["config"]["preprocessing"]["n_jobs"] = 5
    # Seeds of one experiment for the table, but not a resume of the same run.
    assert experiment_differences(record, other_seed, across_seeds=True) == []
    assert experiment_differences(record, other_seed) == ["seed: 42 vs 7"]
    relabelled = json.loads(json.dumps(record))
    key = next(iter(relabelled["clips"]))
    relabelled["clips"][key]["label"] = "other"
    assert any(key in d for d in experiment_differences(record, relabelled, across_seeds=True))


# ---------------------------------------------------------------------------- completeness


def _drop_first_row(path: Path) -> str:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([rows[0], *rows[2:]])
    return f"{rows[1][0]}/{rows[1][1]}/{rows[1][2]}"


def test_the_table_refuses_a_fold_that_lost_a_prediction_naming_file_and_clip(finished, tmp_path):
    exp, _ = _copy(finished, tmp_path)
    preds = exp / "folds" / "synthetic" / "sub02" / "predictions.csv"
    lost = _drop_first_row(preds)
    with pytest.raises(ReportError) as e:
        write_table([exp], tmp_path / "table")
    assert str(preds) in str(e.value) and lost in str(e.value) and "no prediction" in str(e.value)
    assert not (tmp_path / "table" / "table.md").exists()


def test_a_rerun_recomputes_only_the_damaged_fold_and_says_so(finished, tmp_path, caplog):
    exp, overrides = _copy(finished, tmp_path)
    damaged = exp / "folds" / "synthetic" / "sub03" / "predictions.csv"
    intact = damaged.read_text()
    _drop_first_row(damaged)
    stamps = {p: p.stat().st_mtime_ns for p in exp.glob("folds/*/*/fold.json") if "sub03" not in str(p)}
    with caplog.at_level("WARNING", logger="mefnet"):
        rows = run(compose(overrides))
    assert "fold synthetic/sub03 is marked finished but is damaged" in caplog.text
    assert damaged.read_text() == intact  # recomputed, deterministically
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    assert rows and rows[0]["clips"] == 18


# ---------------------------------------------------------------------------- divergence


def test_a_non_finite_loss_fails_the_fold_naming_fold_epoch_and_value(tmp_path):
    import torch

    from mefnet.experiment.fold import run_fold
    from mefnet.preprocessing.features import Preprocessing, build_features
    from mefnet.training.divergence import DivergedError

    cfg, index = _cfg_index(tiny_overrides(tmp_path, "diverged"))
    features = build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir)
    features = features.clone()
    features[0, 0, 0, 0] = float("nan")  # one poisoned training value makes the first loss NaN
    subject = index.subjects[-1]
    assert index[0].subject_key != subject
    with pytest.raises(DivergedError, match=r"fold synthetic/sub04: the training loss is nan at epoch 1 "
                                            r"\(batch 1\); training diverged; try a lower learning rate"):
        run_fold(cfg, index, features, subject)
    fold = Path(cfg.experiment_dir) / "folds" / subject
    assert not (fold / "predictions.csv").exists() and not (fold / "fold.json").exists()
    assert torch.isfinite(build_features(index, Preprocessing.from_config(cfg.preprocessing),
                                         cfg.preprocessing.cache_dir)).all()


def test_a_non_finite_loss_fails_the_batched_fit_naming_its_folds_and_writes_no_fold(tmp_path):
    from mefnet.experiment.batched import run_batched
    from mefnet.experiment.train import _prepare_experiment
    from mefnet.preprocessing.features import Preprocessing, build_features
    from mefnet.training.divergence import DivergedError

    cfg, index = _cfg_index(tiny_overrides(tmp_path, "diverged-batched", "engine=batched"))
    _prepare_experiment(cfg, index)
    features = build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir)
    features = features.clone()
    features[0, 0, 0, 0] = float("nan")  # clip 0 poisons every fold that trains on it
    owner = index[0].subject_key
    poisoned = [s for s in index.subjects if s != owner]
    with pytest.raises(DivergedError, match=rf"folds {', '.join(poisoned)}: the training loss is nan at epoch 1 "
                                            r"\(batch 1\); training diverged; try a lower learning rate.* nor for "
                                            r"the 1 other fold\(s\) trained with them"):
        run_batched([(cfg, s) for s in index.subjects], index, features)
    for s in index.subjects:  # not even the healthy member's fold
        fold = Path(cfg.experiment_dir) / "folds" / s
        assert not (fold / "predictions.csv").exists() and not (fold / "fold.json").exists()


def test_model_files_with_non_finite_weights_are_refused(tmp_path):
    import torch

    from mefnet.inference.checkpoint import ModelFileError, load_model, save_model
    from mefnet.models.ststnet import STSTNet

    cfg = compose(tiny_overrides(tmp_path, "nan-model"))
    model = STSTNet(num_classes=3)
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    path = save_model(tmp_path / "model.pt", model, cfg, ["negative", "positive", "surprise"], fold="x/y")
    with pytest.raises(ModelFileError, match=r"model.pt: the model's weights hold NaN or infinite values"):
        load_model(path)


# ---------------------------------------------------------------------------- locks


def test_a_fold_held_by_another_process_is_skipped_naming_it_and_a_released_lock_is_taken(finished, tmp_path,
                                                                                         caplog):
    from mefnet.runs.store import fold_lock

    exp, overrides = _copy(finished, tmp_path)
    (exp / "folds" / "synthetic" / "sub01" / "fold.json").unlink()  # reopen one fold
    (exp / "table.md").unlink()
    with fold_lock(exp, "synthetic/sub01"):
        with caplog.at_level("WARNING", logger="mefnet"):
            assert run(compose(overrides)) is None  # no table while a fold is missing
    assert "fold synthetic/sub01 of" in caplog.text and "is held by PID" in caplog.text
    assert not (exp / "folds" / "synthetic" / "sub01" / "fold.json").exists()
    # The holder is gone (as a killed run's lock is: the kernel releases it): taken, computed.
    rows = run(compose(overrides))
    assert rows and rows[0]["clips"] == 18 and (exp / "table.md").is_file()


def test_claim_fold_gives_a_free_fold_once_and_leaves_a_finished_one_unlocked(tmp_path, caplog):
    """Both engines take each fold through claim_fold: a free fold is claimed with its lock
    held for the block; a second claim meanwhile is refused naming the holder; a fold
    whose fold.json says complete is refused and its lock not kept."""
    from mefnet.runs.store import claim_fold, fold_dir, fold_finished, fold_lock
    from mefnet.utils.files import write_json

    exp = tmp_path / "exp"
    with caplog.at_level("INFO", logger="mefnet"):
        with claim_fold(exp, "d/s1") as mine:
            assert mine is True
            with claim_fold(exp, "d/s1") as again:
                assert again is False
        assert "fold d/s1 of" in caplog.text and "is held by PID" in caplog.text and "skipped here" in caplog.text
        write_json(fold_dir(exp, "d/s2") / "fold.json", {"status": "complete"})
        assert fold_finished(exp, "d/s2") and not fold_finished(exp, "d/s1")
        caplog.clear()
        with claim_fold(exp, "d/s2") as mine:
            assert mine is False
            with fold_lock(exp, "d/s2"):  # not held by the refused claim
                pass
        assert "fold d/s2 was finished by another run meanwhile; left untouched" in caplog.text
    with claim_fold(exp, "d/s1") as mine:  # released after its block
        assert mine is True


def test_two_first_time_generations_of_one_synthetic_set_do_not_collide(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from mefnet.datasets.synthetic import SyntheticSpec, generate; "
            "generate(SyntheticSpec(num_subjects=3, num_clips=9, frame_size=32), sys.argv[1])")
    root = tmp_path / "synthetic" / "set"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert (root / "manifest.json").is_file() or any(root.iterdir())


# ---------------------------------------------------------------------------- config values


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", "data.batch_size: 0 is out of range; it must be at least 1"),
    ("optimizer.lr=0", "optimizer.lr: 0.0 is out of range; it must be > 0.0"),
    ("n_jobs=-1", "n_jobs: -1 is out of range; it must be at least 1"),
    ("preprocessing.n_jobs=0", "preprocessing.n_jobs: 0 is out of range"),
    ("trainer.max_epochs=-1", "trainer.max_epochs: -1 is out of range; it must be at least 1"),
    ("fold=each", "fold=each expands to one job per subject and needs a multirun"),
    ("selection=inner_val inner_val.smooth=0", "inner_val.smooth: 0 is out of range"),
    ("selection=inner_val inner_val.min_epochs=9", "inner_val.min_epochs: 9 is out of range; it must be between 1 and 3"),
    ("selection=inner_val inner_val.every_n_epochs=0", "inner_val.every_n_epochs: 0 is out of range"),
    ("selection=inner_val inner_val.val_fraction=1.5", "inner_val.val_fraction: 1.5 is out of range"),
])
def test_config_values_are_checked_before_any_work_naming_the_key(tmp_path, override, message):
    from mefnet.config import ConfigError

    cfg = compose(tiny_overrides(tmp_path, "checked", *override.split()))
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(cfg)
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".."])
def test_experiment_name_must_be_a_plain_name(tmp_path, name):
    with pytest.raises(Exception, match="is not a plain name"):
        compose(tiny_overrides(tmp_path, name))


def test_duplicate_class_names_are_refused():
    from mefnet.datasets.clip_index import Clip, ClipIndex, DatasetError

    clip = Clip("d", "s1", "c1", 0, "a", 0, 1, 2)
    with pytest.raises(DatasetError, match=r"class names must be unique: 'a' is given twice"):
        ClipIndex([clip], ["a", "b", "a"], name="d")


# ---------------------------------------------------------------------------- the command line


def _train_cli(tmp_path: Path, *overrides: str, env: dict | None = None):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "mefnet.experiment.train", *overrides], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
                               **(env or {})})


def test_a_refused_run_at_the_command_line_is_short_and_changes_nothing(finished, tmp_path):
    exp, overrides = _copy(finished, tmp_path)
    before = {p: p.read_bytes() for p in exp.rglob("*") if p.is_file() and p.name != "train.log"}
    assert (exp / ".hydra" / "config.yaml").is_file()
    out = _train_cli(tmp_path, *overrides, "optimizer.lr=0.5")
    assert out.returncode == 1
    assert "mefnet-train: " in out.stderr and "optimizer.lr: 0.001 vs 0.5" in out.stderr
    assert "Traceback" not in out.stderr
    after = {p: p.read_bytes() for p in exp.rglob("*") if p.is_file() and p.name != "train.log"}
    assert after == before  # .hydra/ included
    debug = _train_cli(tmp_path, *overrides, "optimizer.lr=0.5", env={"HYDRA_FULL_ERROR": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_a_bad_experiment_name_writes_nothing_and_fold_names_are_checked_before_the_first_job(tmp_path):
    out = _train_cli(tmp_path, *tiny_overrides(tmp_path / "o", "../escaped"))
    assert out.returncode == 1 and "experiment_name: '../escaped' is not a plain name" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "o" / "escaped").exists()
    out = _train_cli(tmp_path, "-m", *tiny_overrides(tmp_path / "m", "multi"), "fold=sub01,sub77")
    assert out.returncode == 1 and "fold 'sub77' is not a subject of synthetic" in out.stderr
    assert "Traceback" not in out.stderr
    assert not list((tmp_path / "m").glob("outputs/multi/seed_42/folds/*/*/fold.json"))


def test_the_composite_names_its_own_sheet_keys(tmp_path):
    from mefnet.datasets.clip_index import DatasetError
    from mefnet.datasets.megc2019 import load_megc2019

    roots = {k: tmp_path / k for k in ("casme2", "samm", "smic")}
    for r in roots.values():
        r.mkdir()
    with pytest.raises(DatasetError) as e:
        load_megc2019(casme2_root=roots["casme2"], samm_root=roots["samm"], smic_root=roots["smic"])
    assert "dataset.index.casme2_sheet" in str(e.value) and "dataset.index.sheet" not in str(e.value)


@pytest.mark.parametrize("key", ["../x", "casme2/../../..", "/abs/olute", "casme2/sub01/extra", "casme2/..",
                                 "casme2/", "casme2/s\x00b"])
def test_the_store_refuses_a_fold_folder_outside_the_experiment(tmp_path, key):
    from mefnet.runs.store import UnsafePathError, fold_dir

    with pytest.raises(UnsafePathError, match=r"a fold's folder must be .*folds/<dataset>/<subject>"):
        fold_dir(tmp_path / "exp", key)
    assert fold_dir(tmp_path / "exp", "casme2/sub01") == tmp_path / "exp" / "folds" / "casme2" / "sub01"
    assert fold_dir(tmp_path / "exp", "holdout/casme2+samm").parent.name == "holdout"


# ---------------------------------------------------------------------------- stored predictions


def _edit_row(path: Path, line: int, **cells: str) -> None:
    """Set ``cells`` (column -> text) in line ``line`` of a CSV file (the header is line 1)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    rows[line - 2].update(cells)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _row(path: Path, line: int) -> dict:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))[line - 2]


CLASSES = ("negative", "positive", "surprise")


def _other(k: str) -> int:
    return (int(k) + 1) % 3


# Each edit of line 2 of a fold's predictions.csv, and the column the refusal names.
EDITS = {
    "pred and pred_name": (lambda r: {"pred": str(_other(r["pred"])), "pred_name": CLASSES[_other(r["pred"])]},
                           "pred"),
    "pred only": (lambda r: {"pred": str(_other(r["pred"]))}, "pred_name"),
    "true and true_name": (lambda r: {"true": str(_other(r["true"])), "true_name": CLASSES[_other(r["true"])]},
                           "true"),
    "true, true_name blank": (lambda r: {"true": str(_other(r["true"])), "true_name": ""}, "true"),
    "true only": (lambda r: {"true": str(_other(r["true"]))}, "true_name"),
    "a NaN probability": (lambda r: {"prob_positive": "nan"}, "prob_positive"),
    "probabilities of another class": (
        lambda r: {f"prob_{c}": ("1.000000" if k == _other(r["pred"]) else "0.000000") for k, c in enumerate(CLASSES)},
        "pred"),
    "probabilities not summing to 1": (lambda r: {f"prob_{c}": "0.500000" for c in CLASSES}, "prob_negative"),
}


def _edited(finished: Path, tmp_path: Path, edit: str, fold: str = "sub02") -> tuple[Path, Path, list[str]]:
    exp, overrides = _copy(finished, tmp_path)
    preds = exp / "folds" / "synthetic" / fold / "predictions.csv"
    change, _ = EDITS[edit]
    _edit_row(preds, 2, **change(_row(preds, 2)))
    return exp, preds, overrides


@pytest.mark.parametrize("edit", list(EDITS))
def test_the_table_refuses_edited_predictions_naming_file_line_and_column(finished, tmp_path, edit):
    exp, preds, _ = _edited(finished, tmp_path, edit)
    column = EDITS[edit][1]
    with pytest.raises(ReportError) as e:
        write_table([exp], tmp_path / "table")
    msg = str(e.value)
    assert f"{preds}, line 2" in msg and (f"column '{column}'" in msg or f"columns {column}" in msg), msg
    assert "The fold is damaged" in msg
    assert not (tmp_path / "table" / "table.md").exists()


def test_the_table_command_refuses_an_edited_pred_in_one_line(finished, tmp_path):
    import subprocess
    import sys

    exp, preds, _ = _edited(finished, tmp_path, "pred and pred_name")
    out = subprocess.run([sys.executable, "-m", "mefnet.report.table", str(exp), "--out", str(tmp_path / "t")],
                         capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"{preds}, line 2, column 'pred'" in out.stderr


@pytest.mark.parametrize("edit", ["pred and pred_name", "true and true_name", "a NaN probability"])
def test_a_resume_recomputes_a_fold_with_edited_predictions(finished, tmp_path, edit):
    exp, preds, overrides = _edited(finished, tmp_path, edit, fold="sub03")
    intact = (finished / "outputs" / "exp" / "seed_42" / "folds" / "synthetic" / "sub03" / "predictions.csv")
    out = _train_cli(tmp_path, *overrides)  # mefnet-train, as the user resumes
    assert out.returncode == 0, out.stderr
    log = (exp / "train.log").read_text()
    assert "fold synthetic/sub03 is marked finished but is damaged" in log
    assert f"{preds}, line 2, column '{EDITS[edit][1]}'" in log
    assert preds.read_text() == intact.read_text()  # recomputed, deterministically


def test_compare_and_predict_refuse_edited_predictions(finished, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from mefnet.inference.checkpoint import ModelFileError, load_models
    from mefnet.inference.predict import main as predict_main
    from mefnet.report.compare import compare

    exp, preds, _ = _edited(finished, tmp_path, "true and true_name")
    with pytest.raises(ReportError, match=re.escape(f"{preds}, line 2, column 'true'")):
        compare(exp, finished / "outputs" / "exp" / "seed_42")
    out = _table_cli(tmp_path, "--compare", str(exp), str(finished / "outputs" / "exp" / "seed_42"),
                     "--out", str(tmp_path / "cmp"))
    said = [line for line in out.stderr.splitlines() if line.startswith("mefnet-table: ")]
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert len(said) == 1 and f"{preds}, line 2, column 'true'" in said[0], out.stderr
    with pytest.raises(ModelFileError, match=re.escape(f"{preds}, line 2, column 'true'")):
        load_models(exp, final=False)
    assert len(load_models(finished / "outputs" / "exp" / "seed_42", final=False)) == 4
    for name in ("onset.png", "apex.png"):
        Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / name)
    capsys.readouterr()
    assert predict_main([str(exp), "--onset", str(tmp_path / "onset.png"), "--apex", str(tmp_path / "apex.png")]) == 1
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("mefnet-predict: ")]
    assert len(said) == 1 and f"{preds}, line 2, column 'true'" in said[0] and "Traceback" not in err, err


def test_the_ensemble_refuses_a_seed_with_a_nan_probability(tmp_path):
    base = tmp_path / "two"
    for seed in (1, 2):
        run(compose([*tiny_overrides(base, "exp"), f"seed={seed}", "save_model=false", "save_checkpoint=false"]))
    preds = base / "outputs" / "exp" / "seed_2" / "folds" / "synthetic" / "sub01" / "predictions.csv"
    write_table([base / "outputs" / "exp"], tmp_path / "ok", ensemble=True)  # intact: accepted
    _edit_row(preds, 3, prob_negative="nan")
    with pytest.raises(ReportError, match=re.escape(f"{preds}, line 3, column 'prob_negative'")):
        write_table([base / "outputs" / "exp"], tmp_path / "table", ensemble=True)
    out = _table_cli(tmp_path, str(base / "outputs" / "exp"), "--ensemble", "--out", str(tmp_path / "t"))
    said = [line for line in out.stderr.splitlines() if line.startswith("mefnet-table: ")]
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert len(said) == 1 and f"{preds}, line 3, column 'prob_negative'" in said[0], out.stderr
    assert not (tmp_path / "t").exists()


# ---------------------------------------------------------------------------- one message, once


def _table_cli(tmp_path: Path, *args: str):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "mefnet.report.table", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


def test_a_refused_single_run_says_its_dataset_error_once_without_hydra_wrapping(tmp_path):
    from tests.flow_trees import make_flow_folder

    root = make_flow_folder(tmp_path / "flows", {"casme2": 2}, clips_per_subject=3)
    with (root / "labels.csv").open("a") as f:
        f.write("casme2,../../escape,c,0\n")
    out = _train_cli(tmp_path, "dataset=flow_folder", f"dataset.index.root={root}",
                     f"paths.output_dir={tmp_path / 'outputs'}", "experiment_name=flows", "logger=none")
    assert out.returncode == 1, out.stderr
    said = f"{root / 'labels.csv'}, row 8: subject '../../escape' contains a path separator"
    assert out.stderr.count(said) == 1, out.stderr
    for noise in ("the sweep goes on", "Error in call to target", "full_key", "Error executing job", "Traceback"):
        assert noise not in out.stderr, out.stderr
    assert not list(tmp_path.rglob("escape*"))


def test_table_out_refuses_to_overwrite_a_runs_own_files(finished, tmp_path):
    exp, _ = _copy(finished, tmp_path)
    other = tmp_path / "other"
    shutil.copytree(exp, other / "seed_42")
    before = {p: p.read_bytes() for p in exp.rglob("*") if p.is_file()}
    for out_dir in (exp, exp / "folds", exp / "folds" / "synthetic" / "sub01"):
        out = _table_cli(tmp_path, str(exp), str(other), "--out", str(out_dir))
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert f"--out {out_dir} " in out.stderr and f"run folder {exp}" in out.stderr, out.stderr
    out = _table_cli(tmp_path, str(other / "seed_42"), "--out", str(exp / "folds"))
    assert out.returncode == 1 and "lies inside the run folder" in out.stderr
    assert before == {p: p.read_bytes() for p in exp.rglob("*") if p.is_file()}
    out = _table_cli(tmp_path, str(exp), "--out", str(exp))  # a run's own table, rebuilt from it alone
    assert out.returncode == 0, out.stderr
    assert (exp / "table.csv").read_bytes() == before[exp / "table.csv"]


# ---------------------------------------------------------------------------- faults end cleanly


def test_a_truncated_fold_record_is_a_damaged_fold_recomputed_by_the_command(finished, tmp_path):
    exp, overrides = _copy(finished, tmp_path)
    marker = exp / "folds" / "synthetic" / "sub02" / "fold.json"
    preds = marker.with_name("predictions.csv")
    intact = preds.read_text()
    marker.write_text(marker.read_text()[:25])
    table = _table_cli(tmp_path, str(exp), "--out", str(tmp_path / "t"))
    assert table.returncode == 1 and f"{marker}: not a valid fold record" in table.stderr
    assert "The fold is damaged" in table.stderr and "Traceback" not in table.stderr
    out = _train_cli(tmp_path, *overrides)
    assert out.returncode == 0, out.stderr
    log = (exp / "train.log").read_text() if (exp / "train.log").is_file() else out.stderr + out.stdout
    assert "fold synthetic/sub02 is marked finished but is damaged" in log
    assert json.loads(marker.read_text())["status"] == "complete" and preds.read_text() == intact


def _flow_train(tmp_path: Path, edit, *extra: str):
    """mefnet-train on a tiny flow folder whose labels.csv text ``edit`` changes."""
    from tests.flow_trees import make_flow_folder

    root = make_flow_folder(tmp_path / "flows", {"casme2": 2}, clips_per_subject=3)
    labels = root / "labels.csv"
    labels.write_bytes(edit(labels.read_bytes()))
    out = _train_cli(tmp_path, "dataset=flow_folder", f"dataset.index.root={root}", "trainer.max_epochs=1",
                     f"paths.output_dir={tmp_path / 'outputs'}", "experiment_name=flows", "logger=none", *extra)
    return out, labels


def _one_line(out) -> str:
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    said = [line for line in out.stderr.splitlines() if line.startswith("mefnet-train: ")]
    assert len(said) == 1, out.stderr
    return said[0]


def test_a_latin1_labels_file_is_one_line_naming_it_and_what_to_do(tmp_path):
    out, labels = _flow_train(tmp_path, lambda b: b.replace(b"sub01_00", "sub01_é".encode("latin-1")))
    line = _one_line(out)
    assert f"{labels} is not UTF-8 text (byte 0xe9" in line and "save it as UTF-8" in line
    assert "\\x" not in line  # not the file's bytes


def test_a_superscript_label_cell_names_file_and_row(tmp_path):
    out, labels = _flow_train(tmp_path, lambda b: b.replace(b"sub01_01,1", "sub01_01,²".encode()))
    line = _one_line(out)
    assert f"{labels}, row 3 (clip casme2/sub01/sub01_01): unknown label '²'" in line


def test_a_too_long_experiment_name_is_one_line_and_writes_nothing(tmp_path):
    out = _train_cli(tmp_path, *tiny_overrides(tmp_path / "o", "x" * 300))
    line = _one_line(out)
    assert "experiment_name: 'xxxx" in line and "is 300 characters long; use at most 128" in line
    assert not (tmp_path / "o" / "outputs").exists()


def test_an_output_folder_that_cannot_be_written_is_one_line_naming_the_path(tmp_path):
    (tmp_path / "afile").write_text("x")
    line = _one_line(_train_cli(tmp_path, *tiny_overrides(tmp_path / "afile", "ro")))
    assert f"cannot write {tmp_path / 'afile' / 'outputs'}" in line and "Not a directory" in line
    log = tmp_path / "o" / "outputs" / "ro" / "seed_42" / "train.log"
    log.mkdir(parents=True)  # the run's log file cannot be opened (logging's "Unable to configure handler")
    line = _one_line(_train_cli(tmp_path, *tiny_overrides(tmp_path / "o", "ro")))
    assert f"cannot write {log}: Is a directory" in line and "Unable to configure" not in line


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_line_naming_the_path(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    line = _one_line(_train_cli(tmp_path, *tiny_overrides(tmp_path / "ro", "exp")))
    assert f"cannot write {tmp_path / 'ro' / 'outputs'}: Permission denied" in line


@pytest.mark.parametrize("code,hint", [("EACCES", "make it writable"), ("EROFS", "read-only"),
                                       ("ENOSPC", "the disk is full")])
def test_write_errors_of_any_command_are_one_line_with_what_to_do(monkeypatch, capsys, code, hint):
    import errno
    import os

    from mefnet.utils.cli import cli

    def entry():
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), "/data/out/x.csv")

    monkeypatch.setattr("sys.argv", ["mefnet-x"])
    with pytest.raises(SystemExit) as e:
        cli("mefnet-x", entry)
    assert str(e.value).startswith(f"mefnet-x: cannot write /data/out/x.csv: {os.strerror(getattr(errno, code))}; ")
    assert hint in str(e.value)
    with pytest.raises(OSError):  # another OS error is not the user's to fix: its traceback stays
        cli("mefnet-x", lambda: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))


def test_a_model_file_whose_config_disagrees_with_its_weights_is_one_line(finished, tmp_path):
    import os
    import subprocess
    import sys

    import numpy as np
    import torch
    from PIL import Image

    source = finished / "outputs" / "exp" / "seed_42" / "folds" / "synthetic" / "sub01" / "model.pt"
    payload = torch.load(source, map_location="cpu", weights_only=True)
    config = json.loads(payload["config"])
    config["preprocessing"]["size"] = int(config["preprocessing"]["size"]) * 2
    payload["config"] = json.dumps(config)
    edited = tmp_path / "model.pt"
    torch.save(payload, edited)
    for name in ("onset.png", "apex.png"):
        Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / name)
    out = subprocess.run([sys.executable, "-m", "mefnet.inference.predict", str(edited), "--onset",
                          str(tmp_path / "onset.png"), "--apex", str(tmp_path / "apex.png")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    said = [line for line in out.stderr.splitlines() if line.startswith("mefnet-predict: ")]
    assert len(said) == 1 and f"{edited}: the stored config disagrees with the weights" in said[0], out.stderr
    assert "preprocessing.size" in said[0]


@pytest.mark.parametrize("engine", ["per_fold", "batched"])
def test_a_finite_but_exploding_loss_warns_in_the_log_and_in_fold_json(tmp_path, engine):
    out = _train_cli(tmp_path, *tiny_overrides(tmp_path, "exploding", f"engine={engine}", "optimizer.lr=1e8"))
    assert out.returncode == 0, out.stderr
    exp = tmp_path / "outputs" / "exploding" / "seed_42"
    said = "fold synthetic/sub01: the training loss diverges: mean "
    assert said in (exp / "train.log").read_text() and said in out.stdout + out.stderr
    record = json.loads((exp / "folds" / "synthetic" / "sub01" / "fold.json").read_text())
    assert record["warnings"] and record["warnings"][0].startswith(said)


def test_a_training_loss_that_settles_leaves_no_warning(finished):
    for marker in (finished / "outputs" / "exp" / "seed_42").glob("folds/*/*/fold.json"):
        assert "warnings" not in json.loads(marker.read_text())


def _workers_end_with_their_killed_parent(tmp_path: Path, *args: str) -> None:
    """Start ``mefnet-train *args`` (two loky workers each training a fold of the "orphans"
    experiment), SIGKILL it once both are busy, and require both workers gone within 10 s."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "mefnet.experiment.train", *args]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(repo)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 240
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline and proc.poll() is None:
            workers = [p for p in parent.children(recursive=True)
                       if any("popen_loky" in part for part in p.cmdline())]
            # Both workers busy with a fold (its lock taken) before the kill.
            if len(workers) >= 2 and len(list((tmp_path / "outputs").glob("orphans/seed_*/folds/*/*/.lock"))) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None and len(workers) >= 2, "the run never reached its two fold workers"
        time.sleep(1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers still running 10 s after their parent was killed: {[p.pid for p in alive]}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("engine", ["batched", "per_fold"])
def test_killing_the_parent_ends_its_fold_workers_within_seconds(tmp_path, engine):
    # SIGKILL runs no handler in the parent: without a watcher in each worker, loky's
    # workers went on training their folds for minutes (holding the folds' locks).
    _workers_end_with_their_killed_parent(
        tmp_path, *tiny_overrides(tmp_path, "orphans", "n_jobs=2", f"engine={engine}", "trainer.max_epochs=100000"))


def test_killing_the_parent_ends_the_joblib_launchers_jobs_within_seconds(tmp_path):
    # Hydra's joblib launcher starts its jobs (here one per seed) in loky workers of its
    # own; each job watches mefnet-train like mefnet's own fold workers do.
    _workers_end_with_their_killed_parent(
        tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2",
        *tiny_overrides(tmp_path, "orphans", "n_jobs=1", "engine=per_fold", "trainer.max_epochs=100000"))


def test_a_launcher_job_that_starts_after_its_parent_died_ends_at_once_and_other_hosts_are_left_alone():
    # A kill between the launcher handing out a job and the job's start: the worker is
    # already re-parented when the job looks, and must not go on to train.
    import os
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job = ("from mefnet.utils.workers import exit_with_launcher_parent; exit_with_launcher_parent(); "
           "print('trained')")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for host, expected in ((socket.gethostname(), (1, "")), ("elsewhere", (0, "trained\n"))):
        out = subprocess.run([sys.executable, "-c", job], capture_output=True, text=True, timeout=60,
                             env={**env, "MEFNET_LAUNCHER_PARENT": f"{host} {dead.pid}"})
        assert (out.returncode, out.stdout) == expected, (host, out.stderr)


def test_an_empty_flow_map_is_one_line_naming_it_not_an_opencv_traceback(tmp_path):
    import numpy as np

    def edit(text: bytes) -> bytes:
        png = tmp_path / "flows" / "casme2" / "sub01" / "sub01_01.png"
        png.unlink()
        np.save(png.with_suffix(".npy"), np.zeros((3, 0, 28), np.float32))
        return text

    out, labels = _flow_train(tmp_path, edit)
    line = _one_line(out)
    assert "sub01_01.npy has shape (3, 0, 28): it is empty; expected (3, H, W)" in line, line
    assert f"{labels}, row 3" in line, line


# ---------------------------------------------------------------------------- stored AU predictions

AU_CELLS = {0: "4+15", 1: "6+12", 2: "1+2"}  # class -> the clip's AUs in labels.csv (15 and 6 outside the set)


@pytest.fixture(scope="module")
def au_finished(tmp_path_factory) -> Path:
    """A finished task=au run (2 LOSO folds of 3 clips, 1 epoch) on a tiny flow folder with an
    ``aus`` column; tests copy it before changing anything."""
    from tests.flow_trees import make_flow_folder

    base = tmp_path_factory.mktemp("au-integrity")
    make_flow_folder(base / "flows", {"casme2": 2}, clips_per_subject=3, aus=AU_CELLS)
    run(compose(_au_overrides(base)))
    return base


def _au_overrides(base: Path) -> list[str]:
    return ["dataset=flow_folder", f"dataset.index.root={base / 'flows'}", "task=au", "task.au_set=[1,2,4,12]",
            "trainer.max_epochs=1", "preprocessing.n_jobs=1", "logger=none", "save_checkpoint=false",
            "save_model=false", f"paths.output_dir={base / 'outputs'}", f"paths.data_dir={base / 'data'}",
            "experiment_name=au"]


def _au_copy(au_finished: Path, tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(au_finished / "outputs", tmp_path / "outputs")
    exp = tmp_path / "outputs" / "au" / "seed_42"
    return exp, exp / "folds" / "casme2" / "sub02" / "predictions.csv"


def _flip_truth(r: dict) -> dict:
    """AU4 of the row's truth flipped, ``true`` rewritten to match (an edit that agrees with itself)."""
    cells = {**r, "true_AU4": str(1 - int(r["true_AU4"]))}
    names = ("AU1", "AU2", "AU4", "AU12")
    return {"true_AU4": cells["true_AU4"],
            "true": "+".join(n.removeprefix("AU") for n in names if cells[f"true_{n}"] == "1")}


def _flip_prediction(r: dict) -> dict:
    cells = {**r, "pred_AU12": str(1 - int(r["pred_AU12"]))}
    names = ("AU1", "AU2", "AU4", "AU12")
    return {"pred_AU12": cells["pred_AU12"],
            "pred": "+".join(n.removeprefix("AU") for n in names if cells[f"pred_{n}"] == "1")}


# Each edit of line 2 of an AU fold's predictions.csv, and the column the refusal names.
AU_EDITS = {
    "true and its AU columns": (_flip_truth, "true_AU4"),
    "pred and its AU columns": (_flip_prediction, "pred_AU12"),
    "a NaN probability": (lambda r: {"prob_AU1": "nan"}, "prob_AU1"),
    "a probability above 1": (lambda r: {"prob_AU2": "1.5"}, "prob_AU2"),
}


def test_the_au_run_stores_each_clips_truth_as_recorded(au_finished):
    exp = au_finished / "outputs" / "au" / "seed_42"
    rows = [r for p in sorted(exp.glob("folds/*/*/predictions.csv")) for r in _row_list(p)]
    assert len(rows) == 6
    for r in rows:  # 15 and 6 are outside the AU set: left out of the truth
        assert r["true"] == {"4+15": "4", "6+12": "12", "1+2": "1+2"}[AU_CELLS[int(r["clip"][-2:]) % 3]]


def _row_list(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("edit", list(AU_EDITS))
def test_the_table_refuses_edited_au_predictions_naming_file_line_and_column(au_finished, tmp_path, edit):
    exp, preds = _au_copy(au_finished, tmp_path)
    change, column = AU_EDITS[edit]
    _edit_row(preds, 2, **change(_row(preds, 2)))
    out = _table_cli(tmp_path, str(exp), "--out", str(tmp_path / "table"))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    said = [line for line in out.stderr.splitlines() if line.startswith("mefnet-table: ")]
    assert len(said) == 1 and f"{preds}, line 2, column '{column}'" in said[0], out.stderr
    assert "The fold is damaged" in out.stderr
    assert not (tmp_path / "table").exists()


def test_an_au_truth_that_disagrees_with_clips_csv_names_the_clip_and_its_recorded_aus(au_finished, tmp_path):
    exp, preds = _au_copy(au_finished, tmp_path)
    r = _row(preds, 2)
    _edit_row(preds, 2, **_flip_truth(r))
    with pytest.raises(ReportError) as e:
        write_table([exp], tmp_path / "table")
    key = f"casme2/sub02/{r['clip']}"
    assert f"clip {key} has AUs '{AU_CELLS[int(r['clip'][-2:]) % 3]}' in the experiment's clips.csv" in str(e.value)


@pytest.mark.parametrize("edit", ["true and its AU columns", "pred and its AU columns"])
def test_a_resume_recomputes_an_au_fold_with_edited_predictions(au_finished, tmp_path, caplog, edit):
    exp, preds = _au_copy(au_finished, tmp_path)
    intact = preds.read_text()
    change, column = AU_EDITS[edit]
    _edit_row(preds, 2, **change(_row(preds, 2)))
    overrides = [*_au_overrides(tmp_path), f"paths.data_dir={au_finished / 'data'}",
                 f"dataset.index.root={au_finished / 'flows'}"]
    with caplog.at_level("WARNING", logger="mefnet"):
        run(compose(overrides))
    assert "fold casme2/sub02 is marked finished but is damaged" in caplog.text
    assert f"{preds}, line 2, column '{column}'" in caplog.text
    assert preds.read_text() == intact  # recomputed, deterministically


# ---------------------------------------------------------------------------- probabilities are required


def _without_probabilities(path: Path) -> None:
    rows = _row_list(path)
    kept = [k for k in rows[0] if not k.startswith("prob_")]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=kept, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def test_an_emotion_fold_without_probability_columns_is_damaged_refused_and_recomputed(finished, tmp_path):
    # Every predictions.csv mefnet-train writes has prob_<class> columns: one without them
    # was edited, and its pred could no longer be checked.
    exp, overrides = _copy(finished, tmp_path)
    preds = exp / "folds" / "synthetic" / "sub02" / "predictions.csv"
    intact = preds.read_text()
    _without_probabilities(preds)
    table = _table_cli(tmp_path, str(exp), "--out", str(tmp_path / "t"))
    assert table.returncode == 1 and "Traceback" not in table.stderr, table.stderr
    assert (f"{preds}: missing column(s) ['prob_negative', 'prob_positive', 'prob_surprise']; expected one "
            "prob_<class> column per class") in table.stderr
    assert "The fold is damaged" in table.stderr and not (tmp_path / "t").exists()
    out = _train_cli(tmp_path, *overrides)
    assert out.returncode == 0, out.stderr
    assert "fold synthetic/sub02 is marked finished but is damaged" in (exp / "train.log").read_text()
    assert preds.read_text() == intact


def test_an_au_fold_without_probability_columns_is_damaged(au_finished, tmp_path):
    exp, preds = _au_copy(au_finished, tmp_path)
    _without_probabilities(preds)
    with pytest.raises(ReportError, match=re.escape(f"{preds}: missing column(s) ['prob_AU1', 'prob_AU2', "
                                                    "'prob_AU4', 'prob_AU12']; expected one prob_<AU> column")):
        write_table([exp], tmp_path / "table")


# ---------------------------------------------------------------------------- the catalogue, by the command


@pytest.mark.parametrize("cell, problem", [
    ("ABS", "contains a path separator"),  # an absolute path (in tmp): a fold that never finished
    ("..", "starts with '.'"),             # likewise
    ("sub\x0103", "contains a control character"),
], ids=["absolute", "dot-dot", "control-character"])
def test_a_flow_folder_subject_that_is_not_a_name_is_refused_by_the_command_writing_no_fold(tmp_path, cell, problem):
    from tests.flow_trees import make_flow_folder

    root = make_flow_folder(tmp_path / "flows", {"casme2": 2}, clips_per_subject=3)
    cell = str(tmp_path / "abs") if cell == "ABS" else cell
    with (root / "labels.csv").open("a") as f:
        f.write(f"casme2,{cell},c,0\n")
    out = _train_cli(tmp_path, "dataset=flow_folder", f"dataset.index.root={root}", "trainer.max_epochs=1",
                     f"paths.output_dir={tmp_path / 'outputs'}", "experiment_name=flows", "logger=none")
    line = _one_line(out)
    assert f"{root / 'labels.csv'}, row 8: subject {cell!r} {problem}" in line, line
    assert not (tmp_path / "abs").exists()
    assert list((tmp_path / "outputs").rglob("*")) == []  # not even the run's folder and its empty log


def test_a_frames_csv_clip_id_with_dot_dot_is_refused_by_the_command(tmp_path):
    from tests.dataset_trees import write_frames

    root = tmp_path / "frames"
    root.mkdir()
    (root / "clips.csv").write_text("subject,clip,onset,apex,offset,label\np1,c1,10,12,14,happy\n"
                                    "p2,c1,5,6,8,sad\np2,../c3,5,6,8,sad\n")
    write_frames(root / "p1" / "c1", range(10, 15), "img{}.jpg")
    write_frames(root / "p2" / "c1", range(5, 9), "img{}.jpg")
    out = _train_cli(tmp_path, "dataset=frames_csv", f"dataset.index.root={root}", "trainer.max_epochs=1",
                     f"paths.output_dir={tmp_path / 'outputs'}", "experiment_name=frames", "logger=none")
    line = _one_line(out)
    assert f"{root / 'clips.csv'}, row 4" in line and "clip '../c3' contains a path separator" in line, line
    assert not list(tmp_path.rglob("c3*")) and list((tmp_path / "outputs").rglob("*")) == []


@pytest.mark.parametrize("edit", ["true and true_name", "a NaN probability", "probabilities of another class"])
def test_the_table_command_refuses_edited_truth_and_probabilities_in_one_line(finished, tmp_path, edit):
    exp, preds, _ = _edited(finished, tmp_path, edit)
    out = _table_cli(tmp_path, str(exp), "--out", str(tmp_path / "t"))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    said = [line for line in out.stderr.splitlines() if line.startswith("mefnet-table: ")]
    assert len(said) == 1 and f"{preds}, line 2, column" in said[0] and EDITS[edit][1] in said[0], out.stderr
    assert not (tmp_path / "t").exists()


def test_a_full_disk_or_unwritable_folder_during_a_run_is_one_line_from_the_command(tmp_path, monkeypatch, capsys):
    # Root (as in CI) writes into read-only folders, and no test can fill a disk: the
    # errors are raised where mefnet-train records its experiment, through the command.
    import errno
    import os
    import sys

    import mefnet.experiment.train as train

    for code, hint in ((errno.ENOSPC, "the disk is full"), (errno.EACCES, "make it writable"),
                       (errno.EROFS, "read-only")):
        def full(path, data, code=code):
            raise OSError(code, os.strerror(code), str(path))

        monkeypatch.setattr(train, "write_json", full)
        monkeypatch.setattr(sys, "argv", ["mefnet-train", *tiny_overrides(tmp_path, f"full{code}")])
        with pytest.raises(SystemExit) as e:
            train.main()
        exp = tmp_path / "outputs" / f"full{code}" / "seed_42"
        first, *rest = str(e.value.code).splitlines()
        assert first.startswith(f"mefnet-train: cannot write {exp / 'experiment.json'}: {os.strerror(code)}; ")
        assert hint in first, first
        assert rest == ["(HYDRA_FULL_ERROR=1 or --debug shows the traceback)"]
        assert "Traceback" not in capsys.readouterr().err
        assert not (exp / "experiment.json").exists() and not (exp / "folds").exists()
