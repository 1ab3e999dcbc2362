"""Action units on flow folders and frames_csv: the aus column, mefnet-aus attach on the real
sheets, task=au under loso / lodo / holdout on real CASME II flows, and the leak guard."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from mefnet.config import absolute_paths, compose
from mefnet.datasets.action_units import DEFAULT_AU_SET, NOT_ANNOTATED, parse_normalised
from mefnet.datasets.au_attach import main as aus_main
from mefnet.datasets.au_attach import read_sheet_aus
from mefnet.datasets.clip_index import Clip, ClipIndex, DatasetError
from mefnet.datasets.flow_folder import load_flow_folder
from mefnet.datasets.frames_csv import load_frames_csv
from mefnet.experiment.fold import run_fold
from mefnet.experiment.plan import load_index
from mefnet.experiment.train import run
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.tasks.au import AUTask, prepare_index
from tests.dataset_trees import CASME2_SHEET, SAMM_SHEET, write_frames
from tests.flow_trees import make_flow_folder

SYNTH_AUS = {0: "4+15", 1: "6+12", 2: "1+2"}
TRAIN = ["trainer.max_epochs=1", "preprocessing.n_jobs=1", "logger=none", "save_checkpoint=false",
         "save_model=false"]


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _set_aus(root: Path, cells: dict[str, str]) -> None:
    """Rewrite labels.csv with an aus column: ``cells`` by clip name, empty elsewhere."""
    rows = _rows(root / "labels.csv")
    lines = ["dataset,subject,clip,label,aus"] + [
        f"{r['dataset']},{r['subject']},{r['clip']},{r['label']},{cells.get(r['clip'], '')}" for r in rows]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


# -- the aus column ------------------------------------------------------------------------------


def test_an_empty_aus_cell_is_no_au_and_a_question_mark_or_na_is_not_annotated(tmp_path):
    root = make_flow_folder(tmp_path / "f", {"casme2": 2}, clips_per_subject=3)
    _set_aus(root, {"sub01_00": "4+12", "sub01_01": "R12+L14", "sub01_02": "?", "sub02_00": "NA",
                    "sub02_01": " n/a "})
    index = load_flow_folder(root)
    assert [c.aus for c in index] == ["4+12", "12+14", NOT_ANNOTATED, NOT_ANNOTATED, NOT_ANNOTATED, ""]
    au = prepare_index(index, AUTask(DEFAULT_AU_SET, no_au_clips="keep"))
    assert [c.clip for c in au] == ["sub01_00", "sub01_01", "sub02_02"]  # the empty cell: coded, no AU
    assert sum("no action-unit annotation" in s for s in au.skipped) == 3
    assert [c.clip for c in prepare_index(index, AUTask(DEFAULT_AU_SET))] == ["sub01_00", "sub01_01"]


def test_a_flow_folder_without_aus_column_is_not_annotated_and_the_au_task_says_how_to_add_it(tmp_path):
    index = load_flow_folder(make_flow_folder(tmp_path / "f", {"casme2": 1}, clips_per_subject=3))
    assert {c.aus for c in index} == {""}
    with pytest.raises(DatasetError, match=r"no action-unit annotation.*aus column.*mefnet-aus attach"):
        prepare_index(index, AUTask(DEFAULT_AU_SET))


def test_a_bad_aus_cell_is_a_bad_row_named_by_file_and_row_under_the_au_task(tmp_path):
    root = make_flow_folder(tmp_path / "f", {"casme2": 1}, clips_per_subject=4)
    _set_aus(root, {"sub01_00": "4", "sub01_02": "7", "sub01_03": "12+soft focus"})
    with pytest.raises(DatasetError, match=r"labels\.csv, row 5 \(clip casme2/sub01/sub01_03\): action units "
                                           r"'12\+soft focus' do not parse"):
        load_flow_folder(root, action_units=True)
    with pytest.warns(UserWarning, match="row 5"):
        skipped = load_flow_folder(root, action_units=True, on_bad_clip="skip")
    assert [c.clip for c in skipped] == ["sub01_00", "sub01_01", "sub01_02"]
    # The emotion task does not read AUs: the clip stays, as not annotated.
    assert [c.aus for c in load_flow_folder(root)] == ["4", "", "7", NOT_ANNOTATED]


def test_uncertain_aus_follow_the_policy_and_task_au_turns_the_checks_on(tmp_path):
    root = make_flow_folder(tmp_path / "f", {"casme2": 1}, clips_per_subject=3)
    _set_aus(root, {"sub01_00": "ref(6)+12", "sub01_01": "(R6 or R12)+R15"})
    assert [c.aus for c in load_flow_folder(root)][:2] == ["12", "15"]
    assert [c.aus for c in load_flow_folder(root, au_uncertain="include")][:2] == ["6+12", "6+12+15"]
    with pytest.raises(ValueError, match="dataset.index.au_uncertain"):
        load_flow_folder(root, au_uncertain="maybe")
    for dataset in ("flow_folder", "frames_csv"):
        cfg = compose([f"dataset={dataset}", "task=au", "task.uncertain=include"])
        assert cfg.dataset.index.action_units is True and cfg.dataset.index.au_uncertain == "include"
        assert compose([f"dataset={dataset}"]).dataset.index.action_units is False


def test_frames_csv_reads_an_action_units_column_with_the_same_rules(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "clips.csv").write_text(
        "Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Estimated Emotion,Action Units\n"
        "1,EP01,1,2,3,happy,R12\n1,EP02,1,2,3,sad,\n2,EP01,1,2,3,happy,?\n2,EP02,1,2,3,sad,4+X\n")
    for rel in ("1/EP01", "1/EP02", "2/EP01", "2/EP02"):
        write_frames(root / rel, range(1, 4), "img{}.jpg")
    assert [c.aus for c in load_frames_csv(root)] == ["12", "", NOT_ANNOTATED, NOT_ANNOTATED]
    with pytest.raises(DatasetError, match=r"clips\.csv, row 5 \(clip frames_csv/2/EP02\): action units '4\+X'"):
        load_frames_csv(root, action_units=True)
    (root / "clips.csv").write_text("subject,clip,onset,apex,offset,label\n1,EP01,1,2,3,happy\n")
    assert [c.aus for c in load_frames_csv(root)] == [""]


def test_the_au_task_leaves_unannotated_clips_and_datasets_out_and_lists_them():
    clips = [Clip("casme2", "sub01", "a", 0, "n", 0, 1, 2, aus="4"),
             Clip("casme2", "sub01", "b", 0, "n", 0, 1, 2, aus=NOT_ANNOTATED),
             Clip("casme2", "sub02", "c", 0, "n", 0, 1, 2, aus=""),
             Clip("smic", "s01", "d", 0, "n", 0, 1, 2, aus="")]
    out = prepare_index(ClipIndex(clips, ["n"], name="mix"), AUTask((4,), no_au_clips="keep"))
    assert [c.clip for c in out] == ["a", "c"]
    assert out.skipped == ["smic: all 1 clips: no action-unit annotation in the dataset (left out of the AU task)",
                           "casme2/sub01/b: no action-unit annotation (left out of the AU task)"]


# -- mefnet-aus attach ---------------------------------------------------------------------------


def test_the_attach_help_ends_with_an_example(capsys):
    for argv in (["--help"], ["attach", "--help"]):
        with pytest.raises(SystemExit):
            aus_main(argv)
        text = capsys.readouterr().out.rstrip()
        lines = text.splitlines()
        assert lines[-2] == "example:" and lines[-1].startswith("  mefnet-aus attach "), text
    assert aus_main(["attach", "/nonexistent"]) == 1
    assert "give at least one sheet" in capsys.readouterr().err


@pytest.mark.realdata
def test_attach_fills_every_casme2_clip_of_the_dev_folder_from_the_real_sheet(realdata, annotations, tmp_path, capsys):
    dev = realdata / "flows" / "megc2019_dev"
    if not (dev / "labels.csv").is_file():
        pytest.skip(f"{dev} is absent")
    folder = tmp_path / "dev"
    folder.mkdir()
    shutil.copy(dev / "labels.csv", folder / "labels.csv")
    for dataset in ("casme2", "smic"):  # the maps, read in place (nothing is written under dev)
        (folder / dataset).symlink_to(dev / dataset, target_is_directory=True)
    original = (folder / "labels.csv").read_bytes()
    assert aus_main(["attach", str(folder), "--casme2-sheet", str(annotations / CASME2_SHEET)]) == 0
    out = capsys.readouterr().out
    assert "casme2: 145 clips matched" in out and "smic: 164 clips not annotated" in out
    assert "not in the sheet" not in out and "does not parse" not in out
    assert (folder / "labels.csv.bak").read_bytes() == original  # the user's file, kept
    rows = _rows(folder / "labels.csv")
    assert len(rows) == 309 and [r["clip"] for r in rows] == [r["clip"] for r in _rows(dev / "labels.csv")]
    assert {r["aus"] for r in rows if r["dataset"] == "smic"} == {NOT_ANNOTATED}
    counts = Counter(a for r in rows if r["dataset"] == "casme2" for a in parse_normalised(r["aus"]))
    # Clips per AU over the 145 clips, checked by hand against the sheet's Action Units column.
    assert dict(counts) == {1: 19, 2: 20, 4: 60, 5: 2, 6: 11, 7: 30, 9: 13, 10: 17, 12: 30, 14: 11, 15: 14,
                            17: 21, 25: 2, 26: 1, 38: 1}
    assert next(r["aus"] for r in rows if r["clip"] == "EP19_06f" and r["subject"] == "sub01") == "4+5+10"
    # The loader reads what was written; every CASME II clip is annotated, no SMIC clip is.
    index = load_flow_folder(folder, action_units=True)
    assert sum(c.aus != NOT_ANNOTATED for c in index) == 145
    au = prepare_index(index, AUTask(DEFAULT_AU_SET))
    assert {c.dataset for c in au} == {"casme2"} and len(au) == 144  # EP12_03f of sub05 has AU25 only
    assert "casme2/sub05/EP12_03f: no AU of the AU set (AUs: 25)" in au.skipped
    # Run again: the first backup is not overwritten, and nothing changed.
    assert aus_main(["attach", str(folder), "--casme2-sheet", str(annotations / CASME2_SHEET)]) == 0
    assert (folder / "labels.csv.bak").read_bytes() == original
    assert (folder / "labels.csv.bak.1").read_text() == (folder / "labels.csv").read_text()


@pytest.mark.realdata
def test_attach_on_the_real_samm_sheet_reports_unmatched_and_unparseable_clips(annotations, tmp_path, capsys):
    from tests.test_action_units import EXPECTED

    sheet = read_sheet_aus("samm", annotations / SAMM_SHEET)
    assert len(sheet.cells) == 159
    folder = tmp_path / "samm_flows"
    folder.mkdir()
    # As the official MEGC2019 list writes SAMM: unpadded subjects, no header line.
    lines = [f"samm,{int(subject)},{clip},0" for subject, clip in sheet.cells] + ["samm,6,006_9_9,1",
                                                                                  "smic,s01,s01_ne_01,2"]
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    out_file = tmp_path / "with_aus.csv"
    assert aus_main(["attach", str(folder), "--samm-sheet", str(annotations / SAMM_SHEET),
                     "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "samm: 158 clips matched" in out
    assert "1 clip(s) not in the sheet" in out and "samm/006/006_9_9" in out
    assert "1 clip(s) AU cell does not parse" in out and "row 135" in out
    assert (folder / "labels.csv").read_text() == "\n".join(lines) + "\n"  # --out: left as it was
    rows = _rows(out_file)
    counts = Counter(a for r in rows if r["aus"] != NOT_ANNOTATED for a in parse_normalised(r["aus"])
                     if a in DEFAULT_AU_SET)
    assert dict(counts) == EXPECTED["samm"]
    assert sum(r["aus"] == NOT_ANNOTATED for r in rows) == 3  # unparseable, unmatched, SMIC
    assert aus_main(["attach", str(folder), "--samm-sheet", str(annotations / SAMM_SHEET),
                     "--out", str(out_file)]) == 1  # never overwrites an existing --out
    assert "already exists" in capsys.readouterr().err


def test_attach_keeps_existing_values_it_cannot_replace_and_refuses_a_folder_matching_nothing(tmp_path, capsys):
    from mefnet.datasets.au_attach import SheetAUs, attach_aus

    labels = tmp_path / "labels.csv"
    labels.write_text("dataset,subject,clip,label,aus,note\ncasme2,sub01,EP01,0,4,x\ncasme2,1,EP02,1,,y\n"
                      "smic,s01,s01_ne_01,0,,z\n")
    sheet = SheetAUs("casme2", "sheet.xlsx", {("sub01", "EP02"): (7, "L12"), ("sub02", "EP09"): (8, "?")})
    report = attach_aus(labels, [sheet])
    assert [r["aus"] for r in _rows(labels)] == ["4", "12", NOT_ANNOTATED]
    assert [r["note"] for r in _rows(labels)] == ["x", "y", "z"]  # other columns travel along
    assert report.unmatched == ["casme2/sub01/EP01 (labels.csv row 2): not in sheet.xlsx; its aus value '4' is kept"]
    with pytest.raises(DatasetError, match="no clip matched"):
        attach_aus(labels, [SheetAUs("samm", "s.xlsx", {})])


# -- training on flow folders with AUs ---------------------------------------------------------

CASME2_SUBJECTS = ("sub02", "sub09", "sub12")


@pytest.fixture(scope="module")
def au_folder(realdata, annotations, tmp_path_factory) -> Path:
    """Three real CASME II subjects of the dev folder (AUs attached from the real sheet),
    two synthetic subjects with AUs in labels.csv, and two SMIC clips without AUs."""
    dev = realdata / "flows" / "megc2019_dev"
    if not (dev / "labels.csv").is_file():
        pytest.skip(f"{dev} is absent")
    root = make_flow_folder(tmp_path_factory.mktemp("au") / "flows", {"synth": 2}, aus=SYNTH_AUS)
    lines = (root / "labels.csv").read_text().splitlines()
    for r in _rows(dev / "labels.csv"):
        keep = (r["dataset"] == "casme2" and r["subject"] in CASME2_SUBJECTS) or r["clip"] in ("s01_ne_01",
                                                                                                  "s01_po_01")
        if keep:
            target = root / r["dataset"] / r["subject"] / f"{r['clip']}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(dev / r["dataset"] / r["subject"] / f"{r['clip']}.png", target)
            lines.append(f"{r['dataset']},{r['subject']},{r['clip']},{r['label']},")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    assert aus_main(["attach", str(root), "--casme2-sheet", str(annotations / CASME2_SHEET)]) == 0
    return root


def _expected_clips(root: Path) -> dict[str, int]:
    """Clips per dataset that the AU task keeps: annotated, with an AU of the default set."""
    out: Counter = Counter()
    for r in _rows(root / "labels.csv"):
        if r["aus"] != NOT_ANNOTATED and set(parse_normalised(r["aus"])) & set(DEFAULT_AU_SET):
            out[r["dataset"]] += 1
    return dict(out)


def _overrides(root: Path, tmp: Path, name: str, *extra: str) -> list[str]:
    return ["dataset=flow_folder", f"dataset.index.root={root}", "task=au", *TRAIN,
            f"paths.output_dir={tmp / 'outputs'}", f"paths.data_dir={tmp / 'data'}", f"experiment_name={name}",
            *extra]


@pytest.mark.realdata
@pytest.mark.parametrize("protocol", ["loso", "lodo", "holdout"])
def test_task_au_trains_and_scores_a_flow_folder_under_each_protocol(au_folder, tmp_path, protocol):
    extra = [f"protocol={protocol}"]
    if protocol == "holdout":
        extra += ["protocol.train=[casme2]", "protocol.test=[synth]"]
    cfg = compose(_overrides(au_folder, tmp_path, f"au-{protocol}", *extra))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = run(cfg)
    exp = Path(absolute_paths(cfg).experiment_dir)
    record = json.loads((exp / "experiment.json").read_text())
    expected = _expected_clips(au_folder)
    assert expected["casme2"] >= 25 and expected["synth"] == 12 and "smic" not in expected
    folds = {"loso": [*(f"casme2/{s}" for s in CASME2_SUBJECTS), "synth/sub01", "synth/sub02"],
             "lodo": ["lodo/synth", "lodo/casme2"], "holdout": ["holdout/synth"]}[protocol]
    assert record["task"] == "au" and sorted(record["folds"]) == sorted(folds)
    # The SMIC clips (not annotated) are neither trained on nor scored.
    assert {c["dataset"] for c in _rows(exp / "clips.csv")} == {"casme2", "synth"}
    preds = [r for f in folds for r in _rows(exp / "folds" / f / "predictions.csv")]
    tested = expected if protocol != "holdout" else {"synth": 12}
    assert Counter(r["dataset"] for r in preds) == Counter(tested)
    top = next(r for r in rows if r["part"] == "all")
    assert top["clips"] == sum(tested.values()) and top["folds"] == len(folds)
    assert 0.0 <= top["macro_f1"] <= 1.0 and 0.0 <= top["avg_binary_f1"] <= 1.0
    if protocol == "holdout":
        fold = json.loads((exp / "folds" / "holdout" / "synth" / "fold.json").read_text())
        assert fold["n_train"] == expected["casme2"]


@pytest.mark.realdata
@pytest.mark.parametrize("protocol", ["loso", "lodo"])
def test_test_clip_action_units_cannot_influence_flow_folder_predictions(au_folder, tmp_path, protocol):
    extra = [f"protocol={protocol}", "selection=inner_val", "task.threshold=inner_val", "inner_val.val_fraction=0.34",
             "inner_val.every_n_epochs=1", "inner_val.min_epochs=1", "inner_val.smooth=1", "trainer.max_epochs=2"]
    cfg = absolute_paths(compose(_overrides(au_folder, tmp_path, f"leak-{protocol}", *extra)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = load_index(cfg)
    features = build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir)
    fold = "casme2/sub09" if protocol == "loso" else "lodo/casme2"
    tested = (lambda c: c.subject_key == fold) if protocol == "loso" else (lambda c: c.dataset == "casme2")
    honest = run_fold(cfg, index, features, fold)
    # Every test clip gets other action units; nothing else changes.
    wrong = [replace(c, aus="5+7") if tested(c) else c for c in index]
    cfg2 = absolute_paths(compose(_overrides(au_folder, tmp_path, f"leak-{protocol}-wrong", *extra)))
    tampered = run_fold(cfg2, index.with_clips(wrong), features, fold)
    a = _rows(Path(cfg.experiment_dir) / "folds" / fold / "predictions.csv")
    b = _rows(Path(cfg2.experiment_dir) / "folds" / fold / "predictions.csv")
    assert len(a) == honest["n_test"] == sum(map(tested, index)) > 0
    columns = [k for k in a[0] if k.startswith(("pred", "prob_", "thr_"))]
    assert any(k.startswith("thr_") for k in columns) and any(k.startswith("prob_") for k in columns)
    for key in columns:
        assert [r[key] for r in a] == [r[key] for r in b], key
    assert [r["true"] for r in a] != [r["true"] for r in b]  # the AUs did change
    assert tampered["selection"]["val_subjects"] == honest["selection"]["val_subjects"]
    assert all(not tested(c) for c in index if c.subject_key in honest["selection"]["val_subjects"])


@pytest.mark.realdata
def test_test_clip_action_units_cannot_influence_the_multi_task_predictions(au_folder, tmp_path):
    """task=emotion_au trains its AU head on the training clips' AUs only: replacing every
    test clip's AUs changes neither the emotion predictions nor the AU head's."""
    extra = ["selection=inner_val", "inner_val.val_fraction=0.34", "inner_val.every_n_epochs=1",
             "inner_val.min_epochs=1", "inner_val.smooth=1", "trainer.max_epochs=2"]

    def overrides(name):
        return [o if o != "task=au" else "task=emotion_au" for o in _overrides(au_folder, tmp_path, name, *extra)]

    cfg = absolute_paths(compose(overrides("leak-mtl")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = load_index(cfg)
    features = build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir)
    fold = "casme2/sub09"
    honest = run_fold(cfg, index, features, fold)
    wrong = [replace(c, aus="5+7") if c.subject_key == fold else c for c in index]
    cfg2 = absolute_paths(compose(overrides("leak-mtl-wrong")))
    tampered = run_fold(cfg2, index.with_clips(wrong), features, fold)
    for name in ("predictions.csv", "au_predictions.csv"):
        a = _rows(Path(cfg.experiment_dir) / "folds" / fold / name)
        b = _rows(Path(cfg2.experiment_dir) / "folds" / fold / name)
        assert len(a) == len(b) > 0
        for key in [k for k in a[0] if k.startswith(("pred", "prob_"))]:
            assert [r[key] for r in a] == [r[key] for r in b], (name, key)
    au_a = _rows(Path(cfg.experiment_dir) / "folds" / fold / "au_predictions.csv")
    au_b = _rows(Path(cfg2.experiment_dir) / "folds" / fold / "au_predictions.csv")
    assert [{k: v for k, v in r.items() if k.startswith("true")} for r in au_a] != [
        {k: v for k, v in r.items() if k.startswith("true")} for r in au_b]  # the AUs did change
    assert tampered["selection"]["val_subjects"] == honest["selection"]["val_subjects"]


def test_the_installed_mefnet_aus_script_runs(tmp_path):
    import subprocess
    import sys

    script = Path(sys.executable).parent / "mefnet-aus"
    if not script.exists():
        pytest.skip("mefnet-aus is not installed (pip install -e .)")
    (tmp_path / "labels.csv").write_text("dataset,subject,clip,label\nsmic,s01,s01_ne_01,0\n")
    done = subprocess.run([str(script), "attach", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("mefnet-aus attach: give at least one sheet")
    assert "Traceback" not in done.stderr


def test_task_au_trains_and_scores_a_frames_csv_with_an_action_units_column(tmp_path):
    """mefnet-synth frames + its CASME-style annotations.csv (with Action Units), read as
    frames_csv: one clip marked ? (not annotated) is left out, the rest are scored."""
    from mefnet.datasets.synthetic import SyntheticSpec, generate

    root = generate(SyntheticSpec(seed=3, num_subjects=3, num_clips=9, frame_size=48, frames_per_clip=(5, 6)),
                    tmp_path / "frames")
    table = _rows(root / "annotations.csv")
    assert all(r["Action Units"] for r in table)
    table[0]["Action Units"] = "?"
    with (root / "annotations.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    cfg = compose(["dataset=frames_csv", f"dataset.index.root={root}", "dataset.index.csv_file=annotations.csv",
                   "task=au", *TRAIN, f"paths.output_dir={tmp_path / 'outputs'}",
                   f"paths.data_dir={tmp_path / 'data'}", "experiment_name=frames-csv-au"])
    rows = run(cfg)
    exp = Path(absolute_paths(cfg).experiment_dir)
    preds = [r for p in sorted(exp.glob("folds/frames_csv/*/predictions.csv")) for r in _rows(p)]
    first = (table[0]["Subject"], table[0]["Filename"])
    assert len(preds) == 8 and first not in {(r["subject"], r["clip"]) for r in preds}
    names = json.loads((exp / "experiment.json").read_text())["au_names"]
    wanted = {int(n[2:]) for n in names}
    by_clip = {(r["Subject"], r["Filename"]): r["Action Units"] for r in table}
    for r in preds:  # the true AUs scored are the CSV's, restricted to the AU set
        true = {int(a.strip().removeprefix("AU")) for a in by_clip[(r["subject"], r["clip"])].split("+")} & wanted
        assert r["true"] == "+".join(str(a) for a in sorted(true))
    assert next(r for r in rows if r["part"] == "all")["clips"] == 8
