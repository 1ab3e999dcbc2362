"""protocol=lodo|holdout and task=au end to end on tiny synthetic datasets, with the leak guard."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from mefnet.config import absolute_paths, compose
from mefnet.datasets.clip_index import Clip, ClipIndex, DatasetError
from mefnet.datasets.composite import join_indices
from mefnet.experiment.fold import run_fold
from mefnet.experiment.plan import load_index
from mefnet.experiment.train import run
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.report.table import write_table
from mefnet.runs.splits import Split, fold_contains
from mefnet.runs.store import ReportError
from mefnet.tasks.au import au_scores
from tests.helpers import MULTI_PARTS as PARTS
from tests.helpers import TINY_MULTI


def multi_overrides(tmp: Path, name: str, *extra: str) -> list[str]:
    """Three tiny synthetic datasets (3 subjects, 12 clips each) as dataset=synthetic_multi."""
    return [*TINY_MULTI, f"paths.output_dir={tmp / 'outputs'}", f"paths.data_dir={tmp / 'data'}",
            f"experiment_name={name}", *extra]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("protocols")


def _read(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# -- splits on a hand-made index ---------------------------------------------------------------


def _index() -> ClipIndex:
    clips = [Clip(d, f"s{s}", f"c{k}", k % 2, ["a", "b"][k % 2], 0, 1, 2)
             for d in ("x", "y", "z") for s in (1, 2) for k in range(2)]
    return ClipIndex(clips, ["a", "b"], name="hand")


def test_lodo_leaves_each_dataset_out_and_holdout_uses_only_the_named_ones():
    index = _index()
    lodo = Split("lodo")
    assert lodo.folds(index) == ["lodo/x", "lodo/y", "lodo/z"]
    train, test = lodo.indices(index, "y")
    assert {index[i].dataset for i in test} == {"y"} and {index[i].dataset for i in train} == {"x", "z"}
    hold = Split("holdout", ("x",), ("z",))
    assert hold.folds(index) == ["holdout/z"]
    train, test = hold.indices(index, "holdout/z")
    assert {index[i].dataset for i in train} == {"x"} and {index[i].dataset for i in test} == {"z"}
    assert fold_contains("lodo/y", "y", "s1") and not fold_contains("lodo/y", "x", "s1")
    assert fold_contains("holdout/y+z", "z", "s2") and fold_contains("x/s1", "x", "s1")
    assert Split().folds(index) == index.subjects


def test_protocol_mistakes_are_clear_errors():
    index = _index()
    with pytest.raises(DatasetError, match="does not hold"):
        Split("holdout", ("x",), ("w",)).folds(index)
    with pytest.raises(DatasetError, match="several datasets"):
        Split("lodo").folds(index.select([0, 1]))
    with pytest.raises(DatasetError, match="not a fold"):
        Split("lodo").resolve(index, "w")
    with pytest.raises(ValueError, match="both in"):
        Split.from_config({"name": "holdout", "train": ["x"], "test": ["x"]})
    with pytest.raises(ValueError, match="needs protocol.train"):
        Split.from_config({"name": "holdout", "train": ["x"]})


def test_composite_all_takes_the_union_of_classes_and_refuses_clashing_names():
    a = ClipIndex([Clip("p", "s1", "c1", 0, "anger", 0, 1, 2)], ["anger"], name="p")
    b = ClipIndex([Clip("q", "s1", "c1", 0, "happy", 0, 1, 2)], ["happy"], name="q")
    joined = join_indices([a, b], "ab", protocol="all")
    assert joined.class_names == ["anger", "happy"] and [c.label for c in joined] == [0, 1]
    with pytest.raises(DatasetError, match="same classes"):
        join_indices([a, b], "ab", protocol="megc2019")
    with pytest.raises(DatasetError, match="two parts"):
        join_indices([a, a], "aa")


# -- on synthetic datasets ----------------------------------------------------------------------


def test_synthetic_multi_records_each_clips_action_units(workdir):
    index = load_index(compose(multi_overrides(workdir, "look")))
    assert index.datasets == list(PARTS) and len(index) == 36
    class_aus = {"positive": {"6+12"}, "negative": {"4+9", "4+15"}, "surprise": {"1+2+26"}}
    extra = 0
    for c in index:
        aus = set(c.aus.split("+"))
        if c.aus not in class_aus[c.label_name]:
            extra += 1  # one extra AU beside the class's own (extra_au_rate)
            assert any(set(a.split("+")) <= aus for a in class_aus[c.label_name])
    assert 0 < extra < len(index)


@pytest.mark.parametrize(("protocol", "task", "selection"), [
    ("lodo", "emotion", "fixed_epochs"),
    ("holdout", "emotion", "inner_val"),
    ("lodo", "au", "inner_val"),
    ("holdout", "au", "fixed_epochs"),
])
def test_test_clip_labels_cannot_influence_predictions(workdir, protocol, task, selection):
    extra = [f"protocol={protocol}", f"task={task}", f"selection={selection}"]
    if protocol == "holdout":
        extra += ["protocol.train=[synth_a,synth_b]", "protocol.test=[synth_c]"]
    if selection == "inner_val":
        extra += ["inner_val.val_fraction=0.34", "inner_val.every_n_epochs=1", "inner_val.min_epochs=1",
                  "inner_val.smooth=1"]
        if task == "au":
            extra += ["task.threshold=inner_val"]
    name = f"leak-{protocol}-{task}-{selection}"
    cfg = absolute_paths(compose(multi_overrides(workdir, name, *extra)))
    index = load_index(cfg)
    features = build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir)
    fold = "lodo/synth_b" if protocol == "lodo" else "holdout/synth_c"
    tested = fold.split("/")[1]
    honest = run_fold(cfg, index, features, fold)
    # Every test clip gets a wrong label (emotion) or wrong action units (AU); nothing else changes.
    wrong = [replace(c, label=(c.label + 1) % 3, label_name=index.class_names[(c.label + 1) % 3], aus="5+7")
             if c.dataset == tested else c for c in index]
    cfg2 = absolute_paths(compose(multi_overrides(workdir, name + "-wrong", *extra)))
    tampered = run_fold(cfg2, index.with_clips(wrong), features, fold)
    a = _read(Path(cfg.experiment_dir) / "folds" / fold / "predictions.csv")
    b = _read(Path(cfg2.experiment_dir) / "folds" / fold / "predictions.csv")
    assert len(a) == honest["n_test"] == sum(c.dataset == tested for c in index)
    assert {r["dataset"] for r in a} == {tested}
    for key in a[0]:
        if key.startswith(("pred", "prob_", "thr_")):
            assert [r[key] for r in a] == [r[key] for r in b], key
    assert [r["true"] for r in a] != [r["true"] for r in b]  # the labels did change
    if selection == "inner_val":
        assert all(not s.startswith(f"{tested}/") for s in honest["selection"]["val_subjects"])
        assert tampered["selection"]["val_subjects"] == honest["selection"]["val_subjects"]
    if protocol == "holdout":
        assert honest["n_train"] == 24  # synth_a + synth_b only (refit on the whole training fold)


def test_au_lodo_runs_end_to_end_and_the_table_pools_the_folds(workdir):
    cfg = compose(multi_overrides(workdir, "au-lodo", "task=au", "protocol=lodo"))
    rows = run(cfg)
    exp = Path(absolute_paths(cfg).experiment_dir)
    record = json.loads((exp / "experiment.json").read_text())
    assert record["task"] == "au" and record["folds"] == [f"lodo/{p}" for p in PARTS]
    assert record["protocol"] == "leave-one-dataset-out"
    clips = _read(exp / "clips.csv")
    assert all(c["aus"] for c in clips)
    preds = [r for p in PARTS for r in _read(exp / "folds" / "lodo" / p / "predictions.csv")]
    names = record["au_names"]
    m = au_scores([[int(r[f"true_{n}"]) for n in names] for r in preds],
                  [[int(r[f"pred_{n}"]) for n in names] for r in preds], names)
    top = next(r for r in rows if r["part"] == "all")
    assert top["macro_f1"] == round(m["macro_f1"], 4) and top["folds"] == 3 and top["clips"] == 36
    assert {r["part"] for r in rows} == {"all", *PARTS}
    table = (exp / "table.md").read_text()
    assert "macro F1" in table and "AU12" in table and (exp / "table_au.csv").is_file()
    # mefnet-table rebuilds the same rows from the stored predictions.
    again = write_table([exp], workdir / "au-table", figures=False)
    assert [(r["part"], r["macro_f1"]) for r in again] == [(r["part"], r["macro_f1"]) for r in rows]
    # A clip's true AUs in the predictions are its clips.csv AUs restricted to the set.
    by_clip = {(c["dataset"], c["subject"], c["clip"]): c["aus"] for c in clips}
    wanted = {int(n[2:]) for n in names}
    for r in preds:
        true = {int(a) for a in by_clip[(r["dataset"], r["subject"], r["clip"])].split("+")} & wanted
        assert r["true"] == "+".join(str(a) for a in sorted(true))


def test_au_lodo_completeness_check_resumes_intact_folds_and_recomputes_a_damaged_one(workdir):
    """The per-fold completeness check reads lodo/<dataset> folds and AU prediction files."""
    cfg = compose(multi_overrides(workdir, "au-lodo", "task=au", "protocol=lodo"))
    rows = run(cfg)  # computes, or resumes the end-to-end test's run
    exp = Path(absolute_paths(cfg).experiment_dir)
    marks = {p: (exp / "folds" / "lodo" / p / "fold.json").stat().st_mtime_ns for p in PARTS}
    assert [(r["part"], r["macro_f1"]) for r in run(cfg)] == [(r["part"], r["macro_f1"]) for r in rows]
    assert {p: (exp / "folds" / "lodo" / p / "fold.json").stat().st_mtime_ns for p in PARTS} == marks
    # One clip's row removed: the table refuses the fold, a rerun computes that fold only.
    damaged = exp / "folds" / "lodo" / "synth_b" / "predictions.csv"
    lines = damaged.read_text().splitlines(keepends=True)
    damaged.write_text("".join(lines[:-1]))
    with pytest.raises(ReportError, match=r"1 of the fold's 12 clips"):
        write_table([exp], workdir / "au-damaged", figures=False)
    assert [(r["part"], r["macro_f1"]) for r in run(cfg)] == [(r["part"], r["macro_f1"]) for r in rows]
    assert len(damaged.read_text().splitlines()) == len(lines)
    after = {p: (exp / "folds" / "lodo" / p / "fold.json").stat().st_mtime_ns for p in PARTS}
    assert after["synth_a"] == marks["synth_a"] and after["synth_c"] == marks["synth_c"]
    assert after["synth_b"] != marks["synth_b"]


def test_emotion_holdout_runs_one_fold_and_a_rerun_resumes(workdir):
    over = multi_overrides(workdir, "holdout", "protocol=holdout", "protocol.train=[synth_a]",
                           "protocol.test=[synth_b,synth_c]")
    rows = run(compose(over))
    exp = Path(absolute_paths(compose(over)).experiment_dir)
    assert json.loads((exp / "experiment.json").read_text())["folds"] == ["holdout/synth_b+synth_c"]
    assert [(r["part"], r["clips"], r["folds"]) for r in rows] == [("all", 24, 1), ("synth_b", 12, 1),
                                                                   ("synth_c", 12, 1)]
    fold = json.loads((exp / "folds" / "holdout" / "synth_b+synth_c" / "fold.json").read_text())
    assert fold["n_train"] == 12
    before = (exp / "folds" / "holdout" / "synth_b+synth_c" / "fold.json").stat().st_mtime_ns
    assert run(compose(over)) == rows
    assert (exp / "folds" / "holdout" / "synth_b+synth_c" / "fold.json").stat().st_mtime_ns == before


def test_au_task_refuses_a_dataset_without_action_units(workdir, tmp_path):
    from mefnet.tasks.au import AUTask, prepare_index

    index = ClipIndex([Clip("smic", "s1", "c1", 0, "negative", 0, 1, 2)], ["negative"], name="smic")
    with pytest.raises(DatasetError, match="no action-unit annotation"):
        prepare_index(index, AUTask((1, 2)))
    mixed = ClipIndex([Clip("d", "s1", "c1", 0, "n", 0, 1, 2, aus="4"),
                       Clip("d", "s1", "c2", 0, "n", 0, 1, 2, aus="43")], ["n"], name="d")
    kept = prepare_index(mixed, AUTask((4,)))
    assert [c.clip for c in kept] == ["c1"] and "d/s1/c2" in kept.skipped[-1]
    assert len(prepare_index(mixed, AUTask((4,), no_au_clips="keep"))) == 2
